/* test_share_check.c - a stored copy is shared into a new snapshot only
 * when it is provably the sealed content (take/share_check.h): the check's
 * outcomes on one file, then through real takes with and without the
 * daemon's stage, the one line logged for a damaged copy, and a normal
 * sequence of takes and removals that logs none and keeps sharing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/linklog.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "take/share_check.h"
#include "tutil.h"

#include "snapfx.h"

#define BIG "files/attachments/ticket/1/big.bin"

static void nap_ms(long ms)
{
	struct timespec t = { 0, ms * 1000 * 1000 };
	nanosleep(&t, NULL);
}

/* ---- the check on one file ------------------------------------------------ */

typedef struct one {
	char top[PATH_MAX];
	char file[PATH_MAX + 8];
	int dirfd;
	ts_manifest_entry me;   /* as a take records the file: placed now */
	ts_linklog none;        /* no intervals */
} one;

static const char TEXT[] = "the sealed content\n";

static void one_setup(one *o)
{
	struct stat st;

	memset(o, 0, sizeof *o);
	tu_tmpdir("share", o->top);
	tu_fmt(o->file, sizeof o->file, "%s/f", o->top);
	tu_put_bytes(o->file, TEXT, strlen(TEXT), 0644);
	o->dirfd = open(o->top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(o->dirfd >= 0);
	assert_int_equal(lstat(o->file, &st), 0);
	o->me.type = 'f';
	o->me.path = (char *)"f";
	ts_manifest_entry_set_meta(&o->me, &st);
	ts_manifest_entry_set_store(&o->me, &st);
	SHA256((const unsigned char *)TEXT, strlen(TEXT), o->me.sha256);
}

static void one_teardown(one *o)
{
	ts_linklog_free(&o->none);
	close(o->dirfd);
	tu_rm_rf(o->top);
}

static bool one_check(one *o, const ts_linklog *l, char *what)
{
	struct stat st;
	bool have = lstat(o->file, &st) == 0;
	return ts_share_check(&o->me, have ? &st : NULL, l, geteuid() == 0, o->dirfd, "f", what);
}

/* Put the file's mtime back to the recorded one (touch -r, touch -d):
 * which moves its ctime. */
static void restore_mtime(one *o)
{
	struct timespec t[2] = { { 0, UTIME_OMIT }, o->me.mtime };
	assert_int_equal(utimensat(o->dirfd, "f", t, AT_SYMLINK_NOFOLLOW), 0);
}

/* 1. The identity as recorded: good, without reading the content (a wrong
 * hash in the entry does not matter). */
static void test_identity_equal(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX];

	(void)state;
	one_setup(&o);
	o.me.sha256[0] ^= 1;
	assert_true(one_check(&o, &o.none, what));
	one_teardown(&o);
}

/* 2. The ctime moved by a link the engine logged: good, without reading
 * the content either; not logged, the same move needs the content. */
static void test_ctime_explained_by_linklog(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX], other[PATH_MAX + 8];
	struct timespec start;
	ts_linklog l;

	(void)state;
	one_setup(&o);
	nap_ms(20);
	tu_fmt(other, sizeof other, "%s/g", o.top);
	ts_linklog_begin(&start);
	assert_int_equal(link(o.file, other), 0);
	ts_linklog_end(o.dirfd, &start);
	ts_linklog_read(o.dirfd, &l);
	o.me.sha256[0] ^= 1;   /* hashing would fail it */
	assert_true(one_check(&o, &l, what));
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "content");
	ts_linklog_free(&l);
	one_teardown(&o);
}

/* The same link, inside a batch that names only another inode (a stage
 * refresh's, linklog.h): not explained, the content decides; naming this
 * one explains it. */
