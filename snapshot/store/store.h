/* store.h - where snapshots live (layout in doc/design.md).
 *
 *   STORE/.lock  STORE/.tmp-PID-NS-N/  STORE/.del-PID-NS-N/  STORE/NAME/{tree,manifest}
 *   STORE/.stage/{base,tree,manifest,db.precopy}   (stage.h: the next snapshot's tree, made ahead)
 *   STORE/.stage-new/ .stage-old/   (a stage being built, and being removed)
 *   STORE/.linklog   (linklog.h: when the engine itself added or removed hard
 *                     links; removing a snapshot, a stage or a leftover logs)
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

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "base/err.h"

typedef struct ts_store {
	char *root;     /* absolute path */
	int dirfd;      /* open on root */
	int lockfd;     /* open on root/.lock, -1 before the first lock */
	bool locked;
} ts_store;

typedef struct ts_store_snap {
	char *name;
	struct timespec time;   /* the snapshot instant: mtime of STORE/NAME, or of
	                         * STORE/NAME/manifest when earlier (see ts_store_list) */
	bool sealed;            /* hashed and durable (see ts_seal) */
} ts_store_snap;

/* STORE/NAME/unsealed: present from the commit until ts_seal has hashed the
 * snapshot and made it durable; holds the boot id of the kernel that wrote
 * it.  Once the machine has restarted, an unsealed snapshot may have lost
 * data that was still in the page cache: it is hidden at once and removed by
 * the next writer (ts_store_lock). */
#define TS_STORE_UNSEALED "unsealed"
#define TS_STORE_BOOT_ID_MAX 72

typedef enum ts_store_seal_state {
	TS_STORE_SEALED,
	TS_STORE_UNSEALED_NOW,   /* written since this boot: complete, to be sealed */
	TS_STORE_UNSEALED_LOST   /* written before a restart: discarded */
} ts_store_seal_state;

/* /proc/sys/kernel/random/boot_id without newline ("" when unreadable). */
void ts_store_boot_id(char out[TS_STORE_BOOT_ID_MAX]);
ts_store_seal_state ts_store_seal_state_of(ts_store *s, const char *name);

/* A snapshot being built. */
typedef struct ts_store_tmp {
	char *name;     /* final name */
	char *dir;      /* ".tmp-PID-NS-N", relative to the store */
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
 * leftovers of writers that died and snapshots lost in a restart.  TS_ERR_BUSY names the holder's pid. */
/* A second handle on s's store, with its lock descriptor of its own, into
 * *out (release with ts_store_close): flock(2) excludes by open file
 * description, so a thread that must exclude the writers of a handle that
 * another thread uses (the daemon's sealer) locks its own.  False: out of
 * descriptors or memory, *out closed. */
bool ts_store_dup(const ts_store *s, ts_store *out);

ts_err_code ts_store_lock(ts_store *s, int timeout_s, ts_err *e);
void ts_store_unlock(ts_store *s);

/* Is the store directory no longer at its path (removed, or moved away)?
 * ts_store_lock() then refuses: work in an unlinked directory would be lost. */
bool ts_store_gone(const ts_store *s);

/* Complete snapshots, oldest first (ties by name); sealed or not, but never
 * one lost in a restart. */
ts_err_code ts_store_list(ts_store *s, ts_store_snap **out, size_t *n, ts_err *e);
void ts_store_list_free(ts_store_snap *v, size_t n);

/* Does a complete snapshot NAME exist?  (Not one lost in a restart.) */
bool ts_store_exists(ts_store *s, const char *name);

/* Writers only (lock held): */
ts_err_code ts_store_begin(ts_store *s, const char *name, ts_store_tmp *t, ts_err *e);
/* Write the unsealed marker (before the commit: a snapshot must never
 * appear without it until it is sealed). */
ts_err_code ts_store_mark_unsealed(ts_store_tmp *t, ts_err *e);
/* Set STORE/NAME's mtime to instant, rename into place.  No sync at all:
 * that is ts_seal's job, which the unsealed marker promises.
 * TS_ERR_EXISTS when NAME appeared meanwhile. */
ts_err_code ts_store_commit(ts_store *s, ts_store_tmp *t, const struct timespec *instant, ts_err *e);
/* Remove a tmp snapshot (after failure); never fails. */
void ts_store_abort(ts_store *s, ts_store_tmp *t);
/* Removing the snapshot a stage was made from drops the stage too (its
 * hard links would keep the snapshot's space).  A held snapshot (hold.h) is
 * refused: TS_ERR_BUSY "snapshot NAME: held (tracsnap release NAME first)". */
ts_err_code ts_store_remove(ts_store *s, const char *name, ts_err *e);
/* What is going on in the store, for `tracsnap status`. */
typedef struct ts_store_activity {
	unsigned making;                 /* snapshots being made now (.tmp-* of live processes) */
	long making_pid;                 /* the process making one of them */
	char stage_base[NAME_MAX + 1];   /* the snapshot the stage was made from; "" without one */
	bool stage_refreshed;            /* brought up to the environment since (stage.h) */
	bool stage_busy;                 /* a refresh is changing it now */
} ts_store_activity;
void ts_store_activity_get(ts_store *s, ts_store_activity *a);

/* Was the stage made from the snapshot called name?  (Also while a refresh
 * has it, or a refresh that died left it so.) */
bool ts_store_stage_made_from(ts_store *s, const char *name);
ts_err_code ts_store_rename(ts_store *s, const char *from, const char *to, ts_err *e);


/* The stage (stage.h).  Writers only.  TS_STORE_STAGE_BASE holds
 * "NAME\nDEV:INO\nBOOT\n" of the snapshot it was made from, its tree's
 * device and inode telling it from a later snapshot of the same name, the
 * boot id from a stage a crash may have damaged.  While a refresh changes
 * the tree it is TS_STORE_STAGE_BUSY (never adopted); once refreshed,
 * TS_STORE_STAGE_MANIFEST says what the tree holds and TS_STORE_STAGE_DB is
 * a raw copy of an SQLite database. */
#define TS_STORE_STAGE ".stage"
#define TS_STORE_STAGE_BASE ".stage/base"
#define TS_STORE_STAGE_BUSY ".stage/base.busy"
#define TS_STORE_STAGE_TREE ".stage/tree"
#define TS_STORE_STAGE_MANIFEST ".stage/manifest"
#define TS_STORE_STAGE_DB ".stage/db.precopy"
#define TS_STORE_STAGE_NEW ".stage-new"
#define TS_STORE_STAGE_OLD ".stage-old"
/* Begin a new stage in TS_STORE_STAGE_NEW (not a .tmp-*: those are
 * snapshots being built), removing one a builder left there. */
ts_err_code ts_store_stage_begin(ts_store *s, ts_store_tmp *t, ts_err *e);
/* Replace the stage with t (from ts_store_stage_begin, its base written);
 * consumes t, success or not. */
ts_err_code ts_store_stage_commit(ts_store *s, ts_store_tmp *t, ts_err *e);
/* Remove the stage, if any; never fails (what remains is a leftover). */
void ts_store_stage_drop(ts_store *s);
#endif
