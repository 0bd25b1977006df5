/* beneath.c - reach a name below a directory descriptor, never through a symlink
 * (beneath.h). */
#include "base/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

/* Set once openat2 answered ENOSYS: the kernel is older than 5.6. */
static atomic_bool beneath_no_openat2;

static int beneath_openat2(int dirfd, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
}

/* The fallback: one component at a time, each a directory opened with
 * O_NOFOLLOW, so a symlink anywhere fails with ELOOP (or ENOTDIR). */
static int beneath_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
	char comp[NAME_MAX + 1];
	const char *p = rel;
	int cur = dirfd, ret = -1;

	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		int next;

		if (n > NAME_MAX) {
			errno = ENAMETOOLONG;
			break;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!slash || slash[1] == '\0') {
			ret = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			break;
		}
		next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != dirfd)
			close(cur);
		cur = next;
		if (cur < 0)
			break;
		p = slash + 1;
	}
	if (cur >= 0 && cur != dirfd) {
		int keep = errno;
		close(cur);
		errno = keep;
	}
	return ret;
}

/* ".." anywhere, an absolute path or an empty component: never ours to reach. */
static bool beneath_bad(const char *rel)
{
	const char *p = rel;

	if (rel[0] == '/')
		return true;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);

		if ((n == 2 && p[0] == '.' && p[1] == '.') || (n == 0 && slash))
			return true;
		if (!slash)
			return false;
		p = slash + 1;
	}
}

int ts_beneath_open(int dirfd, const char *rel, int flags, mode_t mode)
{
	int fd;

	if (rel[0] == '\0')
		rel = ".";
	if (beneath_bad(rel)) {
		errno = ELOOP;
		return -1;
	}
	if (!atomic_load_explicit(&beneath_no_openat2, memory_order_relaxed)) {
		fd = beneath_openat2(dirfd, rel, flags, mode);
		if (fd >= 0 || errno != ENOSYS) {
			/* EXDEV is openat2's word for "would leave dirfd": the
			 * same hostile change as a symlink for our callers. */
			if (fd < 0 && errno == EXDEV)
				errno = ELOOP;
			return fd;
		}
		atomic_store_explicit(&beneath_no_openat2, true, memory_order_relaxed);
	}
	return beneath_walk(dirfd, rel, flags, mode);
}

int ts_beneath_open_link(int dirfd, const char *rel)
{
	const char *leaf;
	int pfd = ts_beneath_parent(dirfd, rel, &leaf), fd;

	if (pfd < 0)
		return -1;
	fd = openat(pfd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	ts_beneath_parent_close(dirfd, pfd);
	return fd;
}

int ts_beneath_parent(int dirfd, const char *rel, const char **leaf)
{
	const char *slash = strrchr(rel, '/');
	char dir[PATH_MAX];
	size_t n;
	int fd;

	if (rel[0] == '\0' || (slash && slash[1] == '\0') || beneath_bad(rel) ||
	    strcmp(rel, ".") == 0) {
		errno = EINVAL;
		return -1;
	}
	if (!slash) {
		*leaf = rel;
		return dirfd;
	}
	n = (size_t)(slash - rel);
	if (n >= sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, rel, n);
	dir[n] = '\0';
	fd = ts_beneath_open(dirfd, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return -1;
	*leaf = slash + 1;
	return fd;
}

void ts_beneath_parent_close(int dirfd, int parentfd)
{
	int keep = errno;

	if (parentfd >= 0 && parentfd != dirfd)
		close(parentfd);
	errno = keep;
}

int ts_beneath_procpath(char *buf, size_t size, int dirfd, const char *leaf)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, leaf);

	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

DIR *ts_beneath_list(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0) {
		int err = errno;
		close(fd);
		errno = err;
	}
	return d;
}

/* Close c's levels from the one at index keep on. */
static void beneath_cache_trim(ts_beneath_cache *c, int keep)
{
	int err = errno;

	while (c->depth > keep)
		close(c->fds[--c->depth]);
	errno = err;
}

void ts_beneath_cache_drop(ts_beneath_cache *c)
{
	beneath_cache_trim(c, 0);
}

int ts_beneath_cache_parent(ts_beneath_cache *c, int dirfd, const char *rel, const char **leaf)
{
	const char *slash = strrchr(rel, '/');
	size_t n, p;
	int k = 0;

	if (!slash || rel[0] == '\0' || slash[1] == '\0' || beneath_bad(rel))
		return ts_beneath_parent(dirfd, rel, leaf);   /* dirfd itself, or EINVAL */
	n = (size_t)(slash - rel);
	if (n >= sizeof c->dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (c->depth > 0 && c->rootfd != dirfd)
		beneath_cache_trim(c, 0);
	/* The levels that are a whole-component prefix of rel's parent. */
	while (k < c->depth && c->ends[k] <= n && memcmp(c->dir, rel, c->ends[k]) == 0 &&
	       (c->ends[k] == n || rel[c->ends[k]] == '/'))
		k++;
	beneath_cache_trim(c, k);
	c->rootfd = dirfd;
	p = k ? c->ends[k - 1] + 1 : 0;
	if (k)
		c->dir[p - 1] = '/';   /* was the end of the deepest level */
	while (k == 0 || c->ends[k - 1] < n) {
		int base = k ? c->fds[k - 1] : dirfd, fd;
		bool last = k == TS_BENEATH_CACHE_DEPTH - 1;
		size_t q = p;

		while (q < n && rel[q] != '/')
			q++;
		if (last)
			q = n;   /* the last level takes what is left, resolved beneath */
		memcpy(c->dir + p, rel + p, q - p);
		c->dir[q] = '\0';
		fd = last ? ts_beneath_open(base, c->dir + p, O_PATH | O_DIRECTORY, 0)
		          : openat(base, c->dir + p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -1;
		c->fds[k] = fd;
		c->ends[k] = q;
		c->depth = ++k;
		if (q < n)
			c->dir[q] = '/';
		p = q + 1;
	}
	*leaf = slash + 1;
	return c->fds[k - 1];
}

void ts_beneath_force_walk(bool on)
{
	atomic_store_explicit(&beneath_no_openat2, on, memory_order_relaxed);
}