static void test_ctime_named_batch(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX], other[PATH_MAX + 8];
	struct timespec start;
	struct stat st;
	ts_linklog_inos b = { 0 };
	ts_linklog l;

	(void)state;
	one_setup(&o);
	nap_ms(20);
	tu_fmt(other, sizeof other, "%s/g", o.top);
	assert_int_equal(lstat(o.file, &st), 0);
	ts_linklog_begin(&start);
	assert_int_equal(link(o.file, other), 0);
	ts_linklog_note(&b, (uint64_t)st.st_ino + 1);
	ts_linklog_end_inos(o.dirfd, &start, &b);
	ts_linklog_read(o.dirfd, &l);
	o.me.sha256[0] ^= 1;   /* hashing would fail it */
	assert_false(one_check(&o, &l, what));
	assert_string_equal(what, "content");
	ts_linklog_free(&l);

	assert_int_equal(unlink(other), 0);
	ts_linklog_begin(&start);
	assert_int_equal(link(o.file, other), 0);
	ts_linklog_note(&b, (uint64_t)st.st_ino);
	ts_linklog_end_inos(o.dirfd, &start, &b);
	ts_linklog_read(o.dirfd, &l);
	assert_true(one_check(&o, &l, what));
	ts_linklog_free(&l);
	one_teardown(&o);
}

/* 3. Only the ctime moved, by someone else (verify --repair rewrites a
 * copy in place): the content is hashed, and being the sealed one, good. */
static void test_ctime_only_good_content(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX];

	(void)state;
	one_setup(&o);
	nap_ms(20);
	int fd = open(o.file, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, TEXT, strlen(TEXT), 0), (ssize_t)strlen(TEXT));
	close(fd);
	restore_mtime(&o);
	assert_true(one_check(&o, &o.none, what));
	/* Pending: nothing to compare with, no proof. */
	o.me.pending = true;
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "changed before it was hashed");
	one_teardown(&o);
}

/* 4. One byte flipped, the mtime put back: only the content tells. */
static void test_content_flipped_mtime_restored(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX];

	(void)state;
	one_setup(&o);
	nap_ms(20);
	int fd = open(o.file, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "T", 1, 0), 1);
	close(fd);
	restore_mtime(&o);
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "content");
	/* Not even a logged interval covers for it: the ctime is outside. */
	one_teardown(&o);
}

/* What stat alone tells: size, mtime, mode, a missing copy; another inode
 * sends it to the content. */
static void test_stat_differences(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX], other[PATH_MAX + 8];

	(void)state;
	one_setup(&o);
	nap_ms(20);
	int fd = open(o.file, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "size, mtime");

	/* Another file put in its place, with the same size and mtime: its
	 * content decides (a store brought back by dump/restore has new
	 * inodes throughout).  The same bytes: good; others: damaged. */
	tu_fmt(other, sizeof other, "%s/g", o.top);
	tu_put_bytes(other, TEXT, strlen(TEXT), 0644);
	assert_int_equal(rename(other, o.file), 0);
	restore_mtime(&o);
	assert_true(one_check(&o, &o.none, what));
	o.me.sha256[0] ^= 1;
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "content");
	o.me.sha256[0] ^= 1;

	assert_int_equal(chmod(o.file, 0600), 0);
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "mode");

	assert_int_equal(unlink(o.file), 0);
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "missing");
	one_teardown(&o);
}

/* No identity recorded (a version 1 manifest): the content decides. */
static void test_no_record(void **state)
{
	one o;
	char what[TS_SHARE_WHAT_MAX];

	(void)state;
	one_setup(&o);
	o.me.store_ino = 0;
	o.me.store_ctime.tv_sec = 0;
	o.me.store_ctime.tv_nsec = 0;
	assert_true(one_check(&o, &o.none, what));
	o.me.sha256[5] ^= 0x10;
	assert_false(one_check(&o, &o.none, what));
	assert_string_equal(what, "content");
	one_teardown(&o);
}

/* ---- through takes -------------------------------------------------------- */

/* Flip the first byte of rel in snapshot name's tree, in place (dd
 * conv=notrunc); with keep_mtime, put its mtime back (touch -r). */
static void flip(fx *x, const char *name, const char *rel, bool keep_mtime)
{
	char p[TBUF];
	struct stat st;
	unsigned char c;

	tu_tree_path(x->store, name, rel, p, sizeof p);
	assert_int_equal(lstat(p, &st), 0);
	nap_ms(20);
	int fd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, 0), 1);
	c ^= 0xff;
	assert_int_equal(pwrite(fd, &c, 1, 0), 1);
	close(fd);
	if (keep_mtime) {
		struct timespec t[2] = { st.st_atim, st.st_mtim };
		assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);
	}
}

