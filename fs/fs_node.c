/* fs_node.c - the kernel's inodes: one node per entry it holds (fs_int.h).
 *
 * With libfuse's high-level API every request came as a path that had to
 * be walked again from the store, one openat per component, and a lookup
 * inside a snapshot cost a walk of its parent.  Here a request names a node
 * and the node has what it takes: a directory keeps an O_PATH descriptor
 * (opened the first time a request needs it), so a lookup is one fstatat
 * and an open one openat from the parent's descriptor.  Nothing is
 * resolved through a path string and no symlink is followed: descriptors
 * are opened one component at a time with O_NOFOLLOW from the tree's, and
 * each must be the directory the node recorded (the store is root's and
 * sealed trees do not change, but a mismatch costs only ESTALE).
 *
 * Nodes are found by (parent, name) so that a name the kernel looks up
 * again keeps its node id.  Each directory descriptor kept counts against
 * fds_max (a share of RLIMIT_NOFILE, fs_main.c): past it a directory is
 * opened again for each request that needs it, which is slower but never
 * fails for want of descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_int.h"

#define FS_NODES_MIN_BUCKETS 1024

static size_t fs_node_hash(const fs_node *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h ^ (h >> 31));
}

int fs_nodes_init(fs_nodes *t, long fds_max)
{
	memset(t, 0, sizeof *t);
	t->buckets = calloc(FS_NODES_MIN_BUCKETS, sizeof *t->buckets);
	if (!t->buckets)
		return -ENOMEM;
	t->nbuckets = FS_NODES_MIN_BUCKETS;
	t->fds_max = fds_max;
	pthread_mutex_init(&t->mu, NULL);
	return 0;
}

static void fs_node_free_list(fs_node *n)
{
	for (fs_node *next; n; n = next) {
		next = n->next;
		if (n->fd >= 0)
			close(n->fd);
		free(n);
	}
}

void fs_nodes_free(fs_nodes *t)
{
	if (!t->buckets)
		return;
	for (size_t i = 0; i < t->nbuckets; i++)
		fs_node_free_list(t->buckets[i]);
	fs_node_free_list(t->stale);
	free(t->buckets);
	t->buckets = NULL;
	t->stale = NULL;
	pthread_mutex_destroy(&t->mu);
}

/* Under mu. */
static fs_node *fs_node_find(fs_nodes *t, const fs_node *parent, const char *name)
{
	fs_node *n = t->buckets[fs_node_hash(parent, name) & (t->nbuckets - 1)];
	while (n && (n->parent != parent || strcmp(n->name, name)))
		n = n->next;
	return n;
}

/* Under mu: double the buckets when they are fewer than the nodes (if
 * memory allows; chains only get longer otherwise). */
static void fs_node_grow(fs_nodes *t)
{
	size_t nb = t->nbuckets * 2;
	fs_node **b;

	if (t->n <= t->nbuckets || !(b = calloc(nb, sizeof *b)))
		return;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (fs_node *n = t->buckets[i], *next; n; n = next) {
			size_t h = fs_node_hash(n->parent, n->name) & (nb - 1);
			next = n->next;
			n->next = b[h];
			b[h] = n;
		}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
}

static void fs_node_hash_in(fs_nodes *t, fs_node *n)
{
	size_t h = fs_node_hash(n->parent, n->name) & (t->nbuckets - 1);
	n->next = t->buckets[h];
	t->buckets[h] = n;
	n->hashed = true;
	t->n++;
	fs_node_grow(t);
}

/* Take n out of its chain (it is hashed). */
static void fs_node_unchain(fs_nodes *t, fs_node *n)
{
	fs_node **pp = &t->buckets[fs_node_hash(n->parent, n->name) & (t->nbuckets - 1)];

	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	n->next = NULL;
	n->hashed = false;
	t->n--;
}

/* No longer found by its name: it waits on the stale list until the
 * kernel forgets it (or the unmount frees it). */
