/* fs_ops.c - the view: mount root, `latest`, and read-only snapshot trees;
 * the operation table (management is fs_manage.c, xattrs fs_xattr.c).
 *
 * Paths arrive from libfuse's high-level API.  "/NAME/rest" is served from
 * STORE/NAME/tree/rest through a directory fd, so a rest near PATH_MAX still
 * resolves.  Snapshot contents never change, so what the kernel caches may be
 * kept (keep_cache); the root changes with every mkdir, so negative lookups are
 * never cached (a first-access name must reach us).
 *
 * Every handle opened below a snapshot is counted (daemon/daemon_handles.h)
 * until it is released: rmdir and keep= leave a snapshot in use alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/log.h"
#include "fs_int.h"
#include "store/mounts.h"
#include "store/name.h"

#define FS_LATEST_INO 2
#define FS_CACHE_TIMEOUT 3600.0   /* fixed: the root is 1, store directories are never 2 */

/* An open file: its descriptor, and the snapshot it counts for. */
typedef struct fs_file {
	int fd;
	dev_t dev;     /* STORE/NAME/tree */
	ino_t ino;
} fs_file;

static fs_file *fs_file_of(const struct fuse_file_info *fi)
{
	return (fs_file *)(uintptr_t)fi->fh;
}

/* Count a handle below the snapshot whose tree tfd is open on; the key
 * goes into *dev, *ino for the release.  -errno when it cannot be. */
