/* fs_passthrough.c - file reads that go from the reader straight to the
 * store: the kernel's FUSE passthrough (Linux 6.9 and later), which libfuse
 * 3.14 does not know about.
 *
 * Why: through fs_read, every read is a request to the daemon, a splice
 * into a pipe and a copy of each page into the mount's own page cache; a
 * cold tar through the mount ran at 0.6-0.75 of the store tree's speed on
 * two cores (doc/performance.md).  In passthrough mode the kernel reads the
 * store file itself, with the store's page cache and read-ahead, and the
 * daemon sees only the open and the release.
 *
 * libfuse 3.14 cannot say the two things passthrough needs; they are said
 * here through its public hooks:
 * - At INIT, that the daemon wants it (FUSE_PASSTHROUGH, and how deep the
 *   backing files' filesystems may stack: 1, a plain filesystem such as
 *   the store's).  libfuse writes every reply through the custom I/O of
 *   fuse_session_custom_io(), and the first reply on a connection is
 *   INIT's: the kernel sends nothing else before INIT is answered.  So
 *   fs_pt_writev adds the two fields to the first reply, when it is a
 *   successful INIT reply of the size it knows and libfuse answered with
 *   the extended flags (a kernel older than that has no passthrough).
 * - At OPEN, the backing file: FUSE_DEV_IOC_BACKING_OPEN registers the
 *   store file's descriptor and returns an id, sent in the open reply
 *   (fuse_reply_iov with the kernel's fuse_open_out) with FOPEN_PASSTHROUGH.
 *   The id is closed at release; the kernel holds the file itself as long
 *   as the reader's open file lives.
 *
 * Only files of FS_PT_MIN_SIZE or more are read so.  After each read in
 * passthrough mode the kernel forgets the file's atime, so the next stat is
 * a request (tar stats every file it read): a warm tar of 20,000 files of
 * 1 KiB took 3.0-5.1 s with every file in passthrough mode and 1.9-2.0 s
 * with none, against 0.3 s for the store tree, since with the mount's own
 * page cache (keep_cache) a file read again costs only its open and
 * release.  A large file is streamed, where the copy into the mount's page
 * cache is what costs.  A stored file's size never changes, so an inode
 * always gets the same mode.
 *
 * The kernel gives EIO to an open in passthrough mode while the inode is
 * open in caching mode, and to any other open while it is open in
 * passthrough mode.  So the mount's mode is decided once, at its first open
 * of a large file: if the kernel takes that backing file, every such open
 * asks for passthrough, and one whose backing file the kernel refuses fails
 * with the kernel's error; if it refuses the first (no passthrough in this
 * kernel, or not for the store's filesystem), no open asks again and the
 * mount reads through fs_read as before, which the log says once.
 *
 * Root over the owner's tree: the backing file is the descriptor fs_open
 * opened from the store (root's), never a name the owner can change; the
 * kernel reads it with the daemon's credentials only for a reader whose
 * open the kernel already allowed (default_permissions).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "fs_int.h"

/* What protocol 7.40 (Linux 6.9) added and Debian 12's <linux/fuse.h>
 * (7.38) lacks; the values are the kernel's ABI. */
#define FS_PT_FUSE_PASSTHROUGH_FLAGS2 (1u << (37 - 32))   /* FUSE_PASSTHROUGH */
#define FS_PT_FOPEN_PASSTHROUGH (1u << 7)
#define FS_PT_MAX_STACK_DEPTH 1u
struct fs_pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define FS_PT_IOC_BACKING_OPEN _IOW(229, 1, struct fs_pt_backing_map)
#define FS_PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
/* fuse_open_out with 7.40's names: the id sits where 7.38 has padding. */
struct fs_pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};
_Static_assert(sizeof(struct fs_pt_open_out) == sizeof(struct fuse_open_out),
               "fuse_open_out's size is the kernel's");
/* max_stack_depth is the word 7.38 calls unused[0]. */
_Static_assert(offsetof(struct fuse_init_out, unused) == 36 &&
               sizeof(struct fuse_init_out) == 64, "fuse_init_out's layout is the kernel's");

enum { FS_PT_UNKNOWN, FS_PT_ON, FS_PT_OFF };

/* Files smaller than this keep the mount's page cache (see the top). */
#define FS_PT_MIN_SIZE ((off_t)1 << 20)

