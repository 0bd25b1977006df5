/* daemon.h - the mount daemon's FUSE-free parts: its state, the snapshot
 * policy, the sealer, the stager and the plus cache.
 *
 * The FUSE translator (fs/fs_ops.c) turns requests into calls of these
 * functions and their ts_err codes into errno values; nothing here includes
 * libfuse (the build refuses it: doc/design.md, "Layers"), so the unit tests
 * (tests/unit/test_daemon_*.c) link this without libfuse.  Everything is
 * prefixed dmn_.
 *
 * Threads: FUSE workers (requests: dmn_take, dmn_delete, dmn_rename, the
 * plus cache, the handle counts), the sealer (daemon_seal.c, which also
 * prunes for keep=: daemon_prune.c), the stager (daemon_stage.c) and fs/'s
 * watch thread (dmn_cancel).
 *
 * Lock order (a thread holding one may take only those after it):
 *   1. snap_mu           this daemon's writers of the store, one at a time
 *   2. the store's flock (STORE/.lock, ts_store_lock: this and every other
 *                        tracsnap process on the store)
 *   3. Trac's database lock (taken inside ts_snap_take, under 2)
 * seal_mu, plus.mu, handles.mu and stage.j.mu are leaves: held only around their own fields, never
 * while taking another lock, and nothing is taken while holding them (the
 * sealer seals with seal_mu released, and kicks the stager outside it;
 * writers kick the sealer after they released snap_mu).
 *
 * Ownership: dmn_daemon is owned by fs_main() for the life of the mount;
 * dmn_free() releases what it holds.
 */
#ifndef TS_DAEMON_H
#define TS_DAEMON_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "base/err.h"
#include "env/env.h"
#include "store/prune.h"
#include "store/store.h"

#include "daemon_auto.h"
#include "daemon_handles.h"
#include "daemon_journal.h"
#include "daemon_plus.h"

/* Who may manage snapshots (mkdir, rmdir, rename, first accesses without
 * the per-period limit).  Set before threads start, read-only after. */
typedef struct dmn_managers {
	uid_t owner;                   /* the mounting user */
	gid_t owner_gid;
	bool has_group;                /* -o manage_group=: its members may too */
	gid_t group;
} dmn_managers;

/* Root, the owner and members of the manage group may manage.  groups:
 * the caller's supplementary groups (ngroups of them; NULL, 0 when not
 * known: dmn_may_manage_needs_groups says whether they matter). */
bool dmn_may_manage(const dmn_managers *m, uid_t uid, gid_t gid, const gid_t *groups,
                    int ngroups);
bool dmn_may_manage_needs_groups(const dmn_managers *m, uid_t uid, gid_t gid);

/* The sealer (daemon_seal.c).  mu protects kicked and stopping; thread and
 * running belong to whoever starts and stops it (init and destroy). */
typedef struct dmn_seal {
	pthread_mutex_t mu;            /* seal_mu: a leaf */
	pthread_cond_t cv;
	bool kicked, stopping;         /* under mu */
	pthread_t thread;
	bool running;                  /* set by start/stop only */
	/* The sealer thread's only: keep= skipped a snapshot in use; prune
	 * again after retry_s seconds (or at the next seal). */
	bool prune_pending;
	int retry_s;                   /* set by start */
} dmn_seal;

/* The stager (daemon_stage.c). */
typedef struct dmn_stage {
	int wake;                      /* eventfd kicks.  Set by start, closed by close;
	                                * write(wake) from any thread */
	dmn_journal j;                 /* the inotify watch on ENV's directories (its own
	                                * mutex, a leaf); opened by start, closed by close */
	bool j_open;
	volatile sig_atomic_t quit;    /* set by stop, read by the stager */
	pthread_t thread;
	bool running;                  /* set by start/stop only; read by dmn_take (whether
	                                * the stager trims memory, whether the journal
	                                * serves snapshots) while it runs */
	/* The last snapshot dmn_take made, when it is the environment as of
	 * a stage mark (ts_snap_stats' stage_mark; 0: not known to be): a
	 * stage built from it is then clean as a refreshed one (daemon_stage.c).
	 * Under snap_mu. */
	uint64_t taken_mark;
	char taken_name[NAME_MAX + 1];
	dev_t taken_dev;
	ino_t taken_ino;
} dmn_stage;

typedef struct dmn_daemon {
	/* Set before threads start, read-only after (the store's own files
	 * are written under snap_mu and the flock, below). */
	ts_env env;
	ts_store store;
	int lock_timeout_s;
	bool no_database;
	dmn_managers who;
	bool has_keep;                 /* -o keep=: prune after each seal */
	ts_prune_policy keep;
	const char *mnt;               /* the mount point (fs_ctx's; NULL without a mount) */

	/* Lock 1 of the order above: one writer of the store at a time
	 * (dmn_writer_lock); first accesses wait on it.  It protects
	 * autos.made (the formats in autos are read-only after start). */
	pthread_mutex_t snap_mu;
	dmn_auto autos;

	/* Atomics (__atomic_*): how many writers wait for snap_mu (and 1 for
	 * good once the daemon stops); non-zero stops a stage being built
	 * (take/stage.h). */
	int stage_stop;
	/* Set by a signal handler or the watch thread (dmn_cancel) and the
	 * stager's stop, read by every snapshot and refresh: abort. */
	volatile sig_atomic_t cancel;

	dmn_seal seal;
	dmn_stage stage;
	dmn_plus plus;                 /* its own mutex, a leaf */
	dmn_handles handles;           /* its own mutex, a leaf */
} dmn_daemon;

