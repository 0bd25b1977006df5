/* test_verify.c - verify over several snapshots reads each shared store inode
 * once (the run's totals count what was read), reports damage to a shared
 * inode in every snapshot that links it, and ts_verify_repair rewrites a
 * damaged inode in place from the live file or from another stored copy,
 * resets metadata, and names what it cannot repair; the inode table on its
 * own (verify_inodes.h); a name of a later snapshot that leads to another
 * inode is checked on its own. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/verify.h"
#include "store/verify_inodes.h"
#include "tutil.h"

#include "snapfx.h"

#define BIG "files/attachments/ticket/1/big.bin"
#define SMALL "htdocs/a.txt"

/* What the callbacks saw. */
typedef struct seen {
	char lines[64][512];
	size_t n;
	ts_verify_repair_note notes[16];
	char note_snap[16][64], note_path[16][256], note_from[16][64], note_why[16][256];
	size_t nnotes;
} seen;

static void on_problem(void *arg, const char *snap, const ts_verify_problem *p)
{
	seen *s = arg;
	if (s->n < 64)
		snprintf(s->lines[s->n++], sizeof s->lines[0], "%s/%s: %s", snap, p->path, p->what);
}

static void on_note(void *arg, const ts_verify_repair_note *n)
{
	seen *s = arg;
	size_t i = s->nnotes;
	if (i >= 16)
		return;
	s->notes[i] = *n;
	snprintf(s->note_snap[i], sizeof s->note_snap[i], "%s", n->snap);
	snprintf(s->note_path[i], sizeof s->note_path[i], "%s", n->path);
	snprintf(s->note_from[i], sizeof s->note_from[i], "%s", n->from_snap ? n->from_snap : "");
	snprintf(s->note_why[i], sizeof s->note_why[i], "%s", n->why ? n->why : "");
	s->nnotes++;
}

/* Does any reported line start with prefix? */
static bool seen_line(const seen *s, const char *prefix)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strncmp(s->lines[i], prefix, strlen(prefix)))
			return true;
	return false;
}

/* Verify the named snapshots (NULL-terminated) in one run; the run is the
 * caller's to free. */
static ts_verify_run *run_over(fx *x, bool keep, seen *s, const char *const *names)
{
	ts_verify_run *r = ts_verify_run_new(keep);
	ts_err e;

	assert_non_null(r);
	for (size_t i = 0; names[i]; i++) {
		ts_err_clear(&e);
		if (ts_verify_run_snapshot(r, &x->s, names[i], on_problem, NULL, s, NULL, NULL, &e) != TS_OK)
			fail_msg("verify %s: %s", names[i], e.msg);
	}
	return r;
}

static void take(fx *x, const char *name)
{
	ts_snap_stats stats;
	sfx_take_ok(x, name, &stats);
}

/* Two snapshots a and b taken so that their unchanged files are shared:
 * the files of the environment are older than the racy window (take/). */
static void take_ab(fx *x)
{
	struct timespec pause = { .tv_nsec = 100 * 1000000L };

	nanosleep(&pause, NULL);
	take(x, "a");
	take(x, "b");
}

/* Flip one byte of STORE/NAME/tree/REL in place, keeping its mtime: damage
 * that only the content check sees. */
static void flip_byte(fx *x, const char *name, const char *rel, off_t at)
{
	char path[TBUF];
	struct stat st;
	unsigned char c;
	int fd;

	tu_tree_path(x->store, name, rel, path, sizeof path);
	assert_int_equal(lstat(path, &st), 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, at), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, at), 1);
	struct timespec times[2] = { st.st_atim, st.st_mtim };
	assert_int_equal(futimens(fd, times), 0);
	close(fd);
}

static ino_t tree_ino(fx *x, const char *name, const char *rel)
{
	struct stat st;
	sfx_snap_file(x, name, rel, &st);
	return st.st_ino;
}

/* Unique regular-file inodes below the trees walked, and their bytes. */
static struct { dev_t dev; ino_t ino; } uniq[1024];
static size_t nuniq;
static uint64_t uniq_bytes, all_bytes, all_files;

