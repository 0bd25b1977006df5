/* linkguard.h - before the engine removes a tree of the store, make sure
 * its unlinks cannot hide a change to a copy that other names share.
 *
 * An unlink moves the ctime of the inode, and the removal's interval in
 * STORE/.linklog then explains that ctime (linklog.h): a shared copy
 * rewritten by someone else with its mtime put back would afterwards look
 * exactly like one the engine only unlinked a name of.  So, before the
 * unlinks, each regular file of the tree that other names share (link
 * count above 1) and whose manifest records its identity is looked at
 * once: a ctime neither as recorded nor inside an interval of the linklog
 * is noted as an "S" line (ts_linklog_suspect_now), and the next share of
 * that inode hashes it first (take/share_check.h).
 *
 * Trust: everything is reached beneath the store's descriptor, which is
 * root's and checked to be (base/trust.h); manifests are read as data.
 *
 * Ownership: nothing is kept; no state.  For a writer holding the store's
 * lock (it reads, and so may trim, the linklog).
 */
#ifndef TS_LINKGUARD_H
#define TS_LINKGUARD_H

#include "store/store.h"

/* rel: a directory of store s holding tree/: a snapshot being deleted, a
 * stage, a half-built snapshot.  Its manifest is rel/manifest, else (a
 * stage never refreshed) that of the snapshot rel/base names, else (a
 * half-built snapshot, whose links are to the newest snapshot's copies)
 * the newest snapshot's.  Never fails: what cannot be read is left
 * alone. */
void ts_linkguard(ts_store *s, const char *rel);

#endif
