/* copy.c - copy one environment entry into a snapshot tree (see copy.h). */
#include "base/copy.h"

#include "base/beneath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#define COPY_BUF_SIZE (256 * 1024)

/* One buffer per thread: snapshots of 100,000 small files must not pay a
 * large allocation per file.  Freed never (reachable until exit). */
static __thread unsigned char *copy_buf;

static unsigned char *copy_get_buf(void)
{
	if (!copy_buf)
		copy_buf = malloc(COPY_BUF_SIZE);
	return copy_buf;
}

/* The file this thread copied last, whose writeback has been started but not
 * waited for (see copy_writeback). */
static __thread int copy_pending_fd = -1;

static void copy_pending_wait(void)
{
	if (copy_pending_fd < 0)
		return;
	(void)sync_file_range(copy_pending_fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
	                      SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
	close(copy_pending_fd);
	copy_pending_fd = -1;
}

/* A copy is complete: start its writeback, then wait for the previous one's.
 * Takes ownership of fd. */
static void copy_pending_push(int fd)
{
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	copy_pending_wait();
	copy_pending_fd = fd;
}

void ts_copy_thread_done(void)
{
	copy_pending_wait();
	free(copy_buf);
	copy_buf = NULL;
}

bool ts_copy_same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_mode == b->st_mode && a->st_uid == b->st_uid &&
	       a->st_gid == b->st_gid && a->st_size == b->st_size &&
	       a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Owners can only be given away by root; an unprivileged mount keeps its own. */
static int copy_chown_errok(int err)
{
	return (err == EPERM || err == EINVAL) && geteuid() != 0;
}

/* Copy every extended attribute.  Attributes the destination filesystem or
 * our privileges cannot hold (trusted.* as non-root, security.* policies) are
 * skipped: losing them must not fail a backup. */
static ts_err_code copy_xattrs_fd(int src, int dst, const char *src_desc,
                                  const char *rel, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *names = NULL, *val = NULL;
	ssize_t len = flistxattr(src, NULL, 0);

	if (len <= 0)
		goto out; /* none, or not supported: nothing to keep */
	names = malloc((size_t)len);
	if (!names) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	len = flistxattr(src, names, (size_t)len);
	for (ssize_t off = 0; len > 0 && off < len; off += (ssize_t)strlen(names + off) + 1) {
		const char *n = names + off;
		ssize_t vlen = fgetxattr(src, n, NULL, 0);
		if (vlen < 0)
			continue;
		char *nv = realloc(val, (size_t)vlen + 1);
		if (!nv) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			goto out;
		}
		val = nv;
		vlen = fgetxattr(src, n, val, (size_t)vlen);
		if (vlen < 0)
			continue;
		if (fsetxattr(dst, n, val, (size_t)vlen, 0) < 0 &&
		    errno != ENOTSUP && errno != EPERM && errno != EACCES) {
			rc = ts_err_sys(e, errno, "%s/%s: cannot copy extended attribute %s", src_desc, rel, n);
			goto out;
		}
	}
out:
	free(names);
	free(val);
	return rc;
}

/* Same for a symlink, which has no fd to work on: go through the magic
 * /proc/self/fd/N/LEAF path of its directory (beneath.h); the l* calls do
 * not follow LEAF. */
static void copy_xattrs_link(int src_pfd, const char *src_leaf, int dst_pfd, const char *dst_leaf)
{
	char sp[4200], dp[4200], names[4096], val[4096];
	if (ts_beneath_procpath(sp, sizeof sp, src_pfd, src_leaf) < 0 ||
	    ts_beneath_procpath(dp, sizeof dp, dst_pfd, dst_leaf) < 0)
		return;
	ssize_t len = llistxattr(sp, names, sizeof names);
	for (ssize_t off = 0; len > 0 && off < len; off += (ssize_t)strlen(names + off) + 1) {
		ssize_t vlen = lgetxattr(sp, names + off, val, sizeof val);
		if (vlen >= 0)
			(void)lsetxattr(dp, names + off, val, (size_t)vlen, 0);
	}
}

