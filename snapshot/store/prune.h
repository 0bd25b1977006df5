/* prune.h - which snapshots a retention policy keeps, and removing the rest.
 *
 * The policy words mean what restic's `forget` gives them: with the snapshots
 * taken newest first, --keep-last N keeps the N newest; --keep-hourly N keeps,
 * for each of the N most recent hours (local time) that have snapshots, the
 * newest snapshot of that hour; daily, weekly (ISO 8601 week) and monthly
 * likewise.  A snapshot kept by any rule is kept; a snapshot counts for every
 * rule it satisfies (borg's "kept by an earlier rule does not count" is not
 * followed).  A rule with count 0 keeps nothing.  Only sealed snapshots
 * count and only sealed ones go; one the policy would remove but that a
 * process is using, or that is held (hold.h), is kept and reported
 * (doc/contract.md sections 2, 5).
 *
 * Ownership: callers own every array passed in; nothing is retained.
 */
#ifndef TS_PRUNE_H
#define TS_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
 * them); set keep[i] for each one the policy keeps.  Uses local time.  Only
 * sealed snapshots count toward a rule: an unsealed one (still being hashed
 * and made durable, and lost if the machine goes down first) is kept and
 * never takes the place of a sealed one (doc/contract.md section 5). */
void ts_prune_select(const ts_store_snap *v, size_t n, const ts_prune_policy *p, bool *keep);

/* What became of a snapshot, for ts_prune_fn. */
typedef enum ts_prune_verdict {
	TS_PRUNE_KEEP,       /* kept by the policy or protected */
	TS_PRUNE_REMOVE,     /* removed (with dry_run: would be) */
	TS_PRUNE_UNSEALED,   /* not sealed yet: kept, not counted */
	TS_PRUNE_BUSY,       /* the policy would remove it, but it is in use: kept */
	TS_PRUNE_HELD        /* the policy would remove it, but it is held (hold.h): kept */
} ts_prune_verdict;

/* Called for each snapshot of the store, oldest first.  why: for
 * TS_PRUNE_BUSY, who uses it ("in use by pid 123 (tar)"); "" otherwise. */
typedef void (*ts_prune_fn)(void *arg, const char *name, ts_prune_verdict v, const char *why);

/* Is snapshot name in use, so that it must not be removed now?  When it
 * is, fill why (len bytes) with "in use by ...". */
typedef bool (*ts_prune_busy_fn)(void *arg, const char *name, char *why, size_t len);

typedef struct ts_prune_opts {
	bool dry_run;
	int lock_timeout_s;
	/* Kept whatever the policy says (they still count for its rules as any
	 * other sealed snapshot).  The daemon protects the names its auto
	 * formats give for the current period, so that pruning after a first
	 * access never removes the snapshot another first access of this
	 * period made. */
	const char *const *protect;
	size_t nprotect;
	/* NULL: ts_prune_busy_mounts (in use through any live mount of the
	 * store).  The daemon adds the handles it has open (fs/daemon/). */
	ts_prune_busy_fn busy;
	void *busy_arg;
	ts_prune_fn fn;          /* may be NULL */
	void *arg;
	bool measure;            /* count the space freed (ts_prune_result.freed) */
} ts_prune_opts;

/* The default busy check (busy_arg: the ts_store): a process uses the
 * snapshot through a mount of the store (store/mounts.h). */
bool ts_prune_busy_mounts(void *store, const char *name, char *why, size_t len);

/* What a prune did (with dry_run: would do). */
typedef struct ts_prune_result {
	unsigned removed;     /* snapshots removed */
	unsigned kept;        /* snapshots left, whatever the reason */
	unsigned busy;        /* of those, kept only because they were in use */
	unsigned held;        /* of those, kept only because they are held */
	uint64_t freed;       /* bytes the removed ones held alone (space.h), with measure */
} ts_prune_result;

/* Apply the policy to the store: take the writers' lock (up to
 * lock_timeout_s) unless the caller holds it, list, select, and remove
 * what the policy does not keep (unless dry_run), is not held and no one
 * uses, checked again just before its removal; release the lock if taken
 * here.  With measure, res->freed is what those held alone, counted
 * before removing them (a snapshot found in use only at its removal is
 * counted, not removed).  TS_ERR_USAGE for an empty policy.  Stops at the
 * first removal that fails.  res may be NULL. */
ts_err_code ts_prune_store(ts_store *s, const ts_prune_policy *p, const ts_prune_opts *o,
                           ts_prune_result *res, ts_err *e);

#endif