/* Before anything else: mutexes, no descriptors.  dmn_free undoes it and
 * whatever was opened since (env, store, threads still running). */
void dmn_init(dmn_daemon *d);
void dmn_free(dmn_daemon *d);

/* Keep every error, warning and refusal the daemon logs in its store's
 * events too (store/events.h), for `tracsnap status`: from when it serves
 * until dmn_events_off (dmn_free calls it). */
void dmn_events_on(dmn_daemon *d);
void dmn_events_off(void);

/* The background threads: stager then sealer; stop joins both (the sealer
 * finishes what is pending). */
void dmn_start(dmn_daemon *d);
void dmn_stop(dmn_daemon *d);

/* The daemon is asked to stop: cancel a snapshot in progress and any stage
 * being built, for good.  True if a writer held snap_mu (something was
 * running to cancel).  From the watch thread; not async-signal-safe (a
 * signal handler sets cancel only). */
bool dmn_cancel(dmn_daemon *d);

/* The store's writers in this daemon (snapshots, deletes, renames, the
 * stage) take turns on snap_mu; one waiting stops a stage being built. */
void dmn_writer_lock(dmn_daemon *d);
void dmn_writer_unlock(dmn_daemon *d);

/* Give the heap's freed memory back to the system (glibc's malloc_trim),
 * after a pass that held a manifest or an item per entry.  Not under
 * AddressSanitizer: its allocator is not glibc's, which is then never set
 * up, and two threads trimming at once both set it up (the sealer and the
 * stager did: a crash in mtrim). */
void dmn_trim(void);

/* Why a snapshot is taken (daemon_take.c). */
typedef enum dmn_why {
	DMN_WHY_MKDIR,                 /* the name must be new: EEXIST otherwise */
	DMN_WHY_FIRST_ACCESS,          /* a lookup of an auto name: made once */
} dmn_why;

/* Take snapshot name now, serialised with this daemon's other writers
 * (daemon_take.c has the rules: the per-period limit).  auto_mask:
 * the auto formats that give name now (dmn_auto_mask_now).  limited: the
 * caller may not manage snapshots.  TS_OK when the snapshot is there
 * (made by another first access meanwhile too); TS_ERR_NOTFOUND when a
 * limited caller's period is spent; the engine's error otherwise (logged). */
ts_err_code dmn_take(dmn_daemon *d, const char *name, dmn_why why, unsigned auto_mask,
                     bool limited, ts_err *e);

/* The auto formats that give name at the names' clock (base/clock.h). */
unsigned dmn_auto_mask_now(const dmn_daemon *d, const char *name);

/* rmdir and rename of a snapshot: under snap_mu and the store's flock,
 * logged, then the sealer kicked.  dmn_delete refuses a snapshot in use
 * (dmn_busy) with TS_ERR_BUSY, logged as one line saying who uses it. */
ts_err_code dmn_delete(dmn_daemon *d, const char *name, ts_err *e);
ts_err_code dmn_rename(dmn_daemon *d, const char *from, const char *to, ts_err *e);

/* Is snapshot name in use (daemon_prune.c): a process's working
 * directory, root, open file or mapping at or below a live mount point of
 * the store (this one included), or a handle this daemon has open below it
 * (one just closed gets a moment: the kernel releases it asynchronously).
 * why (len bytes) then says "in use by pid 123 (tar)" or how many handles. */
bool dmn_busy(dmn_daemon *d, const char *name, char *why, size_t len);

/* keep=: prune the store as the policy says, protecting the current
 * period's auto names and skipping snapshots in use (daemon_prune.c).
 * Takes snap_mu.  Called by the sealer after a seal; returns how many
 * snapshots were kept only because they were in use. */
unsigned dmn_prune(dmn_daemon *d);

/* The sealer (daemon_seal.c): start, wake after a snapshot or rename, stop
 * (finishing what is pending). */
int dmn_seal_start(dmn_daemon *d);
void dmn_seal_kick(dmn_daemon *d);
void dmn_seal_stop(dmn_daemon *d);

/* The stager (daemon_stage.c): start; kick after a seal (stage the newest
 * snapshot); stop (a refresh in progress gives up); close (after the
 * sealer stopped: its kicks need the descriptor). */
int dmn_stage_start(dmn_daemon *d);
void dmn_stage_kick(dmn_daemon *d);
void dmn_stage_stop(dmn_daemon *d);
void dmn_stage_close(dmn_daemon *d);

#endif
