/* prune.c - retention policies (see prune.h). */
#include "store/prune.h"
#include "store/hold.h"
#include "store/space.h"
#include "store/mounts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool ts_prune_policy_empty(const ts_prune_policy *p)
{
	return p->last <= 0 && p->hourly <= 0 && p->daily <= 0 && p->weekly <= 0 &&
	       p->monthly <= 0;
}

ts_err_code ts_prune_policy_parse(const char *spec, ts_prune_policy *p, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *dup = strdup(spec ? spec : ""), *save = NULL, *word, *num, *end;
	long v;
	int *slot;

	memset(p, 0, sizeof *p);
	if (!dup) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (word = strtok_r(dup, ":", &save); word; word = strtok_r(NULL, ":", &save)) {
		if (!strcmp(word, "last"))
			slot = &p->last;
		else if (!strcmp(word, "hourly"))
			slot = &p->hourly;
		else if (!strcmp(word, "daily"))
			slot = &p->daily;
		else if (!strcmp(word, "weekly"))
			slot = &p->weekly;
		else if (!strcmp(word, "monthly"))
			slot = &p->monthly;
		else {
			rc = ts_err_set(e, TS_ERR_USAGE, "keep=%s: unknown word '%s' (last, hourly, "
			                "daily, weekly or monthly)", spec, word);
			goto out;
		}
		num = strtok_r(NULL, ":", &save);
		if (!num) {
			rc = ts_err_set(e, TS_ERR_USAGE, "keep=%s: '%s' needs a number", spec, word);
			goto out;
		}
		v = strtol(num, &end, 10);
		if (*end || end == num || v < 1 || v > 1000000) {
			rc = ts_err_set(e, TS_ERR_USAGE, "keep=%s: %s:%s: must be a number from 1 to 1000000",
			                spec, word, num);
			goto out;
		}
		*slot = (int)v;
	}
	if (ts_prune_policy_empty(p))
		rc = ts_err_set(e, TS_ERR_USAGE, "keep=%s: no rule (e.g. keep=last:7:daily:14)", spec);
out:
	free(dup);
	return rc;
}

enum { PRUNE_LAST, PRUNE_HOURLY, PRUNE_DAILY, PRUNE_WEEKLY, PRUNE_MONTHLY, PRUNE_NRULES };

/* The bucket a snapshot falls in for a rule; equal values = same period. */
static int64_t prune_bucket(int rule, const struct timespec *t, size_t idx)
{
	struct tm tm;
	char wk[16];

	localtime_r(&t->tv_sec, &tm);
	switch (rule) {
	case PRUNE_HOURLY:
		return ((int64_t)tm.tm_year * 10000 + tm.tm_mon * 100 + tm.tm_mday) * 100 + tm.tm_hour;
	case PRUNE_DAILY:
		return (int64_t)tm.tm_year * 10000 + tm.tm_mon * 100 + tm.tm_mday;
	case PRUNE_WEEKLY:
		/* ISO 8601 week-numbering year and week, as restic's ISOWeek(). */
		strftime(wk, sizeof wk, "%G%V", &tm);
		return strtoll(wk, NULL, 10);
	case PRUNE_MONTHLY:
		return (int64_t)tm.tm_year * 100 + tm.tm_mon;
	default:
		return (int64_t)idx;   /* last: every snapshot is its own bucket */
	}
}

void ts_prune_select(const ts_store_snap *v, size_t n, const ts_prune_policy *p, bool *keep)
{
	int left[PRUNE_NRULES] = { p->last, p->hourly, p->daily, p->weekly, p->monthly };
	int64_t last[PRUNE_NRULES];
	bool have[PRUNE_NRULES] = { false };

	/* Newest first: the first snapshot met in a new bucket is that bucket's
	 * newest, and buckets come most recent first. */
	for (size_t k = n; k-- > 0;) {
		keep[k] = !v[k].sealed;
		if (!v[k].sealed)
			continue;   /* neither counted nor removed */
		for (int r = 0; r < PRUNE_NRULES; r++) {
			int64_t b;
			if (left[r] <= 0)
				continue;
			b = prune_bucket(r, &v[k].time, k);
			if (have[r] && b == last[r])
				continue;
			have[r] = true;
			last[r] = b;
			left[r]--;
			keep[k] = true;
		}
	}
}

