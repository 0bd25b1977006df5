/* verify_inodes.c - the per-run table of hashed store inodes (verify_inodes.h). */
#include "store/verify_inodes.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64's finalizer: inode numbers are often consecutive, and the
 * table's index is the low bits of the hash. */
static uint64_t vi_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static size_t vi_home(uint64_t dev, uint64_t ino, size_t cap)
{
	return (size_t)(vi_mix(ino ^ vi_mix(dev)) & (cap - 1));
}

static bool vi_empty(const ts_verify_inode *r)
{
	return r->ino == 0 && r->dev == 0;
}

/* The slot of (dev, ino): its record, or the empty slot where it would go.
 * cap is a power of two and the table is never full. */
static ts_verify_inode *vi_slot(ts_verify_inode *slots, size_t cap, uint64_t dev, uint64_t ino)
{
	size_t i = vi_home(dev, ino, cap);

	while (!vi_empty(&slots[i]) && (slots[i].dev != dev || slots[i].ino != ino))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

void ts_verify_inodes_free(ts_verify_inodes *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}

const unsigned char *ts_verify_inodes_get(const ts_verify_inodes *t, const struct stat *st)
{
	const ts_verify_inode *r;

	if (!t->slots)
		return NULL;
	r = vi_slot(t->slots, t->cap, (uint64_t)st->st_dev, (uint64_t)st->st_ino);
	if (vi_empty(r) || r->size != (int64_t)st->st_size ||
	    r->mtime_sec != (int64_t)st->st_mtim.tv_sec ||
	    r->mtime_nsec != (uint32_t)st->st_mtim.tv_nsec ||
	    r->ctime_sec != (int64_t)st->st_ctim.tv_sec ||
	    r->ctime_nsec != (uint32_t)st->st_ctim.tv_nsec)
		return NULL;
	return r->sha256;
}

bool ts_verify_inodes_stat(const ts_verify_inodes *t, dev_t dev, ino_t ino, struct stat *st)
{
	const ts_verify_inode *r;

	if (!t->slots)
		return false;
	r = vi_slot(t->slots, t->cap, (uint64_t)dev, (uint64_t)ino);
	if (vi_empty(r))
		return false;
	memset(st, 0, sizeof *st);
	st->st_dev = (dev_t)r->dev;
	st->st_ino = (ino_t)r->ino;
	st->st_mode = (mode_t)r->mode;
	st->st_uid = (uid_t)r->uid;
	st->st_gid = (gid_t)r->gid;
	st->st_nlink = (nlink_t)r->nlink;
	st->st_size = (off_t)r->size;
	st->st_mtim.tv_sec = (time_t)r->mtime_sec;
	st->st_mtim.tv_nsec = (long)r->mtime_nsec;
	st->st_ctim.tv_sec = (time_t)r->ctime_sec;
	st->st_ctim.tv_nsec = (long)r->ctime_nsec;
	return true;
}

/* Double the table (or make the first one), re-placing every record. */
static ts_err_code vi_grow(ts_verify_inodes *t, ts_err *e)
{
	size_t cap = t->cap ? t->cap * 2 : 1024;
	ts_verify_inode *slots = calloc(cap, sizeof *slots);

	if (!slots || cap < t->cap) {
		free(slots);
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < t->cap; i++)
		if (!vi_empty(&t->slots[i]))
			*vi_slot(slots, cap, t->slots[i].dev, t->slots[i].ino) = t->slots[i];
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	return TS_OK;
}

ts_err_code ts_verify_inodes_put(ts_verify_inodes *t, const struct stat *st,
                                 const unsigned char sha256[32], ts_err *e)
{
	ts_verify_inode *r;

	/* At most 3/4 full: linear probing stays short. */
	if ((t->n + 1) * 4 > t->cap * 3) {
		ts_err_code rc = vi_grow(t, e);
		if (rc != TS_OK)
			return rc;
	}
	r = vi_slot(t->slots, t->cap, (uint64_t)st->st_dev, (uint64_t)st->st_ino);
	if (vi_empty(r))
		t->n++;
	r->dev = (uint64_t)st->st_dev;
	r->ino = (uint64_t)st->st_ino;
	r->size = (int64_t)st->st_size;
	r->mtime_sec = (int64_t)st->st_mtim.tv_sec;
	r->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	r->ctime_sec = (int64_t)st->st_ctim.tv_sec;
	r->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
	r->mode = (uint32_t)st->st_mode;
	r->uid = (uint32_t)st->st_uid;
	r->gid = (uint32_t)st->st_gid;
	r->nlink = (uint32_t)st->st_nlink;
	memcpy(r->sha256, sha256, 32);
	return TS_OK;
}
