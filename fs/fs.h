/* fs.h - the FUSE front end: translate requests on the mount into engine calls.
 *
 * The mount root lists the store's snapshots and a `latest` symlink; below a
 * snapshot name every request is served from STORE/NAME/tree, read-only.
 * Nothing here knows how snapshots are made (snapshot/) nor when the daemon
 * makes them (fs/daemon/): the translator turns requests into those calls
 * and their errors into errno values.  cli/ includes this header too, so
 * it must not include fuse.h.
 */
#ifndef TS_FS_H
#define TS_FS_H

#include <pthread.h>
#include <stdbool.h>

#include "base/err.h"
#include "daemon/daemon.h"

/* The daemon's state, owned by fs_main() for the life of the mount: the
 * FUSE-free daemon (fs/daemon/daemon.h, which says what protects what and
 * the lock order) and what only the FUSE side uses. */
struct fuse_session;
struct fs_nodes;
struct fs_prefetch;
typedef struct fs_ctx {
	dmn_daemon d;
	/* Set before the session runs, read-only after. */
	char *mnt;                     /* absolute */
	bool foreground;
	bool no_passthrough;           /* -o no_passthrough: reads through fs_read */
	struct fuse_session *se;
	struct fs_nodes *nodes;        /* the kernel's inodes (fs/fs_int.h); own mutex */
	struct fs_prefetch *prefetch;  /* metadata ahead of listings (fs/fs_int.h) */
	struct fs_pt *pt;              /* FUSE passthrough (fs/fs_int.h) */
	/* fs_watch.c: invalidates the kernel's cache of the root.  Set by
	 * fs_watch_start (from init) and fs_watch_stop only; the fds are the
	 * watch thread's while it runs. */
	int watch_fd, watch_stop;
	pthread_t watch_thread;
	bool watching;
} fs_ctx;

/* Mount ENV on MOUNTPOINT as described by argv (the tracsnap command line
 * without a subcommand).  Once it tried to mount, returns its status (0: mounted,
 * served, unmounted or stopped by a signal; 1-7: libfuse or the kernel refused
 * the mount; 8: the request loop failed).  A problem found before mounting is printed as one
 * line and returned as FS_MAIN_FAILED with *code the engine's error
 * (TS_ERR_USAGE for the command line), or as FS_MAIN_NO_STORE: the store
 * could not be opened or made.  Exit statuses are cli/'s (cli/main.c). */
enum { FS_MAIN_FAILED = -1, FS_MAIN_NO_STORE = -2 };
int fs_main(int argc, char **argv, ts_err_code *code);

/* ts_err code -> errno, at the FUSE edge (fs_errno.c). */
int fs_errno(const ts_err *e);

#endif
