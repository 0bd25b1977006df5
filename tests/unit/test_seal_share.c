/* test_seal_share.c - sealing gives back what a snapshot copied but did not
 * need to (store/seal_share.h): a copy with the content and metadata of the
 * previous sealed snapshot's becomes a hard link to it, recorded in the
 * manifest and logged as one batch naming its inodes (linklog.h); a copy
 * whose mtime or extended attributes differ stays; a damaged previous copy
 * is never linked; on a filesystem without reflinks the block sharing
 * (seal_dedupe.h) does nothing and costs nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "store/manifest.h"
#include "store/seal.h"
#include "tutil.h"

#include "snapfx.h"

#define DB "db/trac.db"
#define TXT "htdocs/a.txt"
#define CSS "htdocs/site.css"

static void nap_ms(long ms)
{
	struct timespec t = { 0, ms * 1000 * 1000 };
	nanosleep(&t, NULL);
}

static ino_t ino_of(fx *x, const char *name, const char *rel)
{
	struct stat st;
	sfx_snap_file(x, name, rel, &st);
	return st.st_ino;
}

static void take(fx *x, const char *name)
{
	ts_snap_stats st;
	nap_ms(30);   /* past the racy window of what the test changed */
	sfx_take_ok(x, name, &st);
}

/* The manifest of name matches its tree, and records rel's copy by the
 * identity it has now. */
static void identity_recorded(fx *x, const char *name, const char *rel)
{
	ts_manifest m;
	const ts_manifest_entry *me;
	struct stat st;

	sfx_check_manifest(x, name, NULL, &m);
	me = ts_manifest_find(&m, rel);
	assert_non_null(me);
	sfx_snap_file(x, name, rel, &st);
	assert_int_equal(me->store_ino, (uint64_t)st.st_ino);
	assert_int_equal(me->store_ctime.tv_sec, st.st_ctim.tv_sec);
	assert_int_equal(me->store_ctime.tv_nsec, st.st_ctim.tv_nsec);
	ts_manifest_free(&m);
}

/* Does STORE/.linklog have an "I" line naming ino? */
static bool linklog_names(fx *x, ino_t ino)
{
	char path[TBUF], want[32];
	size_t len = 0;
	char *text, *line;
	bool found = false;

	tu_fmt(path, sizeof path, "%s/.linklog", x->store);
	text = tu_slurp(path, &len);
	tu_fmt(want, sizeof want, " %llu", (unsigned long long)ino);
	for (line = strtok(text, "\n"); line && !found; line = strtok(NULL, "\n")) {
		if (strncmp(line, "I ", 2))
			continue;
		/* the inodes follow the two times */
		const char *p = strchr(line + 2, ' ');
		p = p ? strchr(p + 1, ' ') : NULL;
		for (; p && !found; p = strchr(p + 1, ' '))
			found = !strncmp(p, want, strlen(want)) && (p[strlen(want)] == ' ' || !p[strlen(want)]);
	}
	free(text);
	return found;
}

static void db_linked(fx *x, const char *a, const char *b)
{
	struct stat st;
	assert_int_equal(ino_of(x, a, DB), ino_of(x, b, DB));
	sfx_snap_file(x, b, DB, &st);
	assert_true(st.st_nlink >= 2);
}

/* 1. Nothing written to the database: the next snapshot's copy is the
 * previous one's inode, its identity in the manifest, the links one
 * batch naming it; the database is whole and the store clean. */
static void test_unchanged_database_linked(void **state)
{
	fx *x = *state;

	take(x, "s1");
	take(x, "s2");
	db_linked(x, "s1", "s2");
	identity_recorded(x, "s2", DB);
	assert_true(linklog_names(x, ino_of(x, "s2", DB)));
	sfx_check_db(x, "s2", DB, 3, "first,second,third");
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);

	/* Written: copied, and the copy is the new content. */
	char db[TBUF];
	tu_fmt(db, sizeof db, "%s/" DB, x->env);
	sqlite3 *w = tu_db_open(db, SQLITE_OPEN_READWRITE);
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	sqlite3_close(w);
	take(x, "s3");
	assert_int_not_equal(ino_of(x, "s2", DB), ino_of(x, "s3", DB));
	sfx_check_db(x, "s3", DB, 4, "first,second,third,fourth");
	identity_recorded(x, "s3", DB);
	sfx_store_clean_and_unlocked(x);
}

