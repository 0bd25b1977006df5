/* space.c - how much space removing some snapshots frees (space.h). */
#include "store/space.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/walk.h"

/* One inode met in the walk: open addressing on (dev, ino). */
typedef struct space_ino {
	dev_t dev;
	ino_t ino;               /* 0: empty slot */
	nlink_t nlink, seen;
	uint64_t bytes;
} space_ino;

typedef struct space_set {
	pthread_mutex_t mu;
	space_ino *v;
	size_t cap, n;           /* cap a power of two */
	bool nomem;
} space_set;

static size_t space_hash(dev_t dev, ino_t ino, size_t cap)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static space_ino *space_slot(space_ino *v, size_t cap, dev_t dev, ino_t ino)
{
	size_t i = space_hash(dev, ino, cap);
	while (v[i].ino && (v[i].ino != ino || v[i].dev != dev))
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static bool space_grow(space_set *s)
{
	size_t cap = s->cap ? s->cap * 2 : 4096;
	space_ino *v = calloc(cap, sizeof *v);

	if (!v)
		return false;
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i].ino)
			*space_slot(v, cap, s->v[i].dev, s->v[i].ino) = s->v[i];
	free(s->v);
	s->v = v;
	s->cap = cap;
	return true;
}

static void space_add(space_set *s, const struct stat *st)
{
	space_ino *p;

	pthread_mutex_lock(&s->mu);
	if (s->n * 2 >= s->cap && !space_grow(s)) {
		s->nomem = true;
		goto out;
	}
	p = space_slot(s->v, s->cap, st->st_dev, st->st_ino);
	if (!p->ino) {
		p->dev = st->st_dev;
		p->ino = st->st_ino;
		p->nlink = st->st_nlink;
		p->bytes = (uint64_t)st->st_blocks * 512;
		s->n++;
	}
	p->seen++;
out:
	pthread_mutex_unlock(&s->mu);
}

static ts_err_code space_walk_fn(void *arg, const char *rel, const struct stat *st, ts_err *e)
{
	(void)rel;
	(void)e;
	if (S_ISDIR(st->st_mode)) {
		/* A directory's other links are its own entries' "..": it goes
		 * whole with the tree. */
		struct stat one = *st;
		one.st_nlink = 1;
		space_add(arg, &one);
	} else {
		space_add(arg, st);
	}
	return TS_OK;
}

/* Count everything below STORE/rel, and rel itself. */
static ts_err_code space_count(ts_store *st, space_set *s, const char *rel, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct stat root;
	int fd = openat(st->dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? TS_OK : ts_err_sys(e, errno, "store %s: cannot open %s", st->root, rel);
	if (fstat(fd, &root) == 0)
		(void)space_walk_fn(s, rel, &root, e);
	rc = ts_walk(fd, rel, space_walk_fn, s, NULL, NULL, NULL, e);
	close(fd);
	return rc;
}

ts_err_code ts_space_freed(ts_store *st, const char *const *names, size_t n, uint64_t *bytes,
                           ts_err *e)
{
	ts_err_code rc = TS_OK;
	space_set s = { .mu = PTHREAD_MUTEX_INITIALIZER };

	*bytes = 0;
	for (size_t i = 0; rc == TS_OK && i < n; i++) {
		rc = space_count(st, &s, names[i], e);
		if (rc == TS_OK && ts_store_stage_made_from(st, names[i]))
			rc = space_count(st, &s, TS_STORE_STAGE, e);
	}
	if (rc == TS_OK && s.nomem)
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (size_t i = 0; rc == TS_OK && i < s.cap; i++) {
		const space_ino *p = &s.v[i];
		/* Directories count once each (space_walk_fn); files only when
		 * every link goes. */
		if (p->ino && p->seen >= p->nlink)
			*bytes += p->bytes;
	}
	free(s.v);
	return rc;
}
