/* storefx.h - the fixture of the store tests (test_store.c,
 * test_location.c); test-only.
 *
 * Purpose: one copy of the scratch directory both make for each test:
 * TOP/env is an environment directory (only its place matters to these
 * tests), TOP/store the place of a store, not created.
 *
 * Ownership: stfx_setup (cmocka's per-test setup) allocates the fx, makes
 * TOP and TOP/env and hands the fx to the test as cmocka's state;
 * stfx_teardown goes back to "/" (a test may have changed the working
 * directory), removes TOP and frees the fx. */
#ifndef TS_TESTS_STOREFX_H
#define TS_TESTS_STOREFX_H

#include <limits.h>

/* Room for a scratch path plus what the tests append. */
#define TBUF (PATH_MAX * 2)

typedef struct fx {
	char top[PATH_MAX];   /* realpath'd */
	char env[TBUF];
	char store[TBUF];
} fx;

int stfx_setup(void **state);
int stfx_teardown(void **state);

#endif
