/* cmd_list.c - tracsnap list: the snapshots of a store, oldest first, with
 * their time, size, file count, bytes shared with other snapshots and state
 * ("sealed", or "sealing" while its hashes and data sync are not finished,
 * see seal.h; ",held" for a held one, hold.h).  Snapshots lost in a restart
 * are not listed (ts_store_list).
 *
 * The table has the name last, so that a name with spaces does not shift
 * the columns: `TIME SIZE FILES SHARED STATE NAME`.  Names are written for a
 * terminal: a backslash as "\\", control characters (C0, DEL and the C1
 * range U+0080-U+009F, which terminals obey too) as \u00XX, bytes that are
 * not valid UTF-8 as \xHH; valid UTF-8 as is.
 *
 * --json prints one array of objects
 *   {"name":S,"time":"YYYY-MM-DDTHH:MM:SS+HH:MM","unix_time":N,"size":N,
 *    "files":N,"shared_bytes":N,"sealed":true|false,"held":true|false}
 * whose fields scripts may rely on (new fields may be added, none removed).
 * Names are bytes: in JSON strings '"' and '\\' are escaped, bytes below 0x20,
 * 0x7f, the C1 controls and every byte that is not part of valid UTF-8 are
 * written as \u00XX (so a non-UTF-8 name comes out as its Latin-1 reading,
 * one code point per byte); other valid UTF-8 is copied as is.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "base/clock.h"
#include "store/hold.h"
#include "store/verify.h"

static void cli_human_size(uint64_t b, char *out, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)b;
	int u = -1;

	if (b < 1024) {
		snprintf(out, len, "%lluB", (unsigned long long)b);
		return;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

int cli_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_env env;
	ts_store store;
	ts_err e;
	int c, status, json = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			store_path = optarg;
		else if (c == 'j')
			json = 1;
		else
			return cli_bad_option("list", argc, argv);
	}
	status = cli_check_args("list", argc, argv, 1, 1, "ENV");
	if (status)
		return status;
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store, NULL);
	if (status)
		return status;
	ts_err_clear(&e);
	if (ts_store_list(&store, &v, &n, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	if (json)
		printf("[");
	else if (n)
		printf("%-25s %8s %7s %8s %-12s %s\n", "TIME", "SIZE", "FILES", "SHARED", "STATE", "NAME");
	for (size_t i = 0; i < n; i++) {
		char when[64], size[16], shared[16], state[16];
		ts_verify_summary sum;
		bool held = ts_hold_is_held(&store, v[i].name, NULL);

		ts_clock_iso(v[i].time.tv_sec, when, sizeof when);
		/* A snapshot deleted or damaged meanwhile is still listed, with
		 * zeros, and the reason goes to stderr. */
		ts_err_clear(&e);
		if (ts_verify_summary_get(&store, v[i].name, &sum, &e) != TS_OK)
			fprintf(stderr, "tracsnap: %s\n", e.msg);
		if (json) {
			printf("%s{\"name\":", i ? "," : "");
			cli_json_string(stdout, v[i].name);
			printf(",\"time\":\"%s\",\"unix_time\":%lld,\"size\":%llu,\"files\":%llu,"
			       "\"shared_bytes\":%llu,\"sealed\":%s,\"held\":%s}", when, (long long)v[i].time.tv_sec,
			       (unsigned long long)sum.size, (unsigned long long)sum.files,
			       (unsigned long long)sum.shared_bytes, v[i].sealed ? "true" : "false",
			       held ? "true" : "false");
		} else {
			cli_human_size(sum.size, size, sizeof size);
			cli_human_size(sum.shared_bytes, shared, sizeof shared);
			snprintf(state, sizeof state, "%s%s", v[i].sealed ? "sealed" : "sealing", held ? ",held" : "");
			printf("%-25s %8s %7llu %8s %-12s ", when, size, (unsigned long long)sum.files, shared, state);
			cli_term_name(stdout, v[i].name);
			putchar('\n');
		}
	}
	if (json)
		printf("]\n");
out:
	ts_store_list_free(v, n);
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
