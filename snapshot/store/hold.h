/* hold.h - a snapshot held by the administrator: never removed until released.
 *
 * `tracsnap hold NAME` marks a snapshot that must outlive every retention
 * policy (a "before-upgrade" snapshot, one kept for an audit): prune, the
 * mount's keep= and rmdir on the mount all leave it, saying why, until
 * `tracsnap release NAME`.  The mark is the empty file STORE/NAME/hold,
 * beside the snapshot's tree and manifest: it goes with the snapshot when
 * it is renamed, is never part of the tree (the view, verify and restore
 * do not see it), and its mtime says when the hold was made.
 *
 * ts_store_remove (store.h) refuses a held snapshot (TS_ERR_BUSY), so that
 * no removal path can forget the check.  One exception: a snapshot lost in
 * a restart before it was sealed (store.h) is removed even when held, as it
 * may be incomplete; its removal says so in the log.
 *
 * Hold and release take the store's writers' lock, as every removal does,
 * so a removal never races a hold.  Ownership: nothing allocated.
 */
#ifndef TS_HOLD_H
#define TS_HOLD_H

#include <stdbool.h>
#include <time.h>

#include "base/err.h"
#include "store/store.h"

/* The mark's file name inside STORE/NAME/. */
#define TS_STORE_HOLD "hold"

/* Is snapshot name held?  (A name that is not a snapshot is not.)  When it
 * is and since is not NULL, *since is when the hold was made. */
bool ts_hold_is_held(ts_store *s, const char *name, struct timespec *since);

/* Hold (on) or release (!on) snapshot name, for a writer holding the lock.
 * *changed (may be NULL) says whether it was not so already.
 * TS_ERR_NOTFOUND when there is no such snapshot. */
ts_err_code ts_hold_set(ts_store *s, const char *name, bool on, bool *changed, ts_err *e);

#endif
