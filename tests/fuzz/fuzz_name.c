/* fuzz_name.c - libFuzzer target for snapshot-name validation.
 *
 * Feeds arbitrary bytes (cut at the first NUL) to ts_name_check() and checks
 * name.h's rules on every accepted name: not empty, not "."/"..", no '/',
 * no leading '.', no control byte, at most 255 bytes, not "latest".  A refused
 * name's message must be one line (control bytes escaped) that fits.
 *
 * fuzz-sources: snapshot/store/name.c snapshot/base/err.c
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *name = malloc(size + 1);
	const unsigned char *p;
	ts_err e;
	size_t len;

	if (!name)
		return 0;
	memcpy(name, data, size);
	name[size] = '\0';
	len = strlen(name);

	ts_err_clear(&e);
	if (ts_name_check(name, &e) == TS_OK) {
		assert(len > 0 && len <= 255);
		assert(name[0] != '.');
		assert(strchr(name, '/') == NULL);
		assert(strcmp(name, TS_NAME_LATEST) != 0);
		for (p = (const unsigned char *)name; *p; p++)
			assert(*p >= 0x20 && *p != 0x7f);
	} else {
		assert(e.code == TS_ERR_NAME);
		assert(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
		for (p = (const unsigned char *)e.msg; *p; p++)
			assert(*p >= 0x20 && *p != 0x7f);
	}
	free(name);
	return 0;
}
