/* fs_plus.c - which snapshot directories the kernel has had with attributes.
 *
 * The kernel asks for READDIRPLUS (names with attributes) each time a
 * directory is listed from its start, and libfuse's high-level API cannot
 * ask it to cache directory listings (it drops cache_readdir from opendir's
 * reply).  For immutable directories the attributes it got once stay valid
 * for the whole entry timeout: sending them again costs a stat per entry here
 * and a dentry update per entry in the kernel, which doubled the time of a
 * warm `find` over 100,000 files.  So each directory gets attributes once;
 * later listings send names only.  If the kernel has dropped an entry since
 * (memory pressure, drop_caches), it looks it up: fs_getattr then calls
 * fs_plus_forget for the parent, and its next listing carries attributes
 * again.  Only speed depends on this set, never what is shown.
 */
#include "fs.h"

#include <stdint.h>
#include <stdlib.h>

/* Past this many directories the set starts again (8 MiB of keys). */
#define FS_PLUS_MAX (1u << 20)

static uint64_t fs_plus_key(dev_t dev, ino_t ino)
{
	/* 0 marks an empty slot; no directory has inode 0. */
	return ((uint64_t)ino * 0x9E3779B97F4A7C15ull) ^ (uint64_t)dev;
}

/* Slot of key, or of the empty slot where it would go (cap is a power of 2,
 * never full). */
static size_t fs_plus_slot(const fs_ctx *c, uint64_t key)
{
	size_t i = (size_t)(key ^ (key >> 29)) & (c->plus_cap - 1);
	while (c->plus_keys[i] && c->plus_keys[i] != key)
		i = (i + 1) & (c->plus_cap - 1);
	return i;
}

static void fs_plus_grow(fs_ctx *c)
{
	size_t ncap = c->plus_cap ? c->plus_cap * 2 : 1024;
	uint64_t *old = c->plus_keys, *nk;
	size_t ocap = c->plus_cap;

	if (c->plus_n >= FS_PLUS_MAX) {   /* start again rather than grow without bound */
		free(old);
		old = NULL;
		ocap = 0;
		ncap = 1024;
		c->plus_n = 0;
	}
	nk = calloc(ncap, sizeof *nk);
	if (!nk)
		return;   /* keep the old table; inserts fail while it is full */
	c->plus_keys = nk;
	c->plus_cap = ncap;
	c->plus_n = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i]) {
			nk[fs_plus_slot(c, old[i])] = old[i];
			c->plus_n++;
		}
	free(old);
}

bool fs_plus_seen(fs_ctx *c, dev_t dev, ino_t ino)
{
	uint64_t key = fs_plus_key(dev, ino);
	bool seen;

	pthread_mutex_lock(&c->plus_mu);
	seen = c->plus_cap && c->plus_keys[fs_plus_slot(c, key)] == key;
	pthread_mutex_unlock(&c->plus_mu);
	return seen;
}

void fs_plus_mark(fs_ctx *c, dev_t dev, ino_t ino)
{
	uint64_t key = fs_plus_key(dev, ino);

	pthread_mutex_lock(&c->plus_mu);
	if ((c->plus_n + 1) * 2 > c->plus_cap)
		fs_plus_grow(c);
	if ((c->plus_n + 1) * 2 <= c->plus_cap) {
		size_t i = fs_plus_slot(c, key);
		if (!c->plus_keys[i]) {
			c->plus_keys[i] = key;
			c->plus_n++;
		}
	}
	pthread_mutex_unlock(&c->plus_mu);
}

void fs_plus_forget(fs_ctx *c, dev_t dev, ino_t ino)
{
	uint64_t key = fs_plus_key(dev, ino);

	pthread_mutex_lock(&c->plus_mu);
	if (c->plus_cap) {
		size_t i = fs_plus_slot(c, key);
		if (c->plus_keys[i] == key) {
			/* Linear probing: re-place the run after the hole. */
			c->plus_keys[i] = 0;
			c->plus_n--;
			for (size_t j = (i + 1) & (c->plus_cap - 1); c->plus_keys[j];
			     j = (j + 1) & (c->plus_cap - 1)) {
				uint64_t k = c->plus_keys[j];
				c->plus_keys[j] = 0;
				c->plus_keys[fs_plus_slot(c, k)] = k;
			}
		}
	}
	pthread_mutex_unlock(&c->plus_mu);
}

void fs_plus_free(fs_ctx *c)
{
	free(c->plus_keys);
	c->plus_keys = NULL;
	c->plus_cap = c->plus_n = 0;
}
