/* test_walk.c - the parallel directory walk (snapshot/base/walk.c).
 *
 * The callback runs on several threads at once, so it never uses cmocka's
 * assert_* (they jump to the test's own stack): it records what it sees under
 * its own mutex and the test checks the record after ts_walk returns. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/walk.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)
#define NDIRS 30
#define NFILES 500
#define RUNAWAY 20000   /* no test tree has that many entries */

/* TOP/root is the tree walked; rootfd is open on it. */
typedef struct fx {
	char top[PATH_MAX];
	char root[TBUF];
	int rootfd;
	char dirs[NDIRS][TBUF];   /* rel of each generated directory */
} fx;

/* ---- what the callback saw --------------------------------------------------- */

typedef struct rec {
	char *rel;
	mode_t mode;
	ino_t ino;
	off_t size;
	pthread_t th;
} rec;

typedef struct seen {
	pthread_mutex_t mu;
	rec *v;
	size_t n, cap;
	bool oom;
	int inside;                       /* callbacks running now */
	int max_inside;
	/* behaviour */
	const char *skip[4];              /* rels answered TS_ERR_NOTFOUND */
	bool fail_first;                  /* fail on the first entry seen */
	const char *fail_rel;             /* fail on this rel */
	ts_err_code fail_code;
	volatile sig_atomic_t *cancel;    /* set after cancel_after entries */
	size_t cancel_after;
	const char *remove_rel;           /* rm -rf it when seen (under root) */
	const char *swap_rel;             /* replace it by a symlink to / when seen */
	const char *replace_rel;          /* move replace_with in its place when seen */
	const char *replace_with;
	const char *root;
	useconds_t delay_us;              /* sleep in each call (outside the lock) */
} seen;

static void seen_init(seen *s, const char *root)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->root = root;
}

static void seen_free(seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].rel);
	free(s->v);
	pthread_mutex_destroy(&s->mu);
}

static ts_err_code walk_cb(void *arg, const char *rel, const struct stat *st, ts_err *e)
{
	seen *s = arg;
	ts_err_code rc = TS_OK;
	char path[TBUF];

	pthread_mutex_lock(&s->mu);
	if (++s->inside > s->max_inside)
		s->max_inside = s->inside;
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		rec *nv = realloc(s->v, ncap * sizeof(*nv));

		if (nv) {
			s->v = nv;
			s->cap = ncap;
		}
	}
	if (s->n < s->cap && (s->v[s->n].rel = strdup(rel)) != NULL) {
		s->v[s->n].mode = st->st_mode;
		s->v[s->n].ino = st->st_ino;
		s->v[s->n].size = st->st_size;
		s->v[s->n].th = pthread_self();
		s->n++;
	} else {
		s->oom = true;
	}
	if (s->cancel && s->n == s->cancel_after)
		*s->cancel = 1;
	if (s->n > RUNAWAY)   /* a walk that loops: stop it rather than hang */
		rc = ts_err_set(e, TS_ERR_IO, "runaway walk: more than %d entries", RUNAWAY);
	for (int i = 0; i < 4 && s->skip[i]; i++)
		if (!strcmp(rel, s->skip[i]))
			rc = TS_ERR_NOTFOUND;
	if (s->fail_first || (s->fail_rel && !strcmp(rel, s->fail_rel)))
		rc = ts_err_set(e, s->fail_code, "test failure at %s", rel);
	if (s->remove_rel && !strcmp(rel, s->remove_rel)) {
		snprintf(path, sizeof(path), "%s/%s", s->root, rel);
		tu_rm_rf(path);
	}
	if (s->replace_rel && !strcmp(rel, s->replace_rel)) {
		char with[TBUF];
		snprintf(path, sizeof(path), "%s/%s", s->root, rel);
		snprintf(with, sizeof(with), "%s/%s", s->root, s->replace_with);
		tu_rm_rf(path);
		if (rename(with, path) < 0)
			s->oom = true;   /* reported as a failed record */
	}
	if (s->swap_rel && !strcmp(rel, s->swap_rel)) {
		snprintf(path, sizeof(path), "%s/%s", s->root, rel);
		tu_rm_rf(path);
		if (symlink("/", path) < 0)
			s->oom = true;   /* reported as a failed record */
	}
	pthread_mutex_unlock(&s->mu);
	if (s->delay_us)
		usleep(s->delay_us);
	pthread_mutex_lock(&s->mu);
	s->inside--;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int rec_cmp(const void *a, const void *b)
{
	return strcmp(((const rec *)a)->rel, ((const rec *)b)->rel);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool starts_with(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static size_t count_rel(const seen *s, const char *rel)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].rel, rel))
			n++;
	return n;
}

