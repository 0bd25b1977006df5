/* fs_manage.c - snapshot management at the mount root: mkdir takes a
 * snapshot, rmdir deletes one, rename renames one (man/tracsnap.1).  The
 * rules are the daemon's (fs/daemon/daemon_take.c); here are the checks
 * of the request and errno at the edge. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "fs_int.h"
#include "store/name.h"

/* Who asks may manage snapshots (daemon.h: root, the mounting user, the
 * manage group); the supplementary groups are fetched only when they
 * matter. */
bool fs_may_manage(const fs_ctx *c)
{
	const struct fuse_context *fc = fuse_get_context();
	gid_t groups[64];
	int n;

	if (!dmn_may_manage_needs_groups(&c->d.who, fc->uid, fc->gid))
		return dmn_may_manage(&c->d.who, fc->uid, fc->gid, NULL, 0);
	n = fuse_getgroups(64, groups);
	return dmn_may_manage(&c->d.who, fc->uid, fc->gid, groups, n < 0 ? 0 : n > 64 ? 64 : n);
}

int fs_mkdir(const char *path, mode_t mode)
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

int fs_rmdir(const char *path)
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

int fs_rename(const char *from, const char *to, unsigned int flags)
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