/* The first reply: INIT's.  Asks for passthrough in a copy of it. */
static ssize_t fs_pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	fs_pt *pt = ((fs_ctx *)userdata)->pt;
	struct fuse_init_out init;
	struct iovec patched[2];

	if (!__atomic_exchange_n(&pt->replied, true, __ATOMIC_ACQ_REL) && pt->want && count == 2 &&
	    iov[0].iov_len == sizeof(struct fuse_out_header) &&
	    ((struct fuse_out_header *)iov[0].iov_base)->error == 0 &&
	    iov[1].iov_len == sizeof init) {
		memcpy(&init, iov[1].iov_base, sizeof init);
		if ((init.flags & FUSE_INIT_EXT) && !(init.flags & FUSE_WRITEBACK_CACHE)) {
			init.flags2 |= FS_PT_FUSE_PASSTHROUGH_FLAGS2;
			init.unused[0] = FS_PT_MAX_STACK_DEPTH;
			patched[0] = iov[0];
			patched[1] = (struct iovec){ &init, sizeof init };
			return writev(fd, patched, 2);
		}
	}
	return writev(fd, iov, count);
}

static ssize_t fs_pt_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

/* libfuse offers splice only to a custom I/O that splices itself. */
static ssize_t fs_pt_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
                            unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int fs_pt_install(fs_ctx *c, fs_pt *pt, bool want)
{
	static const struct fuse_custom_io io = {
		.writev = fs_pt_writev,
		.read = fs_pt_read,
		.splice_receive = fs_pt_splice,
		.splice_send = fs_pt_splice,
	};

	memset(pt, 0, sizeof *pt);
	pthread_mutex_init(&pt->mu, NULL);
	pt->state = want ? FS_PT_UNKNOWN : FS_PT_OFF;
	pt->want = want;
	pt->fd = fuse_session_fd(c->se);
	c->pt = pt;
	return fuse_session_custom_io(c->se, &io, pt->fd);
}

void fs_pt_free(fs_pt *pt)
{
	pthread_mutex_destroy(&pt->mu);
}

static int fs_pt_register(fs_pt *pt, int fd)
{
	struct fs_pt_backing_map map = { .fd = fd };
	int id = ioctl(pt->fd, FS_PT_IOC_BACKING_OPEN, &map);

	return id < 0 ? -errno : id;
}

int fs_pt_backing(fs_pt *pt, int fd)
{
	int state = __atomic_load_n(&pt->state, __ATOMIC_ACQUIRE);
	struct stat st;
	int id;

	if (state == FS_PT_OFF)
		return -1;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < FS_PT_MIN_SIZE)
		return -1;
	if (state == FS_PT_ON)
		return fs_pt_register(pt, fd);
	pthread_mutex_lock(&pt->mu);
	state = __atomic_load_n(&pt->state, __ATOMIC_ACQUIRE);
	id = state == FS_PT_OFF ? -1 : fs_pt_register(pt, fd);
	if (state == FS_PT_UNKNOWN) {
		if (id >= 0) {
			ts_log(LOG_INFO, "file reads go straight to the store (FUSE passthrough)");
		} else {
			ts_log(LOG_INFO, "file reads go through the daemon: the kernel refused FUSE "
			       "passthrough (%s)", strerror(-id));
			id = -1;
		}
		__atomic_store_n(&pt->state, id >= 0 ? FS_PT_ON : FS_PT_OFF, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&pt->mu);
	return id;
}

int fs_pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing)
{
	struct fs_pt_open_out out;
	struct iovec iov = { &out, sizeof out };

	if (backing < 0) {
		fi->keep_cache = 1;   /* immutable: the page cache stays valid across opens */
		return fuse_reply_open(req, fi);
	}
	/* Only the flags the kernel allows beside passthrough (not keep_cache). */
	memset(&out, 0, sizeof out);
	out.fh = fi->fh;
	out.open_flags = FS_PT_FOPEN_PASSTHROUGH;
	out.backing_id = backing;
	return fuse_reply_iov(req, &iov, 1);
}

void fs_pt_drop(fs_pt *pt, int backing)
{
	uint32_t id = (uint32_t)backing;

	if (backing >= 0)
		(void)ioctl(pt->fd, FS_PT_IOC_BACKING_CLOSE, &id);
}
