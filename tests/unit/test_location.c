/* test_location.c - where a snapshot store goes (store/store.h,
 * location.c): the default path of an environment's store, and the
 * placements refused (inside the environment, below the mount point). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "tutil.h"

#include "storefx.h"

/* ---- default path ------------------------------------------------------- */

static void default_is(const char *env_root, const char *want)
{
	char *p = ts_store_default_path(env_root);
	char got[TBUF];

	assert_non_null(p);
	tu_fmt(got, sizeof(got), "%s", p);
	free(p);
	if (strcmp(got, want))
		fail_msg("default store of '%s' is '%s', want '%s'", env_root, got, want);
}

/* doc/design.md: the ENV path escaped as systemd-escape does ('/' as '-',
 * '-' as "\x2d"). */
static void test_default_path_root(void **state)
{
	(void)state;
	assert_int_equal(geteuid(), 0); /* these tests run as root */
	default_is("/srv/trac/proj", "/var/lib/tracsnap/srv-trac-proj");
	default_is("/proj", "/var/lib/tracsnap/proj");
	default_is("/srv/my-proj", "/var/lib/tracsnap/srv-my\\x2dproj");
	default_is("/a-b", "/var/lib/tracsnap/a\\x2db");
	default_is("/a/b", "/var/lib/tracsnap/a-b");
	default_is("/a--b/c", "/var/lib/tracsnap/a\\x2d\\x2db-c");
}

/* Distinct environments never share a default store. */
static void test_default_path_distinct(void **state)
{
	static const char *const envs[] = {
		"/a/b", "/a-b", "/a--b", "/a/-b", "/a-/b", "/a/b-", "/a-/-b", "/a/--b",
		"/a--/b", "/-a/b", "/srv/trac/proj", "/srv/trac-proj", "/srv-trac/proj",
		"/srv/trac/-old", "/srv/trac-/old", "/srv/trac/proj-", "/srv/trac/proj/-",
		"/srv/a-b", "/srv/a\\x2db", "/srv/a\\b", "/srv/a\\x5cb",
	};
	size_t n = sizeof(envs) / sizeof(envs[0]), i, j;
	char *p[sizeof(envs) / sizeof(envs[0])];
	char clash[4096] = "";
	size_t used = 0;

	(void)state;
	for (i = 0; i < n; i++) {
		p[i] = ts_store_default_path(envs[i]);
		assert_non_null(p[i]);
		assert_true(!strncmp(p[i], "/var/lib/tracsnap/", 18));
		assert_true(strlen(p[i]) > 18);
		assert_null(strchr(p[i] + 18, '/'));
	}
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (!strcmp(p[i], p[j]) && used < sizeof(clash) - 200)
				used += (size_t)snprintf(clash + used, sizeof(clash) - used,
				                         " '%s' and '%s' -> %s;", envs[i], envs[j], p[i]);
	for (i = 0; i < n; i++)
		free(p[i]);
	if (used)
		fail_msg("environments share a default store:%s", clash);
}

/* Not root: $XDG_DATA_HOME, else ~/.local/share.  Checked in a child that
 * drops to nobody (geteuid() decides). */
static void test_default_path_user(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *p;
		int bad = 0;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		setenv("XDG_DATA_HOME", "/xdg/data", 1);
		setenv("HOME", "/home/u", 1);
		p = ts_store_default_path("/srv/trac/my-proj");
		bad |= !p || strcmp(p, "/xdg/data/tracsnap/srv-trac-my\\x2dproj") != 0;
		free(p);
		unsetenv("XDG_DATA_HOME");
		p = ts_store_default_path("/srv/trac/my-proj");
		bad |= !p || strcmp(p, "/home/u/.local/share/tracsnap/srv-trac-my\\x2dproj") != 0;
		free(p);
		_exit(bad ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- placement ---------------------------------------------------------- */

static void placement_bad(const char *store, const char *env, const char *mnt)
{
	ts_err e;
	ts_err_code rc;

	ts_err_clear(&e);
	rc = ts_store_check_placement(store, env, mnt, &e);
	if (rc == TS_OK)
		fail_msg("store %s, env %s, mnt %s: accepted", store, env, mnt ? mnt : "(none)");
	assert_int_equal(e.code, rc);
	assert_true(e.msg[0] != '\0');
	assert_null(strchr(e.msg, '\n'));
}

static void placement_ok(const char *store, const char *env, const char *mnt)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_store_check_placement(store, env, mnt, &e) != TS_OK)
		fail_msg("store %s, env %s, mnt %s: refused: %s", store, env,
		         mnt ? mnt : "(none)", e.msg);
}

