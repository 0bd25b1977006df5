/* fuzz_ini.c - libFuzzer target for reading conf/trac.ini.
 *
 * env.c has no in-memory parser (it reads the file itself, with getline()
 * around inih), so each input is written as conf/trac.ini of a minimal Trac
 * environment in a private temporary directory made once per process, and
 * ts_env_open() reads it: ini parsing, the [trac] database value, its URI
 * parse and the SQLite path resolution all run.  The directory is removed
 * at exit.
 *
 * fuzz-sources: snapshot/env/env.c snapshot/base/beneath.c snapshot/env/dburi.c snapshot/base/err.c
 * fuzz-libs: -linih
 */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[PATH_MAX];
static char ini[PATH_MAX + 32];

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = buf;

	if (fd < 0)
		abort();
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			abort();
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

static void cleanup(void)
{
	char path[PATH_MAX + 32];

	unlink(ini);
	snprintf(path, sizeof(path), "%s/conf", root);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/VERSION", root);
	unlink(path);
	rmdir(root);
}

static void setup(void)
{
	static const char version[] = "Trac Environment Version 1\n";
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX + 32];

	/* tmpfs when there is one: rewriting a file on ext4 for every input
	 * (O_TRUNC flushes it, auto_da_alloc) would slow the run 10-fold. */
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(root, sizeof(root), "%s/tracsnap-fuzz-ini.XXXXXX", tmp);
	if (!mkdtemp(root))
		abort();
	snprintf(path, sizeof(path), "%s/VERSION", root);
	write_file(path, version, sizeof(version) - 1);
	snprintf(path, sizeof(path), "%s/conf", root);
	if (mkdir(path, 0700) < 0)
		abort();
	snprintf(ini, sizeof(ini), "%s/conf/trac.ini", root);
	atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ts_env env;
	ts_err e;
	char *red;

	if (!root[0])
		setup();
	write_file(ini, data, size);

	ts_err_clear(&e);
	if (ts_env_open(root, &env, &e) == TS_OK) {
		assert(env.db_text != NULL);
		if (env.db.kind == TS_DB_SQLITE)
			assert(env.db_abs != NULL && env.db_abs[0] == '/');
		(void)ts_env_check_supported(&env, &e);
		red = ts_dburi_redact(env.db_text);
		free(red);
		ts_env_close(&env);
	} else {
		assert(e.code != TS_OK);
		assert(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
	}
	return 0;
}
