/* fs_ops.c - the view: mount root, `latest`, and read-only snapshot trees;
 * lookups, attributes and files, and the operation table (directories are
 * fs_dir.c, management fs_manage.c, xattrs fs_xattr.c).
 *
 * Requests name nodes (fs_node.c): a lookup is one fstatat from the
 * parent's descriptor, an open one openat.  Snapshot contents never
 * change, so names, attributes, file pages and directory listings may stay
 * in the kernel's caches (keep_cache, cache_readdir, long timeouts); the
 * root changes with every mkdir, so its listing is never cached, negative
 * lookups are never cached (a first-access name must reach us), and when
 * the store changes fs_watch.c makes the kernel ask for the attributes of
 * the root, `latest` and the snapshot concerned again.
 *
 * Every handle opened below a snapshot is counted (daemon/daemon_handles.h)
 * until it is released: rmdir and keep= leave a snapshot in use alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/log.h"
#include "fs_int.h"
#include "store/mounts.h"
#include "store/registry.h"
#include "store/name.h"

/* An open file: its descriptor, its passthrough id (-1: none), and the
 * snapshot it counts for. */
typedef struct fs_file {
	int fd;
	int backing;
	dev_t dev;     /* STORE/NAME/tree */
	ino_t ino;
} fs_file;

static fs_file *fs_file_of(const struct fuse_file_info *fi)
{
	return (fs_file *)(uintptr_t)fi->fh;
}

int fs_handle_open(fs_ctx *c, const fs_node *n)
{
	return dmn_handles_open(&c->d.handles, n->snap->dev, n->snap->ino) ? 0 : -ENOMEM;
}

void fs_handle_release(fs_ctx *c, dev_t dev, ino_t ino)
{
	dmn_handles_release(&c->d.handles, dev, ino);
}

int fs_newest(fs_ctx *c, char *out, size_t len)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_err e;
	if (ts_store_list(&c->d.store, &v, &n, &e) != TS_OK)
		return -fs_errno(&e);
	if (n == 0) {
		ts_store_list_free(v, n);
		return -ENOENT;
	}
	snprintf(out, len, "%s", v[n - 1].name);
	ts_store_list_free(v, n);
	return 0;
}

/* A store inode shared by later snapshots gains links and a new ctime each
 * time it is shared; the view reports what the snapshot recorded instead, so
 * that tar never sees a file "change as we read it". */
void fs_fix_stat(struct stat *st)
{
	if (!S_ISDIR(st->st_mode))
		st->st_nlink = 1;
	st->st_ctim = st->st_mtim;
}

static int fs_root_stat(fs_ctx *c, struct stat *st)
{
	memset(st, 0, sizeof *st);
	if (fstat(c->d.store.dirfd, st) < 0)
		return -errno;
	st->st_ino = FS_ROOT_INO;
	/* The kernel checks this before mkdir/rmdir/rename reach us. */
	st->st_mode = S_IFDIR | (c->d.who.has_group ? 0775 : 0755);
	st->st_uid = c->d.who.owner;
	st->st_gid = c->d.who.has_group ? c->d.who.group : c->d.who.owner_gid;
	st->st_nlink = 2;
	return 0;
}

static int fs_latest_stat(fs_ctx *c, struct stat *st)
{
	char newest[NAME_MAX + 1];
	int rc = fs_newest(c, newest, sizeof newest);

	if (rc)
		return rc;
	memset(st, 0, sizeof *st);
	if (fstat(c->d.store.dirfd, st) < 0)
		return -errno;
	st->st_ino = FS_LATEST_INO;
	st->st_mode = S_IFLNK | 0777;
	st->st_uid = c->d.who.owner;
	st->st_gid = c->d.who.owner_gid;
	st->st_nlink = 1;
	st->st_size = (off_t)strlen(newest);
	st->st_blocks = 0;
	return 0;
}

/* Reply with node n (its lookup count already raised); a reply the kernel
 * did not take (the request was interrupted) gives the count back. */
