/* daemon_plus.c - which snapshot directories the kernel has had with attributes.
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
 * dmn_plus_forget for the parent, and its next listing carries attributes
 * again.  Only speed depends on this set, never what is shown.
 */
#include "daemon_plus.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t dmn_plus_key(dev_t dev, ino_t ino)
{
	/* 0 marks an empty slot; no directory has inode 0. */
	return ((uint64_t)ino * 0x9E3779B97F4A7C15ull) ^ (uint64_t)dev;
}

/* Slot of key, or of the empty slot where it would go (cap is a power of 2,
 * never full). */
static size_t dmn_plus_slot(const dmn_plus *p, uint64_t key)
{
	size_t i = (size_t)(key ^ (key >> 29)) & (p->cap - 1);
	while (p->keys[i] && p->keys[i] != key)
		i = (i + 1) & (p->cap - 1);
	return i;
}

static void dmn_plus_grow(dmn_plus *p)
{
	size_t ncap = p->cap ? p->cap * 2 : 1024;
	uint64_t *old = p->keys, *nk;
	size_t ocap = p->cap;

	if (p->n >= DMN_PLUS_MAX) {   /* start again rather than grow without bound */
		free(old);
		old = NULL;
		ocap = 0;
		ncap = 1024;
		p->n = 0;
	}
	nk = calloc(ncap, sizeof *nk);
	if (!nk)
		return;   /* keep the old table; inserts fail while it is full */
	p->keys = nk;
	p->cap = ncap;
	p->n = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i]) {
			nk[dmn_plus_slot(p, old[i])] = old[i];
			p->n++;
		}
	free(old);
}

bool dmn_plus_seen(dmn_plus *p, dev_t dev, ino_t ino)
{
	uint64_t key = dmn_plus_key(dev, ino);
	bool seen;

	pthread_mutex_lock(&p->mu);
	seen = p->cap && p->keys[dmn_plus_slot(p, key)] == key;
	pthread_mutex_unlock(&p->mu);
	return seen;
}

void dmn_plus_mark(dmn_plus *p, dev_t dev, ino_t ino)
{
	uint64_t key = dmn_plus_key(dev, ino);

	pthread_mutex_lock(&p->mu);
	if ((p->n + 1) * 2 > p->cap)
		dmn_plus_grow(p);
	if ((p->n + 1) * 2 <= p->cap) {
		size_t i = dmn_plus_slot(p, key);
		if (!p->keys[i]) {
			p->keys[i] = key;
			p->n++;
		}
	}
	pthread_mutex_unlock(&p->mu);
}

void dmn_plus_forget(dmn_plus *p, dev_t dev, ino_t ino)
{
	uint64_t key = dmn_plus_key(dev, ino);

	pthread_mutex_lock(&p->mu);
	if (p->cap) {
		size_t i = dmn_plus_slot(p, key);
		if (p->keys[i] == key) {
			/* Linear probing: re-place the run after the hole. */
			p->keys[i] = 0;
			p->n--;
			for (size_t j = (i + 1) & (p->cap - 1); p->keys[j];
			     j = (j + 1) & (p->cap - 1)) {
				uint64_t k = p->keys[j];
				p->keys[j] = 0;
				p->keys[dmn_plus_slot(p, k)] = k;
			}
		}
	}
	pthread_mutex_unlock(&p->mu);
}

void dmn_plus_init(dmn_plus *p)
{
	pthread_mutex_init(&p->mu, NULL);
	p->keys = NULL;
	p->cap = p->n = 0;
}

void dmn_plus_free(dmn_plus *p)
{
	free(p->keys);
	p->keys = NULL;
	p->cap = p->n = 0;
	pthread_mutex_destroy(&p->mu);
}
