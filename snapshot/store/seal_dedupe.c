/* seal_dedupe.c - share a new copy's blocks with an older copy's where the
 * bytes are the same (seal_dedupe.h). */
#include "store/seal_dedupe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define DD_BUF (1u << 20)          /* compared at a time */
#define DD_CALL_MAX (16u << 20)    /* one FIDEDUPERANGE at most (btrfs takes no more) */
#define DD_EXTENTS 256             /* extents asked of FIEMAP at a time */

typedef struct dd_ctx {
	int oldfd, newfd;
	uint64_t len;                  /* compared: the shorter file's size */
	bool tail_ok;                  /* the last block is partial and both files end there */
	uint64_t bs;                   /* the filesystem's block */
	unsigned char *a, *b;
	int *support;
	uint64_t shared;
} dd_ctx;

static bool dd_unsupported(int err)
{
	return err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS || err == EXDEV;
}

/* One FIDEDUPERANGE of [off, off + len) of the old copy onto the new one:
 * the bytes shared (0 when they differ or the kernel would not), -1 when
 * the filesystem cannot share at all. */
static int64_t dd_call(dd_ctx *c, uint64_t off, uint64_t len)
{
	_Alignas(8) unsigned char buf[sizeof(struct file_dedupe_range) +
	                              sizeof(struct file_dedupe_range_info)];
	struct file_dedupe_range *r = (struct file_dedupe_range *)buf;

	memset(buf, 0, sizeof buf);
	r->src_offset = off;
	r->src_length = len;
	r->dest_count = 1;
	r->info[0].dest_fd = c->newfd;
	r->info[0].dest_offset = off;
	if (ioctl(c->oldfd, FIDEDUPERANGE, r) < 0)
		return dd_unsupported(errno) ? -1 : 0;
	if (r->info[0].status < 0)
		return dd_unsupported(-r->info[0].status) ? -1 : 0;
	if (r->info[0].status != FILE_DEDUPE_RANGE_SAME)
		return 0;
	return (int64_t)r->info[0].bytes_deduped;
}

/* Share the run [from, to) of equal blocks, in calls the kernel takes. */
static bool dd_share(dd_ctx *c, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t n = to - from < DD_CALL_MAX ? to - from : DD_CALL_MAX;
		int64_t got = dd_call(c, from, n);
		if (got < 0) {
			__atomic_store_n(c->support, TS_DEDUPE_NO, __ATOMIC_RELAXED);
			return false;
		}
		if (got == 0)
			break;   /* changed since it was compared: leave the rest */
		c->shared += (uint64_t)got;
		from += (uint64_t)got;
	}
	return true;
}

static bool dd_read(int fd, unsigned char *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(fd, buf + got, n - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/* Compare [from, to) of both files block by block and share each run of
 * equal blocks.  from is block-aligned; to too, or the end of both files. */
static bool dd_range(dd_ctx *c, uint64_t from, uint64_t to)
{
	uint64_t run = from;   /* the equal run so far: [run, off) */
	uint64_t off = from;

	while (off < to) {
		size_t n = to - off < DD_BUF ? (size_t)(to - off) : DD_BUF;
		if (!dd_read(c->oldfd, c->a, n, off) || !dd_read(c->newfd, c->b, n, off))
			break;
		for (size_t k = 0; k < n; k += c->bs) {
			size_t m = n - k < c->bs ? n - k : (size_t)c->bs;
			if (!memcmp(c->a + k, c->b + k, m))
				continue;
			if (off + k > run && !dd_share(c, run, off + k))
				return false;
			run = off + k + m;
		}
		off += n;
	}
	return off <= run || dd_share(c, run, off);
}

/* The parts of [0, c->len) of the new copy not shared yet, by FIEMAP (its
 * data written back first): each compared and shared.  Holes have nothing
 * to share. */
static void dd_unshared(dd_ctx *c)
{
	size_t fmsz = sizeof(struct fiemap) + DD_EXTENTS * sizeof(struct fiemap_extent);
	struct fiemap *fm = malloc(fmsz);
	uint64_t pos = 0;
	bool last = false;

	if (!fm)
		return;
	for (bool first = true; !last && pos < c->len; first = false) {
		memset(fm, 0, fmsz);
		fm->fm_start = pos;
		fm->fm_length = c->len - pos;
		fm->fm_flags = first ? FIEMAP_FLAG_SYNC : 0;
		fm->fm_extent_count = DD_EXTENTS;
		if (ioctl(c->newfd, FS_IOC_FIEMAP, fm) < 0 || fm->fm_mapped_extents == 0)
			break;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *x = &fm->fm_extents[i];
			uint64_t lo = x->fe_logical > pos ? x->fe_logical : pos;
			uint64_t hi = x->fe_logical + x->fe_length;
			if (hi > c->len)
				hi = c->len;
			last = (x->fe_flags & FIEMAP_EXTENT_LAST) || hi >= c->len;
			pos = hi > pos ? hi : pos;
			if (x->fe_flags & FIEMAP_EXTENT_SHARED)
				continue;
			/* Whole blocks only, but for the last one when both files
			 * end in it (the kernel takes that one too). */
			lo -= lo % c->bs;
			if (!(hi == c->len && c->tail_ok))
				hi -= hi % c->bs;
			if (hi > lo && !dd_range(c, lo, hi))
				goto out;
			if (last)
				break;
		}
	}
out:
	free(fm);
}

uint64_t ts_dedupe_blocks(int oldfd, int newfd, int *support)
{
	dd_ctx c = { .oldfd = oldfd, .newfd = newfd, .support = support };
	struct stat so, sn;
	struct statfs fs;

	if (__atomic_load_n(support, __ATOMIC_RELAXED) == TS_DEDUPE_NO)
		return 0;
	if (fstat(oldfd, &so) < 0 || fstat(newfd, &sn) < 0 || !S_ISREG(so.st_mode) ||
	    !S_ISREG(sn.st_mode) || fstatfs(newfd, &fs) < 0)
		return 0;
	if ((so.st_dev == sn.st_dev && so.st_ino == sn.st_ino) || fs.f_bsize < 512 ||
	    fs.f_bsize > (1 << 16) || (fs.f_bsize & (fs.f_bsize - 1)))
		return 0;
	c.bs = (uint64_t)fs.f_bsize;
	c.len = (uint64_t)(so.st_size < sn.st_size ? so.st_size : sn.st_size);
	c.tail_ok = so.st_size == sn.st_size && c.len % c.bs;
	if (c.len < c.bs)
		return 0;
	/* Whether the filesystem can at all, before anything is read: the
	 * first block (shared by the way when it is the same). */
	if (__atomic_load_n(support, __ATOMIC_RELAXED) == TS_DEDUPE_UNKNOWN) {
		int64_t got = dd_call(&c, 0, c.bs);
		__atomic_store_n(support, got < 0 ? TS_DEDUPE_NO : TS_DEDUPE_YES, __ATOMIC_RELAXED);
		if (got < 0)
			return 0;
		c.shared += (uint64_t)got;
	}
	c.a = malloc(DD_BUF);
	c.b = malloc(DD_BUF);
	if (c.a && c.b)
		dd_unshared(&c);
	free(c.a);
	free(c.b);
	/* The old copy was only read for this: leave the page cache to what
	 * is used. */
	(void)posix_fadvise(oldfd, 0, 0, POSIX_FADV_DONTNEED);
	return c.shared;
}
