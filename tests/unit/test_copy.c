/* test_copy.c - copying one entry (file, symlink, directory metadata) into a
 * snapshot tree, hashing, removal, stat comparison. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "base/copy.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)

/* TOP/src is the "environment", TOP/dst the snapshot tree. */
typedef struct fx {
	char top[PATH_MAX];
	char src[TBUF];
	char dst[TBUF];
	int sfd, dfd;
} fx;

static int setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	tu_tmpdir("copy", x->top);
	tu_fmt(x->src, sizeof(x->src), "%s/src", x->top);
	tu_fmt(x->dst, sizeof(x->dst), "%s/dst", x->top);
	assert_int_equal(mkdir(x->src, 0755), 0);
	assert_int_equal(mkdir(x->dst, 0755), 0);
	x->sfd = open(x->src, O_RDONLY | O_DIRECTORY);
	x->dfd = open(x->dst, O_RDONLY | O_DIRECTORY);
	assert_true(x->sfd >= 0 && x->dfd >= 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	close(x->sfd);
	close(x->dfd);
	tu_rm_rf(x->top);
	free(x);
	ts_copy_thread_done();
	return 0;
}

static void set_mtime(int dirfd, const char *rel, time_t sec, long nsec, int flags)
{
	struct timespec ts[2] = { { 1000000000, 7 }, { sec, nsec } };

	assert_int_equal(utimensat(dirfd, rel, ts, flags), 0);
}

