/* daemon_stage.c - the daemon's stager: keeps the next snapshot's tree ready
 * (snapshot/take/stage.h).
 *
 * After each seal the sealer kicks it (dmn_stage_kick) and it stages the
 * newest snapshot.  It then watches the environment's directories with
 * inotify and refreshes the stage once a change has settled: new and
 * changed files are copied there, and the SQLite database's raw copy
 * brought up to date, so that a snapshot taken later mostly checks.
 *
 * When a change has settled, and how far apart refreshes are, is
 * daemon_settle.h.  Writes alone are no event: Trac's log is written all
 * the time and copied when something else changed.  Neither are the
 * database and its journals (the snapshot catches up with those).
 *
 * A snapshot wanting the store waits for a refresh in progress (what it
 * copies, the snapshot would copy) but stops a build (dmn_writer_lock).
 * The stager holds snap_mu while it builds or refreshes, and the engine
 * takes the store's flock under it (daemon.h, lock order).
 *
 * New directories are walked here by hand (dmn_stage_new_dir), not with
 * base/walk.h: that walk runs its callback on several threads, stats every
 * entry and stops at nothing, where this one must add an inotify watch to
 * each directory before listing it (so that nothing made meanwhile is
 * missed), follow the files it finds in the stager's own state, and stay
 * shallow (8 levels) and on the stager thread.
 */
#include "daemon.h"
#include "daemon_settle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "db/dbsnap.h"
#include "base/log.h"
#include "take/stage.h"

#define DMN_STAGE_OPEN_MAX 64     /* new files followed until they are closed */

/* The stager's state between events (its thread's own). */
typedef struct dmn_stage_state {
	bool build;                    /* kicked: stage the newest snapshot */
	bool all_dirs;                 /* watch every directory again (after a build) */
	dmn_settle settle;             /* ms: when to refresh (daemon_settle.h) */
	struct { int wd; char *name; } open[DMN_STAGE_OPEN_MAX];
	size_t nopen;                  /* files created, not closed yet */
} dmn_stage_state;

static int64_t dmn_stage_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Watch one directory of the environment (rel to it); its descriptor, or
 * -1 (daemon_journal.h). */
static int dmn_stage_add_watch(dmn_daemon *c, const char *rel)
{
	return dmn_journal_watch(&c->stage.j, rel);
}

/* ts_stage_dir_fn */
static void dmn_stage_watch(void *arg, const char *rel)
{
	(void)dmn_stage_add_watch(arg, rel);
}

static void dmn_stage_forget(dmn_stage_state *st, size_t i)
{
	free(st->open[i].name);
	st->open[i] = st->open[--st->nopen];
}

static void dmn_stage_forget_all(dmn_stage_state *st)
{
	while (st->nopen)
		dmn_stage_forget(st, 0);
}

static void dmn_stage_follow_new(dmn_stage_state *st, int wd, const char *name)
{
	if (st->nopen < DMN_STAGE_OPEN_MAX && (st->open[st->nopen].name = strdup(name))) {
		st->open[st->nopen].wd = wd;
		st->nopen++;
	}
}

/* Follow a new file until it is closed (or goes). */
static void dmn_stage_follow(dmn_stage_state *st, const struct inotify_event *ev)
{
	for (size_t i = 0; i < st->nopen; i++) {
		if (st->open[i].wd == ev->wd && !strcmp(st->open[i].name, ev->name)) {
			if (!(ev->mask & IN_CREATE))
				dmn_stage_forget(st, i);
			return;
		}
	}
	if ((ev->mask & IN_CREATE) && !(ev->mask & IN_ISDIR))
		dmn_stage_follow_new(st, ev->wd, ev->name);
}

/* A directory new in the environment is watched at once, not at the next
 * refresh: Trac makes a ticket's attachment directory and creates the file
 * in it right away.  What was made in it before the watch took (deeper
 * directories, files) is taken as new too (follow); a file found there may
 * be closed already, and only waits until DMN_SETTLE_MAX_WAIT_MS then.
 * Without follow, only the directories are watched (ENV at start). */
static void dmn_stage_new_dir(dmn_daemon *c, dmn_stage_state *st, const char *rel, int depth,
                              bool follow)
{
	char sub[PATH_MAX];
	struct dirent *de;
	int wd = dmn_stage_add_watch(c, rel);
	int envfd = -1, fd = -1;
	DIR *d = NULL;

	/* Listed by descriptor, beneath ENV (base/beneath.h): never through
	 * a symlink the environment's owner put on the way. */
	if (wd >= 0)
		envfd = open(c->env.root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (envfd >= 0)
		fd = ts_beneath_open(envfd, rel, O_RDONLY | O_DIRECTORY, 0);
	if (envfd >= 0)
		close(envfd);
	if (fd >= 0 && !(d = fdopendir(fd)))
		close(fd);
	if (!d)
		return;
	while ((de = readdir(d)) && !c->stage.quit) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		if (de->d_type == DT_REG && follow)
			dmn_stage_follow_new(st, wd, de->d_name);
		else if (de->d_type == DT_DIR && depth < 8 &&
		         (size_t)snprintf(sub, sizeof sub, "%s%s%s", strcmp(rel, ".") ? rel : "",
		                          strcmp(rel, ".") ? "/" : "", de->d_name) < sizeof sub)
			dmn_stage_new_dir(c, st, sub, depth + 1, follow);
	}
	closedir(d);
}

