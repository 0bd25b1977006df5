/* test_manifest_stat.c - a manifest entry against a struct stat: the
 * conversions and the comparisons (store/manifest_stat.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/stat.h>

#include "store/manifest_stat.h"

static struct stat file_stat(void)
{
	struct stat st;

	memset(&st, 0, sizeof st);
	st.st_dev = 9;
	st.st_ino = 4242;
	st.st_mode = S_IFREG | 04640;
	st.st_uid = 1234;
	st.st_gid = 5678;
	st.st_size = 100;
	st.st_nlink = 3;
	st.st_mtim = (struct timespec){ 1600000000, 123456789 };
	st.st_ctim = (struct timespec){ 1600000001, 5 };
	st.st_atim = (struct timespec){ 1700000000, 7 };
	return st;
}

static ts_manifest_entry entry_of(char type, const struct stat *st)
{
	ts_manifest_entry me;

	memset(&me, 0, sizeof me);
	me.type = type;
	ts_manifest_entry_set_meta(&me, st);
	ts_manifest_entry_set_source(&me, st);
	return me;
}

static void test_type_of(void **state)
{
	(void)state;
	assert_int_equal(ts_manifest_type_of(S_IFDIR | 0755), 'd');
	assert_int_equal(ts_manifest_type_of(S_IFREG | 0644), 'f');
	assert_int_equal(ts_manifest_type_of(S_IFLNK | 0777), 'l');
	assert_int_equal(ts_manifest_type_of(S_IFIFO | 0644), 0);
	assert_int_equal(ts_manifest_type_of(S_IFSOCK | 0644), 0);
	assert_int_equal(ts_manifest_type_of(S_IFCHR | 0644), 0);
}

/* The store copy's identity: for a regular file only. */
static void test_set_store(void **state)
{
	struct stat st = file_stat();
	ts_manifest_entry me = entry_of('f', &st), md = entry_of('d', &st);

	(void)state;
	st.st_ino = 77;
	st.st_ctim.tv_sec = 1700000000;
	st.st_ctim.tv_nsec = 3;
	ts_manifest_entry_set_store(&me, &st);
	ts_manifest_entry_set_store(&md, &st);
	assert_true(me.store_ino == 77);
	assert_int_equal(me.store_ctime.tv_sec, 1700000000);
	assert_int_equal(me.store_ctime.tv_nsec, 3);
	assert_true(me.src_ino == 4242);   /* the source's stays */
	assert_true(md.store_ino == 0);
	assert_int_equal(md.store_ctime.tv_sec, 0);
}

/* stat -> entry -> stat keeps what a manifest records, nothing else. */
static void test_round_trip(void **state)
{
	struct stat st = file_stat(), back;
	ts_manifest_entry me = entry_of('f', &st);

	(void)state;
	assert_int_equal(me.mode, 04640);
	assert_int_equal(me.uid, 1234);
	assert_int_equal(me.gid, 5678);
	assert_true(me.size == 100);
	assert_true(me.src_ino == 4242);
	assert_int_equal(me.mtime.tv_nsec, 123456789);
	assert_int_equal(me.src_ctime.tv_sec, 1600000001);
	ts_manifest_entry_to_stat(&me, &back);
	assert_int_equal(back.st_mode, S_IFREG | 04640);
	assert_int_equal(back.st_ino, 4242);
	assert_int_equal(back.st_uid, 1234);
	assert_int_equal(back.st_gid, 5678);
	assert_int_equal(back.st_size, 100);
	assert_int_equal(back.st_mtim.tv_sec, 1600000000);
	assert_int_equal(back.st_mtim.tv_nsec, 123456789);
	assert_int_equal(back.st_ctim.tv_sec, 1600000001);
	assert_int_equal(back.st_ctim.tv_nsec, 5);
	assert_int_equal(back.st_dev, 0);
	assert_int_equal(back.st_nlink, 0);
	assert_int_equal(back.st_atim.tv_sec, 0);

	/* A directory records no size; a symlink its type. */
	st.st_mode = S_IFDIR | 0755;
	me = entry_of('d', &st);
	assert_true(me.size == 0);
	ts_manifest_entry_to_stat(&me, &back);
	assert_true(S_ISDIR(back.st_mode));
	st.st_mode = S_IFLNK | 0777;
	me = entry_of('l', &st);
	ts_manifest_entry_to_stat(&me, &back);
	assert_true(S_ISLNK(back.st_mode));
	assert_int_equal(back.st_size, 100);
}

