/* snap_changes.c - the recheck under Trac's lock, narrowed to what the
 * environment's watcher saw change (ts_snap_changes, snap.h).
 *
 * Why it is sound: the mark is taken before the last full pass ahead of the
 * lock (snap.c).  A change made before the mark is seen by that pass's stat
 * or listing; one made after it is reported by since(), which the watcher
 * answers once Trac's lock is held.  So under the lock only the reported
 * entries need a stat, and the directories holding them a listing; plus,
 * as in a full recheck, every racy item (its stat cannot tell), and every
 * entry of a directory that was not watched all along (unwatched()), whose
 * changes nobody reported.  Whenever the watcher cannot tell (events lost,
 * too many directories unwatched) every entry is looked at, as without a
 * watcher, and the log says why.
 *
 * What a watch cannot see: a write through a shared mapping (mmap) makes no
 * event; its mtime moves only at the next write-back.  Trac writes its
 * files with write(2) (doc/contract.md section 4).
 */
#include "take/snap_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* More unwatched directories than this: look at everything (listing each
 * and stat'ing its entries would cost as much). */
#define SNAP_CHANGES_UNWATCHED_MAX 256

void snap_changes_mark(snap_run *r)
{
	if (!r->o->changes)
		return;
	r->changes_mark = r->o->changes->mark(r->o->changes->arg);
	r->changes_marked = true;
	if (!r->db_marked) {
		r->db_mark = r->changes_mark;
		r->db_marked = true;
	}
}

void snap_changes_db(snap_run *r, ts_dbsnap *db)
{
	const ts_snap_changes *ch = r->o->changes;

	db->precopy_current = r->db_marked && ts_db_can_precopy(r->env) && ch->db_unchanged &&
	                      ch->db_unchanged(ch->arg, r->db_mark);
}

/* Item i's flags were set: it is a candidate of the next subset
 * (snap_int.h). */
static void snap_changes_cand(snap_run *r, size_t i)
{
	if (!r->cand_ok)
		return;
	if (r->ncand == r->cand_cap) {
		size_t ncap = r->cand_cap ? 2 * r->cand_cap : 256;
		size_t *nv = realloc(r->cand, ncap * sizeof *nv);
		if (!nv) {
			r->cand_ok = false;   /* the subset is then found by a pass over all */
			return;
		}
		r->cand = nv;
		r->cand_cap = ncap;
	}
	r->cand[r->ncand++] = i;
}

/* No flag set, and the racy items (copied again whatever their stat says)
 * recorded as candidates: a pass over every item, made before the lock. */
static void snap_changes_reset(snap_run *r)
{
	r->ncand = 0;
	r->cand_ok = true;
	for (size_t i = 0; i < r->items.n; i++) {
		snap_item *it = &r->items.v[i];
		it->look = it->relist = false;
		if (it->racy)
			snap_changes_cand(r, i);
	}
}

static snap_item *snap_changes_find(snap_run *r, const char *rel)
{
	snap_item key = { .rel = (char *)rel };
	return bsearch(&key, r->items.v, r->items.n, sizeof *r->items.v, snap_item_cmp);
}

/* The nearest known ancestor of rel ("." for the top), or NULL. */
static snap_item *snap_changes_ancestor(snap_run *r, const char *rel)
{
	char dir[PATH_MAX];
	size_t n = strlen(rel);

	if (n >= sizeof dir)
		return NULL;
	memcpy(dir, rel, n + 1);
	for (char *slash; (slash = strrchr(dir, '/')) != NULL;) {
		snap_item *it;
		*slash = '\0';
		if ((it = snap_changes_find(r, dir)) != NULL)
			return it;
	}
	return snap_changes_find(r, ".");
}

/* Directory d (an item, index i) was not watched all along: it is listed
 * under the lock, and every entry directly in it stat'ed. */
static void snap_changes_whole_dir(snap_run *r, size_t i)
{
	snap_item *d = &r->items.v[i];
	size_t len = strcmp(d->rel, ".") ? strlen(d->rel) : 0;

	d->look = d->relist = true;
	snap_changes_cand(r, i);
	/* Its entries follow it in path order: "d/..." (all of them for "."). */
	for (size_t k = i + 1; k < r->items.n; k++) {
		const char *rel = r->items.v[k].rel;
		if (len && (strncmp(rel, d->rel, len) || rel[len] != '/'))
			break;
		if (!strchr(rel + (len ? len + 1 : 0), '/')) {
			r->items.v[k].look = true;
			snap_changes_cand(r, k);
		}
	}
}