static int fs_handle_open(fs_ctx *c, int tfd, dev_t *dev, ino_t *ino)
{
	struct stat st;

	if (fstat(tfd, &st) < 0)
		return -errno;
	if (!dmn_handles_open(&c->d.handles, st.st_dev, st.st_ino))
		return -ENOMEM;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

static int fs_newest(fs_ctx *c, char *out, size_t len)
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
static void fs_fix_stat(struct stat *st)
{
	if (!S_ISDIR(st->st_mode))
		st->st_nlink = 1;
	st->st_ctim = st->st_mtim;
}

/* A lookup inside a snapshot: the kernel no longer holds this entry, so its
 * directory's next listing must carry attributes again (daemon/daemon_plus.c). */
static void fs_getattr_forget_parent(fs_ctx *c, int treefd, const char *rest)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(rest, '/');
	struct stat st;

	if (!slash)
		snprintf(parent, sizeof parent, ".");
	else
		snprintf(parent, sizeof parent, "%.*s", (int)(slash - rest), rest);
	if (fstatat(treefd, parent, &st, AT_SYMLINK_NOFOLLOW) == 0)
		dmn_plus_forget(&c->d.plus, st.st_dev, st.st_ino);
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_get();
	fs_path p;
	char newest[NAME_MAX + 1];
	unsigned mask;
	ts_err e;
	int rc, fd = -1;

	if (fi && fi->fh) {
		/* An open file: its fd is at hand. */
		if (fstat(fs_file_of(fi)->fd, st) < 0)
			return -errno;
		fs_fix_stat(st);
		return 0;
	}
	rc = fs_split(path, &p);
	if (rc)
		return rc;
	memset(st, 0, sizeof *st);
	switch (p.kind) {
	case FS_ROOT:
		if (fstat(c->d.store.dirfd, st) < 0)
			return -errno;
		st->st_ino = 1;
		/* The kernel checks this before mkdir/rmdir/rename reach us. */
		st->st_mode = S_IFDIR | (c->d.who.has_group ? 0775 : 0755);
		st->st_uid = c->d.who.owner;
		st->st_gid = c->d.who.has_group ? c->d.who.group : c->d.who.owner_gid;
		st->st_nlink = 2;
		return 0;
	case FS_LATEST:
		rc = fs_newest(c, newest, sizeof newest);
		if (rc)
			return rc;
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
	case FS_SNAP:
		fd = fs_tree_fd(c, p.name);
		if (fd == -ENOENT && !strcmp(p.rest, ".") && (mask = dmn_auto_mask_now(&c->d, p.name)) &&
		    ts_name_check(p.name, NULL) == TS_OK) {
			if (dmn_take(&c->d, p.name, DMN_WHY_FIRST_ACCESS, mask, !fs_may_manage(c),
			             &e) != TS_OK)
				return -fs_errno(&e);
			fd = fs_tree_fd(c, p.name);
		}
		if (fd < 0)
			return fd;
		rc = fstatat(fd, p.rest, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
		if (!rc && strcmp(p.rest, "."))
			fs_getattr_forget_parent(c, fd, p.rest);
		close(fd);
		if (!rc)
			fs_fix_stat(st);
		return rc;
	}
	return -ENOENT;
}

static int fs_readlink(const char *path, char *buf, size_t size)
{
	fs_ctx *c = fs_get();
	fs_path p;
	ssize_t n;
	int rc = fs_split(path, &p), fd;

	if (rc)
		return rc;
	if (size == 0)
		return -EINVAL;
	if (p.kind == FS_LATEST)
		return fs_newest(c, buf, size);
	if (p.kind != FS_SNAP)
		return -EINVAL;
	fd = fs_tree_fd(c, p.name);
	if (fd < 0)
		return fd;
	n = readlinkat(fd, p.rest, buf, size - 1);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (!rc)
		buf[n] = '\0';
	return rc;
}

/* Open directory: the root is listed from the store on every readdir. */
typedef struct fs_dir {
	DIR *d;        /* NULL for the root */
	dev_t dev;     /* below a snapshot: its STORE/NAME/tree, counted */
	ino_t ino;
} fs_dir;

static int fs_opendir(const char *path, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_get();
	fs_path p;
	fs_dir *d;
	int rc = fs_split(path, &p), tfd, fd;

	if (rc)
		return rc;
	d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	if (p.kind == FS_SNAP) {
		tfd = fs_tree_fd(c, p.name);
		if (tfd < 0) {
			free(d);
			return tfd;
		}
		fd = openat(tfd, p.rest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rc = fd < 0 ? -errno : 0;
		if (!rc && !(d->d = fdopendir(fd))) {
			rc = -errno;
			close(fd);
		}
		if (!rc && (rc = fs_handle_open(c, tfd, &d->dev, &d->ino)) != 0)
			closedir(d->d);
		close(tfd);
		if (rc) {
			free(d);
			return rc;
		}
		/* (libfuse 3.14's high-level API drops both from opendir's reply;
		 * daemon/daemon_plus.c makes up for the missing directory cache.) */
		fi->keep_cache = 1;
		fi->cache_readdir = 1;
	} else if (p.kind != FS_ROOT) {
		free(d);
		return -ENOTDIR;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	fs_ctx *c = fs_get();
	fs_dir *d = (fs_dir *)(uintptr_t)fi->fh;
	struct dirent *de;
	(void)path;
	(void)off;

	if (!d->d) {
		ts_store_snap *v = NULL;
		size_t n = 0;
		ts_err e;
		if (ts_store_list(&c->d.store, &v, &n, &e) != TS_OK)
			return -fs_errno(&e);
		fill(buf, ".", NULL, 0, 0);
		fill(buf, "..", NULL, 0, 0);
		for (size_t i = 0; i < n; i++) {
			/* The inode getattr reports: readdir(3) hides entries with d_ino 0. */
			char rel[NAME_MAX + 8];
			struct stat st;
			snprintf(rel, sizeof rel, "%s/tree", v[i].name);
			if (!strcmp(v[i].name, TS_NAME_LATEST) ||
			    fstatat(c->d.store.dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			fill(buf, v[i].name, &st, 0, 0);
		}
		if (n > 0) {
			struct stat st = { .st_mode = S_IFLNK, .st_ino = FS_LATEST_INO };
			fill(buf, TS_NAME_LATEST, &st, 0, 0);
		}
		ts_store_list_free(v, n);
		return 0;
	}
	/* readdirplus: attributes with the names, so find and ls -l need no
	 * lookup per entry; once per directory (daemon/daemon_plus.c). */
	struct stat dst;
	bool plus = (flags & FUSE_READDIR_PLUS) && fstat(dirfd(d->d), &dst) == 0 &&
	            !dmn_plus_seen(&c->d.plus, dst.st_dev, dst.st_ino);
	int rc = 0;
	rewinddir(d->d);
	while ((errno = 0, de = readdir(d->d)) != NULL) {
		struct stat st = { .st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type) };
		enum fuse_fill_dir_flags ff = 0;
		if (plus && strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    fstatat(dirfd(d->d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			fs_fix_stat(&st);
			ff = FUSE_FILL_DIR_PLUS;
		}
		if (fill(buf, de->d_name, &st, 0, ff))
			break;
	}
	rc = errno ? -errno : 0;
	if (plus && !rc)
		dmn_plus_mark(&c->d.plus, dst.st_dev, dst.st_ino);
	return rc;
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi)
{
	fs_dir *d = (fs_dir *)(uintptr_t)fi->fh;
	(void)path;
	if (d->d) {
		closedir(d->d);
		dmn_handles_release(&fs_get()->d.handles, d->dev, d->ino);
	}
	free(d);
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_get();
	fs_path p;
	fs_file *f;
	int rc = fs_split(path, &p), tfd, fd;

	if (rc)
		return rc;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND)))
		return p.kind == FS_SNAP ? -EROFS : -EACCES;
	if (p.kind != FS_SNAP)
		return -EISDIR;
	tfd = fs_tree_fd(c, p.name);
	if (tfd < 0)
		return tfd;
	f = malloc(sizeof *f);
	fd = f ? openat(tfd, p.rest, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
	rc = !f ? -ENOMEM : fd < 0 ? -errno : 0;
	if (!rc && (rc = fs_handle_open(c, tfd, &f->dev, &f->ino)) != 0)
		close(fd);
	close(tfd);
	if (rc) {
		free(f);
		return rc;
	}
	f->fd = fd;
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = 1;   /* immutable: the page cache stays valid across opens */
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n = pread(fs_file_of(fi)->fd, buf, size, off);
	(void)path;
	return n < 0 ? -errno : (int)n;
}

/* Hand libfuse the fd: with splice the data goes from the store's page cache
 * to the kernel without passing through us. */
static int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fuse_bufvec *v = malloc(sizeof *v);
	(void)path;
	if (!v)
		return -ENOMEM;
	*v = (struct fuse_bufvec)FUSE_BUFVEC_INIT(size);
	v->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	v->buf[0].fd = fs_file_of(fi)->fd;
	v->buf[0].pos = off;
	*bufp = v;
	return 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	fs_file *f = fs_file_of(fi);
	(void)path;
	close(f->fd);
	dmn_handles_release(&fs_get()->d.handles, f->dev, f->ino);
	free(f);
	return 0;
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(fs_get()->d.store.dirfd, sv) < 0 ? -errno : 0;
}

/* Every change inside a snapshot is refused; at the root only snapshot
 * management (mkdir, rmdir, rename) is allowed. */
static int fs_refuse(const char *path)
{
	fs_path p;
	int rc = fs_split(path, &p);
	if (rc && rc != -ENOTDIR)
		return rc;
	return p.kind == FS_SNAP ? -EROFS : -EPERM;
}

static int fs_unlink(const char *path)
{
	fs_path p;
	int rc = fs_split(path, &p);
	if (rc)
		return rc;
	if (p.kind == FS_SNAP && !strcmp(p.rest, "."))
		return -EISDIR;
	return fs_refuse(path);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	return fs_refuse(path);
}

static int fs_mknod(const char *path, mode_t mode, dev_t dev)
{
	(void)mode;
	(void)dev;
	return fs_refuse(path);
}

static int fs_symlink(const char *target, const char *path)
{
	(void)target;
	return fs_refuse(path);
}

static int fs_link(const char *from, const char *to)
{
	(void)from;
	return fs_refuse(to);
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	return fs_refuse(path);
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)uid;
	(void)gid;
	(void)fi;
	return fs_refuse(path);
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)size;
	(void)fi;
	return fs_refuse(path);
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)tv;
	(void)fi;
	return fs_refuse(path);
}

