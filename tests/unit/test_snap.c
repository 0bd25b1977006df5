/* test_snap.c - taking snapshots of a small Trac environment into a store:
 * the tree, the database copy, the manifest, sharing with the previous
 * snapshot, refusals (a taken or bad name, Trac's write lock, a busy store,
 * a cancel), WAL mode.  The environment and the checks are snapfx.h's; the
 * stage is tested in test_stage.c, an environment that changes while the
 * snapshot runs in test_snap_race.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "db/dbsnap.h"
#include "env/env.h"
#include "store/manifest.h"
#include "store/store.h"
#include "take/snap.h"
#include "take/stage.h"
#include "tutil.h"

#include "snapfx.h"

static void test_snap_basic(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	struct timespec before, after;
	struct stat sb;
	char p[TBUF], buf[64];
	ssize_t n;

	clock_gettime(CLOCK_REALTIME, &before);
	memset(&st, 0x5a, sizeof(st));
	sfx_take_ok(x, "s1", &st);
	clock_gettime(CLOCK_REALTIME, &after);

	/* STORE/s1/{tree,manifest}, its mtime the instant. */
	tu_fmt(p, sizeof(p), "%s/s1/tree", x->store);
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &sb), 0);
	assert_int_equal(sb.st_mtim.tv_sec, st.instant.tv_sec);
	assert_int_equal(sb.st_mtim.tv_nsec, st.instant.tv_nsec);
	assert_true(st.instant.tv_sec > before.tv_sec ||
	            (st.instant.tv_sec == before.tv_sec && st.instant.tv_nsec >= before.tv_nsec));
	assert_true(st.instant.tv_sec < after.tv_sec ||
	            (st.instant.tv_sec == after.tv_sec && st.instant.tv_nsec <= after.tv_nsec));
	assert_true(ts_store_exists(&x->s, "s1"));
	assert_int_equal(sfx_n_snapshots(x), 1);

	sfx_compare_tree(x, "s1");
	sfx_check_db(x, "s1", "db/trac.db", 3, "first,second,third");
	assert_true(sfx_snap_has(x, "s1", "db/trac.db.bak"));
	assert_false(sfx_snap_has(x, "s1", "db/trac.db-stmtjrnl"));
	assert_false(sfx_snap_has(x, "s1", "db/trac.db-mj01"));
	sfx_snap_file(x, "s1", "conf/trac.ini", &sb);
	assert_int_equal(sb.st_mode & 07777, 0600);
	sfx_snap_file(x, "s1", "plugins/suid.sh", &sb);
	assert_int_equal(sb.st_mode & 07777, 04755);
	sfx_snap_file(x, "s1", "plugins/secret.egg", &sb);
	assert_int_equal(sb.st_uid, 1234);
	assert_int_equal(sb.st_gid, 5678);
	tu_tree_path(x->store, "s1", "htdocs/site.css", p, sizeof(p));
	n = getxattr(p, "user.mime_type", buf, sizeof(buf));
	assert_int_equal(n, 8);
	assert_memory_equal(buf, "text/css", 8);

	sfx_check_manifest(x, "s1", &st, &m);
	assert_null(m.external_db);
	assert_false(m.no_database);
	assert_non_null(ts_manifest_find(&m, "db/trac.db"));
	assert_non_null(ts_manifest_find(&m, "."));
	assert_null(ts_manifest_find(&m, "db/trac.db-stmtjrnl"));
	assert_int_equal(ts_manifest_find(&m, "link-a")->type, 'l');
	ts_manifest_free(&m);

	/* Figures. */
	assert_true(st.files >= 10);
	assert_true(st.bytes_copied > BIG_LEN);
	assert_true(st.hold_ms >= 0);
	assert_true(st.total_ms > 0);
	assert_true(st.total_ms >= st.hold_ms);
	assert_true(st.bytes_shared == 0);
	assert_true(st.files_shared == 0);

	sfx_store_clean_and_unlocked(x);
}

static void test_format_stats(void **state)
{
	ts_snap_stats st;
	char buf[256];

	(void)state;
	memset(&st, 0, sizeof(st));
	st.files = 42;
	st.bytes_copied = (uint64_t)(1.2 * 1024 * 1024);
	st.bytes_shared = (uint64_t)(3.4 * 1024 * 1024);
	st.hold_ms = 12.2;
	st.total_ms = 340.4;
	ts_snap_format_stats("NAME", &st, buf, sizeof(buf));
	if (!strstr(buf, "NAME: 42 files, 1.2 MiB copied, 3.4 MiB shared, lock held 12 ms, total 340 ms"))
		fail_msg("'%s'", buf);
	/* Never past the buffer. */
	memset(buf, 'x', sizeof(buf));
	ts_snap_format_stats("NAME", &st, buf, 10);
	assert_int_equal(strlen(buf), 9);
	assert_int_equal(buf[10], 'x');
}

