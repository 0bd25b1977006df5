/* fs_watch.c - keep the kernel's cache of the mount root honest.
 *
 * Snapshot contents never change, so the kernel may cache names and
 * attributes for a long time.  The root changes, though: snapshots appear
 * (mkdir, first access, `tracsnap snapshot` from cron), disappear (rmdir,
 * prune) and are renamed, and `latest` moves.  Rather than short timeouts for
 * everything, one thread watches the store directory with inotify and tells
 * the kernel that what it has cached of the names that changed is out of
 * date: the attributes of the root, of `latest` and of the snapshot the
 * name had (fs_ops.c's getattr of a snapshot then checks that its name
 * still leads to its tree; ESTALE makes the kernel look the name up
 * again).  Only attributes: dropping a root entry would wait for the root
 * directory's lock, which a mkdir holds until we reply to it (a kill -9
 * then could not end the daemon).
 *
 * It runs outside request handlers on purpose: even an attribute
 * invalidation must not be sent from the request it concerns.
 *
 * The same thread wakes every FS_WATCH_TICK_MS to notice that the daemon is
 * asked to stop (unmount: the FUSE session has exited) and then cancels a
 * snapshot in progress, which removes its partial work; and to log once that
 * the store was removed or moved away under the mount.  A stop by signal
 * cancels at once (fs_watch_signals): a snapshot may take less than a tick.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define FS_FUSE_MAGIC 0x65735546
/* How soon a stop request reaches a running snapshot. */
#define FS_WATCH_TICK_MS 200

#include "base/log.h"
#include "fs_int.h"
#include "store/name.h"

/* The kernel's attributes of the root, `latest` and the snapshot node
 * named name (if the kernel holds one; ENOENT from the kernel: it does not
 * hold that inode any more).  A node freed meanwhile costs at most a
 * needless GETATTR of whatever inode has its id now. */
static void fs_watch_invalidate(fs_ctx *c, const char *name)
{
	fuse_ino_t ino = name ? fs_node_snap_id(c->nodes, name) : 0;

	if (ino)
		(void)fuse_lowlevel_notify_inval_inode(c->se, ino, -1, 0);
	(void)fuse_lowlevel_notify_inval_inode(c->se, FS_LATEST_NODEID, -1, 0);
	(void)fuse_lowlevel_notify_inval_inode(c->se, FUSE_ROOT_ID, 0, 0);
}

/* inotify lost events: every snapshot the kernel may hold. */
static void fs_watch_invalidate_all(fs_ctx *c)
{
	fuse_ino_t *ids = NULL;
	size_t n = 0;

	(void)fs_node_snap_ids(c->nodes, &ids, &n);
	for (size_t i = 0; i < n; i++)
		(void)fuse_lowlevel_notify_inval_inode(c->se, ids[i], -1, 0);
	free(ids);
	fs_watch_invalidate(c, NULL);
}

/* The kernel reads ahead only 128 KiB on a FUSE mount, one request at a
 * time: reading a snapshot would then cost one round trip per 128 KiB.  As
 * root, raise the mount's read-ahead to four of the largest read requests
 * (fs_splice_max_write: 4 x 1008 KiB), so that several are in flight and
 * none is cut short: a cold tar ran 0.81-0.86 of the store tree's speed
 * with one request's worth (1008 or 1024 KiB), 0.89 with four or eight
 * (scripts/bench B4, side by side, medians of 5).  Runs once the mount is
 * up; failure only costs speed. */