static void fs_reply_node(fuse_req_t req, fs_ctx *c, fs_node *n, const struct stat *st)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof e);
	e.ino = fs_nodeid(n);
	e.attr = *st;
	e.attr_timeout = e.entry_timeout = FS_CACHE_TIMEOUT;
	if (fuse_reply_entry(req, &e) == -ENOENT)
		fs_node_forget(c->nodes, n, 1);
}

void fs_reply_snap(fuse_req_t req, fs_ctx *c, const char *name, bool first_access)
{
	struct stat st;
	unsigned mask;
	ts_err e;
	fs_node *n;
	int fd = fs_tree_fd(c, name);

	if (first_access && fd == -ENOENT && (mask = dmn_auto_mask_now(&c->d, name)) &&
	    ts_name_check(name, NULL) == TS_OK) {
		if (dmn_take(&c->d, name, DMN_WHY_FIRST_ACCESS, mask, !fs_may_manage(req), &e) != TS_OK) {
			fuse_reply_err(req, fs_errno(&e));
			return;
		}
		fd = fs_tree_fd(c, name);
	}
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	if (fstat(fd, &st) < 0) {
		fuse_reply_err(req, errno);
		close(fd);
		return;
	}
	if (!(n = fs_node_snap(c->nodes, name, fd, &st))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs_fix_stat(&st);
	fs_reply_node(req, c, n, &st);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fs_ctx *c = fs_req_ctx(req);
	struct fuse_entry_param e;
	struct stat st;
	fs_node *p, *n;
	bool tmp;
	int pfd, rc;

	switch (fs_kind_of(parent)) {
	case FS_ROOT:
		if (strcmp(name, TS_NAME_LATEST)) {
			fs_reply_snap(req, c, name, true);
			return;
		}
		if ((rc = fs_latest_stat(c, &st)) != 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		memset(&e, 0, sizeof e);
		e.ino = FS_LATEST_NODEID;
		e.attr = st;
		e.attr_timeout = e.entry_timeout = FS_CACHE_TIMEOUT;
		fuse_reply_entry(req, &e);
		return;
	case FS_LATEST:
		fuse_reply_err(req, ENOTDIR);
		return;
	case FS_NODE:
		break;
	}
	p = fs_node_of(parent);
	if (!strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/')) {
		fuse_reply_err(req, ENOENT);   /* never asked by the kernel */
		return;
	}
	pfd = fs_node_dirfd(c->nodes, p, &tmp);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	rc = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? errno : 0;
	fs_fd_done(pfd, tmp);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	if (!(n = fs_node_child(c->nodes, p, name, &st))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs_fix_stat(&st);
	fs_reply_node(req, c, n, &st);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (fs_kind_of(ino) == FS_NODE)
		fs_node_forget(fs_req_ctx(req)->nodes, fs_node_of(ino), nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fs_ctx *c = fs_req_ctx(req);
	for (size_t i = 0; i < count; i++)
		if (fs_kind_of(forgets[i].ino) == FS_NODE)
			fs_node_forget(c->nodes, fs_node_of(forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

/* A snapshot's attributes, if its name still leads to its tree.  Not:
 * ESTALE, on which the kernel looks the name up again (and finds another
 * snapshot under it, or none). */
static int fs_snap_stat(fs_ctx *c, const fs_node *n, struct stat *st)
{
	char name[NAME_MAX + 1];
	int fd, rc;

	fs_node_snap_name(c->nodes, n, name, sizeof name);
	fd = fs_tree_fd(c, name);
	if (fd < 0)
		return fd == -ENOENT ? -ESTALE : fd;
	rc = fstat(fd, st) < 0 ? -errno : 0;
	close(fd);
	if (!rc && (st->st_dev != n->dev || st->st_ino != n->ino))
		rc = -ESTALE;
	return rc;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_req_ctx(req);
	struct stat st;
	const char *leaf;
	fs_node *n;
	bool tmp;
	int rc, pfd;

	switch (fs_kind_of(ino)) {
	case FS_ROOT:
		rc = fs_root_stat(c, &st);
		break;
	case FS_LATEST:
		rc = fs_latest_stat(c, &st);
		if (rc == -ENOENT)
			rc = -ESTALE;   /* no snapshot left: the kernel drops `latest` */
		break;
	default:
		n = fs_node_of(ino);
		if (!n->parent) {
			rc = fs_snap_stat(c, n, &st);
		} else if (S_ISREG(n->type) && fi && fi->fh) {
			/* An open file: its descriptor is at hand. */
			rc = fstat(fs_file_of(fi)->fd, &st) < 0 ? -errno : 0;
		} else if ((pfd = fs_node_parentfd(c->nodes, n, &tmp, &leaf)) < 0) {
			rc = pfd;
		} else {
			rc = fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
			fs_fd_done(pfd, tmp);
		}
		if (!rc)
			fs_fix_stat(&st);
		break;
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, FS_CACHE_TIMEOUT);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	fs_ctx *c = fs_req_ctx(req);
	char buf[PATH_MAX];
	const char *leaf;
	fs_node *n = fs_node_of(ino);
	ssize_t len;
	bool tmp;
	int rc, pfd;

	if (fs_kind_of(ino) == FS_LATEST) {
		rc = fs_newest(c, buf, sizeof buf);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_readlink(req, buf);
		return;
	}
	if (fs_kind_of(ino) != FS_NODE || !S_ISLNK(n->type)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pfd = fs_node_parentfd(c->nodes, n, &tmp, &leaf);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	len = readlinkat(pfd, leaf, buf, sizeof buf - 1);
	rc = len < 0 ? errno : 0;
	fs_fd_done(pfd, tmp);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	buf[len] = '\0';
	fuse_reply_readlink(req, buf);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_req_ctx(req);
	fs_node *n = fs_node_of(ino);
	const char *leaf;
	fs_file *f = NULL;
	bool tmp;
	int rc, pfd, fd = -1;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND))) {
		fuse_reply_err(req, fs_kind_of(ino) == FS_NODE ? EROFS : EACCES);
		return;
	}
	if (fs_kind_of(ino) != FS_NODE || S_ISDIR(n->type)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	pfd = fs_node_parentfd(c->nodes, n, &tmp, &leaf);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	f = malloc(sizeof *f);
	fd = f ? openat(pfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
	rc = !f ? ENOMEM : fd < 0 ? errno : 0;
	fs_fd_done(pfd, tmp);
	if (!rc && (f->backing = fs_pt_backing(c->pt, fd)) < -1)
		rc = -f->backing;
	else if (!rc && (rc = -fs_handle_open(c, n)) != 0)
		fs_pt_drop(c->pt, f->backing);
	if (rc) {
		if (fd >= 0)
			close(fd);
		free(f);
		fuse_reply_err(req, rc);
		return;
	}
	f->fd = fd;
	f->dev = n->snap->dev;
	f->ino = n->snap->ino;
	fi->fh = (uint64_t)(uintptr_t)f;
	if (fs_pt_reply_open(req, fi, f->backing) == -ENOENT) {
		/* The open was interrupted: the kernel will not release it. */
		fs_pt_drop(c->pt, f->backing);
		close(f->fd);
		fs_handle_release(c, f->dev, f->ino);
		free(f);
	}
}

/* A file not in passthrough mode (fs_passthrough.c: a small one, or any on a
 * kernel without it): hand libfuse the descriptor; with splice the data goes from the store's
 * page cache to the kernel without passing through us.
 *
 * The kernel's read-ahead sends several requests at once, which our
 * threads serve out of order from one descriptor: the store file's own
 * read-ahead then no longer sees a sequential reader and reads little
 * ahead.  So each request asks the store for the next four of its size
 * (as much ahead as the mount reads ahead, fs_watch.c; a small random
 * read asks for little).  A cold tar went from 0.64-0.76 of the store
 * tree's throughput to 0.74-0.86 (scripts/bench B4, side by side). */
static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct fuse_bufvec v = FUSE_BUFVEC_INIT(size);
	(void)ino;

	(void)posix_fadvise(fs_file_of(fi)->fd, off + (off_t)size, 4 * (off_t)size,
	                    POSIX_FADV_WILLNEED);
	v.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	v.buf[0].fd = fs_file_of(fi)->fd;
	v.buf[0].pos = off;
	fuse_reply_data(req, &v, FUSE_BUF_SPLICE_MOVE);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_file *f = fs_file_of(fi);
	(void)ino;

	fs_pt_drop(fs_req_ctx(req)->pt, f->backing);
	close(f->fd);
	fs_handle_release(fs_req_ctx(req), f->dev, f->ino);
	free(f);
	fuse_reply_err(req, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	(void)ino;

	if (fstatvfs(fs_req_ctx(req)->d.store.dirfd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* The largest read request libfuse 3.14 still answers with splice.  It
 * splices through a pipe that must hold the data and three pages more, and
 * a pipe grows only to /proc/sys/fs/pipe-max-size (1 MiB by default)
 * without CAP_SYS_RESOURCE; past that it copies the data through a buffer
 * of ours instead (pread, then writev: one copy more of every byte, which
 * cost a third of a cold tar's throughput).  The kernel's largest read
 * (max_pages) follows max_write, so a read request stays within a pipe. */
unsigned fs_splice_max_write(void)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long pipe_max = 1ul << 20;
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "re");

	if (f) {
		if (fscanf(f, "%lu", &pipe_max) != 1)
			pipe_max = 1ul << 20;
		fclose(f);
	}
	if (page <= 0)
		page = 4096;
	if (pipe_max > 1ul << 20)
		pipe_max = 1ul << 20;     /* libfuse's own limit: 256 pages */
	if (pipe_max < 16ul * (unsigned long)page)
		pipe_max = 16ul * (unsigned long)page;
	return (unsigned)(pipe_max - 4ul * (unsigned long)page);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	fs_ctx *c = userdata;

	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->max_write = fs_splice_max_write();
	/* Attributes with every listing, not only its first part: the
	 * kernel caches snapshot listings (cache_readdir), so it asks again
	 * only after it dropped them, and then it needs the attributes too. */
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	if (!c->foreground)
		ts_log_init(TS_LOG_SYSLOG, LOG_INFO);
	dmn_events_on(&c->d);
	/* POSIX ACLs: with this the kernel reads system.posix_acl_access of
	 * each entry through getxattr (fs_getxattr serves it as the snapshot
	 * has it) and checks it as the real filesystem does.  Without it
	 * default_permissions checks only the mode bits, whose group bits are
	 * the ACL's mask: an ACL'd file would let in a group the ACL denies
	 * and keep out a user it grants. */
	if (conn->capable & FUSE_CAP_POSIX_ACL)
		conn->want |= FUSE_CAP_POSIX_ACL;
	else
		ts_log(LOG_WARNING, "the kernel cannot enforce POSIX ACLs on FUSE: files with an "
		       "ACL are checked by their mode bits only");
	fs_watch_start(c);
	fs_prefetch_start(c->prefetch);
	/* Now, in the process that serves (after it detached): tracsnap prune
	 * in another process looks for readers below this mount point. */
	{
		ts_err e;
		ts_err_clear(&e);
		if (ts_mounts_record(&c->d.store, c->mnt, &e) != TS_OK)
			ts_log(LOG_WARNING, "%s: tracsnap prune cannot see what is in use through "
			       "this mount (keep= and rmdir still can)", e.msg);
		/* So that every command given ENV or this mount point finds this
		 * store (store/registry.h). */
		ts_err_clear(&e);
		if (ts_registry_add(c->d.env.root, c->mnt, c->d.store.root, &e) != TS_OK)
			ts_log(LOG_WARNING, "%s: commands given %s or %s will not find this mount's store "
			       "without --store", e.msg, c->d.env.root, c->mnt);
	}
	dmn_start(&c->d);
	ts_log(LOG_INFO, "serving %s on %s (store %s)", c->d.env.root, c->mnt, c->d.store.root);
}

static void fs_destroy(void *userdata)
{
	fs_ctx *c = userdata;
	fs_watch_stop(c);
	fs_prefetch_stop(c->prefetch);
	dmn_stop(&c->d);
	dmn_events_off();
	ts_mounts_unrecord(&c->d.store);
	ts_registry_remove();
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.statfs = fs_statfs,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.rename = fs_rename,
	.unlink = fs_unlink,
	.create = fs_create,
	.mknod = fs_mknod,
	.symlink = fs_symlink,
	.link = fs_link,
	.setattr = fs_setattr,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &fs_ops;
}