/* Each field on its own. */
static void test_diff(void **state)
{
	struct stat st = file_stat(), c;
	ts_manifest_entry me = entry_of('f', &st);

	(void)state;
	assert_int_equal(ts_manifest_entry_diff(&me, &st), 0);
	c = st; c.st_mode = S_IFLNK | 04640;  assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_TYPE);
	c = st; c.st_mode ^= 01;              assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_MODE);
	c = st; c.st_uid++;                   assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_OWNER);
	c = st; c.st_gid++;                   assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_OWNER);
	c = st; c.st_size++;                  assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_SIZE);
	c = st; c.st_mtim.tv_nsec ^= 1;       assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_MTIME);
	c = st; c.st_mtim.tv_sec++;           assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_MTIME);
	/* Kept to the second (dump/restore): only the fraction gone. */
	assert_true(st.st_mtim.tv_nsec != 0);
	c = st; c.st_mtim.tv_nsec = 0;        assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_MTIME_SEC);
	c = st; c.st_mtim.tv_sec++; c.st_mtim.tv_nsec = 0;
	assert_int_equal(ts_manifest_entry_diff(&me, &c), TS_MDIFF_MTIME);
	/* Not recorded of the copy: inode, ctime, atime, links, device. */
	c = st; c.st_ino++; c.st_ctim.tv_sec++; c.st_atim.tv_sec++; c.st_nlink++; c.st_dev++;
	assert_int_equal(ts_manifest_entry_diff(&me, &c), 0);

	/* A symlink's mode and a directory's size are never compared. */
	st.st_mode = S_IFLNK | 0777;
	me = entry_of('l', &st);
	c = st; c.st_mode = S_IFLNK | 0755;   assert_int_equal(ts_manifest_entry_diff(&me, &c), 0);
	st.st_mode = S_IFDIR | 0755;
	me = entry_of('d', &st);
	c = st; c.st_size = 4096;             assert_int_equal(ts_manifest_entry_diff(&me, &c), 0);
}

static void test_copy_matches(void **state)
{
	struct stat st = file_stat(), c;
	ts_manifest_entry me = entry_of('f', &st);

	(void)state;
	assert_true(ts_manifest_copy_matches(&me, &st, true));
	c = st; c.st_ino++; c.st_ctim.tv_sec++; assert_true(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_size--;                    assert_false(ts_manifest_copy_matches(&me, &c, false));
	c = st; c.st_mode ^= 02;                assert_false(ts_manifest_copy_matches(&me, &c, false));
	c = st; c.st_mtim.tv_nsec++;            assert_false(ts_manifest_copy_matches(&me, &c, false));
	c = st; c.st_mtim.tv_nsec = 0;          assert_false(ts_manifest_copy_matches(&me, &c, false));
	c = st; c.st_mode = S_IFDIR | 04640;    assert_false(ts_manifest_copy_matches(&me, &c, false));
	/* Owners: only when they can be kept (root). */
	c = st; c.st_uid = 0;
	assert_false(ts_manifest_copy_matches(&me, &c, true));
	assert_true(ts_manifest_copy_matches(&me, &c, false));

	/* A symlink: type and target length only. */
	st.st_mode = S_IFLNK | 0777;
	me = entry_of('l', &st);
	c = st; c.st_uid = 0; c.st_mtim.tv_sec = 1;
	assert_true(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_size = 3;                  assert_false(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_mode = S_IFREG | 0777;     assert_false(ts_manifest_copy_matches(&me, &c, true));

	/* A directory: its size says nothing, the rest as a file's. */
	st.st_mode = S_IFDIR | 0755;
	me = entry_of('d', &st);
	c = st; c.st_size = 4096;               assert_true(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_mtim.tv_sec++;             assert_false(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_mode ^= 0022;              assert_false(ts_manifest_copy_matches(&me, &c, true));
	c = st; c.st_gid++;                     assert_false(ts_manifest_copy_matches(&me, &c, true));
	assert_true(ts_manifest_copy_matches(&me, &c, false));
}

static void test_same_source(void **state)
{
	struct stat st = file_stat(), c;
	ts_manifest_entry me = entry_of('f', &st);

	(void)state;
	assert_true(ts_manifest_same_source(&me, &st));
	c = st; c.st_atim.tv_sec++; c.st_nlink++; assert_true(ts_manifest_same_source(&me, &c));
	c = st; c.st_ino++;                     assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_ctim.tv_nsec++;            assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mtim.tv_sec--;             assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mtim.tv_nsec = 0;          assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_size++;                    assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mode ^= 04000;             assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_uid++;                     assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mode = S_IFLNK | 04640;    assert_false(ts_manifest_same_source(&me, &c));

	/* A directory: identity and times (its ctime moves with its mode). */
	st.st_mode = S_IFDIR | 0755;
	me = entry_of('d', &st);
	c = st; c.st_size = 8192;               assert_true(ts_manifest_same_source(&me, &c));
	c = st; c.st_ctim.tv_sec++;             assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mtim.tv_nsec++;            assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_ino++;                     assert_false(ts_manifest_same_source(&me, &c));
	c = st; c.st_mode = S_IFREG | 0755;     assert_false(ts_manifest_same_source(&me, &c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_of),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_set_store),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_copy_matches),
		cmocka_unit_test(test_same_source),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