static ts_err_code copy_finish_meta(int src, int dst, const struct stat *st,
                                    const char *src_desc, const char *rel, ts_err *e)
{
	struct timespec times[2] = { st->st_atim, st->st_mtim };

	if (fchown(dst, st->st_uid, st->st_gid) < 0 && !copy_chown_errok(errno))
		return ts_err_sys(e, errno, "%s/%s: cannot set owner of the copy", src_desc, rel);
	/* After chown: chown clears set-id bits. */
	if (fchmod(dst, st->st_mode & 07777) < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot set mode of the copy", src_desc, rel);
	if (copy_xattrs_fd(src, dst, src_desc, rel, e) != TS_OK)
		return e ? e->code : TS_ERR_IO;
	if (futimens(dst, times) < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot set times of the copy", src_desc, rel);
	return TS_OK;
}

/* Keep what copies have in flight to the disk small.  The store usually
 * shares a filesystem with the live environment, and on ext4 (data=ordered)
 * every fsync of Trac's database waits for all data allocated since the last
 * journal commit: gigabytes of our dirty pages would stall Trac's commits for
 * seconds although Trac's lock is free.  So each chunk's writeback is started
 * as soon as it is written and waited for one chunk later, and each file's
 * once the next file is done (copy_pending_push): at most two chunks or files
 * per copying thread are ever in flight.  The final syncfs then finds little
 * left to do. */
#define COPY_CHUNK (2u << 20)

static void copy_writeback(int out, uint64_t done, uint64_t n)
{
	uint64_t end = done + n;
	if (done / COPY_CHUNK == end / COPY_CHUNK)
		return;
	uint64_t chunk = end / COPY_CHUNK * COPY_CHUNK;   /* start of the new chunk */
	(void)sync_file_range(out, (off64_t)(chunk - COPY_CHUNK), COPY_CHUNK, SYNC_FILE_RANGE_WRITE);
	if (chunk >= 2 * COPY_CHUNK)
		(void)sync_file_range(out, (off64_t)(chunk - 2 * COPY_CHUNK), COPY_CHUNK,
		                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		                      SYNC_FILE_RANGE_WAIT_AFTER);
}

/* A file flushed whole (ts_copy_flush_bounded) goes in smaller steps than
 * a copy: nothing else runs while it waits, and a Trac commit queued behind
 * two steps in flight waits for their write (two 2 MiB chunks held Trac's
 * commits some 45 ms at the end of each seal of 200,000 files). */
#define COPY_FLUSH_STEP (512u << 10)

void ts_copy_flush_bounded(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return;
	for (uint64_t off = 0; off < (uint64_t)st.st_size; off += COPY_FLUSH_STEP) {
		(void)sync_file_range(fd, (off64_t)off, COPY_FLUSH_STEP, SYNC_FILE_RANGE_WRITE);
		if (off >= COPY_FLUSH_STEP)
			(void)sync_file_range(fd, (off64_t)(off - COPY_FLUSH_STEP), COPY_FLUSH_STEP,
			                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			                      SYNC_FILE_RANGE_WAIT_AFTER);
	}
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
	                                 SYNC_FILE_RANGE_WAIT_AFTER);
}

/* Read fd to its end, hashing; when out >= 0 also write what was read.
 * wb >= 0 (out, or in when hashing a copy to seal it): keep that file's
 * writeback bounded as the bytes pass, see copy_writeback. */
static ts_err_code copy_stream(int in, int out, EVP_MD_CTX *md, int wb, uint64_t *bytes,
                               const char *src_desc, const char *rel, ts_err *e)
{
	unsigned char *buf = copy_get_buf();
	if (!buf)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (;;) {
		ssize_t n = read(in, buf, COPY_BUF_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ts_err_sys(e, errno, "%s/%s: read failed", src_desc, rel);
		}
		if (n == 0)
			return TS_OK;
		if (md)
			EVP_DigestUpdate(md, buf, (size_t)n);
		for (ssize_t off = 0; out >= 0 && off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return ts_err_sys(e, errno, "%s/%s: write to the store failed", src_desc, rel);
			}
			off += w;
		}
		if (wb >= 0)
			copy_writeback(wb, *bytes, (uint64_t)n);
		*bytes += (uint64_t)n;
	}
}

/* Copy in the kernel (copy_file_range: page cache to page cache, no trip
 * through our buffers; about twice as fast as read/write for big files).
 * Returns TS_ERR_UNSUPPORTED, with nothing copied, when the kernel cannot do
 * it for this pair of files: the caller then streams. */
#define COPY_KERNEL_STEP (16u << 20)

static ts_err_code copy_kernel(int in, int out, bool bounded, uint64_t *bytes,
                               const char *src_desc, const char *rel, ts_err *e)
{
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, bounded ? COPY_CHUNK : COPY_KERNEL_STEP, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (*bytes == 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
			                    errno == ENOSYS || errno == EBADF || errno == ETXTBSY))
				return TS_ERR_UNSUPPORTED;
			if (errno == ENOSPC || errno == EDQUOT)
				return ts_err_sys(e, errno, "%s/%s: write to the store failed", src_desc, rel);
			return ts_err_sys(e, errno, "%s/%s: copy failed", src_desc, rel);
		}
		if (n == 0)
			return TS_OK;
		if (bounded)
			copy_writeback(out, *bytes, (uint64_t)n);
		*bytes += (uint64_t)n;
	}
}