/* 2. A file whose mode was changed and put back is copied (its ctime
 * moved) and then linked; one whose mtime changed, or whose extended
 * attribute did, keeps its copy: a link would show the old one's. */
static void test_metadata_decides(void **state)
{
	fx *x = *state;
	char p[TBUF];
	struct stat st;

	take(x, "s1");
	tu_fmt(p, sizeof p, "%s/" TXT, x->env);
	assert_int_equal(chmod(p, 0600), 0);
	assert_int_equal(chmod(p, 0644), 0);
	take(x, "s2");
	db_linked(x, "s1", "s2");
	assert_int_equal(ino_of(x, "s1", TXT), ino_of(x, "s2", TXT));
	identity_recorded(x, "s2", TXT);

	/* The same bytes, a new mtime. */
	struct timespec t[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, p, t, 0), 0);
	/* The same bytes and mtime, another attribute value. */
	tu_fmt(p, sizeof p, "%s/" CSS, x->env);
	assert_int_equal(setxattr(p, "user.mime_type", "text/plain", 10, 0), 0);
	take(x, "s3");
	assert_int_not_equal(ino_of(x, "s2", TXT), ino_of(x, "s3", TXT));
	sfx_snap_file(x, "s3", TXT, &st);
	assert_int_equal(st.st_mtim.tv_sec, 1000000000);
	assert_int_not_equal(ino_of(x, "s2", CSS), ino_of(x, "s3", CSS));
	char v[32] = "";
	tu_tree_path(x->store, "s3", CSS, p, sizeof p);
	assert_int_equal(getxattr(p, "user.mime_type", v, sizeof v), 10);
	assert_memory_equal(v, "text/plain", 10);
	db_linked(x, "s2", "s3");
	sfx_compare_tree(x, "s3");
	sfx_store_clean_and_unlocked(x);
}

/* 3. The previous copy damaged (a byte flipped, the mtime put back) just
 * before the next snapshot: never linked; the new copy is the database. */
static void test_damaged_previous_not_linked(void **state)
{
	fx *x = *state;
	char p[TBUF];
	struct stat st;
	unsigned char c;

	take(x, "s1");
	take(x, "s2");
	db_linked(x, "s1", "s2");
	tu_tree_path(x->store, "s2", DB, p, sizeof p);
	assert_int_equal(lstat(p, &st), 0);
	int fd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, 100), 1);
	c ^= 0xff;
	assert_int_equal(pwrite(fd, &c, 1, 100), 1);
	close(fd);
	struct timespec t[2] = { st.st_atim, st.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, p, t, 0), 0);

	ts_snap_stats sst;
	sfx_take_ok(x, "s3", &sst);   /* at once: inside the take's own batch */
	assert_int_not_equal(ino_of(x, "s2", DB), ino_of(x, "s3", DB));
	sfx_check_db(x, "s3", DB, 3, "first,second,third");
	identity_recorded(x, "s3", DB);
	sfx_store_clean_and_unlocked(x);
}

/* 4. A big file changed in part, on a filesystem without reflinks (the
 * tests' temporary one): nothing shared, nothing broken; the seal says
 * what it linked. */
