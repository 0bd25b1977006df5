/* common.c - what every command shares: messages and opening ENV + store. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "log.h"
#include "sysexit.h"

int cli_fail(const ts_err *e)
{
	fprintf(stderr, "tracsnap: %s\n", e->msg);
	return ts_sysexit(e->code);
}

int cli_open_env_store(const char *env_path, const char *store_path, bool create,
                       ts_env *env, ts_store *store)
{
	ts_err e;
	char *def = NULL;
	int status = 0;

	ts_err_clear(&e);
	if (ts_env_open(env_path, env, &e) != TS_OK || ts_env_check_supported(env, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	if (!store_path)
		store_path = def = ts_store_default_path(env->root);
	if (!store_path) {
		ts_err_set(&e, TS_ERR_USAGE, "no store given and no default (set --store)");
		status = cli_fail(&e);
		goto out;
	}
	if (ts_store_check_placement(store_path, env->root, NULL, &e) != TS_OK ||
	    ts_store_open(store_path, create, store, &e) != TS_OK)
		status = cli_fail(&e);
out:
	if (status)
		ts_env_close(env);
	free(def);
	return status;
}
