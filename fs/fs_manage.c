/* fs_manage.c - changes asked of the mount: at the root mkdir takes a
 * snapshot, rmdir deletes one, rename renames one (man/tracsnap.1); every
 * other change is refused, EROFS inside a snapshot and EPERM at the root.
 * The rules are the daemon's (fs/daemon/daemon_take.c); here are the
 * checks of the request and errno at the edge. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "fs_int.h"
#include "store/name.h"

/* Who asks may manage snapshots (daemon.h: root, the mounting user, the
 * manage group); the supplementary groups are fetched only when they
 * matter. */
bool fs_may_manage(fuse_req_t req)
{
	const fs_ctx *c = fs_req_ctx(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	gid_t groups[64];
	int n;

	if (!dmn_may_manage_needs_groups(&c->d.who, fc->uid, fc->gid))
		return dmn_may_manage(&c->d.who, fc->uid, fc->gid, NULL, 0);
	n = fuse_req_getgroups(req, 64, groups);
	return dmn_may_manage(&c->d.who, fc->uid, fc->gid, groups, n < 0 ? 0 : n > 64 ? 64 : n);
}

/* A request refused for who made it: the reason where the administrator
 * looks (the log, and `tracsnap status` through the store's events). */
static void fs_log_not_allowed(fuse_req_t req, const char *op, const char *name)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);

	ts_log(LOG_NOTICE, "%s /%s refused: uid %u may not manage snapshots (root, the mounting "
	       "user and manage_group may)", op, name, (unsigned)fc->uid);
}

static bool fs_is_latest(fuse_ino_t parent, const char *name)
{
	return fs_kind_of(parent) == FS_ROOT && !strcmp(name, TS_NAME_LATEST);
}

void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fs_ctx *c = fs_req_ctx(req);
	ts_err e;
	(void)mode;

	if (fs_is_latest(parent, name)) {
		fuse_reply_err(req, EINVAL);     /* reserved for the symlink */
		return;
	}
	if (fs_kind_of(parent) != FS_ROOT) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (strlen(name) > NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (!fs_may_manage(req)) {
		fs_log_not_allowed(req, "mkdir", name);
		fuse_reply_err(req, EACCES);
		return;
	}
	if (ts_name_check(name, &e) != TS_OK) {
		ts_log(LOG_NOTICE, "mkdir /%s refused: %s", name, e.msg);
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (dmn_take(&c->d, name, DMN_WHY_MKDIR, dmn_auto_mask_now(&c->d, name), false,
	             &e) != TS_OK) {
		fuse_reply_err(req, fs_errno(&e));
		return;
	}
	fs_reply_snap(req, c, name, false);
}

void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fs_ctx *c = fs_req_ctx(req);
	ts_err e;

	if (fs_is_latest(parent, name)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (fs_kind_of(parent) != FS_ROOT) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (!fs_may_manage(req)) {
		fs_log_not_allowed(req, "rmdir", name);
		fuse_reply_err(req, EACCES);
		return;
	}
	if (dmn_delete(&c->d, name, &e) != TS_OK) {
		fuse_reply_err(req, fs_errno(&e));
		return;
	}
	fs_node_unhash_snap(c->nodes, name);
	fuse_reply_err(req, 0);
}

void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags)
{
	fs_ctx *c = fs_req_ctx(req);
	ts_err e;
	int rc = 0;

	if (fs_is_latest(parent, name) || fs_is_latest(newparent, newname))
		rc = EINVAL;
	else if (fs_kind_of(parent) != FS_ROOT || fs_kind_of(newparent) != FS_ROOT)
		rc = EROFS;
	else if (flags & RENAME_EXCHANGE)
		rc = EINVAL;
	else if (!fs_may_manage(req)) {
		fs_log_not_allowed(req, "rename", name);
		rc = EACCES;
	} else if (ts_name_check(newname, &e) != TS_OK) {
		ts_log(LOG_NOTICE, "rename %s -> %s refused: %s", name, newname, e.msg);
		rc = EINVAL;
	}
	else if (dmn_rename(&c->d, name, newname, &e) != TS_OK)
		rc = fs_errno(&e);
	else
		/* The kernel moves its entry, node and all: so do we. */
		(void)fs_node_rename_snap(c->nodes, name, newname);
	fuse_reply_err(req, rc);
}

/* Everything below refuses: EROFS inside a snapshot (a snapshot's own name
 * included), EPERM for the root and `latest`. */
static int fs_refusal(fuse_ino_t parent, const char *name)
{
	return fs_kind_of(parent) == FS_NODE ? EROFS :
	       fs_kind_of(parent) == FS_LATEST || (name && !strcmp(name, TS_NAME_LATEST)) ? EPERM :
	       name ? EROFS : EPERM;
}

void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	/* A name at the root is a snapshot, a directory (or `latest`). */
	fuse_reply_err(req, fs_kind_of(parent) == FS_ROOT && strcmp(name, TS_NAME_LATEST) ? EISDIR :
	                    fs_refusal(parent, name));
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	fuse_reply_err(req, fs_refusal(parent, name));
}

void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, fs_refusal(parent, name));
}

void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	fuse_reply_err(req, fs_refusal(parent, name));
}

void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	fuse_reply_err(req, fs_refusal(newparent, newname));
}

void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	(void)fi;
	fuse_reply_err(req, fs_refusal(ino, NULL));
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags)
{
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, fs_refusal(ino, NULL));
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)name;
	fuse_reply_err(req, fs_refusal(ino, NULL));
}