ts_err_code ts_copy_fd(int in, int out, uint64_t *bytes, const char *src_desc, const char *rel,
                       ts_err *e)
{
	ts_err_code rc = copy_kernel(in, out, false, bytes, src_desc, rel, e);
	return rc == TS_ERR_UNSUPPORTED ? copy_stream(in, out, NULL, -1, bytes, src_desc, rel, e) : rc;
}

/* Remove the file rel below dirfd, never through a symlink; keeps errno. */
static void copy_unlink(int dirfd, const char *rel)
{
	int keep = errno;
	const char *leaf;
	int pfd = ts_beneath_parent(dirfd, rel, &leaf);

	if (pfd >= 0) {
		(void)unlinkat(pfd, leaf, 0);
		ts_beneath_parent_close(dirfd, pfd);
	}
	errno = keep;
}

ts_err_code ts_copy_file(int src_dirfd, int dst_dirfd, const char *rel, unsigned flags,
                         const char *src_desc, ts_copy_out *out, ts_err *e)
{
	return ts_copy_file_as(src_dirfd, rel, dst_dirfd, rel, flags, src_desc, out, e);
}

ts_err_code ts_copy_file_as(int src_dirfd, const char *rel, int dst_dirfd, const char *dst_rel,
                            unsigned flags, const char *src_desc, ts_copy_out *out, ts_err *e)
{
	bool bounded = flags & TS_COPY_BOUNDED;
	ts_err_code rc = TS_OK;
	int src = -1, dst = -1;
	bool created = false;
	struct stat after;

	memset(out, 0, sizeof *out);
	/* Beneath both roots (beneath.h): a symlink anywhere on rel is a
	 * change of type, never followed. */
	src = ts_beneath_open(src_dirfd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
	if (src < 0) {
		if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) {
			int err = errno;
			rc = ts_err_set(e, TS_ERR_NOTFOUND, "%s/%s: vanished", src_desc, rel);
			if (e)
				e->sys_errno = err;   /* ELOOP, ENOTDIR: changed type on its way */
		} else
			rc = ts_err_sys(e, errno, "%s/%s: cannot open", src_desc, rel);
		goto out;
	}
	if (fstat(src, &out->st) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot stat", src_desc, rel);
		goto out;
	}
	if (!S_ISREG(out->st.st_mode)) {
		/* Replaced by something else between the walk and now. */
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "%s/%s: no longer a regular file", src_desc, rel);
		if (e)
			e->sys_errno = ELOOP;   /* changed type: as a link on its way */
		goto out;
	}
	dst = ts_beneath_open(dst_dirfd, dst_rel, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (dst < 0) {
		rc = strcmp(dst_rel, rel) ? ts_err_sys(e, errno, "%s/%s: cannot create its copy %s in the store",
		                                        src_desc, rel, dst_rel)
		                          : ts_err_sys(e, errno, "%s/%s: cannot create the copy in the store",
		                                        src_desc, rel);
		goto out;
	}
	created = true;
	if (ioctl(dst, FICLONE, src) == 0) {
		/* Shared extents: nothing was written, nothing to write back. */
		out->reflinked = true;
		out->bytes = (uint64_t)out->st.st_size;
	} else {
		(void)posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
		rc = copy_kernel(src, dst, bounded, &out->bytes, src_desc, rel, e);
		if (rc == TS_ERR_UNSUPPORTED)
			rc = copy_stream(src, dst, NULL, bounded ? dst : -1, &out->bytes, src_desc, rel, e);
	}
	if (rc != TS_OK)
		goto out;
	if (fstat(src, &after) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot stat", src_desc, rel);
		goto out;
	}
	out->changed = !ts_copy_same_stat(&out->st, &after) ||
	               (uint64_t)out->st.st_size != out->bytes;
	rc = copy_finish_meta(src, dst, &out->st, src_desc, rel, e);
	if (rc == TS_OK && !out->reflinked && bounded) {
		copy_pending_push(dst);
		dst = -1;
	}
out:
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	if (rc != TS_OK && created)
		copy_unlink(dst_dirfd, dst_rel);
	return rc;
}

