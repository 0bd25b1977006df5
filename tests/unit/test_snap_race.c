/* test_snap_race.c - the environment changes while a snapshot is taken,
 * between the pre-copy and the check under Trac's write lock: the snapshot
 * is the state at the lock, and a directory swapped for a symlink leads
 * nowhere outside the environment (beneath.h).  The environment and the
 * checks are snapfx.h's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "env/env.h"
#include "store/manifest.h"
#include "store/store.h"
#include "take/snap.h"
#include "tutil.h"

#include "snapfx.h"

/* The environment changes after the pre-copy, while the snapshot waits for
 * Trac's write lock: the snapshot is the state at the lock (file removed,
 * rewritten, chmod'ed, added; a row committed by the writer it waited for). */
typedef struct mutator {
	fx *x;
	sqlite3 *w;          /* holds BEGIN IMMEDIATE until we are done */
	int failed;          /* step that failed, 0 when all went well */
	bool saw_precopy;
} mutator;

static bool tmp_has(const char *store, const char *rel)
{
	DIR *d = opendir(store);
	struct dirent *de;
	bool found = false;
	char p[TBUF];
	struct stat st;

	if (!d)
		return false;
	while (!found && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5))
			continue;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s/tree/%s", store, de->d_name, rel) < sizeof(p))
			found = lstat(p, &st) == 0;
	}
	closedir(d);
	return found;
}

/* For the mutator's thread, where cmocka's assertions cannot be used: a new
 * file holding text, a new directory; false on failure. */
static bool mu_new(fx *x, const char *rel, const char *text, mode_t mode)
{
	char p[TBUF + 64];
	size_t len = strlen(text);
	snprintf(p, sizeof(p), "%s/%s", x->env, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, mode);
	bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
	return fd >= 0 && close(fd) == 0 && ok;
}

static bool mu_mkdir(fx *x, const char *rel, mode_t mode)
{
	char p[TBUF + 64];
	snprintf(p, sizeof(p), "%s/%s", x->env, rel);
	return mkdir(p, mode) == 0;
}

static void *mutate(void *arg)
{
	mutator *mu = arg;
	fx *x = mu->x;
	char p[TBUF + 64];
	struct timespec nap = { 0, 2 * 1000 * 1000 };
	int fd, i;

	/* Wait (up to 20 s) until the pre-copy has copied what we remove. */
	for (i = 0; i < 10000 && !mu->saw_precopy; i++) {
		mu->saw_precopy = tmp_has(x->store, "files/attachments/ticket/1/small.txt") &&
		                  tmp_has(x->store, "htdocs/a.txt");
		if (!mu->saw_precopy)
			nanosleep(&nap, NULL);
	}
	nap.tv_nsec = 200 * 1000 * 1000; /* let it reach the lock */
	nanosleep(&nap, NULL);

	snprintf(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	if (unlink(p) < 0)
		mu->failed = 1;
	snprintf(p, sizeof(p), "%s/htdocs/a.txt", x->env);
	fd = open(p, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, "during\n", 7) != 7 || close(fd) < 0)
		mu->failed = 2;
	snprintf(p, sizeof(p), "%s/htdocs/site.css", x->env);
	if (chmod(p, 0600) < 0)
		mu->failed = 3;
	if (!mu_new(x, "htdocs/late.txt", "late\n", 0644))
		mu->failed = 4;
	if (!mu_mkdir(x, "newdir", 0711))
		mu->failed = 5;
	if (!mu_new(x, "newdir/x", "", 0640))
		mu->failed = 6;
	/* Deeper news, gone directories and changed types: found under the
	 * lock by listing again only directories whose stat changed. */
	if (!mu_mkdir(x, "newdir/deep", 0755) || !mu_mkdir(x, "newdir/deep/er", 0700) ||
	    !mu_new(x, "newdir/deep/er/f.txt", "deep\n", 0644))
		mu->failed = 8;
	snprintf(p, sizeof(p), "%s/templates", x->env);
	if (rmdir(p) < 0)
		mu->failed = 9;
	snprintf(p, sizeof(p), "%s/README", x->env);
	if (unlink(p) < 0 || !mu_mkdir(x, "README", 0755) || !mu_new(x, "README/inside.txt", "", 0644))
		mu->failed = 10;
	snprintf(p, sizeof(p), "%s/plugins/secret.egg", x->env);
	if (unlink(p) < 0)
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/plugins/suid.sh", x->env);
	if (unlink(p) < 0)
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/plugins", x->env);
	if (rmdir(p) < 0 || !mu_new(x, "plugins", "file\n", 0644))
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/htdocs/new-link", x->env);
	if (symlink("late.txt", p) < 0)
		mu->failed = 12;
	/* A file the walk met, a symlink under the lock: its item, made
	 * without room for a hash, gets the link's (snap_item_set_sha). */
	snprintf(p, sizeof(p), "%s/db/trac.db.bak", x->env);
	if (unlink(p) < 0 || symlink("trac.db", p) < 0)
		mu->failed = 13;
	if (sqlite3_exec(mu->w, "INSERT INTO ticket VALUES (4, 'during'); COMMIT", NULL, NULL,
	                 NULL) != SQLITE_OK)
		mu->failed = 7;
	return NULL;
}

