/* fs.h - the FUSE front end: translate requests on the mount into engine calls.
 *
 * The mount root lists the store's snapshots and a `latest` symlink; below a
 * snapshot name every request is served from STORE/NAME/tree, read-only.
 * Nothing here knows how snapshots are made: that is snapshot/.
 */
#ifndef TS_FS_H
#define TS_FS_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "env/env.h"
#include "base/err.h"
#include "store/prune.h"
#include "store/store.h"

#define FS_MAX_AUTO 8

/* The daemon's state, owned by fs_main() for the life of the mount. */
typedef struct fs_ctx {
	ts_env env;
	ts_store store;
	char *mnt;                     /* absolute */
	char *auto_fmts[FS_MAX_AUTO];  /* strftime formats of first-access names */
	int nauto;
	int lock_timeout_s;
	bool no_database;
	bool foreground;
	uid_t owner;                   /* the mounting user: may manage snapshots */
	gid_t owner_gid;
	bool has_manage_gid;           /* -o manage_group=: its members may too */
	gid_t manage_gid;
	bool has_keep;                 /* -o keep=: prune after each new snapshot */
	ts_prune_policy keep;
	pthread_mutex_t snap_mu;       /* one writer at a time (fs_writer_lock); first accesses wait on it */
	/* Under snap_mu: per auto format, the last name (period) a snapshot was
	 * made under; a user who may not manage snapshots cannot make that
	 * period's again, even after it was deleted or pruned (fs_ops.c). */
	char auto_made[FS_MAX_AUTO][NAME_MAX + 1];
	int stage_stop;                /* non-zero: a stage being built gives up (stage.h) */
	volatile sig_atomic_t cancel;  /* set when the daemon stops: a running snapshot aborts */
	/* fs_watch.c: invalidates the kernel's cache of the root */
	struct fuse *fuse;
	int watch_fd, watch_stop;
	pthread_t watch_thread;
	bool watching;
	/* fs_seal.c: seals snapshots once they have appeared */
	pthread_mutex_t seal_mu;
	pthread_cond_t seal_cv;
	bool seal_kicked, seal_stopping;
	pthread_t seal_thread;
	bool sealing;
	/* fs_stage.c: keeps the stage current */
	int stage_ino, stage_wake;     /* inotify on the environment's directories; kicks */
	volatile sig_atomic_t stage_quit;
	pthread_t stage_thread;
	bool staging;
	bool stage_full;               /* inotify's watch limit reached */
	char **stage_dirs;             /* by watch descriptor: the directory, relative to ENV */
	size_t stage_ndirs;
	/* fs_plus.c: directories whose entries the kernel got with attributes */
	pthread_mutex_t plus_mu;
	uint64_t *plus_keys;
	size_t plus_cap, plus_n;
} fs_ctx;

/* Mount ENV on MOUNTPOINT as described by argv (the tracsnap command line
 * without a subcommand).  Returns the process exit status; a problem found
 * before mounting is printed as one line. */
int fs_main(int argc, char **argv);

/* The operation table (fs_ops.c). */
struct fuse_operations;
const struct fuse_operations *fs_operations(void);

/* Watch the store and invalidate changed root entries (fs_watch.c). */
struct fuse;
int fs_watch_start(fs_ctx *c, struct fuse *f);
void fs_watch_stop(fs_ctx *c);

/* The store's writers in this daemon (snapshots, deletes, renames, the
 * stage) take turns on snap_mu; one waiting stops a stage being built. */
void fs_writer_lock(fs_ctx *c);
void fs_writer_unlock(fs_ctx *c);

/* Seal snapshots in the background (fs_seal.c): start, wake after a
 * snapshot or rename, stop (finishing what is pending). */
int fs_seal_start(fs_ctx *c);
void fs_seal_kick(fs_ctx *c);
void fs_seal_stop(fs_ctx *c);

/* Keep the stage current (fs_stage.c): start; kick after a seal (stage the
 * newest snapshot); stop (a refresh in progress gives up); close (after
 * the sealer stopped: its kicks need the descriptor). */
int fs_stage_start(fs_ctx *c);
void fs_stage_kick(fs_ctx *c);
void fs_stage_stop(fs_ctx *c);
void fs_stage_close(fs_ctx *c);

/* Directories listed with attributes already (fs_plus.c).  Thread-safe. */
bool fs_plus_seen(fs_ctx *c, dev_t dev, ino_t ino);
void fs_plus_mark(fs_ctx *c, dev_t dev, ino_t ino);
void fs_plus_forget(fs_ctx *c, dev_t dev, ino_t ino);
void fs_plus_free(fs_ctx *c);

/* ts_err code -> errno, at the FUSE edge (fs_errno.c). */
int fs_errno(const ts_err *e);

#endif