ts_err_code ts_copy_symlink(int src_dirfd, int dst_dirfd, const char *rel,
                            const char *src_desc, ts_copy_out *out, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char target[PATH_MAX + 1];
	ssize_t n;
	unsigned int mdlen = 0;
	const char *sleaf, *dleaf;
	int spfd, dpfd = -1;

	memset(out, 0, sizeof *out);
	/* Both names by their directories, reached beneath the roots: the
	 * calls below act on the leaf and never follow it. */
	spfd = ts_beneath_parent(src_dirfd, rel, &sleaf);
	if (spfd < 0 || fstatat(spfd, sleaf, &out->st, AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		rc = (err == ENOENT || err == ELOOP || err == ENOTDIR)
		     ? ts_err_set(e, TS_ERR_NOTFOUND, "%s/%s: vanished", src_desc, rel)
		     : ts_err_sys(e, err, "%s/%s: cannot stat", src_desc, rel);
		if (rc == TS_ERR_NOTFOUND && e)
			e->sys_errno = err;   /* ELOOP, ENOTDIR: changed type on its way */
		goto out;
	}
	if (!S_ISLNK(out->st.st_mode)) {
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "%s/%s: no longer a symlink", src_desc, rel);
		if (e)
			e->sys_errno = ELOOP;   /* changed type: as a link on its way */
		goto out;
	}
	n = readlinkat(spfd, sleaf, target, sizeof target - 1);
	if (n < 0 && (errno == EINVAL || errno == ENOENT)) {
		/* Replaced (by a directory, say) or removed since its stat. */
		int err = errno == EINVAL ? ELOOP : ENOENT;
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "%s/%s: no longer a symlink", src_desc, rel);
		if (e)
			e->sys_errno = err;
		goto out;
	}
	if (n < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot read link", src_desc, rel);
		goto out;
	}
	target[n] = '\0';
	dpfd = ts_beneath_parent(dst_dirfd, rel, &dleaf);
	if (dpfd < 0 || symlinkat(target, dpfd, dleaf) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot create the link in the store", src_desc, rel);
		goto out;
	}
	out->bytes = 0;
	EVP_Digest(target, (size_t)n, out->sha256, &mdlen, EVP_sha256(), NULL);
	if (fchownat(dpfd, dleaf, out->st.st_uid, out->st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 &&
	    !copy_chown_errok(errno)) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot set owner of the link", src_desc, rel);
		goto out;
	}
	copy_xattrs_link(spfd, sleaf, dpfd, dleaf);
	struct timespec times[2] = { out->st.st_atim, out->st.st_mtim };
	if (utimensat(dpfd, dleaf, times, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot set times of the link", src_desc, rel);
		goto out;
	}
out:
	ts_beneath_parent_close(src_dirfd, spfd);
	ts_beneath_parent_close(dst_dirfd, dpfd);
	return rc;
}