static void fs_node_hash_out(fs_nodes *t, fs_node *n)
{
	if (!n->hashed)
		return;
	fs_node_unchain(t, n);
	n->next = t->stale;
	t->stale = n;
}

static void fs_node_unstale(fs_nodes *t, fs_node *n)
{
	fs_node **pp = &t->stale;

	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp)
		*pp = n->next;
	n->next = NULL;
}

static bool fs_node_is(const fs_node *n, const struct stat *st)
{
	return n->ino == st->st_ino && n->dev == st->st_dev && n->type == (st->st_mode & S_IFMT);
}

static fs_node *fs_node_new(fs_node *parent, const char *name, size_t room, const struct stat *st)
{
	fs_node *n = malloc(sizeof *n + room);

	if (!n)
		return NULL;
	memset(n, 0, sizeof *n);
	n->parent = parent;
	n->snap = parent ? parent->snap : n;
	n->nlookup = 1;
	n->fd = -1;
	n->type = st->st_mode & S_IFMT;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->name = n->name_buf;
	snprintf(n->name, room, "%s", name);
	return n;
}

fs_node *fs_node_snap(fs_nodes *t, const char *name, int tfd, const struct stat *st)
{
	fs_node *n;

	pthread_mutex_lock(&t->mu);
	n = fs_node_find(t, NULL, name);
	if (n && fs_node_is(n, st)) {
		n->nlookup++;
		close(tfd);
		goto out;
	}
	if (n)
		fs_node_hash_out(t, n);   /* the name is another snapshot's now */
	/* Room for any name: a snapshot may be renamed (fs_node_rename_snap). */
	n = fs_node_new(NULL, name, NAME_MAX + 1, st);
	if (!n) {
		close(tfd);
		goto out;
	}
	n->fd = tfd;
	__atomic_add_fetch(&t->fds, 1, __ATOMIC_RELAXED);
	fs_node_hash_in(t, n);
out:
	pthread_mutex_unlock(&t->mu);
	return n;
}

fs_node *fs_node_child(fs_nodes *t, fs_node *parent, const char *name, const struct stat *st)
{
	fs_node *n;

	pthread_mutex_lock(&t->mu);
	n = fs_node_find(t, parent, name);
	if (n && fs_node_is(n, st)) {
		n->nlookup++;
		goto out;
	}
	if (n)
		fs_node_hash_out(t, n);
	n = fs_node_new(parent, name, strlen(name) + 1, st);
	if (!n)
		goto out;
	parent->kids++;
	fs_node_hash_in(t, n);
out:
	pthread_mutex_unlock(&t->mu);
	return n;
}

/* Under mu: free n and the ancestors nothing holds any more. */
static void fs_node_release(fs_nodes *t, fs_node *n)
{
	while (n && n->nlookup == 0 && n->kids == 0) {
		fs_node *p = n->parent;
		if (n->hashed)
			fs_node_unchain(t, n);
		else
			fs_node_unstale(t, n);
		if (n->fd >= 0) {
			close(n->fd);
			__atomic_sub_fetch(&t->fds, 1, __ATOMIC_RELAXED);
		}
		free(n);
		if (p)
			p->kids--;
		n = p;
	}
}

void fs_node_forget(fs_nodes *t, fs_node *n, uint64_t nlookup)
{
	pthread_mutex_lock(&t->mu);
	n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
	fs_node_release(t, n);
	pthread_mutex_unlock(&t->mu);
}

void fs_node_unhash_snap(fs_nodes *t, const char *name)
{
	fs_node *n;

	pthread_mutex_lock(&t->mu);
	if ((n = fs_node_find(t, NULL, name)) != NULL)
		fs_node_hash_out(t, n);
	pthread_mutex_unlock(&t->mu);
}