/* One event: the database and its journals are none of ours; anything else
 * is a change, and new files are followed until they are closed. */
static void dmn_stage_event(dmn_daemon *c, dmn_stage_state *st, const struct inotify_event *ev)
{
	char rel[PATH_MAX], dir[PATH_MAX];

	/* The journal keeps the watches' paths; writes alone are for the
	 * snapshots (daemon_journal.h), not the stage (above). */
	if ((ev->mask & IN_IGNORED) || (ev->mask & ~IN_ISDIR) == IN_MODIFY)
		return;
	if (!(ev->mask & IN_Q_OVERFLOW) && ev->len && dmn_journal_dir(&c->stage.j, ev->wd, dir, sizeof dir)) {
		if ((size_t)snprintf(rel, sizeof rel, "%s%s%s", strcmp(dir, ".") ? dir : "",
		                     strcmp(dir, ".") ? "/" : "", ev->name) >= sizeof rel)
			return;
		if (ts_db_excluded(&c->env, rel))
			return;
		if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && (ev->mask & IN_ISDIR))
			dmn_stage_new_dir(c, st, rel, 0, true);
	}
	if (ev->len)
		dmn_stage_follow(st, ev);
	dmn_settle_event(&st->settle, dmn_stage_now_ms());
}

/* When the next refresh is due (ms), or -1: none is wanted. */
static int64_t dmn_stage_due(const dmn_stage_state *st)
{
	return dmn_settle_due(&st->settle, st->nopen);
}

/* ts_stage_dir_fn for a build: the database's place in the tree is not
 * the environment's (an external database's directory, say). */
static void dmn_stage_build_watch(void *arg, const char *rel)
{
	dmn_daemon *c = arg;

	if (!strcmp(rel, ".") || !ts_db_excluded(&c->env, rel))
		(void)dmn_stage_add_watch(c, rel);
}

/* ts_stage_build_opts' env_still: the stage made from the snapshot dmn_take
 * last made, which was the environment (ts_snap_changes' stage_from), is
 * the one that take's stage mark was for; is it still the environment? */
static bool dmn_stage_env_still(void *arg, const struct stat *manifest)
{
	dmn_daemon *c = arg;
	ts_snap_changes ch;

	dmn_journal_changes(&c->stage.j, &ch);
	ch.stage_done(ch.arg, c->stage.taken_mark, manifest);
	return ch.stage_clean(ch.arg, manifest, NULL, NULL);
}

/* Stage the newest snapshot, watching its directories.  *built: a stage was
 * made.  Returns whether it is clean already (ts_stage_build_out's whole),
 * so that no refresh is needed before a snapshot takes it as it is. */
static bool dmn_stage_build(dmn_daemon *c, bool *built)
{
	ts_stage_build_out out;
	ts_err e;

	ts_err_clear(&e);
	pthread_mutex_lock(&c->snap_mu);
	ts_stage_build_opts o = { .stop = &c->stage_stop, .dir_fn = dmn_stage_build_watch, .arg = c,
	                          .env = &c->env,
	                          .env_name = c->stage.taken_mark ? c->stage.taken_name : NULL,
	                          .env_dev = c->stage.taken_dev, .env_ino = c->stage.taken_ino,
	                          .env_still = dmn_stage_env_still };
	if (ts_stage_build(&c->store, &o, &out, &e) != TS_OK)   /* out: nothing built */
		ts_log(LOG_WARNING, "staging the next snapshot failed: %s (it is made without)", e.msg);
	*built = out.built;
	pthread_mutex_unlock(&c->snap_mu);
	dmn_trim();   /* the manifest it read: give it back, as dmn_take does */
	return out.whole;
}

/* Returns how long it took (ms; not counting the wait for a snapshot in
 * progress), or -1 to try again later (the store was busy). */
static int64_t dmn_stage_refresh(dmn_daemon *c, bool all_dirs, bool *none)
{
	ts_snap_opts o = { .name = TS_STORE_STAGE, .no_database = c->no_database, .cancel = &c->cancel };
	ts_snap_changes changes;
	ts_stage_refresh_out out;
	ts_err e;

	ts_err_clear(&e);
	/* The watch says afterwards whether the refreshed stage is still the
	 * environment (snapshot/take/snap_fast.c). */
	dmn_journal_changes(&c->stage.j, &changes);
	o.changes = &changes;
	pthread_mutex_lock(&c->snap_mu);
	int64_t t0 = dmn_stage_now_ms();
	ts_err_code rc = ts_stage_refresh(&c->store, &c->env, &o, all_dirs, dmn_stage_watch, c, &out, &e);
	int64_t took = dmn_stage_now_ms() - t0;
	pthread_mutex_unlock(&c->snap_mu);
	dmn_trim();
	*none = out.none;
	if (rc == TS_OK && !out.busy && !out.none && out.bytes_copied)
		ts_log(LOG_DEBUG, "stage refreshed: %llu bytes copied in %lld ms",
		       (unsigned long long)out.bytes_copied, (long long)took);
	if (rc != TS_OK && rc != TS_ERR_CANCELLED)
		ts_log(LOG_WARNING, "refreshing the stage failed: %s (the next snapshot is made "
		       "without it)", e.msg);
	return out.busy ? -1 : took;
}

