/* fs_ops.c - the view: mount root, `latest`, and read-only snapshot trees.
 *
 * Paths arrive from libfuse's high-level API.  "/NAME/rest" is served from
 * STORE/NAME/tree/rest through a directory fd, so a rest near PATH_MAX still
 * resolves.  Snapshot contents never change, so what the kernel caches may be
 * kept (keep_cache); the root changes with every mkdir, so negative lookups are
 * never cached (a first-access name must reach us).
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
#include <sys/xattr.h>
#include <unistd.h>

#include "base/beneath.h"
#include "fs.h"
#include "base/log.h"
#include "store/name.h"

#define FS_LATEST_INO 2
#define FS_CACHE_TIMEOUT 3600.0   /* fixed: the root is 1, store directories are never 2 */

typedef enum { FS_ROOT, FS_LATEST, FS_SNAP } fs_kind;

typedef struct fs_path {
	fs_kind kind;
	char name[NAME_MAX + 1];   /* snapshot name (FS_SNAP) */
	const char *rest;          /* inside the tree: "." or "a/b" */
} fs_path;

static fs_ctx *fs_get(void)
{
	return fuse_get_context()->private_data;
}

/* Split "/NAME/rest"; -ENOENT for names the view never has. */
static int fs_split(const char *path, fs_path *p)
{
	const char *s = path + 1, *slash;
	size_t n;

	memset(p, 0, sizeof *p);
	if (!*s) {
		p->kind = FS_ROOT;
		return 0;
	}
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (n > NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(p->name, s, n);
	p->name[n] = '\0';
	if (!strcmp(p->name, TS_NAME_LATEST)) {
		p->kind = FS_LATEST;
		return slash ? -ENOTDIR : 0;
	}
	p->kind = FS_SNAP;
	p->rest = (slash && slash[1]) ? slash + 1 : ".";
	return 0;
}

/* Open STORE/NAME/tree; -ENOENT when there is no such snapshot (names
 * starting with '.' are the store's own files and never shown). */
static int fs_tree_fd(fs_ctx *c, const char *name)
{
	char rel[NAME_MAX + 8];
	int fd;
	if (name[0] == '.')
		return -ENOENT;
	snprintf(rel, sizeof rel, "%s/tree", name);
	fd = openat(c->d.store.dirfd, rel, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Who asks may manage snapshots (daemon.h: root, the mounting user, the
 * manage group); the supplementary groups are fetched only when they
 * matter. */
static bool fs_may_manage(const fs_ctx *c)
{
	const struct fuse_context *fc = fuse_get_context();
	gid_t groups[64];
	int n;

	if (!dmn_may_manage_needs_groups(&c->d.who, fc->uid, fc->gid))
		return dmn_may_manage(&c->d.who, fc->uid, fc->gid, NULL, 0);
	n = fuse_getgroups(64, groups);
	return dmn_may_manage(&c->d.who, fc->uid, fc->gid, groups, n < 0 ? 0 : n > 64 ? 64 : n);
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
		if (fstat((int)fi->fh, st) < 0)
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
		close(tfd);
		if (!rc && !(d->d = fdopendir(fd))) {
			rc = -errno;
			close(fd);
		}
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
	if (d->d)
		closedir(d->d);
	free(d);
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_get();
	fs_path p;
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
	fd = openat(tfd, p.rest, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	rc = fd < 0 ? -errno : 0;
	close(tfd);
	if (rc)
		return rc;
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1;   /* immutable: the page cache stays valid across opens */
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n = pread((int)fi->fh, buf, size, off);
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
	v->buf[0].fd = (int)fi->fh;
	v->buf[0].pos = off;
	*bufp = v;
	return 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(fs_get()->d.store.dirfd, sv) < 0 ? -errno : 0;
}

/* xattrs of entries inside a snapshot.  There is no *at form of lgetxattr
 * or llistxattr (before getxattrat, Linux 6.13), so they go through
 * /proc/self/fd/N/LEAF, N the directory that holds the entry, reached below
 * the tree with ts_beneath_parent: no symlink on the way is followed, and
 * the l* calls do not follow LEAF either.  The tree itself is "N/.". */
typedef struct fs_xattr_at {
	int tfd, pfd;   /* the tree; the entry's directory (maybe tfd) */
	char path[64 + NAME_MAX];
} fs_xattr_at;

static int fs_xattr_open(const char *path, fs_xattr_at *x)
{
	fs_path p;
	const char *leaf = ".";
	int rc = fs_split(path, &p);

	x->tfd = x->pfd = -1;
	if (rc)
		return rc;
	if (p.kind != FS_SNAP)
		return -ENODATA;
	x->tfd = fs_tree_fd(fs_get(), p.name);
	if (x->tfd < 0)
		return x->tfd;
	if (strcmp(p.rest, ".")) {
		x->pfd = ts_beneath_parent(x->tfd, p.rest, &leaf);
		if (x->pfd < 0)
			return errno == ELOOP ? -ENOENT : -errno;
	} else {
		x->pfd = x->tfd;
	}
	if (ts_beneath_procpath(x->path, sizeof x->path, x->pfd, leaf) < 0)
		return -errno;
	return 0;
}

static void fs_xattr_close(fs_xattr_at *x)
{
	if (x->tfd < 0)
		return;
	if (x->pfd >= 0)
		ts_beneath_parent_close(x->tfd, x->pfd);
	close(x->tfd);
}

/* May the caller see the xattr called name?  The daemon reads as root, so it
 * must do what the real filesystem does for the caller:
 *   - trusted.*: only for CAP_SYS_ADMIN (the VFS refuses getxattr with
 *     ENODATA, and ext4, xfs, btrfs and tmpfs leave them out of listxattr).
 *     The daemon cannot see the caller's capabilities, only its uid: uid 0.
 *   - security.*, system.* (the ACLs): every filesystem lists them to anyone
 *     who can reach the entry, and the VFS leaves reading them to the
 *     filesystem and the LSM; the mount enforces reaching the entry
 *     (default_permissions), so they are shown as they are.  An LSM's own
 *     refusals are not repeated here.
 *   - user.*: the kernel already asks for read permission on the entry
 *     before it sends the request (xattr_permission). */
static bool fs_xattr_visible(const char *name)
{
	if (!strncmp(name, "trusted.", 8))
		return fuse_get_context()->uid == 0;
	return true;
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	fs_xattr_at x;
	int rc;

	if (!fs_xattr_visible(name))
		return -ENODATA;
	rc = fs_xattr_open(path, &x);
	if (!rc) {
		ssize_t n = lgetxattr(x.path, name, value, size);
		rc = n < 0 ? -errno : (int)n;
	}
	fs_xattr_close(&x);
	return rc;
}

/* The whole name list of x, malloc'd, in *out; its length or -errno. */
static ssize_t fs_listxattr_all(const fs_xattr_at *x, char **out)
{
	for (int tries = 0; tries < 8; tries++) {
		ssize_t n = llistxattr(x->path, NULL, 0), m;
		char *buf;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		buf = malloc((size_t)n);
		if (!buf)
			return -ENOMEM;
		m = llistxattr(x->path, buf, (size_t)n);
		if (m >= 0) {
			*out = buf;
			return m;
		}
		free(buf);
		if (errno != ERANGE)
			return -errno;   /* ERANGE: it grew meanwhile, ask again */
	}
	return -ERANGE;
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
	fs_xattr_at x;
	char *all = NULL;
	ssize_t n;
	size_t len = 0;
	int rc = fs_xattr_open(path, &x);

	if (rc == -ENODATA) {
		fs_xattr_close(&x);
		return 0;   /* the root and `latest` have none */
	}
	if (rc) {
		fs_xattr_close(&x);
		return rc;
	}
	if (fuse_get_context()->uid == 0) {
		/* Root sees every name: no need to filter. */
		n = llistxattr(x.path, list, size);
		fs_xattr_close(&x);
		return n < 0 ? -errno : (int)n;
	}
	n = fs_listxattr_all(&x, &all);
	fs_xattr_close(&x);
	if (n < 0)
		return (int)n;
	for (size_t off = 0; off < (size_t)n;) {
		const char *name = all + off;
		size_t l = strnlen(name, (size_t)n - off) + 1;
		if (fs_xattr_visible(name)) {
			if (size && len + l <= size)
				memcpy(list + len, name, l);
			len += l;
		}
		off += l;
	}
	free(all);
	if (size && len > size)
		return -ERANGE;
	return (int)len;
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

static int fs_mkdir(const char *path, mode_t mode)
{
	fs_ctx *c = fs_get();
	fs_path p;
	ts_err e;
	int rc = fs_split(path, &p);
	(void)mode;

	if (rc)
		return rc == -ENOTDIR ? -EEXIST : rc;
	if (p.kind == FS_LATEST)
		return -EINVAL;     /* reserved for the symlink */
	if (p.kind != FS_SNAP || strcmp(p.rest, "."))
		return -EROFS;
	if (!fs_may_manage(c))
		return -EACCES;
	if (ts_name_check(p.name, &e) != TS_OK) {
		ts_log(LOG_INFO, "mkdir %s refused: %s", path, e.msg);
		return -EINVAL;
	}
	if (dmn_take(&c->d, p.name, DMN_WHY_MKDIR, dmn_auto_mask_now(&c->d, p.name), false,
	             &e) != TS_OK)
		return -fs_errno(&e);
	return 0;
}

static int fs_rmdir(const char *path)
{
	fs_ctx *c = fs_get();
	fs_path p;
	ts_err e;
	int rc = fs_split(path, &p);

	if (rc)
		return rc;
	if (p.kind == FS_LATEST)
		return -ENOTDIR;
	if (p.kind != FS_SNAP)
		return -EBUSY;
	if (strcmp(p.rest, "."))
		return -EROFS;
	if (!fs_may_manage(c))
		return -EACCES;
	if (dmn_delete(&c->d, p.name, &e) != TS_OK)
		return -fs_errno(&e);
	return 0;
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	fs_ctx *c = fs_get();
	fs_path a, b;
	ts_err e;
	int rc;

	if ((rc = fs_split(from, &a)) || (rc = fs_split(to, &b)))
		return rc == -ENOTDIR ? -EINVAL : rc;
	if (a.kind == FS_LATEST || b.kind == FS_LATEST)
		return -EINVAL;
	if (a.kind != FS_SNAP || b.kind != FS_SNAP)
		return -EINVAL;
	if (strcmp(a.rest, ".") || strcmp(b.rest, "."))
		return -EROFS;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if (!fs_may_manage(c))
		return -EACCES;
	if (ts_name_check(b.name, &e) != TS_OK)
		return -EINVAL;
	if (dmn_rename(&c->d, a.name, b.name, &e) != TS_OK)
		return -fs_errno(&e);
	return 0;
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
	dmn_start(&c->d);
	ts_log(LOG_INFO, "serving %s on %s (store %s)", c->d.env.root, c->mnt, c->d.store.root);
	return c;
}

static void fs_destroy(void *data)
{
	fs_ctx *c = data;
	fs_watch_stop(c);
	dmn_stop(&c->d);
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