static int count_file(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)p;
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	all_files++;
	all_bytes += (uint64_t)st->st_size;
	for (size_t i = 0; i < nuniq; i++)
		if (uniq[i].dev == st->st_dev && uniq[i].ino == st->st_ino)
			return 0;
	assert_true(nuniq < 1024);
	uniq[nuniq].dev = st->st_dev;
	uniq[nuniq++].ino = st->st_ino;
	uniq_bytes += (uint64_t)st->st_size;
	return 0;
}

/* Bytes of the regular files with one link. */
static uint64_t single_bytes;

static int count_single(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)p;
	(void)ftw;
	if (flag == FTW_F && S_ISREG(st->st_mode) && st->st_nlink == 1)
		single_bytes += (uint64_t)st->st_size;
	return 0;
}

static void count_trees(fx *x, const char *const *names)
{
	char path[TBUF];

	nuniq = 0;
	uniq_bytes = all_bytes = all_files = 0;
	for (size_t i = 0; names[i]; i++) {
		tu_tree_path(x->store, names[i], ".", path, sizeof path);
		assert_int_equal(nftw(path, count_file, 16, FTW_PHYS), 0);
	}
}

static void test_each_inode_read_once(void **state)
{
	fx *x = *state;
	static const char *const ab[] = { "a", "b", NULL };
	struct timespec pause = { .tv_nsec = 100 * 1000000L };
	char db[TBUF];
	ts_verify_totals t;
	seen s = { .n = 0 };

	/* As take_ab, with a write to the database between the two: a
	 * database that did not change is shared too (store/seal_share.h),
	 * and a's copy must be one a holds alone. */
	nanosleep(&pause, NULL);
	take(x, "a");
	tu_fmt(db, sizeof db, "%s/db/trac.db", x->env);
	sqlite3 *w = tu_db_open(db, SQLITE_OPEN_READWRITE);
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	sqlite3_close(w);
	take(x, "b");
	assert_int_equal(tree_ino(x, "a", BIG), tree_ino(x, "b", BIG));
	count_trees(x, ab);
	assert_true(uniq_bytes < all_bytes);   /* something is shared */

	ts_verify_run *r = run_over(x, false, &s, ab);
	ts_verify_run_totals(r, &t);
	assert_int_equal(s.n, 0);
	assert_int_equal(t.snapshots, 2);
	assert_int_equal(t.problems, 0);
	assert_int_equal(t.files, all_files);
	assert_int_equal(t.bytes, all_bytes);
	/* The cost is the unique data, not data x snapshots. */
	assert_int_equal(t.files_read, nuniq);
	assert_int_equal(t.bytes_read, uniq_bytes);

	/* a again in the same run: only what has one link is read again. */
	char tree[TBUF];
	tu_tree_path(x->store, "a", ".", tree, sizeof tree);
	single_bytes = 0;
	assert_int_equal(nftw(tree, count_single, 16, FTW_PHYS), 0);
	assert_true(single_bytes > 0);    /* the database copy, at least */
	assert_int_equal(ts_verify_run_snapshot(r, &x->s, "a", on_problem, NULL, &s, NULL, NULL,
	                                        NULL), TS_OK);
	ts_verify_totals t2;
	ts_verify_run_totals(r, &t2);
	assert_int_equal(t2.bytes_read - t.bytes_read, single_bytes);
	assert_int_equal(t2.snapshots, 3);
	ts_verify_run_free(r);
}

static void test_shared_damage_in_every_snapshot(void **state)
{
	fx *x = *state;
	static const char *const ab[] = { "a", "b", NULL };
	ts_verify_totals t;
	seen s = { .n = 0 };

	take_ab(x);
	count_trees(x, ab);
	flip_byte(x, "a", BIG, 1000);
	ts_verify_run *r = run_over(x, false, &s, ab);
	ts_verify_run_totals(r, &t);
	assert_int_equal(s.n, 2);
	assert_true(seen_line(&s, "a/" BIG ": content differs"));
	assert_true(seen_line(&s, "b/" BIG ": content differs"));
	assert_int_equal(t.problems, 2);
	assert_int_equal(t.bytes_read, uniq_bytes);   /* still read once */
	ts_verify_run_free(r);
}

