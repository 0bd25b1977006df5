/* fs_dir.c - listing directories: the mount root (the store's snapshots and
 * `latest`) and directories inside snapshots (fs_int.h).
 *
 * A snapshot directory never changes, so the kernel may keep its listing
 * (cache_readdir, keep_cache): `find` run again is served by the kernel
 * alone.  When it does ask (first listing, or after it dropped its caches)
 * it asks for READDIRPLUS and gets every entry's attributes with its name
 * (fs_init turns off the kernel's "plus only for the first part"), so it
 * needs no lookup per entry afterwards.  Each entry sent with attributes
 * is a lookup the kernel will forget, so it holds a node (fs_node.c).
 *
 * The root is listed from the store each time from offset 0 and served from
 * that list for the rest of the listing; its entries go without
 * attributes: the kernel looks up each one it needs, and a lookup of a root
 * name is where first access happens.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_int.h"
#include "store/name.h"

typedef struct fs_root_ent {
	char name[NAME_MAX + 1];
	ino_t ino;
	mode_t type;
} fs_root_ent;

/* An open directory.  mu serialises the listing requests of one handle. */
typedef struct fs_dir {
	pthread_mutex_t mu;
	/* Below a snapshot: */
	DIR *d;
	struct dirent *pending;   /* read, not yet sent: the last reply was full */
	off_t pos;                /* the offset after the last entry sent */
	fs_node *node;
	dev_t dev;                /* its snapshot's STORE/NAME/tree, counted */
	ino_t ino;
	/* The root (d == NULL): the listing made at offset 0. */
	fs_root_ent *ents;
	size_t nents;
} fs_dir;

static fs_dir *fs_dir_of(const struct fuse_file_info *fi)
{
	return (fs_dir *)(uintptr_t)fi->fh;
}

static void fs_dir_free(fs_ctx *c, fs_dir *d)
{
	if (d->d) {
		closedir(d->d);
		fs_handle_release(c, d->dev, d->ino);
	}
	free(d->ents);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_ctx *c = fs_req_ctx(req);
	fs_node *n = fs_node_of(ino);
	fs_dir *d;
	bool tmp;
	int rc = 0, pfd, fd;

	if (fs_kind_of(ino) == FS_LATEST || (fs_kind_of(ino) == FS_NODE && !S_ISDIR(n->type))) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&d->mu, NULL);
	if (fs_kind_of(ino) == FS_NODE) {
		pfd = fs_node_dirfd(c->nodes, n, &tmp);
		if (pfd < 0) {
			rc = -pfd;
		} else {
			/* "." from the node's own O_PATH descriptor: the directory it
			 * was opened on, readable now. */
			fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			rc = fd < 0 ? errno : 0;
			fs_fd_done(pfd, tmp);
			if (!rc && !(d->d = fdopendir(fd))) {
				rc = errno;
				close(fd);
			}
		}
		if (!rc && (rc = -fs_handle_open(c, n)) != 0) {
			closedir(d->d);
			d->d = NULL;
		}
		if (rc) {
			fs_dir_free(c, d);
			fuse_reply_err(req, rc);
			return;
		}
		d->node = n;
		d->dev = n->snap->dev;
		d->ino = n->snap->ino;
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_dir_free(c, d);   /* interrupted: the kernel will not release it */
}

/* The root's listing, made again at offset 0: `.`, `..`, each snapshot
 * with its tree's inode (readdir(3) hides entries with d_ino 0), `latest`. */
