/* manifestfx.c - the manifest tests' scratch file and checks; see
 * manifestfx.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/manifest.h"

#include "manifestfx.h"

char mfx_dir[64];
char mfx_file[128];

int mfx_setup(void **state)
{
	(void)state;
	snprintf(mfx_dir, sizeof(mfx_dir), "/tmp/tracsnap-test-manifest.XXXXXX");
	if (!mkdtemp(mfx_dir))
		return -1;
	snprintf(mfx_file, sizeof(mfx_file), "%s/manifest", mfx_dir);
	return 0;
}

int mfx_teardown(void **state)
{
	(void)state;
	unlink(mfx_file);
	rmdir(mfx_dir);
	return 0;
}

/* The state an accepted manifest must be in, whatever the input. */
void mfx_sane_sealing(const ts_manifest *m)
{
	size_t i, pending = 0;

	if (m->unsealed_boot) {
		size_t len = strlen(m->unsealed_boot);

		assert_true(len >= 1 && len <= 64);
		assert_int_equal(strspn(m->unsealed_boot, "0123456789abcdef-"), len);
	}
	for (i = 0; i < m->n; i++) {
		const ts_manifest_entry *ent = &m->entries[i];
		static const unsigned char zero[32];

		if (!ent->pending)
			continue;
		pending++;
		assert_int_equal(ent->type, 'f');
		assert_non_null(m->unsealed_boot);
		assert_memory_equal(ent->sha256, zero, 32);
	}
	assert_int_equal(ts_manifest_sealed(m), !m->unsealed_boot && pending == 0);
}