static void test_placement(void **state)
{
	fx *x = *state;
	char store[TBUF], mnt[TBUF], p[TBUF], env2[TBUF];

	tu_fmt(p, sizeof(p), "%s/sub", x->env);
	assert_int_equal(mkdir(p, 0755), 0);
	tu_fmt(p, sizeof(p), "%s/other", x->top);
	assert_int_equal(mkdir(p, 0755), 0);
	tu_fmt(mnt, sizeof(mnt), "%s/mnt", x->top);

	/* Inside the environment (existing or not), or the environment itself. */
	tu_fmt(store, sizeof(store), "%s/snapshots", x->env);
	placement_bad(store, x->env, NULL);
	placement_bad(store, x->env, mnt);
	tu_fmt(store, sizeof(store), "%s/sub", x->env);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/sub/a/b/c", x->env);
	placement_bad(store, x->env, NULL);
	placement_bad(x->env, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/", x->env);
	placement_bad(store, x->env, NULL);

	/* Below the mount point. */
	tu_fmt(store, sizeof(store), "%s/mnt/store", x->top);
	placement_bad(store, x->env, mnt);
	placement_bad(mnt, x->env, mnt);

	/* A mount point inside the environment. */
	tu_fmt(p, sizeof(p), "%s/mnt", x->env);
	placement_bad(x->store, x->env, p);
	placement_bad(x->store, x->env, x->env);

	/* Outside everything, not existing yet: fine. */
	tu_fmt(store, sizeof(store), "%s/a/b/c/store", x->top);
	placement_ok(store, x->env, NULL);
	placement_ok(store, x->env, mnt);
	placement_ok(x->store, x->env, mnt);
	/* A sibling whose name starts like the environment's is outside it. */
	tu_fmt(env2, sizeof(env2), "%s/env2", x->top);
	placement_ok(env2, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/env-store", x->top);
	placement_ok(store, x->env, mnt);
	tu_fmt(p, sizeof(p), "%s/mnt2", x->top);
	placement_ok(p, x->env, mnt);

	/* ".." that resolves into the environment. */
	tu_fmt(store, sizeof(store), "%s/../env/store", x->env);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/sub/../store", x->env);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/other/../env/store", x->top);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/other/../env", x->top);
	placement_bad(store, x->env, NULL);
	/* ... and ".." that leads out of it. */
	tu_fmt(store, sizeof(store), "%s/sub/../../store", x->env);
	placement_ok(store, x->env, NULL);

	/* A symlink that leads into the environment. */
	tu_fmt(p, sizeof(p), "%s/link", x->top);
	assert_int_equal(symlink(x->env, p), 0);
	tu_fmt(store, sizeof(store), "%s/link/store", x->top);
	placement_bad(store, x->env, NULL);
	placement_bad(x->store, x->env, p);
}

/* A relative store path is taken from the working directory. */
static void test_placement_relative(void **state)
{
	fx *x = *state;
	char cwd[PATH_MAX];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(x->env), 0);
	placement_bad("snapshots", x->env, NULL);
	placement_bad("./a/b", x->env, NULL);
	placement_ok("../store", x->env, NULL);
	assert_int_equal(chdir(cwd), 0);
}

/* ".." after a component that does not exist yet: ts_store_open(create)
 * makes the missing directory and the kernel then resolves ".." from it, so
 * TOP/nope/../env/store is ENV/store and must be refused. */
static void test_placement_dotdot_missing(void **state)
{
	fx *x = *state;
	char store[TBUF], p[TBUF];
	ts_store s;
	ts_err e;
	ts_err_code rc;

	tu_fmt(store, sizeof(store), "%s/nope/../env/store", x->top);
	ts_err_clear(&e);
	rc = ts_store_check_placement(store, x->env, NULL, &e);
	if (rc == TS_OK) {
		/* Show where such a store really lands. */
		tu_fmt(p, sizeof(p), "%s/store", x->env);
		if (ts_store_open(store, true, &s, &e) == TS_OK) {
			char where[TBUF];

			tu_fmt(where, sizeof(where), "%s", s.root);
			ts_store_close(&s);
			fail_msg("store %s accepted, but ts_store_open made it at %s (inside %s)",
			         store, where, x->env);
		}
		fail_msg("store %s accepted (it is %s)", store, p);
	}
	tu_fmt(store, sizeof(store), "%s/nope/a/./../../env/x", x->top);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/nope/../store", x->env);
	placement_bad(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/nope/../../env", x->env);
	placement_bad(store, x->env, NULL);
	tu_fmt(p, sizeof(p), "%s/nope/../mnt", x->env);
	placement_bad(x->store, x->env, p);
	tu_fmt(store, sizeof(store), "%s/nope/../../store", x->env);
	placement_ok(store, x->env, NULL);
	tu_fmt(store, sizeof(store), "%s/nope/../../env-other/s", x->env);
	placement_ok(store, x->env, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_path_root),
		cmocka_unit_test(test_default_path_distinct),
		cmocka_unit_test(test_default_path_user),
		cmocka_unit_test_setup_teardown(test_placement, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_placement_relative, stfx_setup, stfx_teardown),
		cmocka_unit_test_setup_teardown(test_placement_dotdot_missing, stfx_setup, stfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
