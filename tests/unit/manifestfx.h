/* manifestfx.h - the fixture of the manifest tests (test_manifest.c,
 * test_manifest_write.c, test_manifest_read.c); test-only.
 *
 * Purpose: one copy of what these tests share: a scratch directory for the
 * whole group of tests of a binary, the manifest file in it that the tests
 * write and read, the boot id their unsealed manifests carry, and the check
 * that an accepted manifest's sealing state is sane.
 *
 * Ownership: mfx_setup (cmocka's group setup) makes mfx_dir, a new
 * directory /tmp/tracsnap-test-manifest.XXXXXX, and names mfx_file,
 * MFX_DIR/manifest, without creating it; mfx_teardown (the group teardown)
 * removes both.  A test that creates another file there removes it itself.
 *
 * mfx_sane_sealing fails the running cmocka test, as tutil.h's helpers do:
 * call it only from inside a test. */
#ifndef TS_TESTS_MANIFESTFX_H
#define TS_TESTS_MANIFESTFX_H

#include "store/manifest.h"

/* A boot id as /proc/sys/kernel/random/boot_id gives it. */
#define BOOT "14fb3176-495d-41a4-8546-7a479d8a9546"

extern char mfx_dir[64];
extern char mfx_file[128];

int mfx_setup(void **state);
int mfx_teardown(void **state);

/* The state an accepted manifest must be in, whatever the input: a boot id
 * of 1 to 64 bytes of [0-9a-f-] if any, pending entries only files of an
 * unsealed manifest with a zero hash, ts_manifest_sealed agreeing. */
void mfx_sane_sealing(const ts_manifest *m);

#endif