static void test_blocks_without_reflinks(void **state)
{
	fx *x = *state;
	char p[TBUF];
	ts_snap_opts o;
	ts_snap_stats st;
	ts_seal_stats ss;
	ts_err e;

	take(x, "s1");
	tu_fmt(p, sizeof p, "%s/files/attachments/ticket/1/big.bin", x->env);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "changed", 7, 70000), 7);
	close(fd);
	nap_ms(30);
	memset(&o, 0, sizeof o);
	o.name = "s2";
	o.lock_timeout_s = 5;
	ts_err_clear(&e);
	assert_int_equal(ts_snap_take(&x->s, &x->e, &o, &st, &e), TS_OK);
	assert_int_equal(ts_seal(&x->s, "s2", NULL, &ss, &e), TS_OK);
	assert_int_equal(ss.files_linked, 1);   /* the database */
	assert_int_equal(ss.bytes_blocks, 0);
	db_linked(x, "s1", "s2");
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* 5. A stopping daemon's last pass (ts_seal_all, share false) seals
 * without sharing: the unchanged database stays a copy of its own, the
 * snapshot sealed and whole.  The next seal of a later snapshot shares
 * again. */
static void test_no_share_at_stop(void **state)
{
	fx *x = *state;
	ts_snap_opts o = { .name = "s2", .lock_timeout_s = 5 };
	ts_snap_stats st;
	unsigned n = 0;
	ts_err e;

	take(x, "s1");
	nap_ms(30);
	ts_err_clear(&e);
	if (ts_snap_take(&x->s, &x->e, &o, &st, &e) != TS_OK)
		fail_msg("%s", e.msg);
	if (ts_seal_all(&x->s, NULL, false, &n, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(n, 1);
	assert_int_not_equal(ino_of(x, "s1", DB), ino_of(x, "s2", DB));
	identity_recorded(x, "s2", DB);
	sfx_check_db(x, "s2", DB, 3, "first,second,third");
	sfx_store_clean_and_unlocked(x);

	take(x, "s3");
	db_linked(x, "s2", "s3");
}

/* 6. More copies than one of the seal's chunks (seal.c reads, hashes and
 * writes the manifest a chunk at a time): every file of a directory of
 * 2,500, its mode changed and put back, is copied, then linked to the
 * previous copy across the chunks' edges; every hash and identity in the
 * manifest is the tree's, and a file really changed among them is not
 * linked. */
#define MANY 2500
static void test_many_across_chunks(void **state)
{
	fx *x = *state;
	char p[TBUF], rel[64];
	ts_manifest m;

	tu_mkdir_in(x->env, "many", 0755);
	for (int i = 0; i < MANY; i++) {
		char text[32];
		tu_fmt(rel, sizeof rel, "many/f%04d", i);
		tu_fmt(text, sizeof text, "file %d\n", i);
		tu_put_in(x->env, rel, text, 0644);
	}
	take(x, "s1");
	for (int i = 0; i < MANY; i++) {
		tu_fmt(p, sizeof p, "%s/many/f%04d", x->env, i);
		assert_int_equal(chmod(p, 0600), 0);
		assert_int_equal(chmod(p, 0644), 0);
	}
	tu_put_in(x->env, "many/f1500", "changed\n", 0644);
	take(x, "s2");
	for (int i = 0; i < MANY; i++) {
		tu_fmt(rel, sizeof rel, "many/f%04d", i);
		if (i == 1500)
			assert_int_not_equal(ino_of(x, "s1", rel), ino_of(x, "s2", rel));
		else
			assert_int_equal(ino_of(x, "s1", rel), ino_of(x, "s2", rel));
	}
	sfx_check_manifest(x, "s2", NULL, &m);   /* every hash, size, mode: the tree's */
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];
		struct stat st;
		/* (A file the take shared keeps the identity it checked:
		 * snap_put.c.) */
		if (me->type != 'f' || strncmp(me->path, "many/", 5))
			continue;
		sfx_snap_file(x, "s2", me->path, &st);
		assert_int_equal(me->store_ino, (uint64_t)st.st_ino);
		assert_int_equal(me->store_ctime.tv_nsec, st.st_ctim.tv_nsec);
	}
	ts_manifest_free(&m);
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unchanged_database_linked, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_metadata_decides, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_previous_not_linked, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_blocks_without_reflinks, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_no_share_at_stop, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_many_across_chunks, sfx_setup, sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