bool ts_prune_busy_mounts(void *store, const char *name, char *why, size_t len)
{
	char who[512];
	bool busy = ts_mounts_users(store, name, NULL, who, sizeof who) > 0;

	if (busy && len)
		snprintf(why, len, "in use by %s", who);
	return busy;
}

/* The verdict of snapshot i before anything is removed: kept by the
 * policy (or protected), not sealed, held, in use (why filled), or to go. */
static ts_prune_verdict prune_verdict(ts_store *s, const ts_store_snap *sn, bool keep,
                                      const ts_prune_opts *o, char *why, size_t len)
{
	why[0] = '\0';
	if (!sn->sealed)
		return TS_PRUNE_UNSEALED;
	if (keep)
		return TS_PRUNE_KEEP;
	if (ts_hold_is_held(s, sn->name, NULL))
		return TS_PRUNE_HELD;
	/* In use: keep it rather than break its readers (doc/contract.md
	 * section 2). */
	if (o->busy ? o->busy(o->busy_arg, sn->name, why, len) : ts_prune_busy_mounts(s, sn->name, why, len))
		return TS_PRUNE_BUSY;
	return TS_PRUNE_REMOVE;
}

ts_err_code ts_prune_store(ts_store *s, const ts_prune_policy *p, const ts_prune_opts *o,
                           ts_prune_result *res, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_store_snap *v = NULL;
	size_t n = 0, ngo = 0;
	bool *keep = NULL, locked_here = false;
	ts_prune_verdict *verdict = NULL;
	const char **go = NULL;
	char **whys = NULL;
	ts_prune_result r = { 0 };
	char why[600];

	if (ts_prune_policy_empty(p)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "no keep rule given: refusing to remove every snapshot");
		goto out;
	}
	/* A dry run changes nothing and needs no lock (readers never lock). */
	if (!o->dry_run && !s->locked) {
		rc = ts_store_lock(s, o->lock_timeout_s, e);
		if (rc != TS_OK)
			goto out;
		locked_here = true;
	}
	rc = ts_store_list(s, &v, &n, e);
	if (rc != TS_OK)
		goto out;
	keep = calloc(n ? n : 1, sizeof *keep);
	verdict = calloc(n ? n : 1, sizeof *verdict);
	whys = calloc(n ? n : 1, sizeof *whys);
	go = calloc(n ? n : 1, sizeof *go);
	if (!keep || !verdict || !whys || !go) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	ts_prune_select(v, n, p, keep);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < o->nprotect && !keep[i]; j++)
			if (o->protect[j] && !strcmp(v[i].name, o->protect[j]))
				keep[i] = true;
	for (size_t i = 0; i < n; i++) {
		verdict[i] = prune_verdict(s, &v[i], keep[i], o, why, sizeof why);
		if (verdict[i] == TS_PRUNE_BUSY && !(whys[i] = strdup(why))) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (verdict[i] == TS_PRUNE_REMOVE)
			go[ngo++] = v[i].name;
	}
	if (o->measure && ngo) {
		rc = ts_space_freed(s, go, ngo, &r.freed, e);
		if (rc != TS_OK)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		/* Checked again right before the removal: a reader that started
		 * since keeps its view; one that starts between this check and
		 * the rename still loses it. */
		if (verdict[i] == TS_PRUNE_REMOVE && !o->dry_run) {
			verdict[i] = prune_verdict(s, &v[i], false, o, why, sizeof why);
			if (verdict[i] == TS_PRUNE_BUSY && !(whys[i] = strdup(why))) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				goto out;
			}
		}
		if (verdict[i] == TS_PRUNE_REMOVE && !o->dry_run) {
			rc = ts_store_remove(s, v[i].name, e);
			if (rc != TS_OK)
				goto out;
		}
		if (verdict[i] == TS_PRUNE_REMOVE)
			r.removed++;
		else
			r.kept++;
		r.busy += verdict[i] == TS_PRUNE_BUSY;
		r.held += verdict[i] == TS_PRUNE_HELD;
		if (o->fn)
			o->fn(o->arg, v[i].name, verdict[i], whys[i] ? whys[i] : "");
	}
out:
	if (res)
		*res = r;
	if (locked_here)
		ts_store_unlock(s);
	for (size_t i = 0; whys && i < n; i++)
		free(whys[i]);
	free(whys);
	free(go);
	free(verdict);
	free(keep);
	ts_store_list_free(v, n);
	return rc;
}