ts_err_code snap_changes_prepare(snap_run *r, ts_err *e)
{
	const char **dirs = NULL;
	size_t *at = NULL, n = 0, unwatched = 0;
	bool *out = NULL;
	ts_err_code rc = TS_OK;

	if (!r->changes_marked)
		return TS_OK;
	snap_changes_reset(r);
	dirs = malloc((r->items.n + 1) * sizeof *dirs);
	at = malloc((r->items.n + 1) * sizeof *at);
	out = calloc(r->items.n + 1, sizeof *out);
	if (!dirs || !at || !out) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->items.n; i++) {
		if (r->items.v[i].type != 'd')
			continue;
		dirs[n] = r->items.v[i].rel;
		at[n++] = i;
	}
	r->o->changes->unwatched(r->o->changes->arg, r->changes_mark, dirs, n, out);
	for (size_t k = 0; k < n; k++)
		unwatched += out[k];
	if (unwatched > SNAP_CHANGES_UNWATCHED_MAX) {
		r->changes_full = "directories not watched yet";
		goto out;
	}
	for (size_t k = 0; k < n; k++)
		if (out[k])
			snap_changes_whole_dir(r, at[k]);
out:
	free(dirs);
	free(at);
	free(out);
	return rc;
}

/* since()'s callback: rel changed (created, removed, renamed, written, its
 * metadata): stat it, and list its directory, which finds it when it is
 * new and drops it when it went.  Below a directory new since the pass
 * (not an item yet), the nearest known ancestor is listed: the new
 * directory is found there and walked whole. */
static void snap_changes_one(void *arg, const char *rel)
{
	snap_run *r = arg;
	snap_item *it = snap_changes_find(r, rel);
	snap_item *up = strcmp(rel, ".") ? snap_changes_ancestor(r, rel) : NULL;

	if (it) {
		it->look = true;
		snap_changes_cand(r, (size_t)(it - r->items.v));
	}
	if (up) {
		up->look = true;
		up->relist = up->type == 'd';
		snap_changes_cand(r, (size_t)(up - r->items.v));
	} else if (!it) {
		r->changes_full = "a change outside the known tree";   /* not expected */
	}
}

ts_err_code snap_changes_catchup(snap_run *r, ts_err *e)
{
	const char *why = NULL;
	bool told;

	snap_changes_reset(r);
	told = r->o->changes->since(r->o->changes->arg, r->changes_mark, snap_changes_one, r, &why,
	                            &r->changes_mark);
	/* An unexpected path poisons only this pass: the lock's has its own. */
	r->subset = told && !r->changes_full;
	r->changes_full = NULL;
	return snap_recheck(r, false, e);
}

ts_err_code snap_changes_flag(snap_run *r, ts_err *e)
{
	const char *why = NULL;
	uint64_t remark = 0;

	(void)e;
	r->subset = false;
	r->stage_remark = 0;
	if (!r->changes_marked)
		return TS_OK;
	/* The remark: a stage built from this snapshot may be taken as it is
	 * (snap_changes_stage). */
	if (!r->changes_full &&
	    !r->o->changes->since(r->o->changes->arg, r->changes_mark, snap_changes_one, r, &why,
	                          r->o->changes->stage_from ? &remark : NULL))
		r->changes_full = why ? why : "the watcher could not tell";
	if (!r->changes_full)
		r->stage_remark = remark;
	if (r->changes_full) {
		ts_log(LOG_INFO, "snapshot %s: every entry checked again under Trac's lock (%s)",
		       r->o->name, r->changes_full);
		return TS_OK;
	}
	r->subset = true;
	if (r->stats)
		r->stats->watched = true;
	return TS_OK;
}

void snap_changes_stage(snap_run *r, bool from_stage)
{
	const ts_snap_changes *ch = r->o->changes;

	if (ch && ch->stage_from && (from_stage || r->stage_remark))
		r->stats->stage_mark = ch->stage_from(ch->arg, from_stage ? 0 : r->stage_remark);
}

void snap_changes_end(snap_run *r)
{
	if (r->changes_marked)
		r->o->changes->end(r->o->changes->arg);
	r->changes_marked = false;
	free(r->look_idx);
	r->look_idx = NULL;
	r->nlook = 0;
	free(r->cand);
	r->cand = NULL;
	r->ncand = r->cand_cap = 0;
	r->cand_ok = false;
}
