/* daemon_handles.c - open handles per snapshot (daemon_handles.h).  A few
 * snapshots are read at a time: a short array, searched in order. */
#include "daemon_handles.h"

#include <stdlib.h>
#include <string.h>

void dmn_handles_init(dmn_handles *h)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->mu, NULL);
}

static dmn_handle_count *dmn_handles_find(dmn_handles *h, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].dev == dev && h->v[i].ino == ino)
			return &h->v[i];
	return NULL;
}

int dmn_handles_open(dmn_handles *h, dev_t dev, ino_t ino)
{
	dmn_handle_count *c;
	int ok = 1;

	pthread_mutex_lock(&h->mu);
	c = dmn_handles_find(h, dev, ino);
	if (!c && h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 16;
		dmn_handle_count *nv = realloc(h->v, ncap * sizeof *nv);
		if (!nv) {
			ok = 0;
			goto out;
		}
		h->v = nv;
		h->cap = ncap;
	}
	if (!c) {
		c = &h->v[h->n++];
		*c = (dmn_handle_count){ .dev = dev, .ino = ino, .n = 0 };
	}
	c->n++;
out:
	pthread_mutex_unlock(&h->mu);
	return ok;
}

void dmn_handles_release(dmn_handles *h, dev_t dev, ino_t ino)
{
	dmn_handle_count *c;

	pthread_mutex_lock(&h->mu);
	c = dmn_handles_find(h, dev, ino);
	if (c && --c->n == 0)
		*c = h->v[--h->n];
	pthread_mutex_unlock(&h->mu);
}

unsigned long dmn_handles_count(dmn_handles *h, dev_t dev, ino_t ino)
{
	dmn_handle_count *c;
	unsigned long n;

	pthread_mutex_lock(&h->mu);
	c = dmn_handles_find(h, dev, ino);
	n = c ? c->n : 0;
	pthread_mutex_unlock(&h->mu);
	return n;
}

void dmn_handles_free(dmn_handles *h)
{
	free(h->v);
	pthread_mutex_destroy(&h->mu);
	memset(h, 0, sizeof *h);
}