/* Same content, mode, owner and mtime. */
static void same_file(fx *x, const char *rel)
{
	struct stat a, b;
	unsigned char *ca, *cb;
	size_t la, lb;

	assert_int_equal(fstatat(x->sfd, rel, &a, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fstatat(x->dfd, rel, &b, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(b.st_mode));
	if ((a.st_mode & 07777) != (b.st_mode & 07777))
		fail_msg("%s: mode %04o, want %04o", rel, (unsigned)(b.st_mode & 07777),
		         (unsigned)(a.st_mode & 07777));
	assert_int_equal(a.st_uid, b.st_uid);
	assert_int_equal(a.st_gid, b.st_gid);
	assert_int_equal(a.st_size, b.st_size);
	assert_int_equal(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
	assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
	assert_int_not_equal(a.st_ino, b.st_ino);
	ca = tu_slurp_at(x->sfd, rel, &la);
	cb = tu_slurp_at(x->dfd, rel, &lb);
	assert_int_equal(la, lb);
	if (la)
		assert_memory_equal(ca, cb, la);
	free(ca);
	free(cb);
}

static void copy_ok(fx *x, const char *rel, unsigned flags, ts_copy_out *out)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_copy_file(x->sfd, x->dfd, rel, flags, x->src, out, &e) != TS_OK)
		fail_msg("ts_copy_file %s: %s", rel, e.msg);
}

/* The copy of rel hashes to want (the snapshot hashes copies afterwards,
 * ts_copy_hash_file, never on the way). */
static void copy_hashes_to(fx *x, const char *rel, const unsigned char want[32])
{
	unsigned char got[32];
	uint64_t size;
	ts_err e;

	ts_err_clear(&e);
	if (ts_copy_hash_file(x->dfd, rel, false, got, &size, &e) != TS_OK)
		fail_msg("ts_copy_hash_file %s: %s", rel, e.msg);
	assert_memory_equal(got, want, 32);
}


static void spath(const fx *x, const char *rel, char *buf, size_t size)
{
	tu_fmt(buf, size, "%s/%s", x->src, rel);
}

static void dpath(const fx *x, const char *rel, char *buf, size_t size)
{
	tu_fmt(buf, size, "%s/%s", x->dst, rel);
}

static void has_xattr(const char *path, const char *name, const void *val, size_t len)
{
	char buf[256];
	ssize_t n = lgetxattr(path, name, buf, sizeof(buf));

	if (n < 0)
		fail_msg("%s: no xattr %s: %s", path, name, strerror(errno));
	assert_int_equal(n, (ssize_t)len);
	if (len)
		assert_memory_equal(buf, val, len);
}

static void sha_of(const void *data, size_t len, unsigned char out[32])
{
	SHA256(data, len, out);
}

/* ---- ts_copy_file ---------------------------------------------------------- */

static void test_copy_file(void **state)
{
	fx *x = *state;
	size_t len = 3 * 256 * 1024 + 1234; /* more than one buffer */
	unsigned char *data = tu_pattern(len, 1), want[32];
	static const unsigned char bin[] = { 0, 1, 2, 0xff, '\n', 0 };
	ts_copy_out out;
	struct stat st;
	char sp[TBUF], dp[TBUF];

	tu_put_bytes_at(x->sfd, "f", data, len, 0640);
	assert_int_equal(fchownat(x->sfd, "f", 1234, 5678, 0), 0);
	assert_int_equal(fchmodat(x->sfd, "f", 0640, 0), 0);
	spath(x, "f", sp, sizeof(sp));
	dpath(x, "f", dp, sizeof(dp));
	assert_int_equal(setxattr(sp, "user.a", "hello", 5, 0), 0);
	assert_int_equal(setxattr(sp, "user.bin", bin, sizeof(bin), 0), 0);
	assert_int_equal(setxattr(sp, "user.empty", "", 0, 0), 0);
	set_mtime(x->sfd, "f", 1234567890, 123456789, 0);
	assert_int_equal(stat(sp, &st), 0);

	memset(&out, 0x5a, sizeof(out));
	copy_ok(x, "f", 0, &out);
	same_file(x, "f");
	has_xattr(dp, "user.a", "hello", 5);
	has_xattr(dp, "user.bin", bin, sizeof(bin));
	has_xattr(dp, "user.empty", "", 0);
	sha_of(data, len, want);
	copy_hashes_to(x, "f", want);
	assert_true(out.bytes == len);
	assert_false(out.changed);
	assert_int_equal(out.st.st_ino, st.st_ino);
	assert_int_equal(out.st.st_size, (off_t)len);
	assert_int_equal(out.st.st_uid, 1234);
	assert_true(S_ISREG(out.st.st_mode));
	assert_int_equal(out.st.st_mtim.tv_nsec, 123456789);
	/* The source is untouched. */
	{
		struct stat again;

		assert_int_equal(stat(sp, &again), 0);
		assert_int_equal(again.st_mtim.tv_sec, 1234567890);
		assert_int_equal(again.st_mtim.tv_nsec, 123456789);
		assert_int_equal(again.st_ctim.tv_nsec, st.st_ctim.tv_nsec);
	}
	free(data);

	/* A path a few directories down, with a space and odd bytes. */
	assert_int_equal(mkdirat(x->sfd, "a", 0755), 0);
	assert_int_equal(mkdirat(x->sfd, "a/b c", 0755), 0);
	assert_int_equal(mkdirat(x->dfd, "a", 0755), 0);
	assert_int_equal(mkdirat(x->dfd, "a/b c", 0755), 0);
	tu_put_bytes_at(x->sfd, "a/b c/\xc3\xa9t\xe9 \t.txt", "nested\n", 7, 0644);
	copy_ok(x, "a/b c/\xc3\xa9t\xe9 \t.txt", 0, &out);
	same_file(x, "a/b c/\xc3\xa9t\xe9 \t.txt");
	sha_of("nested\n", 7, want);
	copy_hashes_to(x, "a/b c/\xc3\xa9t\xe9 \t.txt", want);
	assert_true(out.bytes == 7);
}

static void test_copy_file_modes(void **state)
{
	fx *x = *state;
	static const mode_t modes[] = { 0600, 04755, 02750, 06711, 01644, 0444, 0000, 0777 };
	char rel[32];
	size_t i;
	ts_copy_out out;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		tu_fmt(rel, sizeof(rel), "m%04o", (unsigned)modes[i]);
		tu_put_bytes_at(x->sfd, rel, rel, strlen(rel), 0600);
		/* chown first: it clears set-id bits. */
		assert_int_equal(fchownat(x->sfd, rel, 1234, 5678, 0), 0);
		assert_int_equal(fchmodat(x->sfd, rel, modes[i], 0), 0);
		set_mtime(x->sfd, rel, 1500000000 + (time_t)i, (long)i * 1000 + 1, 0);
		copy_ok(x, rel, 0, &out);
		same_file(x, rel);
		assert_int_equal(out.st.st_mode & 07777, modes[i]);
	}
	/* Owned by root, setuid. */
	tu_put_bytes_at(x->sfd, "rootsuid", "x", 1, 04755);
	copy_ok(x, "rootsuid", 0, &out);
	same_file(x, "rootsuid");
}