static void test_snap_changes_before_lock(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	mutator mu;
	pthread_t th;
	char p[TBUF];
	struct stat sb;

	memset(&mu, 0, sizeof(mu));
	mu.x = x;
	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	mu.w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(mu.w, "BEGIN IMMEDIATE");
	assert_int_equal(pthread_create(&th, NULL, mutate, &mu), 0);
	sfx_take_ok(x, "s1", &st);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sqlite3_close(mu.w), SQLITE_OK);
	assert_true(mu.saw_precopy);
	assert_int_equal(mu.failed, 0);

	assert_false(sfx_snap_has(x, "s1", "files/attachments/ticket/1/small.txt"));
	sfx_snap_text_is(x, "s1", "htdocs/a.txt", "during\n");
	sfx_snap_file(x, "s1", "htdocs/site.css", &sb);
	assert_int_equal(sb.st_mode & 07777, 0600);
	sfx_snap_text_is(x, "s1", "htdocs/late.txt", "late\n");
	sfx_snap_file(x, "s1", "newdir", &sb);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0711);
	assert_true(sfx_snap_has(x, "s1", "newdir/x"));
	sfx_snap_text_is(x, "s1", "newdir/deep/er/f.txt", "deep\n");
	sfx_snap_text_is(x, "s1", "plugins", "file\n");
	assert_true(sfx_snap_has(x, "s1", "README/inside.txt"));
	assert_false(sfx_snap_has(x, "s1", "templates"));
	assert_true(sfx_snap_has(x, "s1", "htdocs/new-link"));
	tu_tree_path(x->store, "s1", "db/trac.db.bak", p, sizeof(p));
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	sfx_compare_tree(x, "s1");
	sfx_check_db(x, "s1", "db/trac.db", 4, "first,second,third,during");
	sfx_check_manifest(x, "s1", &st, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

/* A hostile owner of the environment swaps a directory for a symlink to a
 * tree of root's between the pre-copy and the check under the lock.  The
 * check stats every entry by its path, the store tree then holds the link,
 * and the directories' metadata, file copies and removals all act on paths
 * below it: nothing may be reached through either link (beneath.h). */
#define CANARY_N 4
static const char *const canary_rel[CANARY_N] = { "B", "B/f.txt", "B/sub", "B/sub/deep.txt" };

typedef struct canary_rec {
	struct stat st[CANARY_N];
	size_t names;        /* entries below the canary's top, all levels */
} canary_rec;

static bool snap_same_ts(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static size_t count_below(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	char p[TBUF];

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		n++;
		tu_fmt(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			n += count_below(p);
	}
	closedir(d);
	return n;
}

static void canary_record(const char *canary, canary_rec *c)
{
	char p[TBUF];

	for (int i = 0; i < CANARY_N; i++) {
		tu_fmt(p, sizeof(p), "%s/%s", canary, canary_rel[i]);
		assert_int_equal(lstat(p, &c->st[i]), 0);
	}
	c->names = count_below(canary);
}

static void canary_unchanged(const char *canary, const canary_rec *before)
{
	canary_rec now;

	canary_record(canary, &now);
	for (int i = 0; i < CANARY_N; i++) {
		const struct stat *a = &before->st[i], *b = &now.st[i];
		if (a->st_mode != b->st_mode || a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
		    a->st_size != b->st_size || !snap_same_ts(&a->st_ctim, &b->st_ctim) ||
		    !snap_same_ts(&a->st_mtim, &b->st_mtim))
			fail_msg("%s/%s changed: mode %o -> %o, owner %u:%u -> %u:%u, ctime %ld.%09ld -> "
			         "%ld.%09ld", canary, canary_rel[i], (unsigned)a->st_mode,
			         (unsigned)b->st_mode, (unsigned)a->st_uid, (unsigned)a->st_gid,
			         (unsigned)b->st_uid, (unsigned)b->st_gid, (long)a->st_ctim.tv_sec,
			         a->st_ctim.tv_nsec, (long)b->st_ctim.tv_sec, b->st_ctim.tv_nsec);
	}
	if (now.names != before->names)
		fail_msg("%s: %zu entries, was %zu: something was created or removed there", canary,
		         now.names, before->names);
}

typedef struct flipper {
	fx *x;
	sqlite3 *w;          /* holds BEGIN IMMEDIATE until the swap is done */
	const char *canary;
	int failed;
	bool saw_precopy;
} flipper;

static void *flip_to_link(void *arg)
{
	flipper *f = arg;
	char a[TBUF + 64], kept[TBUF + 64];
	struct timespec nap = { 0, 2 * 1000 * 1000 };

	for (int i = 0; i < 10000 && !f->saw_precopy; i++) {
		f->saw_precopy = tmp_has(f->x->store, "files/A/B/sub/deep.txt");
		if (!f->saw_precopy)
			nanosleep(&nap, NULL);
	}
	nap.tv_nsec = 200 * 1000 * 1000;   /* let it reach the lock */
	nanosleep(&nap, NULL);
	snprintf(a, sizeof(a), "%s/files/A", f->x->env);
	snprintf(kept, sizeof(kept), "%s/files/A.real", f->x->env);
	if (rename(a, kept) < 0 || symlink(f->canary, a) < 0)
		f->failed = 1;
	if (sqlite3_exec(f->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		f->failed = 2;
	return NULL;
}

/* Root's tree outside the environment, with modes and owners of its own,
 * at TOP/canary (its path into canary), and its state into before. */
static void canary_make(fx *x, char *canary, size_t len, canary_rec *before)
{
	tu_fmt(canary, len, "%s/canary", x->top);
	tu_mkdir_in(x->top, "canary", 0700);
	tu_mkdir_in(canary, "B", 0700);
	tu_put_in(canary, "B/f.txt", "root's\n", 0600);
	tu_mkdir_in(canary, "B/sub", 0710);
	tu_put_in(canary, "B/sub/deep.txt", "root's deep\n", 0640);
	canary_record(canary, before);
}

/* Snapshot s1 taken while fn runs on its own thread, holding Trac's lock
 * (BEGIN IMMEDIATE) until it commits: fn changes the environment after
 * the pre-copy, before the check under the lock.  Root's tree is as
 * before, whatever became of the snapshot; the take's result is returned. */
static ts_err_code flip_take(fx *x, const char *canary, const canary_rec *before,
                             void *(*fn)(void *), ts_snap_stats *st, ts_err *e)
{
	flipper f;
	pthread_t th;
	char p[TBUF];
	ts_err_code rc;

	memset(&f, 0, sizeof(f));
	f.x = x;
	f.canary = canary;
	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	f.w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(f.w, "BEGIN IMMEDIATE");
	assert_int_equal(pthread_create(&th, NULL, fn, &f), 0);
	rc = sfx_take(x, "s1", false, 5, st, e);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sqlite3_close(f.w), SQLITE_OK);
	assert_true(f.saw_precopy);
	assert_int_equal(f.failed, 0);
	canary_unchanged(canary, before);
	return rc;
}

/* Snapshot s1 holds rel as the symlink the environment had, and its
 * manifest lists nothing below it. */
static void snap_holds_link(fx *x, const char *rel, ts_snap_stats *st)
{
	char p[TBUF];
	struct stat sb;
	ts_manifest m;
	size_t len = strlen(rel);

	tu_tree_path(x->store, "s1", rel, p, sizeof(p));
	assert_int_equal(lstat(p, &sb), 0);
	if (!S_ISLNK(sb.st_mode))
		fail_msg("s1: %s is not the symlink the environment holds (mode %o)", rel,
		         (unsigned)sb.st_mode);
	sfx_check_manifest(x, "s1", st, &m);
	for (size_t i = 0; i < m.n; i++)
		if (!strncmp(m.entries[i].path, rel, len) && m.entries[i].path[len] == '/')
			fail_msg("manifest lists %s, below the symlink %s", m.entries[i].path, rel);
	assert_int_equal(ts_manifest_find(&m, rel)->type, 'l');
	ts_manifest_free(&m);
}

static void test_snap_dir_swapped_for_link(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	char canary[TBUF], p[TBUF], kept[TBUF];
	canary_rec before;
	struct stat sb;
	ts_err_code rc;
	ts_err e;

	/* Root's tree outside the environment, and the environment's
	 * directory of the same shape. */
	canary_make(x, canary, sizeof(canary), &before);
	tu_mkdir_in(x->env, "files/A", 0777);
	tu_mkdir_in(x->env, "files/A/B", 0777);
	tu_put_in(x->env, "files/A/B/f.txt", "real B\n", 0666);
	tu_mkdir_in(x->env, "files/A/B/sub", 0777);
	tu_put_in(x->env, "files/A/B/sub/deep.txt", "real deep\n", 0666);
	tu_put_in(x->env, "files/A/B/sub/only-env.txt", "env only\n", 0666);
	for (const char *const *r = (const char *const[]){ "files/A", "files/A/B", "files/A/B/f.txt",
	     "files/A/B/sub", "files/A/B/sub/deep.txt", "files/A/B/sub/only-env.txt", NULL }; *r; r++) {
		tu_fmt(p, sizeof(p), "%s/%s", x->env, *r);
		assert_int_equal(lchown(p, 4321, 4321), 0);
	}

	/* Nothing of root's was chown'ed, chmod'ed, touched, created or
	 * removed (flip_take); and the snapshot was taken, holding the link
	 * as a link and nothing below it. */
	rc = flip_take(x, canary, &before, flip_to_link, &st, &e);
	if (rc != TS_OK)
		fail_msg("snapshot s1: %s: %s", ts_err_name(e.code), e.msg);
	snap_holds_link(x, "files/A", &st);

	/* Back to a directory: the next snapshot reads its real content. */
	tu_fmt(p, sizeof(p), "%s/files/A", x->env);
	tu_fmt(kept, sizeof(kept), "%s/files/A.real", x->env);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(rename(kept, p), 0);
	sfx_take_ok(x, "s2", &st);
	canary_unchanged(canary, &before);
	sfx_snap_text_is(x, "s2", "files/A/B/f.txt", "real B\n");
	sfx_snap_text_is(x, "s2", "files/A/B/sub/deep.txt", "real deep\n");
	sfx_snap_text_is(x, "s2", "files/A/B/sub/only-env.txt", "env only\n");
	sfx_snap_file(x, "s2", "files/A/B", &sb);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0777);
	assert_int_equal(sb.st_uid, 4321);
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* A directory that is new under the lock is listed after its stat; when
 * the owner swaps it for a symlink between the two, the entry its stat
 * made says nothing of what it holds (a hostile run once sealed such a
 * directory empty).  This binary's own openat, which the engine's calls
 * reach too, makes the swap at that moment: once armed, at the open of
 * the armed name in the armed directory without O_PATH, before the open
 * itself. */
static struct {
	const char *name;    /* armed when set */
	ino_t dir;           /* the inode of the directory holding it */
	char from[TBUF + 64], kept[TBUF + 64], target[TBUF];
	int done, failed;
} swap_at_open;

int openat(int dirfd, const char *path, int flags, ...)
{
	int mode = 0;
	struct stat ds;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	if (__atomic_load_n(&swap_at_open.name, __ATOMIC_ACQUIRE) && !(flags & O_PATH) &&
	    (flags & O_DIRECTORY) && !strcmp(path, swap_at_open.name) && fstat(dirfd, &ds) == 0 &&
	    ds.st_ino == swap_at_open.dir && !__atomic_exchange_n(&swap_at_open.done, 1, __ATOMIC_ACQ_REL)) {
		if (rename(swap_at_open.from, swap_at_open.kept) < 0 ||
		    symlink(swap_at_open.target, swap_at_open.from) < 0)
			swap_at_open.failed = 1;
	}
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

static void *make_new_dir(void *arg)
{
	flipper *f = arg;
	char p[TBUF + 64];
	struct stat st;
	struct timespec nap = { 0, 2 * 1000 * 1000 };

	for (int i = 0; i < 10000 && !f->saw_precopy; i++) {
		f->saw_precopy = tmp_has(f->x->store, "files/attachments/ticket/1/small.txt");
		if (!f->saw_precopy)
			nanosleep(&nap, NULL);
	}
	nap.tv_nsec = 200 * 1000 * 1000;   /* let it reach the lock */
	nanosleep(&nap, NULL);
	if (!mu_mkdir(f->x, "files/N", 0777) || !mu_mkdir(f->x, "files/N/B", 0777) ||
	    !mu_new(f->x, "files/N/B/f.txt", "real\n", 0666))
		f->failed = 1;
	snprintf(p, sizeof(p), "%s/files", f->x->env);
	if (stat(p, &st) < 0)
		f->failed = 2;
	swap_at_open.dir = st.st_ino;
	snprintf(swap_at_open.from, sizeof(swap_at_open.from), "%s/files/N", f->x->env);
	snprintf(swap_at_open.kept, sizeof(swap_at_open.kept), "%s/files/N.real", f->x->env);
	snprintf(swap_at_open.target, sizeof(swap_at_open.target), "%s", f->canary);
	__atomic_store_n(&swap_at_open.name, "N", __ATOMIC_RELEASE);
	if (sqlite3_exec(f->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		f->failed = 3;
	return NULL;
}

static void test_snap_new_dir_swapped_while_listed(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	char canary[TBUF];
	canary_rec before;
	ts_err_code rc;
	ts_err e;

	canary_make(x, canary, sizeof(canary), &before);
	rc = flip_take(x, canary, &before, make_new_dir, &st, &e);
	__atomic_store_n(&swap_at_open.name, NULL, __ATOMIC_RELEASE);
	/* The swap came where it was meant to: the take opened files/N to
	 * list it, under the lock. */
	assert_int_equal(swap_at_open.done, 1);
	assert_int_equal(swap_at_open.failed, 0);
	if (rc != TS_OK)
		fail_msg("snapshot s1: %s: %s", ts_err_name(e.code), e.msg);
	/* files/N as it was once the lock's pass ended: the link, nothing
	 * below it; not a directory emptied by the swap. */
	snap_holds_link(x, "files/N", &st);

	/* Back to the directory: the next snapshot holds what it holds. */
	assert_int_equal(unlink(swap_at_open.from), 0);
	assert_int_equal(rename(swap_at_open.kept, swap_at_open.from), 0);
	sfx_take_ok(x, "s2", &st);
	canary_unchanged(canary, &before);
	sfx_snap_text_is(x, "s2", "files/N/B/f.txt", "real\n");
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snap_changes_before_lock, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_dir_swapped_for_link, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_new_dir_swapped_while_listed, sfx_setup,
		                                sfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
