/* stage.h - the next snapshot's tree, made ahead of time.
 *
 * An incremental snapshot shares most files with the newest one, and making
 * its directories and hard links (a system call per entry, each allocating
 * in the store's filesystem) was most of its time: 20-40 ms of 50-130 ms for
 * the 831 entries of a 2 GB environment.  So after each seal the daemon
 * stages a copy of the newest sealed snapshot's tree: STORE/.stage/tree holds
 * its directories (with their metadata) and hard links to its files and
 * symlinks, STORE/.stage/base says which snapshot it came from.  The next
 * ts_snap_take adopts it when it compares with that same snapshot, and then
 * finds and fixes only what changed (snap.c: no walk, no link, no mkdir for
 * what did not).  A stage is only ever a speed-up: without one, or with one
 * made from another snapshot, a snapshot is made exactly as before.
 *
 * Both functions run with the store's writers' lock; see each.
 */
#ifndef TS_STAGE_H
#define TS_STAGE_H
#include <stdbool.h>
#include "err.h"
#include "store.h"

/* Stage the newest snapshot, unless it is not sealed yet (sealing kicks
 * again), or is staged already.  Takes the writers' lock without waiting:
 * when another writer holds it, nothing is done (TS_OK).  Gives up, with
 * nothing left behind and TS_OK, as soon as *stop is non-zero (read
 * atomically; stop may be NULL): a snapshot wants the store. */
ts_err_code ts_stage_build(ts_store *s, const int *stop, ts_err *e);

/* For a writer holding the lock, with t just begun: if the stage was made
 * from the snapshot base_name whose tree is open on basefd, move its tree in
 * as t's (t->treefd then refers to it) and return true.  Otherwise leave
 * everything as it was and return false.  Never fails: a stage that cannot
 * be adopted is only a speed-up lost. */
bool ts_stage_adopt(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd);

#endif
