/* fs_seal.c - the daemon's sealer: a background thread that hashes and
 * makes durable every snapshot that has appeared (snapshot/store/seal.h), so that
 * mkdir and first access return as soon as the snapshot is complete; then
 * it has the stager stage the newest one for the next snapshot (fs_stage.c). */
#include "fs.h"

#include <string.h>

#include "base/log.h"
#include "store/seal.h"

/* Seal everything pending until a pass finds nothing new to do.  A stop
 * does not cancel: the last pass finishes, because a snapshot left unsealed
 * at shutdown would be discarded after the reboot that usually follows. */
static void *fs_seal_main(void *arg)
{
	fs_ctx *c = arg;

	pthread_mutex_lock(&c->seal_mu);
	for (;;) {
		while (!c->seal_kicked && !c->seal_stopping)
			pthread_cond_wait(&c->seal_cv, &c->seal_mu);
		bool last = c->seal_stopping;
		c->seal_kicked = false;
		pthread_mutex_unlock(&c->seal_mu);

		ts_err e;
		ts_err_clear(&e);
		if (ts_seal_all(&c->store, NULL, NULL, &e) != TS_OK)
			ts_log(LOG_ERR, "sealing failed: %s (tracsnap verify checks the rest)", e.msg);
		if (!last)
			fs_stage_kick(c);   /* stage the newest for the next snapshot */

		pthread_mutex_lock(&c->seal_mu);
		if (last && !c->seal_kicked)
			break;
	}
	pthread_mutex_unlock(&c->seal_mu);
	return NULL;
}

int fs_seal_start(fs_ctx *c)
{
	pthread_mutex_init(&c->seal_mu, NULL);
	pthread_cond_init(&c->seal_cv, NULL);
	c->seal_kicked = true;   /* snapshots left unsealed by an earlier run */
	c->seal_stopping = false;
	int err = pthread_create(&c->seal_thread, NULL, fs_seal_main, c);
	if (err != 0) {
		ts_log(LOG_WARNING, "cannot start the sealing thread (%s): snapshots are sealed "
		       "by the next tracsnap snapshot", strerror(err));
		return -1;
	}
	c->sealing = true;
	return 0;
}

void fs_seal_kick(fs_ctx *c)
{
	if (!c->sealing)
		return;
	pthread_mutex_lock(&c->seal_mu);
	c->seal_kicked = true;
	pthread_cond_signal(&c->seal_cv);
	pthread_mutex_unlock(&c->seal_mu);
}

void fs_seal_stop(fs_ctx *c)
{
	if (!c->sealing)
		return;
	pthread_mutex_lock(&c->seal_mu);
	c->seal_stopping = true;
	pthread_cond_signal(&c->seal_cv);
	pthread_mutex_unlock(&c->seal_mu);
	pthread_join(c->seal_thread, NULL);
	c->sealing = false;
	pthread_cond_destroy(&c->seal_cv);
	pthread_mutex_destroy(&c->seal_mu);
}
