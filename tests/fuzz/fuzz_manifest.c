/* fuzz_manifest.c - libFuzzer target for the snapshot manifest reader.
 *
 * Each input is written to a file in a private temporary directory (made once
 * per process) and read with ts_manifest_read(); every path of an accepted
 * manifest must then be found by ts_manifest_find().  The same bytes also go
 * through ts_manifest_escape() and back through ts_manifest_unescape(), which
 * must give them back unchanged.
 *
 * fuzz-sources: snapshot/store/manifest.c snapshot/store/manifest_read.c snapshot/store/manifest_write.c snapshot/base/copy.c snapshot/base/beneath.c snapshot/base/err.c
 * fuzz-libs: -lcrypto
 */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[PATH_MAX];
static char file[PATH_MAX + 32];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	/* tmpfs when there is one: rewriting a file on ext4 for every input
	 * (O_TRUNC flushes it, auto_da_alloc) would slow the run 10-fold. */
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(dir, sizeof(dir), "%s/tracsnap-fuzz-manifest.XXXXXX", tmp);
	if (!mkdtemp(dir))
		abort();
	snprintf(file, sizeof(file), "%s/manifest", dir);
	atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ts_manifest m;
	ts_err e;
	char *text, *esc, *back;
	const char *p;
	size_t left, i;
	int fd;

	if (!dir[0])
		setup();
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	for (p = (const char *)data, left = size; left > 0;) {
		ssize_t n = write(fd, p, left);
		if (n <= 0)
			abort();
		p += n;
		left -= (size_t)n;
	}
	close(fd);

	ts_manifest_init(&m);
	ts_err_clear(&e);
	if (ts_manifest_read(file, &m, &e) == TS_OK) {
		for (i = 0; i < m.n; i++)
			assert(ts_manifest_find(&m, m.entries[i].path) != NULL);
	} else {
		assert(e.code != TS_OK);
		assert(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
	}
	ts_manifest_free(&m);

	/* Escaping round trip on the input as a C string. */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	esc = ts_manifest_escape(text);
	if (esc) {
		assert(strpbrk(esc, "\t\n\r ") == NULL);
		back = ts_manifest_unescape(esc);
		assert(back != NULL && strcmp(back, text) == 0);
		free(back);
		free(esc);
	}
	free(text);
	return 0;
}