bool fs_node_rename_snap(fs_nodes *t, const char *from, const char *to)
{
	fs_node *n, *old;

	if (strlen(to) > NAME_MAX)
		return false;
	pthread_mutex_lock(&t->mu);
	if ((old = fs_node_find(t, NULL, to)) != NULL)
		fs_node_hash_out(t, old);
	if ((n = fs_node_find(t, NULL, from)) != NULL) {
		fs_node_unchain(t, n);
		snprintf(n->name, NAME_MAX + 1, "%s", to);
		fs_node_hash_in(t, n);
	}
	pthread_mutex_unlock(&t->mu);
	return n != NULL;
}

fuse_ino_t fs_node_snap_id(fs_nodes *t, const char *name)
{
	fs_node *n;

	pthread_mutex_lock(&t->mu);
	n = fs_node_find(t, NULL, name);
	pthread_mutex_unlock(&t->mu);
	return n ? fs_nodeid(n) : 0;
}

int fs_node_snap_ids(fs_nodes *t, fuse_ino_t **ids, size_t *count)
{
	fuse_ino_t *v = NULL;
	size_t k = 0, cap = 0;
	int rc = 0;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->nbuckets && !rc; i++)
		for (fs_node *n = t->buckets[i]; n && !rc; n = n->next) {
			if (n->parent)
				continue;
			if (k == cap) {
				fuse_ino_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
				if (!nv) {
					rc = -ENOMEM;
					break;
				}
				v = nv;
			}
			v[k++] = fs_nodeid(n);
		}
	pthread_mutex_unlock(&t->mu);
	*ids = v;
	*count = k;
	return rc;
}

void fs_node_snap_name(fs_nodes *t, const fs_node *n, char *buf, size_t len)
{
	pthread_mutex_lock(&t->mu);
	snprintf(buf, len, "%s", n->name);
	pthread_mutex_unlock(&t->mu);
}

void fs_fd_done(int fd, bool tmp)
{
	if (tmp && fd >= 0)
		close(fd);
}

int fs_node_dirfd(fs_nodes *t, fs_node *n, bool *tmp)
{
	int fd = __atomic_load_n(&n->fd, __ATOMIC_ACQUIRE), pfd, expected = -1, err;
	bool ptmp;
	struct stat st;

	*tmp = false;
	if (fd >= 0)
		return fd;
	if (!S_ISDIR(n->type))
		return -ENOTDIR;
	if (!n->parent)
		return -ESTALE;   /* a snapshot's descriptor is opened with its node */
	pfd = fs_node_dirfd(t, n->parent, &ptmp);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, n->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	err = errno;
	fs_fd_done(pfd, ptmp);
	if (fd < 0)
		return -err;
	if (fstat(fd, &st) < 0 || !fs_node_is(n, &st)) {
		close(fd);
		return -ESTALE;
	}
	if (__atomic_add_fetch(&t->fds, 1, __ATOMIC_RELAXED) > t->fds_max) {
		__atomic_sub_fetch(&t->fds, 1, __ATOMIC_RELAXED);
		*tmp = true;
		return fd;
	}
	if (__atomic_compare_exchange_n(&n->fd, &expected, fd, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE))
		return fd;
	/* Another request opened it meanwhile: use that one. */
	close(fd);
	__atomic_sub_fetch(&t->fds, 1, __ATOMIC_RELAXED);
	return expected;
}

int fs_node_parentfd(fs_nodes *t, fs_node *n, bool *tmp, const char **leaf)
{
	if (!n->parent) {
		*leaf = ".";
		return fs_node_dirfd(t, n, tmp);
	}
	*leaf = n->name;
	return fs_node_dirfd(t, n->parent, tmp);
}

int fs_tree_fd(fs_ctx *c, const char *name)
{
	char rel[NAME_MAX + 8];
	int fd;

	if (name[0] == '.' || !name[0])
		return -ENOENT;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	snprintf(rel, sizeof rel, "%s/tree", name);
	fd = openat(c->d.store.dirfd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