static int fs_setxattr(const char *path, const char *name, const char *value, size_t size, int flags)
{
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	return fs_refuse(path);
}

static int fs_removexattr(const char *path, const char *name)
{
	(void)name;
	return fs_refuse(path);
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	fs_ctx *c = fs_get();
	/* st_ino comes from the store, so inode numbers survive remounts. */
	cfg->use_ino = 1;
	cfg->readdir_ino = 1;
	/* Snapshots never change: cache names and attributes long.  The root
	 * does change; fs_watch.c invalidates its entries when the store does.
	 * Missing names are never cached: one may be a first-access name. */
	cfg->entry_timeout = FS_CACHE_TIMEOUT;
	cfg->attr_timeout = FS_CACHE_TIMEOUT;
	cfg->negative_timeout = 0;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (!c->foreground)
		ts_log_init(TS_LOG_SYSLOG, LOG_INFO);
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
	fs_watch_start(c, fuse_get_context()->fuse);
	/* Now, in the process that serves (after it detached): tracsnap prune
	 * in another process looks for readers below this mount point. */
	{
		ts_err e;
		ts_err_clear(&e);
		if (ts_mounts_record(&c->d.store, c->mnt, &e) != TS_OK)
			ts_log(LOG_WARNING, "%s: tracsnap prune cannot see what is in use through "
			       "this mount (keep= and rmdir still can)", e.msg);
	}
	dmn_start(&c->d);
	ts_log(LOG_INFO, "serving %s on %s (store %s)", c->d.env.root, c->mnt, c->d.store.root);
	return c;
}

static void fs_destroy(void *data)
{
	fs_ctx *c = data;
	fs_watch_stop(c);
	dmn_stop(&c->d);
	ts_mounts_unrecord(&c->d.store);
}

static const struct fuse_operations fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.read_buf = fs_read_buf,
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
	.chmod = fs_chmod,
	.chown = fs_chown,
	.truncate = fs_truncate,
	.utimens = fs_utimens,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
};

const struct fuse_operations *fs_operations(void)
{
	return &fs_ops;
}
