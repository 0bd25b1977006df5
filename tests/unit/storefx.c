/* storefx.c - the store tests' scratch directories; see storefx.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tutil.h"

#include "storefx.h"

int stfx_setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	tu_tmpdir("store", x->top);
	tu_fmt(x->env, sizeof(x->env), "%s/env", x->top);
	tu_fmt(x->store, sizeof(x->store), "%s/store", x->top);
	assert_int_equal(mkdir(x->env, 0755), 0);
	*state = x;
	return 0;
}

int stfx_teardown(void **state)
{
	fx *x = *state;

	if (chdir("/") != 0)
		return -1;
	tu_rm_rf(x->top);
	free(x);
	return 0;
}
