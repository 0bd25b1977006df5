/* restore_keep.c - the state before a restore, kept as an ordinary
 * snapshot of the store (restore_int.h; doc/contract.md section 6).
 *
 * Not a directory beside ENV (a TRAC_ENV_PARENT_DIR would serve it as a
 * project, and nothing would ever prune it): a snapshot taken the normal
 * way (take/snap.h: incremental, sharing unchanged files with the newest
 * snapshot), and sealed before ENV is touched, so that what is kept is
 * hashed and durable.  It is listed, shown in the mount, pruned by the
 * rules, and restored like any other.
 */
#include "restore/restore_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/parse.h"
#include "store/seal.h"
#include "take/snap.h"

#define RESTORE_KEEP_PREFIX "pre-restore-"

ts_err_code restore_keep(restore_src *s, const ts_env *live, const char *store_opt,
                         int lock_timeout_s, ts_restore_out *out, ts_err *e)
{
	ts_store own, *store;
	bool opened = false;
	char stamp[32], name[64], *def = NULL;
	ts_snap_opts o = { .lock_timeout_s = lock_timeout_s > 0 ? lock_timeout_s : TS_LOCK_TIMEOUT_DEFAULT };
	ts_snap_stats stats;
	ts_seal_stats ss;
	time_t now = ts_clock_name_time();
	struct tm tm;
	ts_err_code rc;

	out->kept[0] = out->kept_store[0] = '\0';
	if (s->have_store && s->have_manifest && s->m.env && !strcmp(s->m.env, live->root)) {
		store = &s->store;   /* the snapshot's own: ENV's history stays in one place */
	} else {
		const char *path = store_opt ? store_opt : (def = ts_store_default_path(live->root));
		if (!path) {
			rc = ts_err_set(e, TS_ERR_USAGE, "no store for %s (set --store)", live->root);
			goto out;
		}
		rc = ts_store_check_placement(path, live->root, NULL, e);
		if (rc == TS_OK)
			rc = ts_store_open(path, true, &own, e);
		if (rc != TS_OK)
			goto out;
		opened = true;
		store = &own;
	}
	rc = ts_env_check_supported(live, e);
	if (rc != TS_OK)
		goto out;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H%M%S", &tm);
	rc = TS_ERR_EXISTS;
	for (int i = 0; rc == TS_ERR_EXISTS && i < 100; i++) {
		if (i)
			snprintf(name, sizeof name, RESTORE_KEEP_PREFIX "%s-%d", stamp, i);
		else
			snprintf(name, sizeof name, RESTORE_KEEP_PREFIX "%s", stamp);
		o.name = name;
		rc = ts_snap_take(store, live, &o, &stats, e);
	}
	if (rc == TS_OK)
		rc = ts_seal(store, name, NULL, &ss, e);
	if (rc != TS_OK)
		goto out;
	snprintf(out->kept, sizeof out->kept, "%s", name);
	snprintf(out->kept_store, sizeof out->kept_store, "%s", store->root);
out:
	if (opened)
		ts_store_close(&own);
	free(def);
	return rc;
}
