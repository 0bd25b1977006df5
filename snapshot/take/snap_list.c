/* snap_list.c - the sorted list of a snapshot's items (snap_int.h). */
#include "take/snap_int.h"

#include <stdlib.h>
#include <string.h>

void snap_list_free(snap_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		snap_item_free_rel(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

int snap_item_cmp(const void *a, const void *b)
{
	return strcmp(((const snap_item *)a)->rel, ((const snap_item *)b)->rel);
}

void snap_item_free_rel(snap_item *it)
{
	if (!it->borrowed)
		free(it->rel);
}

bool snap_list_reserve(snap_list *l, size_t n)
{
	if (n <= l->cap)
		return true;
	snap_item *nv = realloc(l->v, n * sizeof *nv);
	if (!nv)
		return false;
	l->v = nv;
	l->cap = n;
	return true;
}

/* Appends *it; the list owns it->rel from then on (unless borrowed), the
 * caller still on failure. */
ts_err_code snap_list_push(snap_list *l, const snap_item *it, ts_err *e)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		snap_item *nv = realloc(l->v, ncap * sizeof *nv);
		if (!nv)
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = *it;
	return TS_OK;
}

void snap_list_drop(snap_list *l, snap_item *it)
{
	it->type = 0;
	__atomic_fetch_add(&l->gone, 1, __ATOMIC_RELAXED);
}

/* Drop the items that went (type 0): the list is then what the tree holds. */
void snap_list_compact(snap_list *l)
{
	size_t k = 0;

	if (!l->gone)
		return;   /* a pass for nothing, under Trac's lock (snap_int.h: cand) */
	l->gone = 0;
	/* Nothing moves up to the first that went: at 200,000 items, copying
	 * each onto itself cost milliseconds under Trac's lock. */
	while (k < l->n && l->v[k].type)
		k++;
	for (size_t i = k; i < l->n; i++) {
		if (l->v[i].type)
			l->v[k++] = l->v[i];
		else
			snap_item_free_rel(&l->v[i]);
	}
	l->n = k;
}

void snap_item_stat_set(snap_item *it, const struct stat *s)
{
	it->st = (snap_stat){ .st_dev = s->st_dev, .st_ino = s->st_ino, .st_size = s->st_size,
	                      .st_mtim = s->st_mtim, .st_ctim = s->st_ctim, .st_mode = s->st_mode,
	                      .st_uid = s->st_uid, .st_gid = s->st_gid };
	if (it->type == 'd')
		it->dir_atim = s->st_atim;
}

void snap_item_stat_get(const snap_item *it, struct stat *d)
{
	const snap_stat *s = &it->st;

	memset(d, 0, sizeof *d);
	d->st_dev = s->st_dev;
	d->st_ino = s->st_ino;
	d->st_size = s->st_size;
	if (it->type == 'd')
		d->st_atim = it->dir_atim;
	d->st_mtim = s->st_mtim;
	d->st_ctim = s->st_ctim;
	d->st_mode = s->st_mode;
	d->st_uid = s->st_uid;
	d->st_gid = s->st_gid;
}

void snap_item_retype(snap_item *it, char type)
{
	it->type = type;
	it->store_ino = 0;
	it->store_ctime = (struct timespec){ 0, 0 };
	snap_item_clear_sha(it);
}

size_t snap_sha_room(char type, bool may_share)
{
	return type == 'l' || (type == 'f' && may_share) ? 32 : 0;
}

const unsigned char *snap_item_sha(const snap_item *it)
{
	static const unsigned char none[32];

	return it->has_sha ? (const unsigned char *)it->rel + strlen(it->rel) + 1 : none;
}

bool snap_item_set_sha(snap_item *it, const unsigned char sha[32])
{
	size_t len = strlen(it->rel) + 1;

	if (!it->sha_room) {
		char *rel = malloc(len + 32);
		if (!rel)
			return false;
		memcpy(rel, it->rel, len);
		snap_item_free_rel(it);   /* owned paths have room: never freed here */
		it->rel = rel;
		it->borrowed = false;
		it->sha_room = true;
	}
	memcpy(it->rel + len, sha, 32);
	it->has_sha = true;
	return true;
}

void snap_item_clear_sha(snap_item *it)
{
	it->has_sha = false;
}

/* Blocks of this many bytes, or one path's when longer (PATH_MAX). */
#define SNAP_PATHS_BLOCK (1u << 20)

char *snap_paths_dup(snap_paths *p, const char *s, size_t room)
{
	size_t len = strlen(s) + 1;

	if (len + room > p->left) {
		size_t size = len + room > SNAP_PATHS_BLOCK ? len + room : SNAP_PATHS_BLOCK;
		char **nb = realloc(p->blocks, (p->n + 1) * sizeof *nb);
		if (!nb)
			return NULL;
		p->blocks = nb;
		if (!(p->blocks[p->n] = malloc(size)))
			return NULL;
		p->at = p->blocks[p->n++];
		p->left = size;
	}
	char *d = p->at;
	memcpy(d, s, len);
	p->at += len + room;
	p->left -= len + room;
	return d;
}

void snap_paths_free(snap_paths *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->blocks[i]);
	free(p->blocks);
	memset(p, 0, sizeof *p);
}
