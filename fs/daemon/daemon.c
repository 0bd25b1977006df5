/* daemon.c - the daemon's life (init, start, stop, free), its writers'
 * turns on snap_mu, and who may manage snapshots (daemon.h). */
#include "daemon.h"

#include <malloc.h>
#include <string.h>

#include "base/log.h"
#include "store/events.h"

void dmn_init(dmn_daemon *d)
{
	memset(d, 0, sizeof *d);
	d->stage.wake = -1;
	pthread_mutex_init(&d->snap_mu, NULL);
	dmn_plus_init(&d->plus);
	dmn_handles_init(&d->handles);
}

static void dmn_event_tap(void *arg, int level, const char *msg)
{
	dmn_daemon *d = arg;
	ts_events_append(d->store.dirfd, level, msg);
}

void dmn_events_on(dmn_daemon *d)
{
	ts_log_set_tap(dmn_event_tap, d);
}

void dmn_events_off(void)
{
	ts_log_set_tap(NULL, NULL);
}

void dmn_start(dmn_daemon *d)
{
	/* Failures are logged and leave the daemon without that thread:
	 * snapshots are then made without a stage, or sealed by the next
	 * tracsnap snapshot. */
	(void)dmn_stage_start(d);
	(void)dmn_seal_start(d);
}

void dmn_stop(dmn_daemon *d)
{
	dmn_stage_stop(d);
	dmn_seal_stop(d);
}

void dmn_free(dmn_daemon *d)
{
	dmn_stop(d);
	dmn_events_off();   /* before the store's descriptor goes */
	dmn_stage_close(d);
	ts_store_close(&d->store);
	ts_env_close(&d->env);
	dmn_auto_free(&d->autos);
	pthread_mutex_destroy(&d->snap_mu);
	dmn_plus_free(&d->plus);
	dmn_handles_free(&d->handles);
}

bool dmn_cancel(dmn_daemon *d)
{
	d->cancel = 1;
	__atomic_add_fetch(&d->stage_stop, 1, __ATOMIC_RELAXED);   /* for good */
	if (pthread_mutex_trylock(&d->snap_mu) == 0) {
		pthread_mutex_unlock(&d->snap_mu);
		return false;
	}
	return true;
}

void dmn_writer_lock(dmn_daemon *d)
{
	__atomic_add_fetch(&d->stage_stop, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&d->snap_mu);
	__atomic_sub_fetch(&d->stage_stop, 1, __ATOMIC_RELAXED);
}

void dmn_writer_unlock(dmn_daemon *d)
{
	pthread_mutex_unlock(&d->snap_mu);
}

void dmn_trim(void)
{
#ifndef __SANITIZE_ADDRESS__
	malloc_trim(0);
#endif
}

bool dmn_may_manage_needs_groups(const dmn_managers *m, uid_t uid, gid_t gid)
{
	return uid != 0 && uid != m->owner && m->has_group && gid != m->group;
}

bool dmn_may_manage(const dmn_managers *m, uid_t uid, gid_t gid, const gid_t *groups,
                    int ngroups)
{
	if (uid == 0 || uid == m->owner)
		return true;
	if (!m->has_group)
		return false;
	if (gid == m->group)
		return true;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == m->group)
			return true;
	return false;
}
