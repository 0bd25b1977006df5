/* test_snap_item.c - what a take's item keeps (take/snap_int.h): a
 * directory's atime and a file's copy identity in the same place, each
 * kept for its own type and dropped when the type changes; a content hash
 * after the path, where the path was made with room for one, and a path of
 * the item's own when it was not, the old one left intact. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/stat.h>

#include "take/snap_int.h"

static struct stat some_stat(mode_t mode)
{
	struct stat st;

	memset(&st, 0, sizeof st);
	st.st_dev = 7;
	st.st_ino = 4242;
	st.st_size = 123;
	st.st_mode = mode;
	st.st_uid = 1000;
	st.st_gid = 1001;
	st.st_atim = (struct timespec){ 1600000000, 11 };
	st.st_mtim = (struct timespec){ 1700000000, 22 };
	st.st_ctim = (struct timespec){ 1700000001, 33 };
	return st;
}

static void assert_same_kept(const struct stat *a, const struct stat *b)
{
	assert_true(a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size);
	assert_true(a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid);
	assert_true(a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec);
	assert_true(a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec);
}

/* A directory's atime comes back (snap_dir_meta gives it to the copy). */
static void test_dir_keeps_atime(void **state)
{
	struct stat st = some_stat(S_IFDIR | 0755), back;
	snap_item it = { .rel = "d", .type = 'd' };

	(void)state;
	snap_item_stat_set(&it, &st);
	snap_item_stat_get(&it, &back);
	assert_same_kept(&st, &back);
	assert_int_equal(back.st_atim.tv_sec, 1600000000);
	assert_int_equal(back.st_atim.tv_nsec, 11);
}

/* A file's stat leaves its copy's identity alone, and has no atime. */
static void test_file_keeps_identity(void **state)
{
	struct stat st = some_stat(S_IFREG | 0644), back;
	snap_item it = { .rel = "f", .type = 'f' };

	(void)state;
	it.store_ino = 99;
	it.store_ctime = (struct timespec){ 5, 6 };
	snap_item_stat_set(&it, &st);
	assert_int_equal(it.store_ino, 99);
	assert_int_equal(it.store_ctime.tv_sec, 5);
	assert_int_equal(it.store_ctime.tv_nsec, 6);
	snap_item_stat_get(&it, &back);
	assert_same_kept(&st, &back);
	assert_int_equal(back.st_atim.tv_sec, 0);
	assert_int_equal(back.st_atim.tv_nsec, 0);
}

/* A file that became a directory: no identity, no hash left of the file. */
static void test_retype(void **state)
{
	static const unsigned char zero[32];
	unsigned char sha[32];
	char rel[64] = "x";
	snap_item it = { .rel = rel, .type = 'f', .borrowed = true, .sha_room = true };
	struct stat st = some_stat(S_IFDIR | 0700), back;

	(void)state;
	memset(sha, 0xab, sizeof sha);
	it.store_ino = 99;
	it.store_ctime = (struct timespec){ 5, 6 };
	assert_true(snap_item_set_sha(&it, sha));
	snap_item_retype(&it, 'd');
	assert_int_equal(it.type, 'd');
	assert_memory_equal(snap_item_sha(&it), zero, 32);
	assert_int_equal(it.store_ino, 0);
	assert_int_equal(it.store_ctime.tv_sec, 0);
	snap_item_stat_set(&it, &st);
	snap_item_stat_get(&it, &back);
	assert_int_equal(back.st_atim.tv_sec, 1600000000);
	snap_item_retype(&it, 'f');
	assert_int_equal(it.store_ino, 0);
	assert_int_equal(it.store_ctime.tv_sec, 0);
	assert_int_equal(it.store_ctime.tv_nsec, 0);
}

/* Paths made with room hold a hash each without touching their
 * neighbours; one made without gets none until it is set. */
static void test_sha_in_room(void **state)
{
	static const unsigned char zero[32];
	snap_paths p = { 0 };
	unsigned char a[32], b[32];
	snap_item x = { .type = 'f', .borrowed = true, .sha_room = true };
	snap_item y = { .type = 'l', .borrowed = true, .sha_room = true };
	snap_item z = { .type = 'd', .borrowed = true };

	(void)state;
	memset(a, 0x11, sizeof a);
	memset(b, 0xee, sizeof b);
	x.rel = snap_paths_dup(&p, "files/one", snap_sha_room('f', true));
	y.rel = snap_paths_dup(&p, "link", snap_sha_room('l', false));
	z.rel = snap_paths_dup(&p, "dir", snap_sha_room('d', true));
	assert_non_null(x.rel);
	assert_non_null(y.rel);
	assert_non_null(z.rel);
	assert_int_equal(snap_sha_room('f', false), 0);
	assert_int_equal(snap_sha_room('d', true), 0);
	assert_memory_equal(snap_item_sha(&x), zero, 32);   /* none set yet */
	char *xrel = x.rel;
	assert_true(snap_item_set_sha(&x, a));
	assert_true(snap_item_set_sha(&y, b));
	assert_ptr_equal(x.rel, xrel);   /* in its room: the same path */
	assert_true(x.borrowed);
	assert_string_equal(x.rel, "files/one");
	assert_string_equal(y.rel, "link");
	assert_string_equal(z.rel, "dir");
	assert_memory_equal(snap_item_sha(&x), a, 32);
	assert_memory_equal(snap_item_sha(&y), b, 32);
	snap_item_clear_sha(&x);
	assert_memory_equal(snap_item_sha(&x), zero, 32);
	assert_memory_equal(snap_item_sha(&y), b, 32);
	snap_paths_free(&p);
}

/* A path made without room (a file the first walk met, a symlink by the
 * time it is copied): the item gets a path of its own, owned by the list,
 * and the old one stays as it was for whoever still compares it. */
static void test_sha_without_room(void **state)
{
	snap_paths p = { 0 };
	snap_list l = { 0 };
	unsigned char a[32];
	snap_item it = { .type = 'f', .borrowed = true };
	ts_err e;

	(void)state;
	memset(a, 0x5a, sizeof a);
	it.rel = snap_paths_dup(&p, "was/a/file", snap_sha_room('f', false));
	char *old = it.rel;
	char *next = snap_paths_dup(&p, "next", 0);
	assert_non_null(old);
	assert_non_null(next);
	assert_int_equal(snap_list_push(&l, &it, &e), TS_OK);
	snap_item_retype(&l.v[0], 'l');
	assert_true(snap_item_set_sha(&l.v[0], a));
	assert_ptr_not_equal(l.v[0].rel, old);
	assert_false(l.v[0].borrowed);
	assert_true(l.v[0].sha_room);
	assert_string_equal(l.v[0].rel, "was/a/file");
	assert_string_equal(old, "was/a/file");
	assert_string_equal(next, "next");
	assert_memory_equal(snap_item_sha(&l.v[0]), a, 32);
	/* Set again: in the room it has now. */
	char *own = l.v[0].rel;
	a[0] = 0;
	assert_true(snap_item_set_sha(&l.v[0], a));
	assert_ptr_equal(l.v[0].rel, own);
	assert_memory_equal(snap_item_sha(&l.v[0]), a, 32);
	snap_list_free(&l);   /* frees the owned path (the sanitizer build checks) */
	snap_paths_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dir_keeps_atime),
		cmocka_unit_test(test_file_keeps_identity),
		cmocka_unit_test(test_retype),
		cmocka_unit_test(test_sha_in_room),
		cmocka_unit_test(test_sha_without_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