/* A run does not stat again a name whose inode it met in an earlier
 * snapshot (readdir's inode number says which): a name of b that leads to
 * another inode than a's, with a's size and mtime, is still checked on its
 * own, content and metadata. */
static void test_other_inode_checked_on_its_own(void **state)
{
	fx *x = *state;
	static const char *const ab[] = { "a", "b", NULL };
	char path[TBUF], tmp[TBUF];
	struct stat st;
	seen s = { .n = 0 };

	take_ab(x);
	assert_int_equal(tree_ino(x, "a", BIG), tree_ino(x, "b", BIG));
	tu_tree_path(x->store, "b", BIG, path, sizeof path);
	tu_fmt(tmp, sizeof tmp, "%s.new", path);
	assert_int_equal(lstat(path, &st), 0);
	/* A copy with one byte changed, renamed over b's name. */
	{
		int in = open(path, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
		char buf[65536];
		ssize_t got;
		assert_true(in >= 0 && out >= 0);
		while ((got = read(in, buf, sizeof buf)) > 0)
			assert_int_equal(write(out, buf, (size_t)got), got);
		assert_int_equal(pwrite(out, "X", 1, 10), 1);
		struct timespec times[2] = { st.st_atim, st.st_mtim };
		assert_int_equal(futimens(out, times), 0);
		close(in);
		close(out);
	}
	assert_int_equal(rename(tmp, path), 0);
	assert_true(tree_ino(x, "a", BIG) != tree_ino(x, "b", BIG));

	ts_verify_run *r = run_over(x, false, &s, ab);
	assert_false(seen_line(&s, "a/"));
	assert_true(seen_line(&s, "b/" BIG ": mode 0600, manifest says"));
	assert_true(seen_line(&s, "b/" BIG ": content differs"));
	/* And the rename's mark on b's directory. */
	assert_true(seen_line(&s, "b/files/attachments/ticket/1: mtime "));
	assert_int_equal(s.n, 3);
	ts_verify_run_free(r);
}

static int env_fd(fx *x)
{
	int fd = open(x->env, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void repair(fx *x, ts_verify_run *r, seen *s, size_t *nrep, size_t *nleft)
{
	int efd = env_fd(x);
	ts_err e;

	ts_err_clear(&e);
	if (ts_verify_repair(r, &x->s, efd, 5, on_note, on_problem, s, nrep, nleft, &e) != TS_OK)
		fail_msg("repair: %s", e.msg);
	close(efd);
}

/* A fresh run over names finds nothing. */
static void clean_after(fx *x, const char *const *names)
{
	seen s = { .n = 0 };
	ts_verify_run *r = run_over(x, false, &s, names);
	if (s.n)
		fail_msg("still: %s", s.lines[0]);
	ts_verify_run_free(r);
}

static void test_repair_from_environment(void **state)
{
	fx *x = *state;
	static const char *const ab[] = { "a", "b", NULL };
	char store_path[TBUF], env_path[TBUF];
	seen s = { .n = 0 };
	size_t nrep = 0, nleft = 0;

	take_ab(x);
	ino_t ino = tree_ino(x, "a", BIG);
	flip_byte(x, "a", BIG, 5);
	ts_verify_run *r = run_over(x, true, &s, ab);
	assert_int_equal(s.n, 2);
	repair(x, r, &s, &nrep, &nleft);
	ts_verify_run_free(r);
	assert_int_equal(s.nnotes, 1);
	assert_int_equal(s.notes[0].how, TS_VERIFY_REPAIRED_ENV);
	assert_string_equal(s.note_snap[0], "a");
	assert_string_equal(s.note_path[0], BIG);
	assert_int_equal(s.notes[0].shared, 2);
	assert_int_equal(nrep, 2);
	assert_int_equal(nleft, 0);
	assert_int_equal(s.n, 2);   /* no "still differs" line */
	/* In place: the same inode, shared by both, with the live bytes. */
	assert_int_equal(tree_ino(x, "a", BIG), ino);
	assert_int_equal(tree_ino(x, "b", BIG), ino);
	tu_tree_path(x->store, "b", BIG, store_path, sizeof store_path);
	tu_fmt(env_path, sizeof env_path, "%s/%s", x->env, BIG);
	unsigned char h1[32], h2[32];
	tu_sha_file(store_path, h1);
	tu_sha_file(env_path, h2);
	assert_memory_equal(h1, h2, 32);
	clean_after(x, ab);
	sfx_store_clean_and_unlocked(x);
}

static void test_repair_from_other_copy(void **state)
{
	fx *x = *state;
	static const char *const abc[] = { "a", "b", "c", NULL };
	char path[TBUF], tmp[TBUF];
	seen s = { .n = 0 };
	size_t nrep = 0, nleft = 0;
	struct timespec pause = { .tv_nsec = 100 * 1000000L };

	take(x, "a");
	/* The same bytes in a new inode: b gets a copy of its own. */
	tu_fmt(path, sizeof path, "%s/%s", x->env, SMALL);
	tu_fmt(tmp, sizeof tmp, "%s/%s.new", x->env, SMALL);
	tu_put_bytes(tmp, "hello\n", 6, 0644);
	assert_int_equal(rename(tmp, path), 0);
	nanosleep(&pause, NULL);
	take(x, "b");
	assert_true(tree_ino(x, "a", SMALL) != tree_ino(x, "b", SMALL));
	/* Then the live file changes: it cannot serve a. */
	tu_put_bytes(path, "changed\n", 8, 0644);
	nanosleep(&pause, NULL);
	take(x, "c");

	ino_t ino = tree_ino(x, "a", SMALL);
	flip_byte(x, "a", SMALL, 0);
	ts_verify_run *r = run_over(x, true, &s, abc);
	assert_int_equal(s.n, 1);
	repair(x, r, &s, &nrep, &nleft);
	ts_verify_run_free(r);
	assert_int_equal(s.nnotes, 1);
	assert_int_equal(s.notes[0].how, TS_VERIFY_REPAIRED_COPY);
	assert_string_equal(s.note_from[0], "b");
	assert_int_equal(nrep, 1);
	assert_int_equal(nleft, 0);
	assert_int_equal(tree_ino(x, "a", SMALL), ino);
	sfx_snap_text_is(x, "a", SMALL, "hello\n");
	clean_after(x, abc);
}

static void test_repair_refused_without_good_copy(void **state)
{
	fx *x = *state;
	static const char *const ab[] = { "a", "b", NULL };
	char path[TBUF];
	seen s = { .n = 0 };
	size_t nrep = 0, nleft = 0;

	take_ab(x);
	tu_fmt(path, sizeof path, "%s/%s", x->env, SMALL);
	tu_put_bytes(path, "HELLO\n", 6, 0644);
	flip_byte(x, "a", SMALL, 0);
	ts_verify_run *r = run_over(x, true, &s, ab);
	assert_int_equal(s.n, 2);
	repair(x, r, &s, &nrep, &nleft);
	ts_verify_run_free(r);
	assert_int_equal(s.nnotes, 1);
	assert_int_equal(s.notes[0].how, TS_VERIFY_NOT_REPAIRED);
	assert_string_equal(s.note_path[0], SMALL);
	assert_string_equal(s.note_why[0], "no good copy (live file changed since the snapshot)");
	assert_int_equal(nrep, 0);
	assert_int_equal(nleft, 2);
	/* Left as it was: still damaged, in both. */
	seen s2 = { .n = 0 };
	r = run_over(x, false, &s2, ab);
	assert_int_equal(s2.n, 2);
	ts_verify_run_free(r);
	sfx_store_clean_and_unlocked(x);
}

static void test_repair_metadata_and_refusals(void **state)
{
	fx *x = *state;
	static const char *const a[] = { "a", NULL };
	char path[TBUF], gone[TBUF];
	seen s = { .n = 0 };
	size_t nrep = 0, nleft = 0;
	struct stat st;

	take(x, "a");
	tu_tree_path(x->store, "a", "README", path, sizeof path);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(chown(path, 4321, 4321), 0);
	tu_tree_path(x->store, "a", "ro/f", gone, sizeof gone);
	assert_int_equal(unlink(gone), 0);
	ts_verify_run *r = run_over(x, true, &s, a);
	assert_true(seen_line(&s, "a/README: mode 0600, manifest says 0644"));
	assert_true(seen_line(&s, "a/ro/f: missing"));
	size_t found = s.n;
	repair(x, r, &s, &nrep, &nleft);
	ts_verify_run_free(r);
	bool meta = false, missing = false;
	for (size_t i = 0; i < s.nnotes; i++) {
		if (!strcmp(s.note_path[i], "README")) {
			meta = true;
			assert_int_equal(s.notes[i].how, TS_VERIFY_REPAIRED_META);
		} else if (!strcmp(s.note_path[i], "ro/f")) {
			missing = true;
			assert_int_equal(s.notes[i].how, TS_VERIFY_NOT_REPAIRED);
			assert_string_equal(s.note_why[i], "missing entries are not restored");
		}
	}
	assert_true(meta && missing);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(st.st_uid, 0);
	assert_true(nleft >= 1);
	assert_int_equal(nrep + nleft, found);
}

static void test_inode_table(void **state)
{
	(void)state;
	ts_verify_inodes t = TS_VERIFY_INODES_INIT;
	unsigned char sha[32];
	struct stat st;
	ts_err e;

	memset(&st, 0, sizeof st);
	st.st_dev = 7;
	for (unsigned i = 1; i <= 5000; i++) {
		st.st_ino = i;
		st.st_size = i * 3;
		st.st_ctim.tv_sec = i;
		memset(sha, (int)(i & 0xff), 32);
		assert_int_equal(ts_verify_inodes_put(&t, &st, sha, &e), TS_OK);
	}
	assert_int_equal(t.n, 5000);
	assert_true(t.n * 4 <= t.cap * 3);
	for (unsigned i = 1; i <= 5000; i++) {
		const unsigned char *h;
		st.st_ino = i;
		st.st_size = i * 3;
		st.st_ctim.tv_sec = i;
		h = ts_verify_inodes_get(&t, &st);
		assert_non_null(h);
		assert_int_equal(h[0], i & 0xff);
		st.st_ctim.tv_nsec = 1;    /* changed since: hash again */
		assert_null(ts_verify_inodes_get(&t, &st));
		st.st_ctim.tv_nsec = 0;
	}
	/* The stat recorded, for a walk that knows only the inode number. */
	struct stat got;
	st.st_ino = 42;
	st.st_mode = S_IFREG | 0640;
	st.st_uid = 33;
	st.st_gid = 34;
	st.st_nlink = 3;
	st.st_size = 126;
	st.st_mtim.tv_sec = 1000;
	st.st_mtim.tv_nsec = 5;
	st.st_ctim.tv_sec = 2000;
	st.st_ctim.tv_nsec = 6;
	assert_int_equal(ts_verify_inodes_put(&t, &st, sha, &e), TS_OK);
	assert_true(ts_verify_inodes_stat(&t, 7, 42, &got));
	/* st was zeroed before its fields were set: every field the record
	 * keeps comes back, and the others are zero. */
	assert_memory_equal(&got, &st, sizeof st);
	assert_non_null(ts_verify_inodes_get(&t, &got));
	assert_false(ts_verify_inodes_stat(&t, 8, 42, &got));
	assert_false(ts_verify_inodes_stat(&t, 7, 9999, &got));
	memset(&st, 0, sizeof st);
	st.st_dev = 7;
	st.st_ino = 9999;
	assert_null(ts_verify_inodes_get(&t, &st));
	st.st_ino = 1;
	st.st_dev = 8;                     /* another filesystem's inode 1 */
	assert_null(ts_verify_inodes_get(&t, &st));
	ts_verify_inodes_free(&t);
	assert_null(ts_verify_inodes_get(&t, &st));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inode_table),
		cmocka_unit_test_setup_teardown(test_each_inode_read_once, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_shared_damage_in_every_snapshot, sfx_setup,
		                                sfx_teardown),
		cmocka_unit_test_setup_teardown(test_other_inode_checked_on_its_own, sfx_setup,
		                                sfx_teardown),
		cmocka_unit_test_setup_teardown(test_repair_from_environment, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_repair_from_other_copy, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_repair_refused_without_good_copy, sfx_setup,
		                                sfx_teardown),
		cmocka_unit_test_setup_teardown(test_repair_metadata_and_refusals, sfx_setup,
		                                sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
