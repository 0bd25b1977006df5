/* snap.h - take one consistent snapshot of an environment into a store.
 *
 * The protocol (doc/design.md): pre-copy everything while Trac runs, take
 * Trac's write lock, re-check metadata and copy only what changed, capture the
 * database, let the writers go, then write the manifest and make the snapshot
 * appear with one rename.  On any failure nothing is left in the store and no
 * lock is held.
 */
#ifndef TS_SNAP_H
#define TS_SNAP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include "env/env.h"
#include "base/err.h"
#include "base/progress.h"
#include "store/store.h"

typedef struct ts_snap_opts {
	const char *name;                 /* validated by ts_snap_take */
	int lock_timeout_s;               /* Trac's write lock and the store lock */
	bool no_database;                 /* files only, as hotcopy --no-database */
	volatile sig_atomic_t *cancel;    /* optional: set to stop early */
	const ts_progress_sink *progress; /* optional: pre-copy progress */
} ts_snap_opts;

typedef struct ts_snap_stats {
	uint64_t files;                   /* regular files in the snapshot */
	uint64_t bytes_copied;            /* content bytes written (or cloned) */
	uint64_t bytes_shared;            /* content bytes hard-linked from the previous snapshot */
	uint64_t files_shared;
	double hold_ms;                   /* Trac's writers held */
	double total_ms;
	struct timespec instant;          /* T, CLOCK_REALTIME */
} ts_snap_stats;

ts_err_code ts_snap_take(ts_store *store, const ts_env *env, const ts_snap_opts *o,
                         ts_snap_stats *stats, ts_err *e);

/* "NAME: 42 files, 1.2 MiB copied, 3.4 MiB shared, lock held 12 ms, total 340 ms" */
void ts_snap_format_stats(const char *name, const ts_snap_stats *s, char *buf, size_t len);

#endif