static size_t count_below(const seen *s, const char *dir)
{
	char prefix[TBUF];
	size_t n = 0;

	tu_fmt(prefix, sizeof(prefix), "%s/", dir);
	for (size_t i = 0; i < s->n; i++)
		if (starts_with(s->v[i].rel, prefix))
			n++;
	return n;
}

/* Printable rel for failure messages (newlines shown as \n). */
static const char *shown(const char *rel, char *buf, size_t size)
{
	size_t j = 0;

	for (const char *p = rel; *p && j + 3 < size; p++) {
		if (*p == '\n') {
			buf[j++] = '\\';
			buf[j++] = 'n';
		} else {
			buf[j++] = *p;
		}
	}
	buf[j] = '\0';
	return buf;
}

/* ---- what nftw sees ------------------------------------------------------------- */

static char **nftw_v;
static size_t nftw_n, nftw_cap;
static size_t nftw_skip;   /* strlen(root) + 1 */

static int nftw_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	if (ftw->level == 0)
		return 0;
	if (nftw_n == nftw_cap) {
		nftw_cap = nftw_cap ? nftw_cap * 2 : 256;
		nftw_v = realloc(nftw_v, nftw_cap * sizeof(*nftw_v));
		if (!nftw_v)
			return -1;
	}
	nftw_v[nftw_n] = strdup(path + nftw_skip);
	return nftw_v[nftw_n++] ? 0 : -1;
}

/* Every entry below root (not root), relative, sorted. */
static void nftw_list(const char *root)
{
	nftw_v = NULL;
	nftw_n = nftw_cap = 0;
	nftw_skip = strlen(root) + 1;
	assert_int_equal(nftw(root, nftw_one, 32, FTW_PHYS), 0);
	qsort(nftw_v, nftw_n, sizeof(*nftw_v), str_cmp);
}

static void nftw_free(void)
{
	for (size_t i = 0; i < nftw_n; i++)
		free(nftw_v[i]);
	free(nftw_v);
	nftw_v = NULL;
	nftw_n = nftw_cap = 0;
}

/* Leave out of the nftw list everything below dir (dir itself stays). */
static void nftw_drop_below(const char *dir)
{
	char prefix[TBUF];
	size_t j = 0;

	tu_fmt(prefix, sizeof(prefix), "%s/", dir);
	for (size_t i = 0; i < nftw_n; i++) {
		if (starts_with(nftw_v[i], prefix))
			free(nftw_v[i]);
		else
			nftw_v[j++] = nftw_v[i];
	}
	nftw_n = j;
}

/* The walk saw exactly the nftw list: same sorted set, no duplicates. */
static void same_as_nftw(seen *s)
{
	char b1[TBUF], b2[TBUF];
	size_t i;

	assert_false(s->oom);
	qsort(s->v, s->n, sizeof(*s->v), rec_cmp);
	for (i = 1; i < s->n; i++)
		if (!strcmp(s->v[i - 1].rel, s->v[i].rel))
			fail_msg("'%s' reported twice", shown(s->v[i].rel, b1, sizeof(b1)));
	for (i = 0; i < s->n && i < nftw_n; i++)
		if (strcmp(s->v[i].rel, nftw_v[i]))
			fail_msg("walk has '%s' where nftw has '%s'", shown(s->v[i].rel, b1, sizeof(b1)),
			         shown(nftw_v[i], b2, sizeof(b2)));
	if (s->n != nftw_n)
		fail_msg("walk reported %zu entries, nftw %zu (first extra: '%s')", s->n, nftw_n,
		         s->n > nftw_n ? shown(s->v[i].rel, b1, sizeof(b1))
		                       : shown(nftw_v[i], b2, sizeof(b2)));
}

/* ---- fixture and trees ------------------------------------------------------------ */

