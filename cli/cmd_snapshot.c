/* cmd_snapshot.c - tracsnap snapshot: the mount's mkdir, without a mount. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/parse.h"
#include "cli_progress.h"
#include "store/name.h"
#include "store/seal.h"
#include "take/snap.h"

int cli_snapshot(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "no-database", no_argument, NULL, 'n' },
		{ "lock-timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	ts_snap_opts o = { .lock_timeout_s = TS_LOCK_TIMEOUT_DEFAULT };
	ts_snap_stats st;
	ts_env env;
	ts_store store;
	ts_err e;
	char name[64], line[512];
	int c, status;

	ts_log_init(TS_LOG_STDERR, LOG_WARNING);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			store_path = optarg;
			break;
		case 'n':
			o.no_database = true;
			break;
		case 't':
			status = cli_parse_lock_timeout(optarg, &o.lock_timeout_s);
			if (status)
				return status;
			break;
		default:
			return cli_bad_option("snapshot", argc, argv);
		}
	}
	status = cli_check_args("snapshot", argc, argv, 1, 2, "ENV");
	if (status)
		return status;
	if (argc - optind == 2) {
		o.name = argv[optind + 1];
		/* Before the store is opened: a refused name creates nothing. */
		ts_err_clear(&e);
		if (ts_name_check(o.name, &e) != TS_OK)
			return cli_fail(&e);
	} else {
		/* No ':' in default names: tar and rsync read "a:b" as host:path. */
		time_t now = ts_clock_name_time();
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(name, sizeof name, "%Y-%m-%dT%H%M%S", &tm);
		o.name = name;
	}
	status = cli_open_env_store(argv[optind], store_path, true, &env, &store, NULL);
	if (status)
		return status;
	ts_err_clear(&e);
	char what[96];
	cli_progress pr;
	snprintf(what, sizeof what, "snapshot %.80s", o.name);
	ts_progress_sink sink = cli_progress_start(&pr, what);
	o.progress = &sink;
	ts_err_code rc = ts_snap_take(&store, &env, &o, &st, &e);
	cli_progress_end(&pr);
	if (rc != TS_OK) {
		status = cli_fail(&e);
	} else {
		/* The snapshot is complete and visible; make it durable before
		 * reporting success (a cron job's snapshot must survive a crash
		 * right after), then any earlier one of this boot left unsealed. */
		ts_seal_stats ss;
		double visible_ms = st.total_ms;
		rc = ts_seal(&store, o.name, NULL, &ss, &e);
		if (rc == TS_OK || rc == TS_ERR_NOTFOUND) {
			ts_err more;
			ts_err_clear(&more);
			/* As the daemon's sealer does first (take/snap_adopted.c). */
			if (ts_snap_check_adopted(&store, &env, o.lock_timeout_s, &more) != TS_OK) {
				ts_log(LOG_WARNING, "%s", more.msg);
				ts_err_clear(&more);
			}
			if (ts_seal_all(&store, NULL, true, NULL, &more) != TS_OK)
				ts_log(LOG_WARNING, "%s", more.msg);
			st.total_ms += ss.ms;
			ts_snap_format_stats(o.name, &st, line, sizeof line);
			printf("%s (visible after %.0f ms)\n", line, visible_ms);
			status = EX_OK;
		} else {
			status = cli_fail(&e);
		}
	}
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
