/* fs_xattr.c - extended attributes of entries inside snapshots, as the
 * real filesystem would show them to the caller. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/beneath.h"
#include "fs_int.h"
#include "restore/restore.h"

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

/* The mount's root tells root where its store is (TS_MOUNT_STORE_XATTR):
 * restore finds MNT/NAME's manifest by it (doc/contract.md section 6).
 * Not listed: a name only tracsnap asks for. */
static int fs_xattr_store(const char *name, char *value, size_t size)
{
	const char *store = fs_get()->d.store.root;
	size_t n = strlen(store);

	if (strcmp(name, TS_MOUNT_STORE_XATTR) || fuse_get_context()->uid != 0)
		return -ENODATA;
	if (!size)
		return (int)n;
	if (size < n)
		return -ERANGE;
	memcpy(value, store, n);
	return (int)n;
}

int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	fs_xattr_at x;
	int rc;

	if (!fs_xattr_visible(name))
		return -ENODATA;
	if (!strcmp(path, "/"))
		return fs_xattr_store(name, value, size);
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

int fs_listxattr(const char *path, char *list, size_t size)
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