static int setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	tu_tmpdir("walk", x->top);
	tu_fmt(x->root, sizeof(x->root), "%s/root", x->top);
	assert_int_equal(mkdir(x->root, 0755), 0);
	x->rootfd = open(x->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(x->rootfd >= 0);
	*state = x;
	return 0;
}

/* rm -rf dirfd/name through descriptors: works below PATH_MAX too. */
static void rm_tree_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		unlinkat(dirfd, name, 0);
		return;
	}
	fchmod(fd, 0700);
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			rm_tree_at(fd, de->d_name);
		else
			unlinkat(fd, de->d_name, 0);
	}
	closedir(d);
	unlinkat(dirfd, name, AT_REMOVEDIR);
}

static int teardown(void **state)
{
	fx *x = *state;

	close(x->rootfd);
	rm_tree_at(AT_FDCWD, x->root);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

/* NDIRS directories up to 5 levels deep (d0..d3 at the top, each with a
 * subtree), NFILES regular files spread over them and the root, symlinks
 * (to a directory, to "/", to "..", dangling), FIFOs, empty directories and
 * names with spaces, a newline, a tab and leading dots. */
static void make_tree(fx *x)
{
	int depth[NDIRS], parent[NDIRS];
	char rel[TBUF], path[TBUF];

	for (int i = 0; i < NDIRS; i++) {
		char name[64];

		if (i < 4) {
			parent[i] = -1;
		} else {
			parent[i] = i - 4;
			if (depth[parent[i]] >= 5)
				parent[i] = i % 4;
		}
		depth[i] = parent[i] < 0 ? 1 : depth[parent[i]] + 1;
		if (i == 5)
			tu_fmt(name, sizeof(name), "dir with spaces");
		else if (i == 9)
			tu_fmt(name, sizeof(name), "dir\nwith newline");
		else if (i == 14)
			tu_fmt(name, sizeof(name), "..dots");
		else if (i == 18)
			tu_fmt(name, sizeof(name), " tab\there ");
		else
			tu_fmt(name, sizeof(name), "d%d", i);
		if (parent[i] < 0)
			tu_fmt(x->dirs[i], sizeof(x->dirs[i]), "%s", name);
		else
			tu_fmt(x->dirs[i], sizeof(x->dirs[i]), "%s/%s", x->dirs[parent[i]], name);
		tu_mkdir_in(x->root, x->dirs[i], i % 5 == 0 ? 0700 : 0755);
	}
	assert_int_equal(depth[16], 5);
	for (int j = 0; j < NFILES; j++) {
		int d = j % (NDIRS + 1) - 1;   /* -1: the root */
		char name[64];
		unsigned char *data = tu_pattern((size_t)(j % 61), (unsigned)j);

		if (j % 50 == 7)
			tu_fmt(name, sizeof(name), "file with spaces %03d", j);
		else if (j % 50 == 23)
			tu_fmt(name, sizeof(name), "nl\n%03d", j);
		else if (j % 50 == 31)
			tu_fmt(name, sizeof(name), ".hidden%03d", j);
		else
			tu_fmt(name, sizeof(name), "f%03d", j);
		if (d < 0)
			tu_fmt(rel, sizeof(rel), "%s", name);
		else
			tu_fmt(rel, sizeof(rel), "%s/%s", x->dirs[d], name);
		tu_put_bytes_at(x->rootfd, rel, data, (size_t)(j % 61), j % 3 ? 0644 : 0600);
		free(data);
	}
	assert_int_equal(symlinkat("d0", x->rootfd, "link-dir"), 0);
	assert_int_equal(symlinkat("/", x->rootfd, "link-slash"), 0);
	assert_int_equal(symlinkat("does/not/exist", x->rootfd, "dangling"), 0);
	tu_fmt(rel, sizeof(rel), "%s/link-up", x->dirs[1]);
	assert_int_equal(symlinkat("..", x->rootfd, rel), 0);
	tu_fmt(rel, sizeof(rel), "%s/link-file", x->dirs[4]);
	assert_int_equal(symlinkat("../../f000", x->rootfd, rel), 0);
	tu_fmt(path, sizeof(path), "%s/fifo", x->root);
	assert_int_equal(mkfifo(path, 0644), 0);
	tu_fmt(path, sizeof(path), "%s/%s/fifo 2", x->root, x->dirs[2]);
	assert_int_equal(mkfifo(path, 0600), 0);
	tu_mkdir_in(x->root, "empty dir", 0755);
	tu_fmt(rel, sizeof(rel), "%s/empty", x->dirs[7]);
	tu_mkdir_in(x->root, rel, 0755);
}

#define TREE_ENTRIES (NDIRS + NFILES + 5 + 2 + 2)

static ts_err_code walk(fx *x, seen *s, volatile sig_atomic_t *cancel, const char *cancel_msg,
                        ts_err *e)
{
	ts_err_clear(e);
	return ts_walk(x->rootfd, x->root, walk_cb, s, cancel, cancel_msg, NULL, e);
}

/* A walk that must succeed; whether it said a directory changed between
 * its stat and its listing. */
static bool walk_ok_retyped(fx *x, seen *s)
{
	bool retyped = false;
	ts_err e;

	ts_err_clear(&e);
	if (ts_walk(x->rootfd, x->root, walk_cb, s, NULL, NULL, &retyped, &e) != TS_OK)
		fail_msg("ts_walk: %s", e.msg);
	return retyped;
}

static void walk_ok(fx *x, seen *s)
{
	(void)walk_ok_retyped(x, s);
}

/* ---- 1. every entry once, as nftw and lstat see it ------------------------------- */

static void test_walk_all_entries(void **state)
{
	fx *x = *state;
	seen s;
	char b[TBUF];

	make_tree(x);
	nftw_list(x->root);
	assert_int_equal(nftw_n, TREE_ENTRIES);
	seen_init(&s, x->root);
	assert_false(walk_ok_retyped(x, &s));   /* nothing changed meanwhile */

	same_as_nftw(&s);
	for (size_t i = 0; i < s.n; i++) {
		const rec *r = &s.v[i];
		struct stat st;

		/* The root is never reported, rels are plain relative paths. */
		assert_true(r->rel[0] != '\0' && r->rel[0] != '/');
		assert_string_not_equal(r->rel, ".");
		assert_false(starts_with(r->rel, "./"));
		assert_int_equal(fstatat(x->rootfd, r->rel, &st, AT_SYMLINK_NOFOLLOW), 0);
		if (r->mode != st.st_mode || r->ino != st.st_ino || r->size != st.st_size)
			fail_msg("'%s': walk stat mode %o ino %lu size %ld, lstat mode %o ino %lu size %ld",
			         shown(r->rel, b, sizeof(b)), (unsigned)r->mode, (unsigned long)r->ino,
			         (long)r->size, (unsigned)st.st_mode, (unsigned long)st.st_ino,
			         (long)st.st_size);
	}
	/* Symlinks are reported as symlinks and never followed. */
	assert_int_equal(count_rel(&s, "link-dir"), 1);
	assert_int_equal(count_below(&s, "link-dir"), 0);
	assert_int_equal(count_below(&s, "link-slash"), 0);
	tu_fmt(b, sizeof(b), "%s/link-up", x->dirs[1]);
	assert_int_equal(count_below(&s, b), 0);
	for (size_t i = 0; i < s.n; i++) {
		if (!strcmp(s.v[i].rel, "link-dir") || !strcmp(s.v[i].rel, "dangling") ||
		    !strcmp(s.v[i].rel, "link-slash"))
			assert_true(S_ISLNK(s.v[i].mode));
		if (!strcmp(s.v[i].rel, "fifo"))
			assert_true(S_ISFIFO(s.v[i].mode));
		if (!strcmp(s.v[i].rel, "empty dir"))
			assert_true(S_ISDIR(s.v[i].mode));
	}
	assert_int_equal(count_rel(&s, "dangling"), 1);
	assert_int_equal(count_rel(&s, "empty dir"), 1);
	/* A directory with a newline in its name is entered like any other. */
	assert_string_equal(x->dirs[9], "d1/dir with spaces/dir\nwith newline");
	assert_int_equal(count_rel(&s, x->dirs[9]), 1);
	assert_true(count_below(&s, x->dirs[9]) > 10);
	seen_free(&s);
	nftw_free();
}

/* An empty root: no callback, TS_OK. */
static void test_walk_empty_root(void **state)
{
	fx *x = *state;
	seen s;

	seen_init(&s, x->root);
	walk_ok(x, &s);
	assert_int_equal(s.n, 0);
	seen_free(&s);
}

/* ---- 2. TS_ERR_NOTFOUND leaves a directory out ----------------------------------- */

static void test_walk_notfound_prunes(void **state)
{
	fx *x = *state;
	seen s;

	make_tree(x);
	/* d1 is at the top with a subtree; dirs[6] (d2/d6) is deeper in another branch. */
	assert_string_equal(x->dirs[6], "d2/d6");
	nftw_list(x->root);
	assert_true(nftw_n == TREE_ENTRIES);
	nftw_drop_below("d1");
	nftw_drop_below("d2/d6");
	assert_true(nftw_n < TREE_ENTRIES - 40);
	seen_init(&s, x->root);
	s.skip[0] = "d1";
	s.skip[1] = "d2/d6";
	s.skip[2] = "f000";      /* a file answered NOTFOUND is just that file */
	walk_ok(x, &s);

	assert_int_equal(count_rel(&s, "d1"), 1);
	assert_int_equal(count_below(&s, "d1"), 0);
	assert_int_equal(count_rel(&s, "d2/d6"), 1);
	assert_int_equal(count_below(&s, "d2/d6"), 0);
	assert_int_equal(count_rel(&s, "f000"), 1);
	assert_true(count_below(&s, "d2") > 0);
	same_as_nftw(&s);
	seen_free(&s);
	nftw_free();
}

/* ---- 3. any other error stops the walk -------------------------------------------- */

/* Failing on the very first entry: nothing else was listed yet, so that is
 * the only call; the code and message come back through *e. */
static void test_walk_error_first_entry(void **state)
{
	fx *x = *state;
	seen s;
	ts_err e;
	char want[TBUF];

	make_tree(x);
	seen_init(&s, x->root);
	s.fail_first = true;
	s.fail_code = TS_ERR_IO;
	e.code = TS_ERR_DB;
	tu_fmt(e.msg, sizeof(e.msg), "stale");
	assert_int_equal(ts_walk(x->rootfd, x->root, walk_cb, &s, NULL, NULL, NULL, &e), TS_ERR_IO);
	assert_int_equal(s.n, 1);
	assert_int_equal(e.code, TS_ERR_IO);
	tu_fmt(want, sizeof(want), "test failure at %s", s.v[0].rel);
	assert_string_equal(e.msg, want);
	seen_free(&s);

	/* e may be NULL. */
	seen_init(&s, x->root);
	s.fail_first = true;
	s.fail_code = TS_ERR_IO;
	assert_int_equal(ts_walk(x->rootfd, x->root, walk_cb, &s, NULL, NULL, NULL, NULL), TS_ERR_IO);
	assert_int_equal(s.n, 1);
	seen_free(&s);
}

/* Failing on one entry deep in the tree, with a code of the callback's own:
 * that code and message, and the walk does not finish. */
static void test_walk_error_deep_entry(void **state)
{
	fx *x = *state;
	seen s;
	ts_err e;
	char rel[TBUF], want[TBUF];

	make_tree(x);
	/* Fail on d0/d4/d8/d12, 4 levels down, which has a subdirectory and files. */
	assert_string_equal(x->dirs[12], "d0/d4/d8/d12");
	tu_fmt(rel, sizeof(rel), "%s", x->dirs[12]);
	seen_init(&s, x->root);
	s.fail_rel = rel;
	s.fail_code = TS_ERR_CORRUPT;
	assert_int_equal(walk(x, &s, NULL, NULL, &e), TS_ERR_CORRUPT);
	assert_int_equal(e.code, TS_ERR_CORRUPT);
	tu_fmt(want, sizeof(want), "test failure at %s", rel);
	assert_string_equal(e.msg, want);
	assert_int_equal(count_rel(&s, rel), 1);
	assert_int_equal(count_below(&s, rel), 0);   /* not entered */
	assert_true(s.n < TREE_ENTRIES);
	seen_free(&s);
}

/* ---- 4. cancel --------------------------------------------------------------------- */

static void test_walk_cancel_before(void **state)
{
	fx *x = *state;
	volatile sig_atomic_t cancel = 1;
	seen s;
	ts_err e;

	make_tree(x);
	seen_init(&s, x->root);
	assert_int_equal(walk(x, &s, &cancel, "walk cancelled by test", &e), TS_ERR_CANCELLED);
	assert_int_equal(e.code, TS_ERR_CANCELLED);
	assert_string_equal(e.msg, "walk cancelled by test");
	assert_int_equal(s.n, 0);
	seen_free(&s);
}

static void test_walk_cancel_during(void **state)
{
	fx *x = *state;
	volatile sig_atomic_t cancel = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	seen s;
	ts_err e;

	make_tree(x);
	seen_init(&s, x->root);
	s.cancel = &cancel;
	s.cancel_after = 20;
	assert_int_equal(walk(x, &s, &cancel, "stopping", &e), TS_ERR_CANCELLED);
	assert_int_equal(e.code, TS_ERR_CANCELLED);
	assert_string_equal(e.msg, "stopping");
	assert_true(s.n >= 20);
	assert_true(s.n < TREE_ENTRIES);
	/* Each thread checks before each entry: at most one call per other
	 * thread may already be past the check. */
	if (s.n > 20 + (size_t)(ncpu > 1 ? ncpu : 1))
		fail_msg("%zu entries seen after cancel at 20 (%ld CPUs)", s.n, ncpu);
	seen_free(&s);

	/* Unset cancel pointer given, never set: a full walk. */
	cancel = 0;
	seen_init(&s, x->root);
	assert_int_equal(walk(x, &s, &cancel, "stopping", &e), TS_OK);
	assert_int_equal(s.n, TREE_ENTRIES);
	seen_free(&s);
}

/* ---- 5. entries that vanish are left out --------------------------------------------- */

/* The callback removes d2 (with its subtree) when it sees it and answers
 * TS_OK: opening it then fails with ENOENT, which is no error. */
static void test_walk_dir_removed(void **state)
{
	fx *x = *state;
	seen s;

	make_tree(x);
	nftw_list(x->root);
	nftw_drop_below("d2");
	seen_init(&s, x->root);
	s.remove_rel = "d2";
	/* Said, so that a take looks again (its item for d2 is stale). */
	assert_true(walk_ok_retyped(x, &s));
	assert_false(tu_exists_at(x->rootfd, "d2"));
	assert_int_equal(count_rel(&s, "d2"), 1);
	assert_int_equal(count_below(&s, "d2"), 0);
	same_as_nftw(&s);
	seen_free(&s);
	nftw_free();
}

/* Replaced by a symlink to / before it is opened: not followed (no
 * "d3/etc", no error). */
static void test_walk_dir_swapped_for_symlink(void **state)
{
	fx *x = *state;
	seen s;
	struct stat st;

	make_tree(x);
	nftw_list(x->root);
	nftw_drop_below("d3");
	seen_init(&s, x->root);
	s.swap_rel = "d3";
	assert_true(walk_ok_retyped(x, &s));
	assert_int_equal(fstatat(x->rootfd, "d3", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(count_below(&s, "d3"), 0);
	same_as_nftw(&s);
	seen_free(&s);
	nftw_free();
}

/* Another directory moved into d3's place after its stat: its entries are
 * not d3's, and are left out (the caller, told, looks again). */
static void test_walk_dir_replaced_by_another(void **state)
{
	fx *x = *state;
	seen s;

	make_tree(x);
	tu_mkdir_in(x->root, "other", 0755);
	tu_put_in(x->root, "other/not-d3.txt", "other\n", 0644);
	seen_init(&s, x->root);
	s.replace_rel = "d3";
	s.replace_with = "other";
	s.skip[0] = "other";   /* not walked under its old name: only d3 matters here */
	assert_true(walk_ok_retyped(x, &s));
	assert_true(tu_exists_at(x->rootfd, "d3/not-d3.txt"));
	assert_int_equal(count_rel(&s, "d3"), 1);
	assert_int_equal(count_below(&s, "d3"), 0);
	seen_free(&s);
}

/* ---- 6. a path longer than PATH_MAX ------------------------------------------------- */

#define DEEP_LEVELS 210
#define DEEP_NAME "n123456789abcdefghij"   /* 20 characters */

static void test_walk_path_too_long(void **state)
{
	fx *x = *state;
	size_t namelen = strlen(DEEP_NAME);
	/* Depth k has a rel of k * (namelen + 1) - 1 characters; the deepest that
	 * fits in PATH_MAX (with its NUL) is reported, the next one cannot be. */
	int fits = (int)(PATH_MAX / (namelen + 1));
	int fd = dup(x->rootfd);
	bool *depth_seen = calloc(DEEP_LEVELS + 1, sizeof(bool));
	size_t maxlen = 0;
	seen s;
	ts_err e;

	assert_non_null(depth_seen);
	assert_true(fits < DEEP_LEVELS);
	assert_true(fd >= 0);
	for (int k = 1; k <= DEEP_LEVELS; k++) {
		int nfd;

		assert_int_equal(mkdirat(fd, DEEP_NAME, 0755), 0);
		if (k % 50 == 0)
			tu_put_bytes_at(fd, "file", "x", 1, 0644);
		nfd = openat(fd, DEEP_NAME, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(nfd >= 0);
		close(fd);
		fd = nfd;
	}
	close(fd);

	seen_init(&s, x->root);
	assert_int_equal(walk(x, &s, NULL, NULL, &e), TS_ERR_IO);
	assert_int_equal(e.code, TS_ERR_IO);
	if (!strstr(e.msg, "path too long"))
		fail_msg("message lacks 'path too long': %.200s...%s", e.msg,
		         strlen(e.msg) > 200 ? e.msg + strlen(e.msg) - 100 : "");
	assert_true(starts_with(e.msg, x->root));
	assert_false(s.oom);
	for (size_t i = 0; i < s.n; i++) {
		size_t len = strlen(s.v[i].rel);

		if (len > maxlen)
			maxlen = len;
		if (S_ISDIR(s.v[i].mode)) {
			assert_int_equal((len + 1) % (namelen + 1), 0);
			depth_seen[(len + 1) / (namelen + 1)] = true;
		}
	}
	assert_true(maxlen < PATH_MAX);
	for (int k = 1; k <= fits; k++)
		if (!depth_seen[k])
			fail_msg("directory at depth %d (fits in PATH_MAX) not reported", k);
	assert_false(depth_seen[fits + 1]);
	free(depth_seen);
	seen_free(&s);
	rm_tree_at(x->rootfd, DEEP_NAME);
	assert_false(tu_exists_at(x->rootfd, DEEP_NAME));
}

/* ---- 7. more than one thread ------------------------------------------------------------ */

static void test_walk_uses_threads(void **state)
{
	fx *x = *state;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t th[64];
	int nth = 0;
	char rel[TBUF];
	seen s;

	for (int i = 0; i < 8; i++) {
		tu_fmt(rel, sizeof(rel), "t%d", i);
		tu_mkdir_in(x->root, rel, 0755);
		for (int j = 0; j < 8; j++) {
			tu_fmt(rel, sizeof(rel), "t%d/s%d", i, j);
			tu_mkdir_in(x->root, rel, 0755);
			for (int k = 0; k < 4; k++) {
				tu_fmt(rel, sizeof(rel), "t%d/s%d/f%d", i, j, k);
				tu_put_bytes_at(x->rootfd, rel, "x", 1, 0644);
			}
		}
	}
	seen_init(&s, x->root);
	s.delay_us = 300;
	walk_ok(x, &s);
	assert_int_equal(s.n, 8 + 64 + 256);
	assert_false(s.oom);
	for (size_t i = 0; i < s.n; i++) {
		int t;

		for (t = 0; t < nth; t++)
			if (pthread_equal(th[t], s.v[i].th))
				break;
		if (t == nth && nth < 64)
			th[nth++] = s.v[i].th;
	}
	if (ncpu <= 1) {
		seen_free(&s);
		skip();
	}
	if (nth < 2)
		fail_msg("one thread used for 328 entries with %ld CPUs", ncpu);
	assert_true(nth <= ncpu);        /* one thread per core at most */
	assert_true(s.max_inside >= 2);  /* the callback did run concurrently */
	seen_free(&s);
}

/* ---- permissions (as nobody: root ignores them) ------------------------------------------- */

typedef struct perm_out {
	int setid_failed;
	int rc;
	size_t n;
	int saw_a, saw_b, saw_nox;
	char msg[TS_ERR_MSG_MAX];
} perm_out;

/* Walk the root as nobody in a child; what it saw comes back in *o. */
static void walk_as_nobody(fx *x, perm_out *o)
{
	int pfd[2], status;
	pid_t pid;
	size_t got = 0;

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		perm_out r;
		seen s;
		ts_err e;
		ssize_t w;

		memset(&r, 0, sizeof(r));
		close(pfd[0]);
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0) {
			r.setid_failed = 1;
		} else {
			seen_init(&s, x->root);
			ts_err_clear(&e);
			r.rc = (int)ts_walk(x->rootfd, x->root, walk_cb, &s, NULL, NULL, NULL, &e);
			r.n = s.n;
			r.saw_a = (int)count_rel(&s, "nox/a");
			r.saw_b = (int)count_rel(&s, "nox/b");
			r.saw_nox = (int)count_rel(&s, "nox");
			snprintf(r.msg, sizeof(r.msg), "%s", e.msg);
			seen_free(&s);
		}
		w = write(pfd[1], &r, sizeof(r));
		close(pfd[1]);
		_exit(w == (ssize_t)sizeof(r) ? 0 : 3);
	}
	close(pfd[1]);
	while (got < sizeof(*o)) {
		ssize_t n = read(pfd[0], (char *)o + got, sizeof(*o) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(got, sizeof(*o));
}

/* A directory nobody may not open at all: TS_ERR_PERM naming it. */
static void test_walk_unreadable_dir(void **state)
{
	fx *x = *state;
	perm_out *o = calloc(1, sizeof(*o));

	assert_non_null(o);
	if (geteuid() != 0) {
		free(o);
		skip();
	}
	tu_put_in(x->root, "top", "t", 0644);
	tu_mkdir_in(x->root, "closed", 0755);
	tu_put_in(x->root, "closed/inside", "i", 0644);
	assert_int_equal(chmod(x->root, 0755), 0);
	assert_int_equal(fchmodat(x->rootfd, "closed", 0000, 0), 0);
	walk_as_nobody(x, o);
	if (o->setid_failed)   /* root can always drop to nobody: never a skip */
		fail_msg("could not become uid/gid 65534");
	assert_int_equal(o->rc, TS_ERR_PERM);
	if (!strstr(o->msg, "/closed: cannot read directory"))
		fail_msg("message: %s", o->msg);
	free(o);
}

/* A directory nobody may list (r) but not search (no x): every fstatat in it
 * fails with EACCES.  Its entries have not vanished, so they must not be
 * silently left out: either the walk fails or it reports them. */
static void test_walk_unsearchable_dir(void **state)
{
	fx *x = *state;
	perm_out *o = calloc(1, sizeof(*o));

	assert_non_null(o);
	if (geteuid() != 0) {
		free(o);
		skip();
	}
	tu_put_in(x->root, "top", "t", 0644);
	tu_mkdir_in(x->root, "nox", 0755);
	tu_put_in(x->root, "nox/a", "a", 0644);
	tu_put_in(x->root, "nox/b", "b", 0644);
	assert_int_equal(fchmodat(x->rootfd, "nox", 0444, 0), 0);
	walk_as_nobody(x, o);
	if (o->setid_failed)   /* root can always drop to nobody: never a skip */
		fail_msg("could not become uid/gid 65534");
	assert_int_equal(o->saw_nox, 1);
	if (o->rc == TS_OK && !(o->saw_a && o->saw_b))
		fail_msg("ts_walk returned TS_OK but silently left out nox/a and nox/b "
		         "(fstatat EACCES treated as 'vanished'); %zu entries seen", o->n);
	if (o->rc != TS_OK && !strstr(o->msg, "/nox/"))
		fail_msg("error %d does not name the entry: %s", o->rc, o->msg);
	free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_walk_all_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_empty_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_notfound_prunes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_error_first_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_error_deep_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_cancel_before, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_cancel_during, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_dir_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_dir_swapped_for_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_dir_replaced_by_another, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_path_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_uses_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_unreadable_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_unsearchable_dir, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