/* The destination must not exist: never overwritten, never written through. */
static void test_copy_file_dest_exists(void **state)
{
	fx *x = *state;
	ts_copy_out out;
	ts_err e;
	ts_err_code rc;
	unsigned char *c;
	size_t len;

	tu_put_bytes_at(x->sfd, "f", "new content", 11, 0644);
	tu_put_bytes_at(x->dfd, "f", "old", 3, 0600);
	ts_err_clear(&e);
	rc = ts_copy_file(x->sfd, x->dfd, "f", 0, x->src, &out, &e);
	assert_int_not_equal(rc, TS_OK);
	assert_int_equal(e.code, rc);
	assert_true(e.msg[0] != '\0');
	c = tu_slurp_at(x->dfd, "f", &len);
	assert_int_equal(len, 3);
	assert_memory_equal(c, "old", 3);
	free(c);

	/* A symlink in its place is not followed. */
	tu_put_bytes_at(x->dfd, "victim", "victim", 6, 0644);
	assert_int_equal(symlinkat("victim", x->dfd, "g"), 0);
	tu_put_bytes_at(x->sfd, "g", "new content", 11, 0644);
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_file(x->sfd, x->dfd, "g", 0, x->src, &out, &e), TS_OK);
	c = tu_slurp_at(x->dfd, "victim", &len);
	assert_int_equal(len, 6);
	assert_memory_equal(c, "victim", 6);
	free(c);
}

static void copy_notfound(fx *x, const char *rel)
{
	ts_copy_out out;
	ts_err e;
	ts_err_code rc;

	ts_err_clear(&e);
	rc = ts_copy_file(x->sfd, x->dfd, rel, 0, x->src, &out, &e);
	if (rc != TS_ERR_NOTFOUND)
		fail_msg("%s: got %s '%s', want notfound", rel, ts_err_name(rc), e.msg);
	assert_int_equal(e.code, TS_ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, rel));
	assert_false(tu_exists_at(x->dfd, rel));
}

static void test_copy_file_notfound(void **state)
{
	fx *x = *state;
	ts_copy_out out;
	ts_err e;
	struct timespec t0, t1;

	copy_notfound(x, "missing");
	assert_int_equal(mkdirat(x->dfd, "nodir", 0755), 0);
	copy_notfound(x, "nodir/missing");

	/* A file that vanishes after the walk. */
	tu_put_bytes_at(x->sfd, "vanishing", "v", 1, 0644);
	assert_int_equal(unlinkat(x->sfd, "vanishing", 0), 0);
	copy_notfound(x, "vanishing");

	/* A symlink in place of the file: never followed. */
	tu_put_bytes_at(x->sfd, "target", "secret", 6, 0600);
	assert_int_equal(symlinkat("target", x->sfd, "link"), 0);
	copy_notfound(x, "link");
	assert_int_equal(symlinkat("/etc/passwd", x->sfd, "abslink"), 0);
	copy_notfound(x, "abslink");
	assert_int_equal(symlinkat("nowhere", x->sfd, "dangling"), 0);
	copy_notfound(x, "dangling");

	/* Not a regular file any more: a FIFO (must not block) or a directory. */
	assert_int_equal(mkfifoat(x->sfd, "fifo", 0644), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_file(x->sfd, x->dfd, "fifo", 0, x->src, &out, &e), TS_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_false(tu_exists_at(x->dfd, "fifo"));
	assert_int_equal(mkdirat(x->sfd, "dir", 0755), 0);
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_file(x->sfd, x->dfd, "dir", 0, x->src, &out, &e), TS_OK);
	assert_false(tu_exists_at(x->dfd, "dir"));
}

static void test_copy_file_quiet_empty(void **state)
{
	fx *x = *state;
	ts_copy_out out;
	unsigned char want[32];

	tu_put_bytes_at(x->sfd, "empty", "", 0, 0644);
	copy_ok(x, "empty", 0, &out);
	same_file(x, "empty");
	assert_true(out.bytes == 0);
	assert_false(out.changed);
	sha_of("", 0, want);
	copy_hashes_to(x, "empty", want);

	tu_put_bytes_at(x->sfd, "quiet", "quiet file\n", 11, 0644);
	set_mtime(x->sfd, "quiet", 1400000000, 0, 0);
	copy_ok(x, "quiet", 0, &out);
	assert_false(out.changed);
	assert_true(out.bytes == 11);
}

