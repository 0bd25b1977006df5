/* test_daemon_take.c - the daemon's writes to a real store
 * (fs/daemon/daemon_take.c): mkdir and first-access snapshots, the
 * per-period limit on users who may not manage, prune for keep= (after a
 * seal, keeping the current auto names, counting sealed snapshots only,
 * skipping those in use), delete (refused while in use), rename, cancel.
 * No threads are started (no sealer, no stager), as before the mount's
 * init.
 *
 * The name clock is put 5 s past an hour (TRACSNAP_TEST_CLOCK_OFFSET, set
 * before its first reading) so that no test straddles a period. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "store/seal.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)

typedef struct fx {
	char top[PATH_MAX];
	char env[TBUF];
	char store[TBUF];
	dmn_daemon d;
	char day[NAME_MAX + 1], hour[NAME_MAX + 1];   /* the auto names now */
} fx;

static int setup(void **state)
{
	fx *x = calloc(1, sizeof *x);
	char path[TBUF];
	ts_err e;

	assert_non_null(x);
	tu_tmpdir("dmntake", x->top);
	tu_fmt(x->env, sizeof x->env, "%s/env", x->top);
	tu_fmt(x->store, sizeof x->store, "%s/store", x->top);
	assert_int_equal(mkdir(x->env, 0755), 0);
	tu_put_in(x->env, "VERSION", "Trac Environment Version 1\n", 0644);
	tu_mkdir_in(x->env, "conf", 0755);
	tu_put_in(x->env, "conf/trac.ini", "[trac]\ndatabase = sqlite:db/trac.db\n", 0600);
	tu_mkdir_in(x->env, "db", 0755);
	tu_fmt(path, sizeof path, "%s/db/trac.db", x->env);
	tu_make_db(path, false);
	tu_mkdir_in(x->env, "htdocs", 0755);
	tu_put_in(x->env, "htdocs/a.txt", "hello\n", 0644);

	dmn_init(&x->d);
	x->d.lock_timeout_s = 5;
	x->d.who.owner = 1000;
	ts_err_clear(&e);
	if (ts_env_open(x->env, &x->d.env, &e) != TS_OK ||
	    ts_store_open(x->store, true, &x->d.store, &e) != TS_OK ||
	    dmn_auto_parse(&x->d.autos, DMN_AUTO_DEFAULT, &e) != TS_OK)
		fail_msg("setup: %s", e.msg);

	time_t now = ts_clock_name_time();
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(x->day, sizeof x->day, "%Y-%m-%d", &tm);
	strftime(x->hour, sizeof x->hour, "%Y-%m-%dT%H", &tm);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	dmn_free(&x->d);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

static ts_err_code take(fx *x, const char *name, dmn_why why, bool limited)
{
	ts_err e;
	ts_err_code rc = dmn_take(&x->d, name, why, dmn_auto_mask_now(&x->d, name), limited, &e);
	if (rc != TS_OK)
		assert_int_equal(rc, e.code);
	return rc;
}

static void test_mkdir(void **state)
{
	fx *x = *state;

	assert_int_equal(take(x, "a", DMN_WHY_MKDIR, false), TS_OK);
	assert_true(ts_store_exists(&x->d.store, "a"));
	/* mkdir of a taken name: EEXIST at the edge. */
	assert_int_equal(take(x, "a", DMN_WHY_MKDIR, false), TS_ERR_EXISTS);
	/* A first access finding it there (another made it meanwhile): fine. */
	assert_int_equal(take(x, "a", DMN_WHY_FIRST_ACCESS, true), TS_OK);
	assert_false(x->d.store.locked);
}

/* Auto names: the hour's and the day's are first-access names now;
 * someone who may not manage makes each once per period, even after it
 * was deleted; a manager is not limited. */
static void test_first_access_limit(void **state)
{
	fx *x = *state;
	ts_err e;

	assert_int_equal(dmn_auto_mask_now(&x->d, x->hour), 2u);
	assert_int_equal(dmn_auto_mask_now(&x->d, x->day), 1u);
	assert_int_equal(dmn_auto_mask_now(&x->d, "a"), 0u);

	assert_int_equal(take(x, x->hour, DMN_WHY_FIRST_ACCESS, true), TS_OK);
	assert_true(ts_store_exists(&x->d.store, x->hour));
	assert_int_equal(dmn_delete(&x->d, x->hour, &e), TS_OK);
	assert_false(ts_store_exists(&x->d.store, x->hour));
	assert_int_equal(take(x, x->hour, DMN_WHY_FIRST_ACCESS, true), TS_ERR_NOTFOUND);
	assert_false(ts_store_exists(&x->d.store, x->hour));
	/* The day's name is another format's period: not spent. */
	assert_int_equal(take(x, x->day, DMN_WHY_FIRST_ACCESS, true), TS_OK);
	/* A manager's first access is not limited. */
	assert_int_equal(take(x, x->hour, DMN_WHY_FIRST_ACCESS, false), TS_OK);
	assert_true(ts_store_exists(&x->d.store, x->hour));
}

static void seal_all(fx *x)
{
	ts_err e;
	ts_err_clear(&e);
	if (ts_seal_all(&x->d.store, NULL, true, NULL, &e) != TS_OK)
		fail_msg("ts_seal_all: %s", e.msg);
}

/* keep=last:1 prunes (after a seal), but never the current period's auto
 * names.  Taking a snapshot prunes nothing by itself. */
static void test_prune_keeps_current_auto_names(void **state)
{
	fx *x = *state;
	ts_err e;

	ts_err_clear(&e);
	assert_int_equal(ts_prune_policy_parse("last:1", &x->d.keep, &e), TS_OK);
	assert_int_equal(take(x, x->day, DMN_WHY_FIRST_ACCESS, true), TS_OK);
	assert_int_equal(take(x, x->hour, DMN_WHY_FIRST_ACCESS, true), TS_OK);
	x->d.has_keep = true;
	assert_int_equal(take(x, "m1", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(take(x, "m2", DMN_WHY_MKDIR, false), TS_OK);
	assert_true(ts_store_exists(&x->d.store, "m1"));
	seal_all(x);
	assert_int_equal(dmn_prune(&x->d), 0);
	assert_false(ts_store_exists(&x->d.store, "m1"));
	assert_true(ts_store_exists(&x->d.store, "m2"));
	assert_true(ts_store_exists(&x->d.store, x->day));
	assert_true(ts_store_exists(&x->d.store, x->hour));
}

/* Issue 16 case 4: a snapshot not sealed yet never pushes out a sealed one
 * (a crash before its seal would leave nothing); once sealed, it does.
 * Taking a snapshot prunes nothing by itself: the sealer does, after the
 * seal (daemon_seal.c). */
static void test_prune_after_seal_only(void **state)
{
	fx *x = *state;
	ts_err e;

	ts_err_clear(&e);
	assert_int_equal(ts_prune_policy_parse("last:1", &x->d.keep, &e), TS_OK);
	x->d.has_keep = true;
	assert_int_equal(take(x, "a", DMN_WHY_MKDIR, false), TS_OK);
	seal_all(x);
	assert_int_equal(take(x, "b", DMN_WHY_MKDIR, false), TS_OK);
	assert_true(ts_store_exists(&x->d.store, "a"));
	assert_int_equal(ts_store_seal_state_of(&x->d.store, "b"), TS_STORE_UNSEALED_NOW);
	assert_int_equal(dmn_prune(&x->d), 0);
	assert_true(ts_store_exists(&x->d.store, "a"));     /* b does not count yet */
	assert_true(ts_store_exists(&x->d.store, "b"));     /* nor is it removed */
	seal_all(x);
	assert_int_equal(dmn_prune(&x->d), 0);
	assert_false(ts_store_exists(&x->d.store, "a"));
	assert_true(ts_store_exists(&x->d.store, "b"));
}

/* The key of a snapshot in the handle table: its tree's device and inode. */
static void tree_key(fx *x, const char *name, struct stat *st)
{
	char rel[NAME_MAX + 8];
	tu_fmt(rel, sizeof rel, "%s/tree", name);
	assert_int_equal(fstatat(x->d.store.dirfd, rel, st, AT_SYMLINK_NOFOLLOW), 0);
}

/* A handle open below a snapshot keeps rmdir and keep= off it; released,
 * both go ahead. */
static void test_busy_handles(void **state)
{
	fx *x = *state;
	struct stat st;
	ts_err e;

	ts_err_clear(&e);
	assert_int_equal(take(x, "a", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(take(x, "b", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(take(x, "c", DMN_WHY_MKDIR, false), TS_OK);
	seal_all(x);
	tree_key(x, "a", &st);
	assert_int_equal(dmn_handles_open(&x->d.handles, st.st_dev, st.st_ino), 1);
	assert_int_equal(dmn_handles_open(&x->d.handles, st.st_dev, st.st_ino), 1);
	assert_int_equal(dmn_delete(&x->d, "a", &e), TS_ERR_BUSY);
	assert_non_null(strstr(e.msg, "in use: 2 open files or directories"));
	assert_true(ts_store_exists(&x->d.store, "a"));
	assert_false(x->d.store.locked);
	/* keep=last:1 removes b, keeps a while it is open. */
	assert_int_equal(ts_prune_policy_parse("last:1", &x->d.keep, &e), TS_OK);
	x->d.has_keep = true;
	assert_int_equal(dmn_prune(&x->d), 1);
	assert_true(ts_store_exists(&x->d.store, "a"));
	assert_false(ts_store_exists(&x->d.store, "b"));
	dmn_handles_release(&x->d.handles, st.st_dev, st.st_ino);
	assert_int_equal(dmn_handles_count(&x->d.handles, st.st_dev, st.st_ino), 1);
	dmn_handles_release(&x->d.handles, st.st_dev, st.st_ino);
	assert_int_equal(dmn_prune(&x->d), 0);
	assert_false(ts_store_exists(&x->d.store, "a"));
	assert_true(ts_store_exists(&x->d.store, "c"));
}

/* A process whose working directory is below MNT/NAME keeps rmdir off
 * NAME; not one below MNT/NAME2.  The mount point need not be a mount for
 * this: /proc's names are compared as text. */
static void test_busy_cwd(void **state)
{
	fx *x = *state;
	char mnt[TBUF], dir[TBUF], old[PATH_MAX], self[64];
	ts_err e;

	ts_err_clear(&e);
	assert_int_equal(take(x, "s", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(take(x, "s2", DMN_WHY_MKDIR, false), TS_OK);
	tu_fmt(mnt, sizeof mnt, "%s/mnt", x->top);
	tu_fmt(dir, sizeof dir, "%s/mnt/s2/sub", x->top);
	assert_int_equal(mkdir(mnt, 0755), 0);
	tu_mkdir_in(mnt, "s2", 0755);
	tu_mkdir_in(mnt, "s2/sub", 0755);
	x->d.mnt = mnt;
	assert_non_null(getcwd(old, sizeof old));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(dmn_delete(&x->d, "s2", &e), TS_ERR_BUSY);
	snprintf(self, sizeof self, "in use by pid %ld (", (long)getpid());
	assert_non_null(strstr(e.msg, self));
	assert_int_equal(dmn_delete(&x->d, "s", &e), TS_OK);   /* a sibling, not below */
	assert_int_equal(chdir(old), 0);
	assert_int_equal(dmn_delete(&x->d, "s2", &e), TS_OK);
	x->d.mnt = NULL;
}

static void test_delete_rename(void **state)
{
	fx *x = *state;
	ts_err e;

	assert_int_equal(take(x, "a", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(take(x, "b", DMN_WHY_MKDIR, false), TS_OK);
	assert_int_equal(dmn_rename(&x->d, "a", "c", &e), TS_OK);
	assert_false(ts_store_exists(&x->d.store, "a"));
	assert_true(ts_store_exists(&x->d.store, "c"));
	assert_int_not_equal(dmn_rename(&x->d, "c", "b", &e), TS_OK);   /* taken */
	assert_true(ts_store_exists(&x->d.store, "c"));
	assert_int_equal(dmn_delete(&x->d, "nonesuch", &e), TS_ERR_NOTFOUND);
	assert_int_equal(dmn_delete(&x->d, "c", &e), TS_OK);
	assert_false(ts_store_exists(&x->d.store, "c"));
	assert_false(x->d.store.locked);
}

/* Stopping: nothing ran (false), and from then on snapshots give up. */
static void test_cancel(void **state)
{
	fx *x = *state;

	assert_false(dmn_cancel(&x->d));
	assert_int_equal(x->d.cancel, 1);
	assert_int_equal(x->d.stage_stop, 1);
	pthread_mutex_lock(&x->d.snap_mu);
	assert_true(dmn_cancel(&x->d));
	pthread_mutex_unlock(&x->d.snap_mu);
	assert_int_equal(take(x, "late", DMN_WHY_MKDIR, false), TS_ERR_CANCELLED);
	assert_false(ts_store_exists(&x->d.store, "late"));
}

int main(void)
{
	/* 5 s past the current hour: periods last an hour at least. */
	time_t now = time(NULL);
	char off[32];
	snprintf(off, sizeof off, "%lld", (long long)(5 - now % 3600));
	setenv(TS_CLOCK_OFFSET_ENV, off, 1);
	ts_log_init(TS_LOG_STDERR, LOG_WARNING);   /* the snapshots' figures are no news */

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mkdir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_access_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_keeps_current_auto_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_after_seal_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_cwd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
