/* cmd_list.c - tracsnap list: the snapshots of a store, oldest first. */
#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"

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

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 's')
			store_path = optarg;
		else if (c == 'j')
			json = 1;
		else
			return EX_USAGE;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "usage: tracsnap list [--store DIR] [--json] ENV\n");
		return EX_USAGE;
	}
	status = cli_open_env_store(argv[optind], store_path, false, &env, &store);
	if (status)
		return status;
	ts_err_clear(&e);
	if (ts_store_list(&store, &v, &n, &e) != TS_OK) {
		status = cli_fail(&e);
		goto out;
	}
	if (json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		char when[64];
		struct tm tm;
		localtime_r(&v[i].time.tv_sec, &tm);
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S%z", &tm);
		if (json)
			printf("%s{\"name\":\"%s\",\"time\":\"%s\"}", i ? "," : "", v[i].name, when);
		else
			printf("%s\t%s\n", v[i].name, when);
	}
	if (json)
		printf("]\n");
out:
	ts_store_list_free(v, n);
	ts_store_close(&store);
	ts_env_close(&env);
	return status;
}