/* Owner, mode, xattrs and mtime of a file bigger than one buffer. */
static void test_copy_file_meta(void **state)
{
	fx *x = *state;
	size_t len = 600 * 1024 + 3;
	unsigned char *data = tu_pattern(len, 7);
	ts_copy_out out;
	char sp[TBUF], dp[TBUF];

	tu_put_bytes_at(x->sfd, "f", data, len, 0604);
	assert_int_equal(fchownat(x->sfd, "f", 1234, 5678, 0), 0);
	spath(x, "f", sp, sizeof(sp));
	dpath(x, "f", dp, sizeof(dp));
	assert_int_equal(setxattr(sp, "user.k", "v", 1, 0), 0);
	set_mtime(x->sfd, "f", 1600000000, 999999999, 0);
	copy_ok(x, "f", 0, &out);
	same_file(x, "f");
	has_xattr(dp, "user.k", "v", 1);
	assert_true(out.bytes == len);
	assert_false(out.changed);
	free(data);
}

/* How many of this process's descriptors are open on the file whose stat
 * is st. */
static int fds_on(const struct stat *st)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		struct stat fst;
		int fd = atoi(de->d_name);
		if (de->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &fst) < 0)
			continue;
		n += fst.st_dev == st->st_dev && fst.st_ino == st->st_ino;
	}
	closedir(d);
	return n;
}

/* TS_COPY_BOUNDED (copies beyond the dirty budget, next to a live database):
 * a file of several 2 MiB chunks comes out whole, with its metadata, and the
 * path really ran: its last step, the copy's writeback left pending on this
 * thread (an open descriptor on the copy) until the next bounded copy or
 * ts_copy_thread_done; an unbounded copy leaves nothing open. */
static void test_copy_file_bounded(void **state)
{
	fx *x = *state;
	size_t len = 3 * (2u << 20) + 4321;   /* more than copy.c's COPY_CHUNK, not a multiple */
	unsigned char *data = tu_pattern(len, 11), want[32];
	ts_copy_out out;
	struct stat big, small, plain;

	tu_put_bytes_at(x->sfd, "big", data, len, 0640);
	assert_int_equal(fchownat(x->sfd, "big", 1234, 5678, 0), 0);
	assert_int_equal(fchmodat(x->sfd, "big", 02640, 0), 0);
	set_mtime(x->sfd, "big", 1600000000, 5, 0);
	copy_ok(x, "big", TS_COPY_BOUNDED, &out);
	same_file(x, "big");
	sha_of(data, len, want);
	copy_hashes_to(x, "big", want);
	assert_true(out.bytes == len);
	assert_false(out.changed);
	assert_int_equal(out.st.st_mode & 07777, 02640);
	assert_int_equal(fstatat(x->dfd, "big", &big, AT_SYMLINK_NOFOLLOW), 0);
	if (out.reflinked)
		skip();   /* a clone writes nothing: no writeback to bound */
	assert_int_equal(fds_on(&big), 1);

	/* The next bounded copy waits for the previous one's writeback. */
	tu_put_bytes_at(x->sfd, "small", "small", 5, 0600);
	copy_ok(x, "small", TS_COPY_BOUNDED, &out);
	same_file(x, "small");
	assert_int_equal(fstatat(x->dfd, "small", &small, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fds_on(&big), 0);
	assert_int_equal(fds_on(&small), 1);
	ts_copy_thread_done();
	assert_int_equal(fds_on(&small), 0);

	/* Unbounded: nothing is left in flight. */
	tu_put_bytes_at(x->sfd, "plain", data, len, 0644);
	copy_ok(x, "plain", 0, &out);
	same_file(x, "plain");
	assert_int_equal(fstatat(x->dfd, "plain", &plain, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fds_on(&plain), 0);
	free(data);
}

/* ---- ts_copy_symlink --------------------------------------------------------- */

static void test_copy_symlink(void **state)
{
	fx *x = *state;
	char longt[1201];
	const char *targets[] = {
		"/etc/passwd", "/", "../outside/x", "no-such-target", "sub/dir/", "a b\tc", longt,
	};
	size_t i;
	char rel[32], buf[PATH_MAX];
	ts_copy_out out;
	unsigned char want[32];
	struct stat a, b;
	ts_err e;
	ssize_t n;

	memset(longt, 'q', sizeof(longt) - 1);
	longt[sizeof(longt) - 1] = '\0';
	for (i = 0; i < 400; i += 20)
		longt[i] = '/';
	for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		tu_fmt(rel, sizeof(rel), "l%zu", i);
		assert_int_equal(symlinkat(targets[i], x->sfd, rel), 0);
		assert_int_equal(fchownat(x->sfd, rel, 1234 + (uid_t)i, 5678, AT_SYMLINK_NOFOLLOW), 0);
		set_mtime(x->sfd, rel, 1300000000 + (time_t)i, 42 + (long)i, AT_SYMLINK_NOFOLLOW);
		ts_err_clear(&e);
		if (ts_copy_symlink(x->sfd, x->dfd, rel, x->src, &out, &e) != TS_OK)
			fail_msg("%s -> %s: %s", rel, targets[i], e.msg);
		assert_int_equal(fstatat(x->dfd, rel, &b, AT_SYMLINK_NOFOLLOW), 0);
		assert_true(S_ISLNK(b.st_mode));
		n = readlinkat(x->dfd, rel, buf, sizeof(buf));
		assert_int_equal(n, (ssize_t)strlen(targets[i]));
		assert_memory_equal(buf, targets[i], (size_t)n);
		assert_int_equal(fstatat(x->sfd, rel, &a, AT_SYMLINK_NOFOLLOW), 0);
		assert_int_equal(b.st_uid, 1234 + (uid_t)i);
		assert_int_equal(b.st_gid, 5678);
		assert_int_equal(b.st_mtim.tv_sec, a.st_mtim.tv_sec);
		assert_int_equal(b.st_mtim.tv_nsec, a.st_mtim.tv_nsec);
		sha_of(targets[i], strlen(targets[i]), want);
		assert_memory_equal(out.sha256, want, 32);
		assert_true(S_ISLNK(out.st.st_mode));
		assert_int_equal(out.st.st_ino, a.st_ino);
		assert_int_equal(out.st.st_size, (off_t)strlen(targets[i]));
	}
	/* A link to a directory stays a link; nothing was made at the target. */
	assert_int_equal(mkdirat(x->sfd, "realdir", 0755), 0);
	assert_int_equal(symlinkat("realdir", x->sfd, "dirlink"), 0);
	ts_err_clear(&e);
	assert_int_equal(ts_copy_symlink(x->sfd, x->dfd, "dirlink", x->src, &out, &e), TS_OK);
	assert_int_equal(fstatat(x->dfd, "dirlink", &b, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(b.st_mode));
	assert_false(tu_exists_at(x->dfd, "realdir"));

	/* Existing destination, missing source, not a symlink. */
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_symlink(x->sfd, x->dfd, "l0", x->src, &out, &e), TS_OK);
	n = readlinkat(x->dfd, "l0", buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)strlen(targets[0]));
	ts_err_clear(&e);
	assert_int_equal(ts_copy_symlink(x->sfd, x->dfd, "gone", x->src, &out, &e), TS_ERR_NOTFOUND);
	assert_false(tu_exists_at(x->dfd, "gone"));
	tu_put_bytes_at(x->sfd, "plain", "p", 1, 0644);
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_symlink(x->sfd, x->dfd, "plain", x->src, &out, &e), TS_OK);
	assert_false(tu_exists_at(x->dfd, "plain"));
}

