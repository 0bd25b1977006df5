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
 * /proc/self/fd/N/LEAF, N the directory that holds the entry (its node's
 * parent's descriptor, fs_node.c: reached one component at a time, no
 * symlink followed), and the l* calls do not follow LEAF either.  A
 * snapshot's tree itself is "N/.". */
typedef struct fs_xattr_at {
	int pfd;            /* the entry's directory */
	bool tmp;           /* pfd is ours to close */
	char path[64 + NAME_MAX];
} fs_xattr_at;

static int fs_xattr_open(fs_ctx *c, fuse_ino_t ino, fs_xattr_at *x)
{
	const char *leaf;

	x->pfd = -1;
	x->tmp = false;
	if (fs_kind_of(ino) != FS_NODE)
		return -ENODATA;
	x->pfd = fs_node_parentfd(c->nodes, fs_node_of(ino), &x->tmp, &leaf);
	if (x->pfd < 0)
		return x->pfd;
	if (ts_beneath_procpath(x->path, sizeof x->path, x->pfd, leaf) < 0)
		return -errno;
	return 0;
}

static void fs_xattr_close(fs_xattr_at *x)
{
	fs_fd_done(x->pfd, x->tmp);
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
static bool fs_xattr_visible(fuse_req_t req, const char *name)
{
	if (!strncmp(name, "trusted.", 8))
		return fuse_req_ctx(req)->uid == 0;
	return true;
}

/* The mount's root tells root where its store is (TS_MOUNT_STORE_XATTR):
 * restore finds MNT/NAME's manifest by it (doc/contract.md section 6).
 * Not listed: a name only tracsnap asks for. */
static int fs_xattr_store(fuse_req_t req, const char *name, char *value, size_t size)
{
	const char *store = fs_req_ctx(req)->d.store.root;
	size_t n = strlen(store);

	if (strcmp(name, TS_MOUNT_STORE_XATTR) || fuse_req_ctx(req)->uid != 0)
		return -ENODATA;
	if (!size)
		return (int)n;
	if (size < n)
		return -ERANGE;
	memcpy(value, store, n);
	return (int)n;
}

/* A getxattr or listxattr result: size 0 asks for the length only. */
static void fs_xattr_reply(fuse_req_t req, size_t size, const char *value, int rc)
{
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (!size)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, value, (size_t)rc);
}

void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fs_xattr_at x = { .pfd = -1 };
	char *value = size ? malloc(size) : NULL;
	int rc;

	if (size && !value)
		rc = -ENOMEM;
	else if (!fs_xattr_visible(req, name))
		rc = -ENODATA;
	else if (fs_kind_of(ino) == FS_ROOT)
		rc = fs_xattr_store(req, name, value, size);
	else if (!(rc = fs_xattr_open(fs_req_ctx(req), ino, &x))) {
		ssize_t n = lgetxattr(x.path, name, value, size);
		rc = n < 0 ? -errno : (int)n;
	}
	fs_xattr_close(&x);
	fs_xattr_reply(req, size, value, rc);
	free(value);
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

/* The names of entry ino the caller may see, into list (size bytes; 0:
 * the length only).  Root sees every name: no need to filter. */
static int fs_listxattr_names(fuse_req_t req, fuse_ino_t ino, char *list, size_t size)
{
	fs_xattr_at x;
	char *all = NULL;
	ssize_t n;
	size_t len = 0;
	int rc = fs_xattr_open(fs_req_ctx(req), ino, &x);

	if (rc) {
		fs_xattr_close(&x);
		return rc == -ENODATA ? 0 : rc;   /* the root and `latest` have none */
	}
	if (fuse_req_ctx(req)->uid == 0) {
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
		if (fs_xattr_visible(req, name)) {
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

void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *list = size ? malloc(size) : NULL;
	int rc = size && !list ? -ENOMEM : fs_listxattr_names(req, ino, list, size);

	fs_xattr_reply(req, size, list, rc);
	free(list);
}