/* The second snapshot shares what did not change and copies what did. */
static void test_snap_share(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2;
	ts_manifest m;
	struct stat a, b, old_css;
	char p[TBUF];
	int fd;

	sfx_take_ok(x, "s1", &s1);

	/* Change a file in place (same inode), one keeping its size and mtime
	 * (only ctime tells), remove one, add one. */
	tu_fmt(p, sizeof(p), "%s/htdocs/a.txt", x->env);
	fd = open(p, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "changed content\n", 16), 16);
	assert_int_equal(close(fd), 0);
	tu_fmt(p, sizeof(p), "%s/htdocs/site.css", x->env);
	assert_int_equal(lstat(p, &old_css), 0);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "BODY { COLOR: RED }\n", 20), 20);
	{
		struct timespec ts[2] = { old_css.st_atim, old_css.st_mtim };

		assert_int_equal(futimens(fd, ts), 0);
	}
	assert_int_equal(close(fd), 0);
	tu_fmt(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	assert_int_equal(unlink(p), 0);
	tu_put_in(x->env, "htdocs/new.txt", "new\n", 0644);

	sfx_take_ok(x, "s2", &s2);
	sfx_compare_tree(x, "s2");
	sfx_check_db(x, "s2", "db/trac.db", 3, "first,second,third");

	/* Unchanged: the same inode in both trees. */
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	sfx_snap_file(x, "s1", "conf/trac.ini", &a);
	sfx_snap_file(x, "s2", "conf/trac.ini", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_true(s2.bytes_shared >= BIG_LEN);
	assert_true(s2.files_shared >= 2);
	assert_true(s2.bytes_copied > 0);

	/* Changed: a new inode with the new content; the old copy untouched. */
	sfx_snap_file(x, "s1", "htdocs/a.txt", &a);
	sfx_snap_file(x, "s2", "htdocs/a.txt", &b);
	assert_int_not_equal(a.st_ino, b.st_ino);
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed content\n");
	sfx_snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	sfx_snap_file(x, "s1", "htdocs/site.css", &a);
	sfx_snap_file(x, "s2", "htdocs/site.css", &b);
	assert_int_not_equal(a.st_ino, b.st_ino);
	sfx_snap_text_is(x, "s2", "htdocs/site.css", "BODY { COLOR: RED }\n");
	sfx_snap_text_is(x, "s1", "htdocs/site.css", "body { color: red }\n");

	/* Removed and added. */
	assert_true(sfx_snap_has(x, "s1", "files/attachments/ticket/1/small.txt"));
	assert_false(sfx_snap_has(x, "s2", "files/attachments/ticket/1/small.txt"));
	assert_false(sfx_snap_has(x, "s1", "htdocs/new.txt"));
	sfx_snap_text_is(x, "s2", "htdocs/new.txt", "new\n");

	sfx_check_manifest(x, "s2", &s2, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	assert_non_null(ts_manifest_find(&m, "htdocs/new.txt"));
	ts_manifest_free(&m);
	/* The first snapshot still matches its own manifest. */
	sfx_check_manifest(x, "s1", &s1, &m);
	ts_manifest_free(&m);

	/* Oldest first. */
	{
		ts_store_snap *v;
		size_t n;
		ts_err e;

		assert_int_equal(ts_store_list(&x->s, &v, &n, &e), TS_OK);
		assert_int_equal(n, 2);
		assert_string_equal(v[0].name, "s1");
		assert_string_equal(v[1].name, "s2");
		ts_store_list_free(v, n);
	}
	sfx_store_clean_and_unlocked(x);
}

/* An incremental snapshot makes its directories and shares its files while
 * it walks (parents are made before their entries are listed): new deep
 * trees, in old directories and new ones, with their own modes, come out
 * whole, and a snapshot with nothing changed shares every file. */
static void test_snap_share_new_trees(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2, s3;
	ts_manifest m;
	struct stat a, b;
	char rel[256];

	sfx_take_ok(x, "s1", &s1);
	tu_mkdir_in(x->env, "files/attachments/wiki", 0755);
	tu_fmt(rel, sizeof(rel), "files/attachments/wiki");
	for (int depth = 0; depth < 6; depth++) {
		char f[300];
		size_t len = strlen(rel);
		snprintf(rel + len, sizeof(rel) - len, "/d%d", depth);
		tu_mkdir_in(x->env, rel, depth % 2 ? 0750 : 0711);
		tu_fmt(f, sizeof(f), "%s/f%d.txt", rel, depth);
		tu_put_in(x->env, f, "deep\n", 0640);
	}
	tu_mkdir_in(x->env, "newtop", 0700);
	tu_mkdir_in(x->env, "newtop/empty", 0755);
	tu_mkdir_in(x->env, "newtop/sub", 0755);
	tu_put_in(x->env, "newtop/sub/x.txt", "x\n", 0600);

	sfx_take_ok(x, "s2", &s2);
	sfx_compare_tree(x, "s2");
	sfx_check_manifest(x, "s2", &s2, &m);
	assert_non_null(ts_manifest_find(&m, "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt"));
	assert_non_null(ts_manifest_find(&m, "newtop/empty"));
	ts_manifest_free(&m);
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);

	/* Nothing changed (but the database, which is always copied). */
	sfx_take_ok(x, "s3", &s3);
	sfx_compare_tree(x, "s3");
	assert_int_equal(s3.files_shared, s3.files - 1);
	sfx_snap_file(x, "s2", "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt", &a);
	sfx_snap_file(x, "s3", "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	sfx_check_manifest(x, "s3", &s3, &m);
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

static void test_snap_fifo(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	char p[TBUF];

	tu_fmt(p, sizeof(p), "%s/pipe", x->env);
	assert_int_equal(mkfifo(p, 0644), 0);
	tu_fmt(p, sizeof(p), "%s/log/trac.fifo", x->env);
	assert_int_equal(mkfifo(p, 0600), 0);
	sfx_take_ok(x, "s1", &st);
	assert_false(sfx_snap_has(x, "s1", "pipe"));
	assert_false(sfx_snap_has(x, "s1", "log/trac.fifo"));
	assert_true(sfx_snap_has(x, "s1", "log"));
	sfx_compare_tree(x, "s1");
	sfx_check_manifest(x, "s1", &st, &m);
	assert_null(ts_manifest_find(&m, "pipe"));
	assert_null(ts_manifest_find(&m, "log/trac.fifo"));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

static void test_snap_no_database(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	ts_err e;

	if (sfx_take(x, "files-only", true, 5, &st, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_false(sfx_snap_has(x, "files-only", "db/trac.db"));
	assert_true(sfx_snap_has(x, "files-only", "db"));
	assert_true(sfx_snap_has(x, "files-only", "db/trac.db.bak"));
	sfx_compare_tree(x, "files-only");
	sfx_check_manifest(x, "files-only", &st, &m);
	assert_true(m.no_database);
	assert_null(m.external_db);
	assert_null(ts_manifest_find(&m, "db/trac.db"));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

static void test_snap_external_db(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	char ext[TBUF], dbp[TBUF], want[TBUF];
	const ts_manifest_entry *me;

	tu_fmt(ext, sizeof(ext), "%s/ext", x->top);
	assert_int_equal(mkdir(ext, 0755), 0);
	tu_fmt(dbp, sizeof(dbp), "%s/ext/x.db", x->top);
	tu_make_db(dbp, true);
	tu_fmt(want, sizeof(want), "%s/db/trac.db", x->env);
	assert_int_equal(unlink(want), 0);
	tu_fmt(want, sizeof(want), "[trac]\ndatabase = sqlite:%s\n", dbp);
	tu_put_in(x->env, "conf/trac.ini", want, 0600);
	ts_env_close(&x->e);
	x->env_open = false;
	sfx_env_open(x);
	assert_null(x->e.db_rel);

	sfx_take_ok(x, "ext", &st);
	sfx_check_db(x, "ext", TS_DBSNAP_EXTERNAL_DIR "/x.db", 3, "first,second,third");
	assert_false(sfx_snap_has(x, "ext", "db/trac.db"));
	sfx_compare_tree(x, "ext");
	sfx_check_manifest(x, "ext", &st, &m);
	assert_non_null(m.external_db);
	assert_string_equal(m.external_db, dbp);
	assert_string_equal(m.external_db_rel, TS_DBSNAP_EXTERNAL_DIR "/x.db");
	me = ts_manifest_find(&m, TS_DBSNAP_EXTERNAL_DIR "/x.db");
	assert_non_null(me);
	assert_int_equal(me->type, 'f');
	ts_manifest_free(&m);

	/* Staged and refreshed (stage.h), then the next snapshot. */
	{
		ts_stage_refresh_out out;
		ts_snap_stats st2;
		size_t dirs;
		sfx_stage_ok(x, NULL);
		tu_put_in(x->env, "htdocs/a.txt", "changed before the refresh\n", 0644);
		assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
		assert_false(out.none);
		sfx_take_ok(x, "ext2", &st2);
		assert_false(sfx_stage_exists(x));
		sfx_check_db(x, "ext2", TS_DBSNAP_EXTERNAL_DIR "/x.db", 3, "first,second,third");
		sfx_compare_tree(x, "ext2");
		sfx_check_manifest(x, "ext2", &st2, &m);
		assert_string_equal(m.external_db, dbp);
		ts_manifest_free(&m);
	}
	sfx_store_clean_and_unlocked(x);
}

/* A name that is taken: refused, and nothing changes. */
static void test_snap_exists(void **state)
{
	fx *x = *state;
	ts_snap_stats st, st2;
	ts_err e;
	ts_err_code rc;
	char p[TBUF];
	unsigned char *man1, *man2;
	size_t l1, l2;
	struct stat d1, d2;

	sfx_take_ok(x, "s1", &st);
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	man1 = tu_slurp(p, &l1);
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &d1), 0);

	tu_put_in(x->env, "htdocs/a.txt", "different\n", 0644);
	rc = sfx_take(x, "s1", false, 5, &st2, &e);
	assert_int_equal(rc, TS_ERR_EXISTS);
	assert_int_equal(e.code, TS_ERR_EXISTS);
	assert_non_null(strstr(e.msg, "s1"));

	assert_int_equal(sfx_n_snapshots(x), 1);
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	man2 = tu_slurp(p, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(man1, man2, l1);
	free(man1);
	free(man2);
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &d2), 0);
	assert_int_equal(d1.st_ino, d2.st_ino);
	assert_int_equal(d1.st_mtim.tv_sec, d2.st_mtim.tv_sec);
	assert_int_equal(d1.st_mtim.tv_nsec, d2.st_mtim.tv_nsec);
	sfx_snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	sfx_store_clean_and_unlocked(x);
}

static void test_snap_bad_name(void **state)
{
	fx *x = *state;
	static const char *const bad[] = { "a/b", ".x", "latest", "", ".", "..", ".tmp-1", "a\nb" };
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;
	char p[TBUF];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = sfx_take(x, bad[i], false, 5, &st, &e);
		if (rc != TS_ERR_NAME)
			fail_msg("name '%s': %s '%s', want name", bad[i], ts_err_name(rc), e.msg);
		assert_int_equal(e.code, TS_ERR_NAME);
		assert_null(strchr(e.msg, '\n'));
		sfx_store_clean_and_unlocked(x);
		assert_int_equal(sfx_n_snapshots(x), 0);
	}
	tu_fmt(p, sizeof(p), "%s/a", x->store);
	assert_false(tu_exists(p));
	tu_fmt(p, sizeof(p), "%s/latest", x->store);
	assert_false(tu_exists(p));
	/* A good name still works afterwards. */
	sfx_take_ok(x, "good", &st);
	assert_int_equal(sfx_n_snapshots(x), 1);
	sfx_store_clean_and_unlocked(x);
}

/* Trac's write lock held by another connection: busy, nothing left behind;
 * works again once it is released. */
static void test_snap_write_lock_busy(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;
	sqlite3 *w;
	char p[TBUF];
	struct timespec t0, t1;
	double dt;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(w, "BEGIN IMMEDIATE");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = sfx_take(x, "s1", false, 1, &st, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (rc != TS_ERR_BUSY)
		fail_msg("%s '%s', want busy", ts_err_name(rc), e.msg);
	assert_int_equal(e.code, TS_ERR_BUSY);
	if (!strstr(e.msg, "write lock"))
		fail_msg("message '%s' does not say 'write lock'", e.msg);
	assert_true(dt >= 0.8 && dt < 10);
	assert_false(ts_store_exists(&x->s, "s1"));
	assert_int_equal(sfx_n_snapshots(x), 0);
	sfx_store_clean_and_unlocked(x);

	/* The other connection still holds its transaction and can write. */
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	tu_sql(w, "ROLLBACK");

	sfx_take_ok(x, "s1", &st);
	sfx_check_db(x, "s1", "db/trac.db", 3, "first,second,third");
	/* Our connection works after the snapshot's (Trac's writers go on). */
	tu_sql(w, "BEGIN IMMEDIATE; INSERT INTO ticket VALUES (5, 'fifth'); COMMIT");
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
	sfx_store_clean_and_unlocked(x);
}

/* WAL mode: rows that are only in the -wal are in the snapshot, which is a
 * rollback-journal database. */
static void test_snap_wal(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	sqlite3 *w, *c;
	char p[TBUF], wal[TBUF + 8], copy[TBUF], text[64];
	struct stat sb;
	unsigned char *bytes;
	size_t len;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	tu_fmt(wal, sizeof(wal), "%s-wal", p);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	sfx_query_text(w, "PRAGMA journal_mode=WAL", text, sizeof(text));
	assert_string_equal(text, "wal");
	tu_sql(w, "PRAGMA wal_autocheckpoint=0");
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	tu_sql(w, "INSERT INTO ticket VALUES (5, 'fifth')");
	tu_sql(w, "BEGIN; UPDATE ticket SET summary = 'FIRST' WHERE id = 1;"
	       " INSERT INTO ticket VALUES (6, 'sixth'); COMMIT");
	assert_int_equal(lstat(wal, &sb), 0);
	assert_true(sb.st_size > 0);

	/* The main file alone does not have them (they are only in the -wal). */
	tu_fmt(copy, sizeof(copy), "%s/main-only.db", x->top);
	bytes = tu_slurp(p, &len);
	tu_put_bytes(copy, bytes, len, 0644);
	free(bytes);
	c = tu_db_open(copy, SQLITE_OPEN_READONLY);
	assert_int_equal(sfx_query_long(c, "SELECT count(*) FROM ticket"), 3);
	assert_int_equal(sqlite3_close(c), SQLITE_OK);

	sfx_take_ok(x, "wal", &st);
	sfx_check_db(x, "wal", "db/trac.db", 6, "FIRST,second,third,fourth,fifth,sixth");
	assert_false(sfx_snap_has(x, "wal", "db/trac.db-wal"));
	assert_false(sfx_snap_has(x, "wal", "db/trac.db-shm"));
	sfx_compare_tree(x, "wal");
	sfx_check_manifest(x, "wal", &st, &m);
	ts_manifest_free(&m);
	/* The environment is still in WAL mode, and writable. */
	sfx_query_text(w, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "wal");
	tu_sql(w, "INSERT INTO ticket VALUES (7, 'seventh')");
	assert_int_equal(sfx_query_long(w, "SELECT count(*) FROM ticket"), 7);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
	sfx_store_clean_and_unlocked(x);
}

/* Another writer holds the store: busy, nothing changes. */
static void test_snap_store_busy(void **state)
{
	fx *x = *state;
	ts_store other;
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;

	ts_err_clear(&e);
	assert_int_equal(ts_store_open(x->store, false, &other, &e), TS_OK);
	assert_int_equal(ts_store_lock(&other, 0, &e), TS_OK);
	rc = sfx_take(x, "s1", false, 1, &st, &e);
	assert_int_equal(rc, TS_ERR_BUSY);
	assert_false(x->s.locked);
	assert_int_equal(sfx_n_snapshots(x), 0);
	ts_store_close(&other);
	sfx_store_clean_and_unlocked(x);
	sfx_take_ok(x, "s1", &st);
	sfx_store_clean_and_unlocked(x);
}

static void test_snap_cancel(void **state)
{
	fx *x = *state;
	volatile sig_atomic_t cancel = 1;
	ts_snap_opts o;
	ts_snap_stats st;
	ts_err e;

	memset(&o, 0, sizeof(o));
	o.name = "c";
	o.lock_timeout_s = 5;
	o.cancel = &cancel;
	ts_err_clear(&e);
	assert_int_equal(ts_snap_take(&x->s, &x->e, &o, &st, &e), TS_ERR_CANCELLED);
	assert_false(ts_store_exists(&x->s, "c"));
	assert_int_equal(sfx_n_snapshots(x), 0);
	sfx_store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snap_basic, sfx_setup, sfx_teardown),
		cmocka_unit_test(test_format_stats),
		cmocka_unit_test_setup_teardown(test_snap_share, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_share_new_trees, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_fifo, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_no_database, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_external_db, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_exists, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_bad_name, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_write_lock_busy, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_wal, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_store_busy, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_snap_cancel, sfx_setup, sfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