/* ---- ts_copy_dir_meta -------------------------------------------------------- */

static void test_copy_dir_meta(void **state)
{
	fx *x = *state;
	struct stat st, got;
	char sp[TBUF], dp[TBUF];
	ts_err e;

	assert_int_equal(mkdirat(x->sfd, "d", 0700), 0);
	assert_int_equal(fchownat(x->sfd, "d", 1234, 5678, 0), 0);
	assert_int_equal(fchmodat(x->sfd, "d", 02751, 0), 0);
	spath(x, "d", sp, sizeof(sp));
	dpath(x, "d", dp, sizeof(dp));
	assert_int_equal(setxattr(sp, "user.dir", "value", 5, 0), 0);
	set_mtime(x->sfd, "d", 1111111111, 222222222, 0);
	assert_int_equal(lstat(sp, &st), 0);

	/* The copy has content already (metadata comes last). */
	assert_int_equal(mkdirat(x->dfd, "d", 0700), 0);
	tu_put_bytes_at(x->dfd, "d/inside", "i", 1, 0644);
	ts_err_clear(&e);
	if (ts_copy_dir_meta(x->sfd, x->dfd, "d", &st, x->src, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(lstat(dp, &got), 0);
	assert_true(S_ISDIR(got.st_mode));
	assert_int_equal(got.st_mode & 07777, 02751);
	assert_int_equal(got.st_uid, 1234);
	assert_int_equal(got.st_gid, 5678);
	assert_int_equal(got.st_mtim.tv_sec, 1111111111);
	assert_int_equal(got.st_mtim.tv_nsec, 222222222);
	has_xattr(dp, "user.dir", "value", 5);

	/* The root of the tree itself ("."). */
	assert_int_equal(fchmod(x->sfd, 0751), 0);
	assert_int_equal(fchown(x->sfd, 4321, 8765), 0);
	set_mtime(x->sfd, ".", 1222222222, 5, 0);
	assert_int_equal(fstat(x->sfd, &st), 0);
	ts_err_clear(&e);
	if (ts_copy_dir_meta(x->sfd, x->dfd, ".", &st, x->src, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(fstat(x->dfd, &got), 0);
	assert_int_equal(got.st_mode & 07777, 0751);
	assert_int_equal(got.st_uid, 4321);
	assert_int_equal(got.st_gid, 8765);
	assert_int_equal(got.st_mtim.tv_sec, 1222222222);
	assert_int_equal(got.st_mtim.tv_nsec, 5);

	/* The source directory went away: what was recorded still applies. */
	assert_int_equal(mkdirat(x->sfd, "gone", 0700), 0);
	assert_int_equal(fchownat(x->sfd, "gone", 77, 88, 0), 0);
	assert_int_equal(fchmodat(x->sfd, "gone", 0705, 0), 0);
	set_mtime(x->sfd, "gone", 1333333333, 444, 0);
	spath(x, "gone", sp, sizeof(sp));
	assert_int_equal(lstat(sp, &st), 0);
	assert_int_equal(rmdir(sp), 0);
	assert_int_equal(mkdirat(x->dfd, "gone", 0700), 0);
	ts_err_clear(&e);
	if (ts_copy_dir_meta(x->sfd, x->dfd, "gone", &st, x->src, &e) != TS_OK)
		fail_msg("%s", e.msg);
	dpath(x, "gone", dp, sizeof(dp));
	assert_int_equal(lstat(dp, &got), 0);
	assert_int_equal(got.st_mode & 07777, 0705);
	assert_int_equal(got.st_uid, 77);
	assert_int_equal(got.st_gid, 88);
	assert_int_equal(got.st_mtim.tv_sec, 1333333333);
	assert_int_equal(got.st_mtim.tv_nsec, 444);
}

/* ---- ts_copy_hash_file -------------------------------------------------------- */

static void test_hash_file(void **state)
{
	fx *x = *state;
	static const unsigned char abc[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
		0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
		0xf2, 0x00, 0x15, 0xad,
	};
	unsigned char got[32], want[32];
	size_t len = 1024 * 1024 + 1;
	unsigned char *data = tu_pattern(len, 3);
	uint64_t size = 99;
	ts_err e;

	tu_put_bytes_at(x->dfd, "abc", "abc", 3, 0444);
	ts_err_clear(&e);
	assert_int_equal(ts_copy_hash_file(x->dfd, "abc", false, got, &size, &e), TS_OK);
	assert_memory_equal(got, abc, 32);
	assert_true(size == 3);

	tu_put_bytes_at(x->dfd, "big", data, len, 0600);
	assert_int_equal(ts_copy_hash_file(x->dfd, "big", false, got, &size, &e), TS_OK);
	sha_of(data, len, want);
	assert_memory_equal(got, want, 32);
	assert_true(size == len);
	free(data);

	tu_put_bytes_at(x->dfd, "empty", "", 0, 0644);
	assert_int_equal(ts_copy_hash_file(x->dfd, "empty", false, got, &size, &e), TS_OK);
	sha_of("", 0, want);
	assert_memory_equal(got, want, 32);
	assert_true(size == 0);

	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_hash_file(x->dfd, "missing", false, got, &size, &e), TS_OK);
	assert_true(e.msg[0] != '\0');
	/* Not through a symlink. */
	assert_int_equal(symlinkat("abc", x->dfd, "link"), 0);
	ts_err_clear(&e);
	assert_int_not_equal(ts_copy_hash_file(x->dfd, "link", false, got, &size, &e), TS_OK);
}

/* ---- ts_copy_remove_tree ------------------------------------------------------ */

/* t/{file, link->SRC, a/{b/{c/deep, empty/}, ro(0555)/{f(0444), sub(0555)/g}}} */
static void build_tree(int dirfd, const char *outside)
{
	assert_int_equal(mkdirat(dirfd, "t", 0755), 0);
	tu_put_bytes_at(dirfd, "t/file", "f", 1, 0644);
	assert_int_equal(symlinkat(outside, dirfd, "t/link"), 0);
	assert_int_equal(symlinkat("nowhere", dirfd, "t/dangling"), 0);
	assert_int_equal(mkdirat(dirfd, "t/a", 0755), 0);
	assert_int_equal(mkdirat(dirfd, "t/a/b", 0755), 0);
	assert_int_equal(mkdirat(dirfd, "t/a/b/c", 0755), 0);
	tu_put_bytes_at(dirfd, "t/a/b/c/deep", "d", 1, 0600);
	assert_int_equal(mkdirat(dirfd, "t/a/b/empty", 0755), 0);
	assert_int_equal(mkdirat(dirfd, "t/a/ro", 0755), 0);
	tu_put_bytes_at(dirfd, "t/a/ro/f", "r", 1, 0444);
	assert_int_equal(mkdirat(dirfd, "t/a/ro/sub", 0755), 0);
	tu_put_bytes_at(dirfd, "t/a/ro/sub/g", "g", 1, 0000);
	assert_int_equal(fchmodat(dirfd, "t/a/ro/sub", 0555, 0), 0);
	assert_int_equal(fchmodat(dirfd, "t/a/ro", 0555, 0), 0);
	assert_int_equal(fchmodat(dirfd, "t/a/b/empty", 0555, 0), 0);
}

static void test_remove_tree(void **state)
{
	fx *x = *state;
	ts_err e;

	tu_put_bytes_at(x->sfd, "keep", "k", 1, 0644);
	build_tree(x->dfd, x->src);
	ts_err_clear(&e);
	if (ts_copy_remove_tree(x->dfd, "t", &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_false(tu_exists_at(x->dfd, "t"));
	/* Links were removed, not followed. */
	assert_true(tu_exists_at(x->sfd, "keep"));

	/* Missing is fine, also below a file. */
	ts_err_clear(&e);
	assert_int_equal(ts_copy_remove_tree(x->dfd, "t", &e), TS_OK);
	assert_int_equal(ts_copy_remove_tree(x->dfd, "no/such/path", &e), TS_OK);
	tu_put_bytes_at(x->dfd, "file", "x", 1, 0444);
	assert_int_equal(ts_copy_remove_tree(x->dfd, "file/below", &e), TS_OK);
	assert_true(tu_exists_at(x->dfd, "file"));

	/* A file, a symlink to a directory, a read-only empty directory. */
	assert_int_equal(ts_copy_remove_tree(x->dfd, "file", &e), TS_OK);
	assert_false(tu_exists_at(x->dfd, "file"));
	assert_int_equal(symlinkat(x->src, x->dfd, "dirlink"), 0);
	assert_int_equal(ts_copy_remove_tree(x->dfd, "dirlink", &e), TS_OK);
	assert_false(tu_exists_at(x->dfd, "dirlink"));
	assert_true(tu_exists_at(x->sfd, "keep"));
	assert_int_equal(mkdirat(x->dfd, "ro", 0555), 0);
	assert_int_equal(ts_copy_remove_tree(x->dfd, "ro", &e), TS_OK);
	assert_false(tu_exists_at(x->dfd, "ro"));
}

typedef struct noted {
	uint64_t ino[16];
	size_t n;
} noted;

static void note_one(void *arg, uint64_t ino)
{
	noted *d = arg;
	assert_true(d->n < 16);
	d->ino[d->n++] = ino;
}

static bool noted_has(const noted *d, uint64_t ino)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->ino[i] == ino)
			return true;
	return false;
}

/* The noting removal names exactly the inodes it unlinks that keep other
 * names (their ctime moves: store/linklog.h), inside directories too, and
 * removes the same as the plain one. */
static void test_remove_tree_noting(void **state)
{
	fx *x = *state;
	noted d = { .n = 0 };
	struct stat shared, deep, alone;
	ts_err e;

	build_tree(x->dfd, x->src);
	assert_int_equal(linkat(x->dfd, "t/file", x->dfd, "keep-file", 0), 0);
	assert_int_equal(linkat(x->dfd, "t/a/b/c/deep", x->dfd, "keep-deep", 0), 0);
	assert_int_equal(fstatat(x->dfd, "t/file", &shared, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fstatat(x->dfd, "t/a/b/c/deep", &deep, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fstatat(x->dfd, "t/a/ro/f", &alone, AT_SYMLINK_NOFOLLOW), 0);
	ts_err_clear(&e);
	if (ts_copy_remove_tree_noting(x->dfd, "t", note_one, &d, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_false(tu_exists_at(x->dfd, "t"));
	assert_int_equal(d.n, 2);
	assert_true(noted_has(&d, (uint64_t)shared.st_ino));
	assert_true(noted_has(&d, (uint64_t)deep.st_ino));
	assert_false(noted_has(&d, (uint64_t)alone.st_ino));

	/* A single file with another name; then the last name: not noted. */
	d.n = 0;
	assert_int_equal(ts_copy_remove_tree_noting(x->dfd, "keep-file", note_one, &d, &e), TS_OK);
	assert_int_equal(d.n, 0);
	assert_int_equal(linkat(x->dfd, "keep-deep", x->dfd, "again", 0), 0);
	assert_int_equal(ts_copy_remove_tree_noting(x->dfd, "again", note_one, &d, &e), TS_OK);
	assert_int_equal(d.n, 1);
	assert_true(d.ino[0] == (uint64_t)deep.st_ino);
	assert_false(tu_exists_at(x->dfd, "again"));
	assert_true(tu_exists_at(x->dfd, "keep-deep"));
}

static int chown_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return lchown(path, 65534, 65534);
}

/* Root ignores permissions; an unprivileged owner needs the read-only
 * directories made writable first.  Run the removal as nobody. */
static void test_remove_tree_unprivileged(void **state)
{
	fx *x = *state;
	char work[TBUF];
	int wfd, status;
	pid_t pid;

	tu_fmt(work, sizeof(work), "%s/work", x->dst);
	assert_int_equal(mkdir(work, 0755), 0);
	wfd = open(work, O_RDONLY | O_DIRECTORY);
	assert_true(wfd >= 0);
	tu_put_bytes_at(x->sfd, "keep", "k", 1, 0644);
	build_tree(wfd, x->src);
	assert_int_equal(nftw(work, chown_one, 16, FTW_PHYS), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stat st;
		ts_err_code rc;

		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		rc = ts_copy_remove_tree(wfd, "t", NULL);
		if (rc != TS_OK)
			_exit(20 + (int)rc);
		_exit(fstatat(wfd, "t", &st, AT_SYMLINK_NOFOLLOW) == 0 ? 2 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("removal as nobody: exit %d (2: still there, 20+: error code)",
		         WEXITSTATUS(status));
	assert_false(tu_exists_at(wfd, "t"));
	assert_true(tu_exists_at(x->sfd, "keep"));
	close(wfd);
}

/* ---- ts_copy_same_stat -------------------------------------------------------- */

static void test_same_stat(void **state)
{
	fx *x = *state;
	struct stat a, b, c;
	struct timespec nap = { 0, 20 * 1000 * 1000 };

	tu_put_bytes_at(x->sfd, "f", "content", 7, 0644);
	assert_int_equal(fstatat(x->sfd, "f", &a, 0), 0);
	assert_int_equal(fstatat(x->sfd, "f", &b, 0), 0);
	assert_true(ts_copy_same_stat(&a, &b));

	/* Each compared field on its own. */
	c = a; c.st_mode ^= 0001;                 assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_mode = (c.st_mode & 07777) | S_IFDIR; assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_uid++;                        assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_gid++;                        assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_size++;                       assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_ino++;                        assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_mtim.tv_nsec ^= 1;            assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_mtim.tv_sec++;                assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_ctim.tv_nsec ^= 1;            assert_false(ts_copy_same_stat(&a, &c));
	c = a; c.st_ctim.tv_sec--;                assert_false(ts_copy_same_stat(&a, &c));
	assert_true(ts_copy_same_stat(&c, &c));
	/* Access time is not a change. */
	c = a; c.st_atim.tv_sec += 100; c.st_atim.tv_nsec ^= 1;
	assert_true(ts_copy_same_stat(&a, &c));

	/* Real changes: same-size rewrite (mtime/ctime), chmod (ctime). */
	nanosleep(&nap, NULL);
	tu_put_bytes_at(x->sfd, "f", "CONTENT", 7, 0644);
	assert_int_equal(fstatat(x->sfd, "f", &b, 0), 0);
	assert_false(ts_copy_same_stat(&a, &b));
	a = b;
	nanosleep(&nap, NULL);
	assert_int_equal(fchmodat(x->sfd, "f", 0644, 0), 0);
	assert_int_equal(fstatat(x->sfd, "f", &b, 0), 0);
	assert_false(ts_copy_same_stat(&a, &b));
	/* Another file with the same everything else is another inode. */
	tu_put_bytes_at(x->sfd, "g", "CONTENT", 7, 0644);
	assert_int_equal(fstatat(x->sfd, "g", &c, 0), 0);
	assert_false(ts_copy_same_stat(&b, &c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_copy_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_dest_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_notfound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_quiet_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_file_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_dir_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_tree_noting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_tree_unprivileged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_stat, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