static void *dmn_stage_main(void *arg)
{
	dmn_daemon *c = arg;
	char buf[64 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd pf[3] = { { c->stage.j.fd, POLLIN, 0 }, { c->stage.wake, POLLIN, 0 },
	                        { c->stage.j.wake, POLLIN, 0 } };
	dmn_stage_state st = { .build = true, .all_dirs = true };
	bool started = false;

	while (!c->stage.quit) {
		int64_t now = dmn_stage_now_ms(), due = st.build ? now : dmn_stage_due(&st);
		int timeout = due < 0 ? -1 : due <= now ? 0 : (int)(due - now);
		if (poll(pf, 3, timeout) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN) {
			uint64_t v;
			if (read(c->stage.wake, &v, sizeof v) == (ssize_t)sizeof v)
				st.build = true;
		}
		if ((pf[0].revents | pf[2].revents) & POLLIN) {
			/* Through the journal, which a snapshot may have drained
			 * meanwhile (daemon_journal.h). */
			bool lost = false;
			size_t n = dmn_journal_events(&c->stage.j, buf, sizeof buf, &lost);
			for (char *p = buf; p < buf + n;) {
				struct inotify_event *ev = (struct inotify_event *)p;
				dmn_stage_event(c, &st, ev);
				p += sizeof *ev + ev->len;
			}
			if (lost)
				dmn_settle_event(&st.settle, dmn_stage_now_ms());
		}
		if (c->stage.quit)
			break;
		if (st.build) {
			bool built = false;
			st.build = false;
			/* Then bring it up to the environment, unless it is
			 * already, and watch all of it (again: a restore may have
			 * replaced it), which a build does itself. */
			if (dmn_stage_build(c, &built))
				dmn_settle_built_clean(&st.settle);
			else
				dmn_settle_rebuilt(&st.settle);
			/* With no stage to build (no sealed snapshot yet), the
			 * environment's directories are watched all the same, so
			 * that the first snapshot's recheck under Trac's lock looks
			 * only at what changed during its copy (at 200,000 files
			 * it held the lock some 500 ms with none watched), and is
			 * the environment for the stage built from it. */
			if (!built && !started)
				dmn_stage_new_dir(c, &st, ".", 0, false);
			started = true;
			st.all_dirs = !built;
			dmn_stage_forget_all(&st);
		}
		due = dmn_stage_due(&st);
		if (due < 0 || dmn_stage_now_ms() < due)
			continue;
		bool none = false;
		int64_t took = dmn_stage_refresh(c, st.all_dirs, &none);
		now = dmn_stage_now_ms();
		if (took < 0) {
			dmn_settle_busy(&st.settle, now);   /* another writer: again later */
			continue;
		}
		dmn_settle_refreshed(&st.settle, now, took);
		dmn_stage_forget_all(&st);   /* still open: copied as they were, again once closed */
		st.all_dirs = none;   /* nothing staged yet: watch all once there is */
	}
	dmn_stage_forget_all(&st);
	return NULL;
}

int dmn_stage_start(dmn_daemon *c)
{
	c->stage.j_open = dmn_journal_open(&c->stage.j, &c->env) == 0;
	c->stage.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->stage.quit = 0;
	if (!c->stage.j_open || c->stage.wake < 0 ||
	    pthread_create(&c->stage.thread, NULL, dmn_stage_main, c) != 0) {
		ts_log(LOG_WARNING, "cannot start the staging thread (%s): snapshots are made "
		       "without a stage", strerror(errno));
		dmn_stage_close(c);
		return -1;
	}
	c->stage.running = true;
	/* The stage's pre-copies and the snapshots' read, between them, only
	 * what Trac wrote since the last (dbsnap.h). */
	ts_db_tap_keep(true);
	return 0;
}

void dmn_stage_kick(dmn_daemon *c)
{
	uint64_t one = 1;
	if (c->stage.wake >= 0)
		(void)!write(c->stage.wake, &one, sizeof one);
}

void dmn_stage_stop(dmn_daemon *c)
{
	if (!c->stage.running)
		return;
	c->stage.quit = 1;
	c->cancel = 1;   /* a refresh in progress gives up */
	dmn_stage_kick(c);
	pthread_join(c->stage.thread, NULL);
	c->stage.running = false;
}

void dmn_stage_close(dmn_daemon *c)
{
	dmn_stage_stop(c);
	ts_db_tap_keep(false);
	if (c->stage.j_open)
		dmn_journal_close(&c->stage.j);
	c->stage.j_open = false;
	if (c->stage.wake >= 0)
		close(c->stage.wake);
	c->stage.wake = -1;
}