ts_err_code ts_copy_dir_meta(int src_dirfd, int dst_dirfd, const char *rel,
                             const struct stat *st, const char *src_desc, ts_err *e)
{
	ts_err_code rc = TS_OK;
	/* Never through a symlink on either side (beneath.h): the store's
	 * copy is a directory all the way down, or this fails. */
	int dst = ts_beneath_open(dst_dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
	int src = ts_beneath_open(src_dirfd, rel, O_RDONLY | O_DIRECTORY, 0);

	if (dst < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot open the copied directory", src_desc, rel);
		goto out;
	}
	if (src < 0) {
		/* The directory went away after the freeze: keep what was recorded,
		 * without xattrs (they cannot be read any more). */
		struct timespec times[2] = { st->st_atim, st->st_mtim };
		if ((fchown(dst, st->st_uid, st->st_gid) < 0 && !copy_chown_errok(errno)) ||
		    fchmod(dst, st->st_mode & 07777) < 0 || futimens(dst, times) < 0)
			rc = ts_err_sys(e, errno, "%s/%s: cannot set directory metadata", src_desc, rel);
		goto out;
	}
	rc = copy_finish_meta(src, dst, st, src_desc, rel, e);
out:
	if (dst >= 0)
		close(dst);
	if (src >= 0)
		close(src);
	return rc;
}

ts_err_code ts_copy_hash_file(int dirfd, const char *rel, bool flush, unsigned char sha256[32],
                              uint64_t *size, ts_err *e)
{
	ts_err_code rc = TS_OK;
	unsigned int mdlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int fd = ts_beneath_open(dirfd, rel, O_RDONLY, 0);

	*size = 0;
	if (fd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open for hashing", rel);
		goto out;
	}
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = copy_stream(fd, -1, md, flush ? fd : -1, size, "", rel, e);
	if (rc == TS_OK)
		EVP_DigestFinal_ex(md, sha256, &mdlen);
	/* The file's last chunks, waited for here: a file of any size leaves at
	 * most two chunks per thread in flight, never whole files. */
	if (rc == TS_OK && flush)
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		                                 SYNC_FILE_RANGE_WAIT_AFTER);
out:
	EVP_MD_CTX_free(md);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The path of what copy_remove_at is at, for messages only (cut short when
 * longer than the buffer). */
typedef struct copy_rm_path {
	char buf[PATH_MAX];
	size_t len;
	ts_copy_unlink_fn fn;   /* NULL: no notes (ts_copy_remove_tree_noting) */
	void *arg;
} copy_rm_path;

/* Remove leaf below directory pfd, whatever it is: unlinked, or when it is
 * a directory (never a link to one: O_NOFOLLOW), emptied by this same
 * function, depth first, then removed.  Missing is not an error.
 * The one recursive walk of removal, not walk.c: removal goes post-order
 * and needs no stat (unlink first, open only what refuses as a directory),
 * where ts_walk lists pre-order on several threads and stats every entry. */
static ts_err_code copy_remove_at(int pfd, const char *leaf, copy_rm_path *p, ts_err *e)
{
	ts_err_code rc = TS_OK;
	DIR *d;
	struct dirent *de;
	int fd;
	struct stat st;

	if (p->fn && fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
	    st.st_nlink > 1)
		p->fn(p->arg, (uint64_t)st.st_ino);
	if (unlinkat(pfd, leaf, 0) == 0 || errno == ENOENT)
		return TS_OK;
	if (errno != EISDIR && errno != EPERM)
		return ts_err_sys(e, errno, "%s: cannot remove", p->buf);
	fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? TS_OK : ts_err_sys(e, errno, "%s: cannot open for removal", p->buf);
	/* Directories of a snapshot may be read-only (0555): make them
	 * writable before emptying. */
	(void)fchmod(fd, 0700);
	d = fdopendir(fd);
	if (!d) {
		rc = ts_err_sys(e, errno, "%s: cannot list for removal", p->buf);
		close(fd);
		return rc;
	}
	while (rc == TS_OK && (de = readdir(d)) != NULL) {
		size_t len = p->len, n = strlen(de->d_name);
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (len + 1 + n < sizeof p->buf) {
			p->buf[len] = '/';
			memcpy(p->buf + len + 1, de->d_name, n + 1);
			p->len = len + 1 + n;
		}
		rc = copy_remove_at(dirfd(d), de->d_name, p, e);
		p->len = len;
		p->buf[len] = '\0';
	}
	closedir(d);
	if (rc == TS_OK && unlinkat(pfd, leaf, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = ts_err_sys(e, errno, "%s: cannot remove", p->buf);
	return rc;
}

ts_err_code ts_copy_remove_tree(int dirfd, const char *rel, ts_err *e)
{
	return ts_copy_remove_tree_noting(dirfd, rel, NULL, NULL, e);
}

ts_err_code ts_copy_remove_tree_noting(int dirfd, const char *rel, ts_copy_unlink_fn fn, void *arg,
                                       ts_err *e)
{
	const char *leaf;
	int pfd, fd;
	ts_err_code rc = TS_OK;

	if (rel[0] == '/') {
		/* A path of the caller's own making (restore's temporary
		 * directories): its directory as given, the rest as below. */
		char dir[PATH_MAX];
		const char *slash = strrchr(rel, '/');
		size_t n = slash == rel ? 1 : (size_t)(slash - rel);
		if (n >= sizeof dir || slash[1] == '\0')
			return ts_err_set(e, TS_ERR_IO, "%s: cannot remove: bad path", rel);
		memcpy(dir, rel, n);
		dir[n] = '\0';
		fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT ? TS_OK : ts_err_sys(e, errno, "%s: cannot remove", rel);
		rc = ts_copy_remove_tree_noting(fd, slash + 1, fn, arg, e);
		close(fd);
		return rc;
	}
	pfd = ts_beneath_parent(dirfd, rel, &leaf);
	/* ENOTDIR or ELOOP: a parent was replaced by a file or a link, so rel
	 * is gone too (what is beyond a link is never ours to remove). */
	if (pfd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? TS_OK
		       : ts_err_sys(e, errno, "%s: cannot remove", rel);
	copy_rm_path *p = malloc(sizeof *p);
	if (p) {
		p->len = strnlen(rel, sizeof p->buf - 1);
		memcpy(p->buf, rel, p->len);
		p->buf[p->len] = '\0';
		p->fn = fn;
		p->arg = arg;
		rc = copy_remove_at(pfd, leaf, p, e);
		free(p);
	} else
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	ts_beneath_parent_close(dirfd, pfd);
	return rc;
}
