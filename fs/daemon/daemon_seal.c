/* daemon_seal.c - the daemon's sealer: a background thread that hashes and
 * makes durable every snapshot that has appeared (snapshot/store/seal.h), so
 * that mkdir and first access return as soon as the snapshot is complete;
 * then it has the stager stage the newest one for the next snapshot
 * (daemon_stage.c).  With keep= it prunes after each seal, and again every
 * retry_s seconds while a snapshot in use is waiting to go (daemon_prune.c).
 * It holds seal_mu only to wait and read its flags, and seals without the
 * daemon's snap_mu (daemon.h, lock order). */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "store/seal.h"
#include "take/snap.h"

#define DMN_PRUNE_RETRY_S 60
/* Tests shorten the retry (seconds, 1 to 3600). */
#define DMN_PRUNE_RETRY_ENV "TRACSNAP_TEST_PRUNE_RETRY"

/* Wait for a kick or a stop, or until the pending prune is due. */
static bool dmn_seal_wait(dmn_daemon *d)
{
	struct timespec due;
	bool due_now = false;

	clock_gettime(CLOCK_MONOTONIC, &due);
	due.tv_sec += d->seal.retry_s;
	while (!d->seal.kicked && !d->seal.stopping && !due_now) {
		if (d->seal.prune_pending)
			due_now = pthread_cond_timedwait(&d->seal.cv, &d->seal.mu, &due) == ETIMEDOUT;
		else
			pthread_cond_wait(&d->seal.cv, &d->seal.mu);
	}
	return due_now;
}

/* Seal everything pending until a pass finds nothing new to do.  A stop
 * does not cancel: the last pass finishes, because a snapshot left unsealed
 * at shutdown would be discarded after the reboot that usually follows.
 * That pass shares nothing (ts_seal_all): a backlog of many snapshots,
 * each taking the store lock and syncing again for its links, held an
 * unmount for over 10 s. */
static void *dmn_seal_main(void *arg)
{
	dmn_daemon *d = arg;

	pthread_mutex_lock(&d->seal.mu);
	for (;;) {
		bool retry = dmn_seal_wait(d);
		bool last = d->seal.stopping, seal = d->seal.kicked || last;
		d->seal.kicked = false;
		pthread_mutex_unlock(&d->seal.mu);

		unsigned sealed = 0;
		ts_err e;
		ts_err_clear(&e);
		/* A snapshot taken from the stage as it was has its copies
		 * checked now, before the seal hashes them (snapshot/take/
		 * snap_adopted.c). */
		if (seal && ts_snap_check_adopted(&d->store, &d->env, d->lock_timeout_s, &e) != TS_OK) {
			ts_log(LOG_ERR, "checking the copies of a snapshot taken from the stage failed: %s",
			       e.msg);
			ts_err_clear(&e);
		}
		if (seal && ts_seal_all(&d->store, NULL, !last, &sealed, &e) != TS_OK)
			ts_log(LOG_ERR, "sealing failed: %s (tracsnap verify checks the rest)", e.msg);
		/* keep= only once a new snapshot is sealed: until then it may be
		 * lost in a crash and must not push out a sealed one. */
		if (d->has_keep && (sealed > 0 || retry || d->seal.prune_pending))
			d->seal.prune_pending = dmn_prune(d) > 0;
		/* The manifests it read (some 57 MB at 200,000 entries) go back
		 * before the stager reads one in its own thread's arena: freed
		 * memory of this thread would otherwise still be resident then. */
		if (seal)
			dmn_trim();
		/* Stage the newest for the next snapshot (also after a prune on
		 * the timer: it may have taken the stage's snapshot with it). */
		if (!last)
			dmn_stage_kick(d);

		pthread_mutex_lock(&d->seal.mu);
		if (last && !d->seal.kicked)
			break;
	}
	pthread_mutex_unlock(&d->seal.mu);
	return NULL;
}

int dmn_seal_start(dmn_daemon *d)
{
	pthread_condattr_t ca;
	const char *retry = getenv(DMN_PRUNE_RETRY_ENV);
	int v = retry ? atoi(retry) : 0;

	pthread_mutex_init(&d->seal.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->seal.cv, &ca);
	pthread_condattr_destroy(&ca);
	d->seal.kicked = true;   /* snapshots left unsealed by an earlier run */
	d->seal.stopping = false;
	d->seal.prune_pending = false;
	d->seal.retry_s = v >= 1 && v <= 3600 ? v : DMN_PRUNE_RETRY_S;
	int err = pthread_create(&d->seal.thread, NULL, dmn_seal_main, d);
	if (err != 0) {
		ts_log(LOG_WARNING, "cannot start the sealing thread (%s): snapshots are sealed "
		       "by the next tracsnap snapshot", strerror(err));
		return -1;
	}
	d->seal.running = true;
	return 0;
}

void dmn_seal_kick(dmn_daemon *d)
{
	if (!d->seal.running)
		return;
	pthread_mutex_lock(&d->seal.mu);
	d->seal.kicked = true;
	pthread_cond_signal(&d->seal.cv);
	pthread_mutex_unlock(&d->seal.mu);
}

void dmn_seal_stop(dmn_daemon *d)
{
	if (!d->seal.running)
		return;
	pthread_mutex_lock(&d->seal.mu);
	d->seal.stopping = true;
	pthread_cond_signal(&d->seal.cv);
	pthread_mutex_unlock(&d->seal.mu);
	pthread_join(d->seal.thread, NULL);
	d->seal.running = false;
	pthread_cond_destroy(&d->seal.cv);
	pthread_mutex_destroy(&d->seal.mu);
}