static int fs_root_list(fs_ctx *c, fs_dir *d)
{
	ts_store_snap *v = NULL;
	size_t n = 0, k = 0;
	ts_err e;

	free(d->ents);
	d->ents = NULL;
	d->nents = 0;
	if (ts_store_list(&c->d.store, &v, &n, &e) != TS_OK)
		return fs_errno(&e);
	d->ents = calloc(n + 3, sizeof *d->ents);
	if (!d->ents) {
		ts_store_list_free(v, n);
		return ENOMEM;
	}
	d->ents[k++] = (fs_root_ent){ .name = ".", .ino = FS_ROOT_INO, .type = S_IFDIR };
	d->ents[k++] = (fs_root_ent){ .name = "..", .ino = FS_ROOT_INO, .type = S_IFDIR };
	for (size_t i = 0; i < n; i++) {
		char rel[NAME_MAX + 8];
		struct stat st;
		snprintf(rel, sizeof rel, "%s/tree", v[i].name);
		if (!strcmp(v[i].name, TS_NAME_LATEST) || strlen(v[i].name) > NAME_MAX ||
		    fstatat(c->d.store.dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(d->ents[k].name, sizeof d->ents[k].name, "%s", v[i].name);
		d->ents[k].ino = st.st_ino;
		d->ents[k++].type = S_IFDIR;
	}
	if (n > 0)
		d->ents[k++] = (fs_root_ent){ .name = TS_NAME_LATEST, .ino = FS_LATEST_INO,
		                              .type = S_IFLNK };
	d->nents = k;
	ts_store_list_free(v, n);
	return 0;
}

static size_t fs_root_fill(fuse_req_t req, fs_dir *d, char *buf, size_t size, off_t off,
                           bool plus)
{
	size_t used = 0;

	for (size_t i = (size_t)off; i < d->nents; i++) {
		struct fuse_entry_param e;
		size_t len;
		memset(&e, 0, sizeof e);
		e.attr.st_ino = d->ents[i].ino;
		e.attr.st_mode = d->ents[i].type;
		/* e.ino 0: the kernel takes the name only and looks it up. */
		len = plus ? fuse_add_direntry_plus(req, buf + used, size - used, d->ents[i].name, &e,
		                                    (off_t)i + 1)
		           : fuse_add_direntry(req, buf + used, size - used, d->ents[i].name, &e.attr,
		                               (off_t)i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	return used;
}

/* Entries of a snapshot directory from d's position; with plus each with
 * its attributes and a node.  Returns the bytes filled, or -errno when
 * nothing could be. */
static ssize_t fs_snap_fill(fuse_req_t req, fs_ctx *c, fs_dir *d, char *buf, size_t size,
                            off_t off, bool plus)
{
	size_t used = 0;
	uint64_t sent = 0;
	int err = 0;

	if (off != d->pos) {
		seekdir(d->d, off);
		d->pending = NULL;
		d->pos = off;
	}
	for (;;) {
		struct dirent *de = d->pending;
		struct fuse_entry_param e;
		fs_node *child = NULL;
		size_t len;

		d->pending = NULL;
		if (!de) {
			errno = 0;
			if (!(de = readdir(d->d))) {
				err = errno;
				break;
			}
		}
		memset(&e, 0, sizeof e);
		e.attr.st_ino = de->d_ino;
		e.attr.st_mode = DTTOIF(de->d_type);
		if (plus && strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    fstatat(dirfd(d->d), de->d_name, &e.attr, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!(child = fs_node_child(c->nodes, d->node, de->d_name, &e.attr))) {
				d->pending = de;
				err = ENOMEM;
				break;
			}
			fs_fix_stat(&e.attr);
			e.ino = fs_nodeid(child);
			e.attr_timeout = e.entry_timeout = FS_CACHE_TIMEOUT;
		}
		len = plus ? fuse_add_direntry_plus(req, buf + used, size - used, de->d_name, &e,
		                                    de->d_off)
		           : fuse_add_direntry(req, buf + used, size - used, de->d_name, &e.attr,
		                               de->d_off);
		if (len > size - used) {
			/* Full: this entry starts the next reply. */
			if (child)
				fs_node_forget(c->nodes, child, 1);
			d->pending = de;
			break;
		}
		used += len;
		d->pos = de->d_off;
		sent += child != NULL;
	}
	if (sent)
		fs_prefetch_served(c->prefetch, sent);
	return used == 0 && err ? -err : (ssize_t)used;
}

static void fs_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi, bool plus)
{
	fs_ctx *c = fs_req_ctx(req);
	fs_dir *d = fs_dir_of(fi);
	char *buf = malloc(size ? size : 1);
	ssize_t used = 0;
	(void)ino;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&d->mu);
	if (d->d) {
		if (plus && off == 0)
			fs_prefetch_listing(c->prefetch, dirfd(d->d));
		used = fs_snap_fill(req, c, d, buf, size, off, plus);
	} else {
		int rc = off == 0 ? fs_root_list(c, d) : 0;
		used = rc ? -rc : (ssize_t)fs_root_fill(req, d, buf, size, off, plus);
	}
	/* Unlocked before the reply: once the kernel has it, the directory
	 * may be released (and d freed) on another thread.  (Were this reply
	 * lost to an interrupt, the nodes it counted would stay until unmount:
	 * a few bytes each.) */
	pthread_mutex_unlock(&d->mu);
	if (used < 0)
		fuse_reply_err(req, (int)-used);
	else
		fuse_reply_buf(req, buf, (size_t)used);
	free(buf);
}

void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	fs_readdir_common(req, ino, size, off, fi, false);
}

void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	fs_readdir_common(req, ino, size, off, fi, true);
}

void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fs_dir_free(fs_req_ctx(req), fs_dir_of(fi));
	fuse_reply_err(req, 0);
}
