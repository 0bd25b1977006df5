/* fs_path.c - which snapshot a request's path names (fs_int.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "fs_int.h"
#include "store/name.h"

fs_ctx *fs_get(void)
{
	return fuse_get_context()->private_data;
}

int fs_split(const char *path, fs_path *p)
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

int fs_tree_fd(fs_ctx *c, const char *name)
{
	char rel[NAME_MAX + 8];
	int fd;
	if (name[0] == '.')
		return -ENOENT;
	snprintf(rel, sizeof rel, "%s/tree", name);
	fd = openat(c->d.store.dirfd, rel, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
