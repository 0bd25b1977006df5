/* fuzz_dburi.c - libFuzzer target for the [trac] database value parser.
 *
 * Feeds arbitrary bytes (cut at the first NUL, as a C string from trac.ini
 * would be) to ts_dburi_parse() and ts_dburi_redact(), and checks the
 * promises of dburi.h: a failed parse leaves *out zeroed, a SQLite result
 * always has a path, a refused value's message is NUL-terminated in its
 * buffer.
 *
 * fuzz-sources: snapshot/env/dburi.c snapshot/base/err.c
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env/dburi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ts_dburi zero;
	char *text = malloc(size + 1);
	char *red;
	ts_dburi u;
	ts_err e;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	ts_err_clear(&e);
	if (ts_dburi_parse(text, "fuzz: [trac] database", &u, &e) == TS_OK) {
		assert(u.kind == TS_DB_SQLITE || u.kind == TS_DB_POSTGRES || u.kind == TS_DB_MYSQL);
		if (u.kind == TS_DB_SQLITE)
			assert(u.path != NULL);
		ts_dburi_free(&u);
	} else {
		assert(e.code != TS_OK);
		assert(memcmp(&u, &zero, sizeof(u)) == 0);
		assert(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
	}

	red = ts_dburi_redact(text);
	free(red);
	free(text);
	return 0;
}
