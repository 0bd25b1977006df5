/* test_restore_record.c - the restored state recorded as a snapshot
 * (snapshot/restore/restore_record.c): prepared from restore's copy before
 * the exchange, made in the snapshot's store after it.  The record shares
 * every file with the restored snapshot, carries the copy's source
 * identities (the racy window waited out), and the next take shares
 * everything unchanged with it; a snapshot restore did not vouch for gets
 * no record; a damaged stored copy makes the record fail with nothing left
 * in the store; a file changed in ENV after the exchange is copied by the
 * next take. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/copy.h"
#include "restore/restore_int.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "store/seal.h"
#include "tutil.h"

#include "snapfx.h"

/* What a restore of snapshot "one" has made by the time of the exchange:
 * the copy (TOP/copy, root's, 0700), the snapshot found as restore finds
 * it, the snapshot as an environment, and its tree. */
typedef struct rfx {
	char copy[TBUF];
	int copyfd, snapfd;
	restore_src src;
	ts_env snap;
	ts_restore_out out;
	restore_record rec;
} rfx;

static void rfx_open(fx *x, rfx *r)
{
	restore_check check;
	char tree[TBUF];
	ts_err e;

	memset(r, 0, sizeof *r);
	restore_record_init(&r->rec);
	ts_err_clear(&e);
	assert_int_equal(restore_src_find(&r->src, "one", x->store, x->env, &e), TS_OK);
	assert_true(r->src.have_store && r->src.have_manifest);
	tu_tree_path(x->store, "one", ".", tree, sizeof tree);
	if (ts_env_open(tree, &r->snap, &e) != TS_OK)
		fail_msg("ts_env_open: %s", e.msg);
	r->snapfd = restore_src_open_tree(&r->src);
	assert_true(r->snapfd >= 0);
	tu_fmt(r->copy, sizeof r->copy, "%s/copy", x->top);
	assert_int_equal(mkdir(r->copy, 0700), 0);
	r->copyfd = open(r->copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(r->copyfd >= 0);
	/* Restore's own copy, checked against the manifest as it lands. */
	assert_int_equal(restore_check_init(&check, &r->src.m, "one", false, &r->out, &e), TS_OK);
	if (restore_copy_tree(r->snapfd, r->copyfd, tree, NULL, &check, NULL, &r->out, &e) != TS_OK)
		fail_msg("restore_copy_tree: %s", e.msg);
	assert_int_equal(restore_check_missing(&check, NULL, &e), TS_OK);
	restore_check_free(&check);
	ts_copy_thread_done();
	/* No wait here: the prepare waits out the racy window itself. */
}

static void rfx_close(rfx *r)
{
	restore_record_free(&r->rec);
	close(r->copyfd);
	close(r->snapfd);
	ts_env_close(&r->snap);
	restore_src_close(&r->src);
}

static void rfx_prepare(rfx *r, const char *env)
{
	ts_err e;

	ts_err_clear(&e);
	if (restore_record_prepare(&r->rec, &r->src, &r->snap, env, r->copyfd, NULL, &r->out, &e) != TS_OK)
		fail_msg("restore_record_prepare: %s", e.msg);
}

/* The copy takes ENV's place, as restore's exchange does (ENV goes to
 * TOP/env.old). */
static void rfx_swap(fx *x, rfx *r)
{
	char old[TBUF + 8];

	tu_fmt(old, sizeof old, "%s.old", x->env);
	assert_int_equal(rename(x->env, old), 0);
	assert_int_equal(rename(r->copy, x->env), 0);
}

static int count_records(fx *x)
{
	return tu_count_prefix(x->store, TS_RESTORE_RECORD_PREFIX);
}

/* 1. The record: sealed, every file the restored snapshot's inode, every
 * entry the snapshot's with the copy's identity; the next take shares
 * every file but the database with it. */
static void test_record_then_take_shares(void **state)
{
	fx *x = *state;
	rfx r;
	ts_manifest m;
	ts_snap_stats one, two;
	char rel[TBUF], path[TBUF];
	ts_err e;

	sfx_take_ok(x, "one", &one);
	rfx_open(x, &r);
	rfx_prepare(&r, x->env);
	assert_true(r.rec.want);
	assert_int_equal(r.rec.m.n, r.src.m.n);
	for (size_t i = 0; i < r.rec.m.n; i++) {
		const ts_manifest_entry *me = &r.rec.m.entries[i];
		struct stat st;
		if (!strcmp(me->path, "db/trac.db")) {
			assert_int_equal(me->src_ino, 0);   /* the backend's, never by source */
			continue;
		}
		tu_fmt(path, sizeof path, "%s/%s", r.copy, me->path);
		assert_int_equal(lstat(path, &st), 0);
		assert_int_equal(me->src_ino, st.st_ino);
		assert_true(ts_manifest_same_source(me, &st) || !strcmp(me->path, "."));
	}

	ts_err_clear(&e);
	if (restore_record_make(&r.rec, &r.src, r.snapfd, 5, &r.out, &e) != TS_OK)
		fail_msg("restore_record_make: %s", e.msg);
	assert_int_equal(strncmp(r.out.recorded, TS_RESTORE_RECORD_PREFIX, strlen(TS_RESTORE_RECORD_PREFIX)), 0);
	assert_int_equal(ts_store_seal_state_of(&x->s, r.out.recorded), TS_STORE_SEALED);
	sfx_store_clean_and_unlocked(x);
	ts_manifest_init(&m);
	tu_fmt(rel, sizeof rel, "%s/manifest", r.out.recorded);
	assert_int_equal(ts_manifest_read_at(x->s.dirfd, rel, &m, &e), TS_OK);
	assert_true(ts_manifest_sealed(&m));
	assert_string_equal(m.env, x->env);
	assert_int_equal(m.n, r.src.m.n);
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i], *pe = &r.src.m.entries[i];
		struct stat a, b;
		assert_string_equal(me->path, pe->path);
		assert_int_equal(me->type, pe->type);
		assert_memory_equal(me->sha256, pe->sha256, 32);
		assert_int_equal(me->src_ino, r.rec.m.entries[i].src_ino);
		if (me->type != 'f')
			continue;
		sfx_snap_file(x, "one", me->path, &a);
		sfx_snap_file(x, r.out.recorded, me->path, &b);
		assert_int_equal(a.st_ino, b.st_ino);
		assert_int_equal(me->store_ino, b.st_ino);
	}
	ts_manifest_free(&m);
	sfx_compare_tree(x, r.out.recorded);   /* directories, symlinks, metadata */

	rfx_swap(x, &r);
	sfx_take_ok(x, "two", &two);
	assert_int_equal(two.files, one.files);
	assert_int_equal(two.files_shared, one.files - 1);   /* all but the database */
	{
		struct stat a, b;
		sfx_snap_file(x, "one", "files/attachments/ticket/1/big.bin", &a);
		sfx_snap_file(x, "two", "files/attachments/ticket/1/big.bin", &b);
		assert_int_equal(a.st_ino, b.st_ino);
	}
	rfx_close(&r);
}