/* The SHA-256 of rel in the environment and in snapshot name agree. */
static void same_content(fx *x, const char *name, const char *rel)
{
	char p[TBUF], q[TBUF];
	unsigned char a[32], b[32];

	tu_fmt(p, sizeof p, "%s/%s", x->env, rel);
	tu_tree_path(x->store, name, rel, q, sizeof q);
	tu_sha_file(p, a);
	tu_sha_file(q, b);
	assert_memory_equal(a, b, 32);
}

static ino_t ino_of(fx *x, const char *name, const char *rel)
{
	struct stat st;
	sfx_snap_file(x, name, rel, &st);
	return st.st_ino;
}

static void take_ok(fx *x, const char *name)
{
	ts_snap_stats st;
	sfx_take_ok(x, name, &st);
}

/* Take name, capturing the log: the number of damage lines, and that the
 * one expected (want, may be NULL) is there. */
static size_t take_logged(fx *x, const char *name, const char *want)
{
	ts_snap_stats st;
	char *log;
	size_t n;

	sfx_log_start();
	sfx_take_ok(x, name, &st);
	log = sfx_log_take();
	n = sfx_count(log, "stored copy damaged");
	if (want && !strstr(log, want))
		fail_msg("log lacks '%s':\n%s", want, log);
	free(log);
	return n;
}

/* A refresh copies a file the environment is still writing: its copy in
 * the stage need not match what the stage's manifest recorded (here: the
 * copy longer than the record, the environment's file unchanged since).
 * That copy was never sealed; it is copied again, as a changed file, and
 * no damage is reported. */
