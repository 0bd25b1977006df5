/* prune.h - which snapshots a retention policy keeps, and removing the rest.
 *
 * The policy words mean what restic's `forget` gives them: with the snapshots
 * taken newest first, --keep-last N keeps the N newest; --keep-hourly N keeps,
 * for each of the N most recent hours (local time) that have snapshots, the
 * newest snapshot of that hour; daily, weekly (ISO 8601 week) and monthly
 * likewise.  A snapshot kept by any rule is kept; a snapshot counts for every
 * rule it satisfies (borg's "kept by an earlier rule does not count" is not
 * followed).  A rule with count 0 keeps nothing.
 *
 * Ownership: callers own every array passed in; nothing is retained.
 */
#ifndef TS_PRUNE_H
#define TS_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include "base/err.h"
#include "store/store.h"

typedef struct ts_prune_policy {
	int last, hourly, daily, weekly, monthly;   /* 0: rule not used */
} ts_prune_policy;

/* Does the policy keep nothing at all (no rule given)?  Pruning with such a
 * policy would delete every snapshot: callers refuse it. */
bool ts_prune_policy_empty(const ts_prune_policy *p);

/* Parse "word:N[:word:N...]" (words last, hourly, daily, weekly, monthly;
 * N a decimal number 1..1000000), as the mount option keep= takes it.
 * TS_ERR_USAGE "keep=<spec>: <what is wrong>" on anything else. */
ts_err_code ts_prune_policy_parse(const char *spec, ts_prune_policy *p, ts_err *e);

/* Pure policy: v holds n snapshots oldest first (as ts_store_list returns
 * them); set keep[i] for each one the policy keeps.  Uses local time. */
void ts_prune_select(const ts_store_snap *v, size_t n, const ts_prune_policy *p, bool *keep);

/* Called for each snapshot of the store, oldest first: kept or removed (with
 * dry_run: would be removed). */
typedef void (*ts_prune_fn)(void *arg, const char *name, bool keep);

/* Apply the policy to the store: take the writers' lock (up to lock_timeout_s)
 * unless the caller holds it, list, select, remove (unless dry_run), release
 * the lock if taken here.  TS_ERR_USAGE for an empty policy.  Stops at the
 * first removal that fails. */
ts_err_code ts_prune_store(ts_store *s, const ts_prune_policy *p, bool dry_run,
                           int lock_timeout_s, ts_prune_fn fn, void *arg, ts_err *e);

/* ts_prune_store, except that the snapshots named in protect[0..nprotect)
 * are kept whatever the policy says (they still count for its rules as any
 * other snapshot).  The daemon protects the names its auto formats give for
 * the current period, so that pruning after a first access never removes
 * the snapshot another first access of this period made. */
ts_err_code ts_prune_store_except(ts_store *s, const ts_prune_policy *p,
                                  const char *const *protect, size_t nprotect, bool dry_run,
                                  int lock_timeout_s, ts_prune_fn fn, void *arg, ts_err *e);

#endif
