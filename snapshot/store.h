/* store.h - where snapshots live (layout in doc/design.md).
 *
 *   STORE/.lock  STORE/.tmp-NAME.XXXXXX/  STORE/.del-NAME.XXXXXX/  STORE/NAME/{tree,manifest}
 *
 * Readers (the FUSE view, list, verify) need no lock: a snapshot directory
 * appears and disappears by rename(2).  Writers hold the store lock.
 *
 * Ownership: ts_store_open() fills a caller-owned struct, ts_store_close()
 * releases the lock if held and frees it.  ts_store_list() returns an array the
 * caller frees with ts_store_list_free().
 */
#ifndef TS_STORE_H
#define TS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "err.h"

typedef struct ts_store {
	char *root;     /* absolute path */
	int dirfd;      /* open on root */
	int lockfd;     /* open on root/.lock, -1 before the first lock */
	bool locked;
} ts_store;

typedef struct ts_store_snap {
	char *name;
	struct timespec time;   /* the snapshot instant (mtime of STORE/NAME) */
} ts_store_snap;

/* A snapshot being built. */
typedef struct ts_store_tmp {
	char *name;     /* final name */
	char *dir;      /* ".tmp-NAME.XXXXXX", relative to the store */
	int dirfd;      /* open on it */
	int treefd;     /* open on dir/tree */
} ts_store_tmp;

/* The store used when none is given: /var/lib/tracsnap/<env path, '/' -> '-'>
 * for root, $XDG_DATA_HOME (or ~/.local/share)/tracsnap/... otherwise.
 * Returns malloc'd path or NULL. */
char *ts_store_default_path(const char *env_root);

/* Refuse a store inside the environment or below the mount point (mnt may be
 * NULL), or a mount point inside the environment.  Paths need not exist yet. */
ts_err_code ts_store_check_placement(const char *store, const char *env_root,
                                     const char *mnt, ts_err *e);

/* Open (creating with mode 0700, parents too, when create) the store. */
ts_err_code ts_store_open(const char *path, bool create, ts_store *s, ts_err *e);
void ts_store_close(ts_store *s);

/* Take the writers' lock, waiting up to timeout_s seconds; then remove
 * leftovers of writers that died.  TS_ERR_BUSY names the holder's pid. */
ts_err_code ts_store_lock(ts_store *s, int timeout_s, ts_err *e);
void ts_store_unlock(ts_store *s);

/* Is the store directory no longer at its path (removed, or moved away)?
 * ts_store_lock() then refuses: work in an unlinked directory would be lost. */
bool ts_store_gone(const ts_store *s);

/* Complete snapshots, oldest first (ties by name). */
ts_err_code ts_store_list(ts_store *s, ts_store_snap **out, size_t *n, ts_err *e);
void ts_store_list_free(ts_store_snap *v, size_t n);

/* Does a complete snapshot NAME exist? */
bool ts_store_exists(ts_store *s, const char *name);

/* Writers only (lock held): */
ts_err_code ts_store_begin(ts_store *s, const char *name, ts_store_tmp *t, ts_err *e);
/* syncfs, set STORE/NAME's mtime to instant, rename into place, fsync STORE.
 * TS_ERR_EXISTS when NAME appeared meanwhile. */
ts_err_code ts_store_commit(ts_store *s, ts_store_tmp *t, const struct timespec *instant, ts_err *e);
/* Remove a tmp snapshot (after failure); never fails. */
void ts_store_abort(ts_store *s, ts_store_tmp *t);
ts_err_code ts_store_remove(ts_store *s, const char *name, ts_err *e);
ts_err_code ts_store_rename(ts_store *s, const char *from, const char *to, ts_err *e);

#endif