static void test_take_refresh_copy_mismatch_quiet(void **state)
{
	fx *x = *state;
	char p[TBUF], q[TBUF];
	size_t dirs = 0;
	ts_stage_refresh_out out;

	take_ok(x, "s1");
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s1"));
	tu_fmt(p, sizeof p, "%s/htdocs/new.txt", x->env);
	tu_put_file(p, "new file, copied by the refresh\n");
	assert_int_equal(sfx_refresh(x, true, &dirs, &out, NULL), TS_OK);
	tu_fmt(q, sizeof q, "%s/.stage/tree/htdocs/new.txt", x->store);
	FILE *f = fopen(q, "ae");
	assert_non_null(f);
	fputs("torn tail\n", f);
	fclose(f);
	assert_int_equal(take_logged(x, "s2", NULL), 0);
	same_content(x, "s2", "htdocs/new.txt");
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* Issue 16, case 1, without a stage (`tracsnap snapshot`): a byte flipped
 * in the newest snapshot's copy is not shared into the next one, which
 * copies the file afresh and says so once; the mtime put back changes
 * nothing to that.  The damaged copy stays as it is. */
static void test_take_damaged_not_shared(void **state)
{
	fx *x = *state;
	ts_manifest m;

	take_ok(x, "s1");
	flip(x, "s1", BIG, false);
	assert_int_equal(take_logged(x, "s2", "tracsnap: warning: s1/" BIG ": stored copy damaged "
	                             "(mtime), copied afresh from the environment\n"), 1);
	assert_int_not_equal(ino_of(x, "s1", BIG), ino_of(x, "s2", BIG));
	same_content(x, "s2", BIG);
	assert_int_equal(ino_of(x, "s1", "htdocs/a.txt"), ino_of(x, "s2", "htdocs/a.txt"));
	sfx_compare_tree(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);
	ts_manifest_free(&m);

	flip(x, "s2", BIG, true);
	assert_int_equal(take_logged(x, "s3", "tracsnap: warning: s2/" BIG ": stored copy damaged "
	                             "(content), copied afresh from the environment\n"), 1);
	assert_int_not_equal(ino_of(x, "s2", BIG), ino_of(x, "s3", BIG));
	same_content(x, "s3", BIG);
	assert_int_equal(ino_of(x, "s2", "htdocs/a.txt"), ino_of(x, "s3", "htdocs/a.txt"));
	/* Left as it was: verify reports it. */
	char p[TBUF], q[TBUF];
	unsigned char a[32], b[32];
	tu_tree_path(x->store, "s2", BIG, p, sizeof p);
	tu_fmt(q, sizeof q, "%s/%s", x->env, BIG);
	tu_sha_file(p, a);
	tu_sha_file(q, b);
	assert_memory_not_equal(a, b, 32);
	sfx_store_clean_and_unlocked(x);
}

/* The same with the daemon's stage, built before the damage: the staged
 * link shares the damaged inode; adopting the stage checks it. */
static void test_take_damaged_staged(void **state)
{
	fx *x = *state;

	take_ok(x, "s1");
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s1"));
	flip(x, "s1", BIG, true);
	assert_int_equal(take_logged(x, "s2", "tracsnap: warning: s1/" BIG ": stored copy damaged "
	                             "(content), copied afresh from the environment\n"), 1);
	assert_false(sfx_stage_exists(x));   /* it was adopted */
	assert_int_not_equal(ino_of(x, "s1", BIG), ino_of(x, "s2", BIG));
	same_content(x, "s2", BIG);
	assert_int_equal(ino_of(x, "s1", "htdocs/a.txt"), ino_of(x, "s2", "htdocs/a.txt"));
	sfx_compare_tree(x, "s2");

	/* Damage before the build: the build leaves it out and says so; the
	 * snapshot copies it afresh, silently, and shares the rest. */
	ts_err e;
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "s1", &e), TS_OK);
	ts_store_unlock(&x->s);
	flip(x, "s2", "htdocs/a.txt", true);
	sfx_log_start();
	sfx_stage_ok(x, NULL);
	char *log = sfx_log_take();
	assert_int_equal(sfx_count(log, "stored copy damaged"), 1);
	assert_non_null(strstr(log, "s2/htdocs/a.txt: stored copy damaged (content)"));
	free(log);
	assert_true(sfx_stage_from(x, "s2"));
	assert_int_equal(take_logged(x, "s3", NULL), 0);
	assert_int_not_equal(ino_of(x, "s2", "htdocs/a.txt"), ino_of(x, "s3", "htdocs/a.txt"));
	same_content(x, "s3", "htdocs/a.txt");
	assert_int_equal(ino_of(x, "s2", BIG), ino_of(x, "s3", BIG));
	sfx_compare_tree(x, "s3");
	sfx_store_clean_and_unlocked(x);
}

/* Remove snapshot name (as prune and rmdir do). */
static void remove_snap(fx *x, const char *name)
{
	ts_err e;
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, name, &e), TS_OK);
	ts_store_unlock(&x->s);
}

/* A removal's unlinks move the ctime of every copy it shares with later
 * snapshots, inside an interval the linklog then holds: a copy rewritten
 * before, its mtime put back, would look like one the engine only
 * unlinked a name of.  The removal notes it first (store/linkguard.h), and
 * the next take hashes it and finds the damage; a copy rewritten with its
 * own content (verify --repair) is hashed and shared.  The same for a
 * dropped stage, whose links share the base's copies. */
