/* daemon_seal.c - the daemon's sealer: a background thread that hashes and
 * makes durable every snapshot that has appeared (snapshot/store/seal.h), so
 * that mkdir and first access return as soon as the snapshot is complete;
 * then it has the stager stage the newest one for the next snapshot
 * (daemon_stage.c).  With keep= it prunes after each seal (daemon_prune.c).
 * It holds seal_mu only to wait and read its flags, and seals without the
 * daemon's snap_mu (daemon.h, lock order). */
#include "daemon.h"

#include <string.h>

#include "base/log.h"
#include "store/seal.h"

/* Seal everything pending until a pass finds nothing new to do.  A stop
 * does not cancel: the last pass finishes, because a snapshot left unsealed
 * at shutdown would be discarded after the reboot that usually follows. */
static void *dmn_seal_main(void *arg)
{
	dmn_daemon *d = arg;

	pthread_mutex_lock(&d->seal.mu);
	for (;;) {
		while (!d->seal.kicked && !d->seal.stopping)
			pthread_cond_wait(&d->seal.cv, &d->seal.mu);
		bool last = d->seal.stopping;
		d->seal.kicked = false;
		pthread_mutex_unlock(&d->seal.mu);

		unsigned sealed = 0;
		ts_err e;
		ts_err_clear(&e);
		if (ts_seal_all(&d->store, NULL, &sealed, &e) != TS_OK)
			ts_log(LOG_ERR, "sealing failed: %s (tracsnap verify checks the rest)", e.msg);
		/* keep= only once a new snapshot is sealed: until then it may be
		 * lost in a crash and must not push out a sealed one. */
		if (d->has_keep && sealed > 0)
			dmn_prune(d);
		if (!last)
			dmn_stage_kick(d);   /* stage the newest for the next snapshot */

		pthread_mutex_lock(&d->seal.mu);
		if (last && !d->seal.kicked)
			break;
	}
	pthread_mutex_unlock(&d->seal.mu);
	return NULL;
}

int dmn_seal_start(dmn_daemon *d)
{
	pthread_mutex_init(&d->seal.mu, NULL);
	pthread_cond_init(&d->seal.cv, NULL);
	d->seal.kicked = true;   /* snapshots left unsealed by an earlier run */
	d->seal.stopping = false;
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
