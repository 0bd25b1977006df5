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
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include "env/env.h"
#include "base/err.h"
#include "base/progress.h"
#include "store/store.h"

/* What changed in the environment, as a watcher of its directories saw it
 * (the daemon's inotify watch).  With it, the recheck under Trac's lock
 * looks only at the entries changed since the last full pass before the
 * lock (and at those in directories not watched all along), instead of
 * stat'ing every entry: the writers wait in proportion to what changed,
 * not to the number of files.  Called from the taking thread.
 *
 * mark: start recording; everything changed in ENV after it returns is
 *   reported by since().  Returns the mark.
 * unwatched: for each of the n directories dirs (relative to ENV, sorted),
 *   set out[i] when it was not watched from before the mark on.
 * since: call fn for each path (relative to ENV) with an event since the
 *   mark: an entry created, removed, renamed, written or whose metadata
 *   changed (the database and its journals need not be reported).  False
 *   when it cannot tell (events were lost), *why saying why, for the log.
 *   remark (may be NULL): in the same step, start recording anew and put
 *   the new mark there (whatever the answer), so that no change falls
 *   between what was reported and the new recording.
 * end: stop recording.
 * stage_mark, stage_done, stage_clean (optional, all three or none): the
 *   stage's refresh calls stage_mark before its pass over the environment,
 *   and stage_done with that mark and its new manifest's lstat once it is
 *   done; stage_clean then says whether that stage is the environment as
 *   it is now, the database aside: the manifest is the one that refresh
 *   wrote, no event but the database's came since the mark, and every
 *   directory was watched from before the mark on (take/snap_fast.c);
 *   manifest NULL: the same question without the manifest's identity
 *   (checked before, when the stage was adopted).  Files whose content
 *   alone was written since (Trac's log, say: written, nothing else) leave
 *   the stage clean, a few of them: when the answer is true, written is
 *   called for each (relative to ENV), whose copy in the stage is older.
 * db_unchanged (optional): whether the database file (ts_env's db_rel)
 *   saw no event since mark (a value mark returned): nothing written to it,
 *   nothing put in its place, no event lost, its directory watched from
 *   before the mark on.  The take asks under Trac's lock, with the mark it
 *   took before the database's pre-copy read the file: when the answer is
 *   true, the pre-copy is the file, and is not compared with it again.
 * stage_from (optional, with the stage's three): the snapshot being taken
 *   is the environment (the database aside), so a stage built from it
 *   later is too, as a refresh's is, as long as nothing changes meanwhile.
 *   Called under Trac's lock.  remark: the mark since() put in its remark
 *   under the lock, after which the take looked at everything reported;
 *   the answer is a new stage mark when no event came since it.  0: the
 *   snapshot is the stage as it was (snap_fast.c), still clean under the
 *   lock: the answer is that stage's mark.  Returns the mark to give
 *   stage_done once a stage is built from the snapshot (with the manifest
 *   that build writes, take/stage.h), or 0 when there is none. */
typedef struct ts_snap_changes {
	void *arg;
	uint64_t (*mark)(void *arg);
	void (*unwatched)(void *arg, uint64_t mark, const char *const *dirs, size_t n, bool *out);
	bool (*since)(void *arg, uint64_t mark, void (*fn)(void *fnarg, const char *rel), void *fnarg,
	              const char **why, uint64_t *remark);
	void (*end)(void *arg);
	uint64_t (*stage_mark)(void *arg);
	void (*stage_done)(void *arg, uint64_t mark, const struct stat *manifest);
	bool (*stage_clean)(void *arg, const struct stat *manifest,
	                    void (*written)(void *fnarg, const char *rel), void *fnarg);
	bool (*db_unchanged)(void *arg, uint64_t mark);
	uint64_t (*stage_from)(void *arg, uint64_t remark);
} ts_snap_changes;

typedef struct ts_snap_opts {
	const char *name;                 /* validated by ts_snap_take */
	int lock_timeout_s;               /* Trac's write lock and the store lock */
	bool no_database;                 /* files only, as hotcopy --no-database */
	volatile sig_atomic_t *cancel;    /* optional: set to stop early */
	const ts_progress_sink *progress; /* optional: pre-copy progress */
	const ts_snap_changes *changes;   /* optional: the environment's watcher */
} ts_snap_opts;

typedef struct ts_snap_stats {
	uint64_t files;                   /* regular files in the snapshot */
	uint64_t bytes_copied;            /* content bytes written (or cloned) */
	uint64_t bytes_shared;            /* content bytes hard-linked from the previous snapshot */
	uint64_t files_shared;
	double hold_ms;                   /* Trac's writers held */
	uint64_t rechecked;               /* entries stat'ed again by the rechecks */
	uint64_t rechecked_locked;        /* of which under Trac's lock */
	bool watched;                     /* the watcher told what changed (ts_snap_changes) */
	bool from_stage;                  /* the stage as it was: no entry looked at (snap_fast.c) */
	bool db_as_precopied;             /* the database not read under the lock: unchanged since its
	                                   * pre-copy (ts_snap_changes' db_unchanged) */
	double total_ms;
	struct timespec instant;          /* T, CLOCK_REALTIME */
	/* The snapshot is the environment as of a stage mark (ts_snap_changes'
	 * stage_from; 0: not known to be), and its tree is this directory
	 * (which a stage built from it names as its base). */
	uint64_t stage_mark;
	dev_t tree_dev;
	ino_t tree_ino;
} ts_snap_stats;

ts_err_code ts_snap_take(ts_store *store, const ts_env *env, const ts_snap_opts *o,
                         ts_snap_stats *stats, ts_err *e);

/* For every unsealed snapshot taken from the stage as it was (snap_fast.c,
 * which leaves that check for after the snapshot appears): check each
 * stored copy as a take checks those it shares (take/share_check.h), and
 * replace a damaged one by a copy of the environment's file while that is
 * unchanged (snap_adopted.c).  Takes the store's lock; run it before the
 * seal, which would hash a damaged copy into the manifest. */
ts_err_code ts_snap_check_adopted(ts_store *s, const ts_env *env, int lock_timeout_s, ts_err *e);

/* "NAME: 42 files, 1.2 MiB copied, 3.4 MiB shared, lock held 12 ms, total 340 ms" */
void ts_snap_format_stats(const char *name, const ts_snap_stats *s, char *buf, size_t len);

#endif