static void test_removal_hides_nothing(void **state)
{
	fx *x = *state;

	take_ok(x, "s1");
	take_ok(x, "s2");
	flip(x, "s2", BIG, true);
	remove_snap(x, "s1");
	assert_int_equal(take_logged(x, "s3", "s2/" BIG ": stored copy damaged (content)"), 1);
	assert_int_not_equal(ino_of(x, "s2", BIG), ino_of(x, "s3", BIG));
	same_content(x, "s3", BIG);

	/* A copy rewritten with its own content, then a removal: shared. */
	char p[TBUF];
	size_t len = 0;
	tu_tree_path(x->store, "s3", "htdocs/a.txt", p, sizeof p);
	struct stat before;
	assert_int_equal(lstat(p, &before), 0);
	nap_ms(20);
	void *data = tu_slurp(p, &len);
	tu_put_bytes(p, data, len, before.st_mode & 07777);
	free(data);
	struct timespec t[2] = { before.st_atim, before.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(lstat(p, &before), 0);
	remove_snap(x, "s2");
	assert_int_equal(take_logged(x, "s4", NULL), 0);
	assert_int_equal(ino_of(x, "s3", "htdocs/a.txt"), ino_of(x, "s4", "htdocs/a.txt"));

	/* A stage of s4, a copy damaged after it was built, the stage
	 * dropped (its unlinks move the copy's ctime): still found. */
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s4"));
	flip(x, "s4", "htdocs/a.txt", true);
	ts_err e;
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	ts_store_stage_drop(&x->s);
	ts_store_unlock(&x->s);
	assert_false(sfx_stage_exists(x));
	assert_int_equal(take_logged(x, "s5", "s4/htdocs/a.txt: stored copy damaged (content)"), 1);
	same_content(x, "s5", "htdocs/a.txt");
	sfx_compare_tree(x, "s5");
	sfx_store_clean_and_unlocked(x);
}

/* Does the record of me still hold for the copy st stats: the same inode,
 * and its ctime as recorded or moved by the engine's own links (the take
 * records the identity it checked, before its own link: linklog.h)? */
static bool record_holds(const fx *x, const ts_manifest_entry *me, const struct stat *st)
{
	ts_linklog l;
	int fd = open(x->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok;

	assert_true(fd >= 0);
	ts_linklog_read(fd, &l);
	ok = me->store_ino == (uint64_t)st->st_ino &&
	     ((me->store_ctime.tv_sec == st->st_ctim.tv_sec &&
	       me->store_ctime.tv_nsec == st->st_ctim.tv_nsec) ||
	      ts_linklog_explains(&l, (uint64_t)st->st_ino, &st->st_ctim));
	ts_linklog_free(&l);
	close(fd);
	return ok;
}

/* A copy rewritten in place with its own content (verify --repair): its
 * ctime moved without a logged link, so it is hashed once, found good and
 * shared; the new snapshot records it as placed. */
static void test_take_ctime_only_shared(void **state)
{
	fx *x = *state;
	char p[TBUF];
	struct stat before, now;
	ts_manifest m;

	take_ok(x, "s1");
	tu_tree_path(x->store, "s1", BIG, p, sizeof p);
	assert_int_equal(lstat(p, &before), 0);
	nap_ms(20);
	size_t len = 0;
	void *data = tu_slurp(p, &len);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	close(fd);
	free(data);
	struct timespec t[2] = { before.st_atim, before.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(take_logged(x, "s2", NULL), 0);
	assert_int_equal(ino_of(x, "s1", BIG), ino_of(x, "s2", BIG));
	sfx_check_manifest(x, "s2", NULL, &m);
	assert_int_equal(lstat(p, &now), 0);
	const ts_manifest_entry *me = ts_manifest_find(&m, BIG);
	assert_non_null(me);
	assert_true(record_holds(x, me, &now));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

/* A take killed after it linked leaves a .tmp-* whose links moved the
 * newest snapshot's copies' ctime with no logged batch; the next writer
 * removes it, and its guard notes them (linkguard.h: the newest
 * snapshot's manifest stands for the missing one), so that the removal's
 * own interval cannot hide a change made meanwhile: a copy damaged then is
 * found, the others are hashed and shared. */
static void test_dead_take_leftover(void **state)
{
	fx *x = *state;
	char from[TBUF], to[TBUF];

	take_ok(x, "s1");
	tu_fmt(to, sizeof to, "%s/.tmp-999999-1-1", x->store);
	tu_mkdir_in(x->store, ".tmp-999999-1-1", 0700);
	tu_mkdir_in(to, "tree", 0700);
	tu_mkdir_in(to, "tree/htdocs", 0700);
	tu_tree_path(x->store, "s1", "htdocs/a.txt", from, sizeof from);
	tu_fmt(to, sizeof to, "%s/.tmp-999999-1-1/tree/htdocs/a.txt", x->store);
	nap_ms(20);
	assert_int_equal(link(from, to), 0);
	flip(x, "s1", "htdocs/a.txt", true);
	assert_int_equal(take_logged(x, "s2", "s1/htdocs/a.txt: stored copy damaged (content)"), 1);
	same_content(x, "s2", "htdocs/a.txt");
	assert_int_equal(ino_of(x, "s1", BIG), ino_of(x, "s2", BIG));
	sfx_store_clean_and_unlocked(x);
}

/* Every file entry records its copy's identity as placed: copied (s1) or
 * linked (s2: the link moved the ctime, recorded after it). */
static void test_identity_recorded(void **state)
{
	fx *x = *state;
	ts_manifest m;
	size_t files = 0;

	take_ok(x, "s1");
	take_ok(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];
		struct stat st;
		if (me->type != 'f') {
			assert_true(me->store_ino == 0);
			continue;
		}
		sfx_snap_file(x, "s2", me->path, &st);
		assert_true(record_holds(x, me, &st));
		files++;
	}
	assert_true(files >= 8);
	ts_manifest_free(&m);
	/* s1's records are older than its copies' ctimes now (s2 linked
	 * them): what the linklog explains. */
	sfx_check_manifest(x, "s1", NULL, &m);
	const ts_manifest_entry *me = ts_manifest_find(&m, "htdocs/a.txt");
	struct stat st;
	sfx_snap_file(x, "s1", "htdocs/a.txt", &st);
	assert_true(me->store_ino == (uint64_t)st.st_ino);
	assert_true(me->store_ctime.tv_sec != st.st_ctim.tv_sec ||
	            me->store_ctime.tv_nsec != st.st_ctim.tv_nsec);
	ts_manifest_free(&m);
	char p[TBUF];
	tu_fmt(p, sizeof p, "%s/%s", x->store, TS_LINKLOG_FILE);
	assert_true(tu_exists(p));
}

/* Takes, stages and removals as the daemon and prune make them: the
 * engine's own links and unlinks never look like damage, and unchanged
 * files stay shared from snapshot to snapshot.  A lost linklog only costs
 * hashing. */
static void test_normal_sequence(void **state)
{
	fx *x = *state;
	ts_err e;
	char p[TBUF];

	assert_int_equal(take_logged(x, "a", NULL), 0);
	sfx_stage_ok(x, NULL);
	assert_int_equal(take_logged(x, "b", NULL), 0);
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "a", &e), TS_OK);
	ts_store_unlock(&x->s);
	assert_int_equal(take_logged(x, "c", NULL), 0);
	assert_int_equal(ino_of(x, "b", BIG), ino_of(x, "c", BIG));
	sfx_stage_ok(x, NULL);
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "b", &e), TS_OK);
	ts_store_unlock(&x->s);
	assert_int_equal(take_logged(x, "d", NULL), 0);
	assert_int_equal(ino_of(x, "c", BIG), ino_of(x, "d", BIG));
	tu_fmt(p, sizeof p, "%s/%s", x->store, TS_LINKLOG_FILE);
	/* Nothing looked changed by someone else to the removals' guard. */
	char *text = tu_slurp(p, NULL);
	assert_null(strstr(text, "S "));
	free(text);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(take_logged(x, "e", NULL), 0);
	assert_int_equal(ino_of(x, "d", BIG), ino_of(x, "e", BIG));
	sfx_compare_tree(x, "e");
	sfx_store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_equal),
		cmocka_unit_test(test_ctime_explained_by_linklog),
		cmocka_unit_test(test_ctime_named_batch),
		cmocka_unit_test(test_ctime_only_good_content),
		cmocka_unit_test(test_content_flipped_mtime_restored),
		cmocka_unit_test(test_stat_differences),
		cmocka_unit_test(test_no_record),
		cmocka_unit_test_setup_teardown(test_take_damaged_not_shared, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_take_damaged_staged, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_take_refresh_copy_mismatch_quiet, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_take_ctime_only_shared, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_removal_hides_nothing, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_identity_recorded, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_dead_take_leftover, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_normal_sequence, sfx_setup, sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