static void fs_watch_readahead(fs_ctx *c)
{
	struct statfs sf;
	struct stat st;
	char path[64];
	FILE *f;

	if (geteuid() != 0)
		return;
	for (int i = 0; i < 100; i++) {
		if (statfs(c->mnt, &sf) == 0 && sf.f_type == FS_FUSE_MAGIC)
			break;
		struct timespec nap = { 0, 20 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	if (stat(c->mnt, &st) < 0)
		return;
	snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%u\n", 4 * (fs_splice_max_write() / 1024));
		fclose(f);
	}
}

static void *fs_watch_main(void *arg)
{
	fs_ctx *c = arg;

	fs_watch_readahead(c);
	char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd pf[2] = { { c->watch_fd, POLLIN, 0 }, { c->watch_stop, POLLIN, 0 } };
	bool gone_logged = false, stop_seen = false;

	for (;;) {
		/* The session ends on SIGTERM/SIGINT/SIGHUP and on unmount, but a
		 * worker busy with a snapshot would finish it first: tell it to
		 * stop (it removes its partial work). */
		if (!stop_seen && (c->d.cancel || fuse_session_exited(c->se))) {
			stop_seen = true;
			if (dmn_cancel(&c->d))
				ts_log(LOG_INFO, "stopping: the snapshot in progress is cancelled");
		}
		/* (inotify says IN_DELETE_SELF only once our own fd on it closes) */
		if (!gone_logged && ts_store_gone(&c->d.store)) {
			gone_logged = true;
			ts_log(LOG_ERR, "store %s: removed or moved away while mounted; no snapshot "
			       "can be taken or deleted until tracsnap is remounted", c->d.store.root);
		}
		int pr = poll(pf, 2, FS_WATCH_TICK_MS);
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (pr == 0 || !pf[0].revents)
			continue;
		ssize_t n = read(c->watch_fd, buf, sizeof buf);
		if (n <= 0)
			continue;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				fs_watch_invalidate_all(c);
			else if (ev->len && ev->name[0] != '.')
				fs_watch_invalidate(c, ev->name);
			p += sizeof *ev + ev->len;
		}
	}
	return NULL;
}

/* The stop signals libfuse handles (it ends the session); ours runs first
 * and sets the cancel flag, then hands over to libfuse's. */
static const int fs_stop_signals[] = { SIGTERM, SIGINT, SIGHUP };
static struct sigaction fs_stop_old[3];
static fs_ctx *fs_stop_ctx;

static void fs_stop_handler(int sig, siginfo_t *info, void *uctx)
{
	for (int i = 0; i < 3; i++) {
		if (fs_stop_signals[i] != sig)
			continue;
		fs_stop_ctx->d.cancel = 1;
		if (fs_stop_old[i].sa_flags & SA_SIGINFO)
			fs_stop_old[i].sa_sigaction(sig, info, uctx);
		else if (fs_stop_old[i].sa_handler != SIG_IGN && fs_stop_old[i].sa_handler != SIG_DFL)
			fs_stop_old[i].sa_handler(sig);
	}
}

/* Called once libfuse has installed its handlers (from init). */
static void fs_watch_signals(fs_ctx *c)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = fs_stop_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	fs_stop_ctx = c;
	for (int i = 0; i < 3; i++) {
		if (sigaction(fs_stop_signals[i], NULL, &fs_stop_old[i]) < 0 ||
		    (!(fs_stop_old[i].sa_flags & SA_SIGINFO) &&
		     (fs_stop_old[i].sa_handler == SIG_IGN || fs_stop_old[i].sa_handler == SIG_DFL)))
			continue;   /* not libfuse's: leave it alone */
		(void)sigaction(fs_stop_signals[i], &sa, NULL);
	}
}

int fs_watch_start(fs_ctx *c)
{
	fs_watch_signals(c);
	c->watch_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	c->watch_stop = eventfd(0, EFD_CLOEXEC);
	if (c->watch_fd < 0 ||
	    inotify_add_watch(c->watch_fd, c->d.store.root,
	                      IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ONLYDIR) < 0) {
		ts_log(LOG_WARNING, "store %s: cannot watch for changes (%s); the view may lag "
		       "behind snapshots made elsewhere", c->d.store.root, strerror(errno));
		if (c->watch_fd >= 0)
			close(c->watch_fd);
		c->watch_fd = -1;   /* poll ignores it; the thread still watches for a stop */
	}
	if (c->watch_stop < 0 || pthread_create(&c->watch_thread, NULL, fs_watch_main, c) != 0) {
		ts_log(LOG_WARNING, "cannot start the watch thread (%s): a snapshot in progress "
		       "is not cancelled when the daemon stops", strerror(errno));
		return -1;
	}
	c->watching = true;
	return 0;
}

void fs_watch_stop(fs_ctx *c)
{
	uint64_t one = 1;
	if (c->watching) {
		(void)!write(c->watch_stop, &one, sizeof one);
		pthread_join(c->watch_thread, NULL);
		c->watching = false;
	}
	if (c->watch_fd >= 0)
		close(c->watch_fd);
	if (c->watch_stop >= 0)
		close(c->watch_stop);
	c->watch_fd = c->watch_stop = -1;
}
