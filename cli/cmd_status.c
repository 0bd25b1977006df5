/* cmd_status.c - tracsnap status: where things are and what went wrong.
 *
 * For ENV or a mount point: the environment, its store, the mount serving
 * it (from the registry, store/registry.h), the snapshots (sealed, being
 * sealed, held), one being made, the stage, and the last problems the
 * daemon kept in the store (store/events.h): the reasons a refused mkdir or
 * a failed first access only answered with an errno.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "base/clock.h"
#include "store/events.h"
#include "store/hold.h"
#include "store/mounts.h"

#define STATUS_EVENTS 10   /* the last problems shown */

/* When process pid started, as wall-clock seconds; 0 when unknown. */
static time_t status_started(long pid)
{
	unsigned long long ticks, btime = 0;
	char line[256];
	FILE *f;

	if (!ts_mounts_start_time(pid, &ticks) || !(f = fopen("/proc/stat", "re")))
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	return btime ? (time_t)(btime + ticks / (unsigned long long)sysconf(_SC_CLK_TCK)) : 0;
}

static void status_event(void *arg, const char *line)
{
	(void)arg;
	printf("  %s\n", line);
}

/* The snapshots line and the held one. */
static int status_snapshots(ts_store *store)
{
	ts_store_snap *v = NULL;
	size_t n = 0, sealing = 0, held = 0;
	char when[64];
	ts_err e;

	ts_err_clear(&e);
	if (ts_store_list(store, &v, &n, &e) != TS_OK)
		return cli_fail(&e);
	for (size_t i = 0; i < n; i++)
		sealing += !v[i].sealed;
	printf("snapshots    %zu (%zu sealed, %zu being sealed)", n, n - sealing, sealing);
	if (n) {
		ts_clock_iso(v[n - 1].time.tv_sec, when, sizeof when);
		printf("; newest ");
		cli_term_name(stdout, v[n - 1].name);
		printf(" at %s", when);
	}
	printf("\nheld         ");
	for (size_t i = 0; i < n; i++) {
		if (!ts_hold_is_held(store, v[i].name, NULL))
			continue;
		printf("%s", held++ ? ", " : "");
		cli_term_name(stdout, v[i].name);
	}
	printf("%s\n", held ? "" : "none");
	ts_store_list_free(v, n);
	return 0;
}

int cli_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_path = NULL;
	ts_registry_entry *mount = malloc(sizeof *mount);
	ts_store_activity act;
	ts_env env;
	ts_store store;
	char when[64];
	int c, status;

	if (!mount)
		return EX_OSERR;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c != 's') {
			free(mount);
			return cli_bad_option("status", argc, argv);
		}
		store_path = optarg;
	}
	status = cli_check_args("status", argc, argv, 1, 1, "ENV or MOUNTPOINT");
	if (!status)
		status = cli_open_env_store(argv[optind], store_path, false, &env, &store, mount);
	if (status) {
		free(mount);
		return status;
	}
	printf("environment  %s\nstore        %s\n", env.root, store.root);
	if (mount->pid) {
		time_t since = status_started(mount->pid);
		ts_clock_iso(since, when, sizeof when);
		printf("mount        %s (pid %ld, since %s)\n", mount->mnt, mount->pid, since ? when : "?");
	} else {
		printf("mount        none\n");
	}
	status = status_snapshots(&store);
	ts_store_activity_get(&store, &act);
	if (act.making)
		printf("being made   %u (pid %ld)\n", act.making, act.making_pid);
	else
		printf("being made   none\n");
	if (act.stage_base[0]) {
		printf("stage        from ");
		cli_term_name(stdout, act.stage_base);
		printf("%s\n", act.stage_busy ? ", being refreshed" :
		       act.stage_refreshed ? ", refreshed: the next snapshot starts from it" :
		       ": the next snapshot starts from it");
	} else {
		printf("stage        none\n");
	}
	printf("last problems (%s/%s, newest last)\n", store.root, TS_EVENTS_FILE);
	if (ts_events_tail(store.dirfd, STATUS_EVENTS, status_event, NULL) == 0)
		printf("  none\n");
	ts_store_close(&store);
	ts_env_close(&env);
	free(mount);
	return status;
}