/* 2. No record of what restore did not vouch for, entry by entry. */
static void test_no_record_unless_vouched(void **state)
{
	fx *x = *state;
	rfx r;
	ts_snap_stats one;
	ts_err e;

	sfx_take_ok(x, "one", &one);
	rfx_open(x, &r);
	r.out.ndamaged = 1;   /* restored with --force, damaged */
	rfx_prepare(&r, x->env);
	assert_false(r.rec.want);
	assert_non_null(strstr(r.rec.why, "damaged"));
	r.out.ndamaged = 0;
	rfx_prepare(&r, "/elsewhere");   /* a snapshot of another environment */
	assert_false(r.rec.want);
	r.src.seal = TS_STORE_UNSEALED_NOW;
	rfx_prepare(&r, x->env);
	assert_false(r.rec.want);
	r.src.seal = TS_STORE_SEALED;
	rfx_prepare(&r, x->env);
	assert_true(r.rec.want);
	restore_record_free(&r.rec);
	ts_err_clear(&e);
	assert_int_not_equal(restore_record_make(&r.rec, &r.src, r.snapfd, 5, &r.out, &e), TS_OK);
	assert_string_equal(r.out.recorded, "");
	assert_int_equal(count_records(x), 0);
	sfx_store_clean_and_unlocked(x);
	rfx_close(&r);
}

/* 3. A stored copy changed since the restore read it (its content
 * rewritten, the mtime put back): never linked; the record fails naming
 * it, and nothing of it is left in the store. */
static void test_damaged_copy_no_record(void **state)
{
	fx *x = *state;
	rfx r;
	char path[TBUF];
	struct stat st;
	ts_snap_stats one;
	ts_err e;

	sfx_take_ok(x, "one", &one);
	rfx_open(x, &r);
	rfx_prepare(&r, x->env);
	assert_true(r.rec.want);
	tu_tree_path(x->store, "one", "htdocs/a.txt", path, sizeof path);
	assert_int_equal(lstat(path, &st), 0);
	tu_put_bytes(path, "HELLO\n", 6, st.st_mode & 07777);
	{
		struct timespec t[2] = { st.st_atim, st.st_mtim };
		assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
	}
	ts_err_clear(&e);
	assert_int_equal(restore_record_make(&r.rec, &r.src, r.snapfd, 5, &r.out, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "one/htdocs/a.txt: stored copy damaged (content)"));
	assert_string_equal(r.out.recorded, "");
	assert_int_equal(count_records(x), 0);
	sfx_store_clean_and_unlocked(x);
	rfx_close(&r);
}

/* 4. What ENV's owner changes after the exchange keeps no recorded
 * identity: the next take copies it, and shares the rest. */
static void test_changed_after_exchange_is_copied(void **state)
{
	fx *x = *state;
	rfx r;
	ts_snap_stats one, two;
	struct stat a, b;
	ts_err e;

	sfx_take_ok(x, "one", &one);
	rfx_open(x, &r);
	rfx_prepare(&r, x->env);
	ts_err_clear(&e);
	if (restore_record_make(&r.rec, &r.src, r.snapfd, 5, &r.out, &e) != TS_OK)
		fail_msg("restore_record_make: %s", e.msg);
	rfx_swap(x, &r);
	/* Same size, the mtime put back: only the ctime tells. */
	{
		char path[TBUF];
		tu_fmt(path, sizeof path, "%s/htdocs/a.txt", x->env);
		assert_int_equal(lstat(path, &a), 0);
		tu_put_bytes(path, "HELLO\n", 6, a.st_mode & 07777);
		struct timespec t[2] = { a.st_atim, a.st_mtim };
		assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
	}
	sfx_take_ok(x, "two", &two);
	assert_int_equal(two.files_shared, one.files - 2);   /* not the database, not a.txt */
	sfx_snap_text_is(x, "two", "htdocs/a.txt", "HELLO\n");
	sfx_snap_file(x, "one", "htdocs/a.txt", &a);
	sfx_snap_file(x, "two", "htdocs/a.txt", &b);
	assert_int_not_equal(a.st_ino, b.st_ino);
	sfx_snap_file(x, "one", "htdocs/site.css", &a);
	sfx_snap_file(x, "two", "htdocs/site.css", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	rfx_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_record_then_take_shares, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_no_record_unless_vouched, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_copy_no_record, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_changed_after_exchange_is_copied, sfx_setup, sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
