/* fs_int.h - what the FUSE translator's files share (the top of fs/ only: it
 * includes fuse.h, so neither cli/ nor fs/daemon/ may include it).
 *
 * fs_ops.c: the operation table and the view (getattr, readdir, read...);
 * fs_manage.c: mkdir, rmdir, rename at the mount root; fs_xattr.c: xattrs
 * inside snapshots; fs_path.c: how a request's path names a snapshot.
 */
#ifndef TS_FS_INT_H
#define TS_FS_INT_H

#include <fuse.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "fs.h"

typedef enum { FS_ROOT, FS_LATEST, FS_SNAP } fs_kind;

typedef struct fs_path {
	fs_kind kind;
	char name[NAME_MAX + 1];   /* snapshot name (FS_SNAP) */
	const char *rest;          /* inside the tree: "." or "a/b" (points into the path) */
} fs_path;

/* The daemon behind the request being served. */
fs_ctx *fs_get(void);

/* Split "/NAME/rest"; -ENAMETOOLONG, or -ENOTDIR below `latest`. */
int fs_split(const char *path, fs_path *p);

/* Open STORE/NAME/tree (O_PATH); -ENOENT when there is no such snapshot
 * (names starting with '.' are the store's own files and never shown). */
int fs_tree_fd(fs_ctx *c, const char *name);

/* May the caller of the request manage snapshots (fs/daemon/daemon.h)? */
bool fs_may_manage(const fs_ctx *c);

/* fs_manage.c */
int fs_mkdir(const char *path, mode_t mode);
int fs_rmdir(const char *path);
int fs_rename(const char *from, const char *to, unsigned int flags);

/* fs_xattr.c */
int fs_getxattr(const char *path, const char *name, char *value, size_t size);
int fs_listxattr(const char *path, char *list, size_t size);

#endif
