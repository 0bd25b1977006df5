/* common.c - what every command shares: messages and opening ENV + store. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "commands.h"
#include "base/log.h"
#include "base/parse.h"
#include "sysexit.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tracsnap: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cli_usage_print(stderr, cmd);
	return EX_USAGE;
}

int cli_bad_option(const char *cmd, int argc, char **argv)
{
	const char *arg = optind >= 1 && optind - 1 < argc ? argv[optind - 1] : "?";

	/* getopt_long sets optopt to the option's value when its argument is
	 * missing (or given to an option that takes none), to 0 for an unknown
	 * long option. */
	if (optopt && strncmp(arg, "--", 2) == 0) {
		const char *eq = strchr(arg, '=');
		if (eq)
			return cli_usage_error(cmd, "option '%.*s' takes no argument",
			                       (int)(eq - arg), arg);
		return cli_usage_error(cmd, "option '%s' needs an argument", arg);
	}
	return cli_usage_error(cmd, "unknown option '%s'", arg);
}

int cli_check_args(const char *cmd, int argc, char **argv,
                   int min, int max, const char *missing)
{
	int n = argc - optind;

	if (n < min)
		return cli_usage_error(cmd, "missing %s", missing);
	if (max >= 0 && n > max)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + max]);
	return 0;
}

int cli_parse_lock_timeout(const char *arg, int *out)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_parse_lock_timeout(arg, out, &e) == TS_OK)
		return 0;
	/* The command line's own wording (the mount option says "whole"). */
	fprintf(stderr, "tracsnap: --lock-timeout %s: must be a number of seconds from %d to %d\n",
	        arg, TS_LOCK_TIMEOUT_MIN, TS_LOCK_TIMEOUT_MAX);
	return EX_USAGE;
}

int cli_fail(const ts_err *e)
{
	fprintf(stderr, "tracsnap: %s\n", e->msg);
	return cli_sysexit(e->code);
}

/* A store that contains ENV would list ENV as a snapshot, and prune or
 * rmdir would delete the live environment.  A store that does not exist yet
 * cannot contain the (existing) environment. */
static ts_err_code cli_check_store_holds_env(const char *store_path, const char *env_root,
                                             ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *real = realpath(store_path, NULL);

	if (real && ts_path_is_under(env_root, real))
		rc = ts_err_set(e, TS_ERR_USAGE, "store %s: contains the environment %s "
		                "(it would be taken for a snapshot)", store_path, env_root);
	free(real);
	return rc;
}

int cli_find_mount(const char *arg, const char **env_path, const char **store_path,
                   ts_registry_entry *mount)
{
	ts_err e;
	bool found;

	ts_err_clear(&e);
	if (ts_registry_find(arg, mount, &found, &e) != TS_OK)
		return cli_fail(&e);
	*env_path = found ? mount->env : arg;
	if (found && !*store_path)
		*store_path = mount->store;
	if (!found)
		mount->pid = 0;
	return 0;
}

int cli_open_env_store(const char *arg, const char *store_path, bool create,
                       ts_env *env, ts_store *store, ts_registry_entry *found)
{
	ts_err e;
	char *def = NULL;
	const char *env_path;
	ts_registry_entry *mount = found ? found : malloc(sizeof *mount);
	int status = 0;

	ts_err_clear(&e);
	if (!mount) {
		ts_err_set(&e, TS_ERR_NOMEM, "out of memory");
		return cli_fail(&e);
	}
	status = cli_find_mount(arg, &env_path, &store_path, mount);
	if (status)
		goto out_mount;
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
	    cli_check_store_holds_env(store_path, env->root, &e) != TS_OK ||
	    ts_store_open(store_path, create, store, &e) != TS_OK)
		status = cli_fail(&e);
out:
	if (status)
		ts_env_close(env);
	free(def);
out_mount:
	if (mount != found)
		free(mount);
	return status;
}
