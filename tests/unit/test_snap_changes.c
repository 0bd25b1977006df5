/* test_snap_changes.c - the recheck under Trac's lock narrowed to what a
 * watcher reports (ts_snap_changes, take/snap_changes.c).
 *
 * A fake watcher stands in for the daemon's inotify journal: it makes its
 * changes to the environment from inside since(), which the take calls
 * with Trac's lock held, right before the recheck: exactly the moment a
 * real watch must not miss.  What it reports is found; what it does not
 * report is not looked at (the subset is real), unless the watcher says it
 * cannot tell, or the directory was not watched all along.  The
 * environment is snapfx.h's. */
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
#include <time.h>
#include <unistd.h>

#include "base/progress.h"
#include "take/snap.h"
#include "take/snap_int.h"
#include "tutil.h"

#include "snapfx.h"

typedef struct fake {
	fx *x;
	int marks, ends, sinces;
	void (*act)(struct fake *f);   /* the changes, made under Trac's lock */
	const char *report[8];
	size_t nreport;
	const char *unwatched;        /* this directory was not watched all along */
	int catchups;
	void (*act_mark)(struct fake *f);      /* right before the pre-copy's pass */
	void (*act_catchup)(struct fake *f);   /* changes made before the catch-up pass */
	const char *catchup[4];       /* and reported to it only */
	size_t ncatchup;
	bool lose;                    /* "cannot tell" */
} fake;

static uint64_t fk_mark(void *arg)
{
	fake *f = arg;
	f->marks++;
	if (f->act_mark)
		f->act_mark(f);
	return 7;
}

static void fk_unwatched(void *arg, uint64_t mark, const char *const *dirs, size_t n, bool *out)
{
	fake *f = arg;
	assert_int_equal(mark, 7);
	for (size_t i = 0; i < n; i++)
		out[i] = f->unwatched && !strcmp(dirs[i], f->unwatched);
}

static bool fk_since(void *arg, uint64_t mark, void (*fn)(void *, const char *), void *fnarg,
                     const char **why, uint64_t *remark)
{
	fake *f = arg;
	assert_int_equal(mark, 7);
	if (remark) {   /* the catch-up pass before the lock */
		*remark = 7;
		f->catchups++;
		if (f->act_catchup)
			f->act_catchup(f);
		for (size_t i = 0; i < f->ncatchup; i++)
			fn(fnarg, f->catchup[i]);
		return true;
	}
	f->sinces++;
	if (f->act)
		f->act(f);
	if (f->lose) {
		*why = "the fake lost them";
		return false;
	}
	for (size_t i = 0; i < f->nreport; i++)
		fn(fnarg, f->report[i]);
	return true;
}

static void fk_end(void *arg)
{
	fake *f = arg;
	f->ends++;
}

/* Take name with the fake watcher f; stats into st. */
static void take_watched(fx *x, fake *f, const char *name, ts_snap_stats *st)
{
	ts_snap_changes ch = { .arg = f, .mark = fk_mark, .unwatched = fk_unwatched, .since = fk_since,
	                       .end = fk_end };
	ts_snap_opts o = { .name = name, .lock_timeout_s = 5, .changes = &ch };
	ts_err e;

	ts_err_clear(&e);
	if (ts_snap_take(&x->s, &x->e, &o, st, &e) != TS_OK)
		fail_msg("%s", e.msg);
}

/* Out of the racy window (snap_int.h): a racy file is looked at whatever
 * the watcher says, which would hide what these tests check. */
static void settle_env(void)
{
	struct timespec t = { 0, 60 * 1000 * 1000 };
	nanosleep(&t, NULL);
}

static void act_three(fake *f)
{
	char p[TBUF];
	tu_put_in(f->x->env, "htdocs/a.txt", "changed under the lock\n", 0644);
	tu_put_in(f->x->env, "htdocs/new.txt", "new under the lock\n", 0644);
	tu_fmt(p, sizeof p, "%s/files/attachments/ticket/1/small.txt", f->x->env);
	assert_int_equal(unlink(p), 0);
	tu_mkdir_in(f->x->env, "files/attachments/ticket/7", 0755);
	tu_put_in(f->x->env, "files/attachments/ticket/7/n.txt", "in a new directory\n", 0644);
}

/* Reported changes made under the lock are in the snapshot: a file
 * rewritten, one new, one removed, a new directory reported only by the
 * file in it.  Only those (and their directories) were looked at. */
static void test_reported_changes_found(void **state)
{
	fx *x = *state;
	fake f = { .x = x };
	ts_snap_stats s1, s2;

	settle_env();
	take_watched(x, &f, "s1", &s1);
	assert_true(s1.watched);
	assert_int_equal(f.marks, 1);
	assert_int_equal(f.ends, 1);
	assert_int_equal(f.sinces, 1);
	assert_int_equal(s1.rechecked_locked, 0);   /* nothing changed, nothing racy */
	sfx_compare_tree(x, "s1");

	settle_env();
	f.act = act_three;
	f.report[0] = "htdocs/a.txt";
	f.report[1] = "htdocs/new.txt";
	f.report[2] = "files/attachments/ticket/1/small.txt";
	f.report[3] = "files/attachments/ticket/7/n.txt";
	f.nreport = 4;
	take_watched(x, &f, "s2", &s2);
	assert_true(s2.watched);
	assert_int_equal(f.ends, 2);
	sfx_compare_tree(x, "s2");
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed under the lock\n");
	sfx_snap_text_is(x, "s2", "files/attachments/ticket/7/n.txt", "in a new directory\n");
	assert_false(sfx_snap_has(x, "s2", "files/attachments/ticket/1/small.txt"));
	/* a.txt, small.txt, htdocs, ticket/1, ticket (for 7/n.txt) */
	assert_true(s2.rechecked_locked >= 4 && s2.rechecked_locked <= 6);
	sfx_store_clean_and_unlocked(x);
}

#define SITE_CSS "body { color: red }\n"   /* snapfx.c's */

static void act_site_css(fake *f)
{
	tu_put_in(f->x->env, "htdocs/site.css", "changed, and not reported to the watcher\n", 0644);
}

/* A change the watcher does not report is not looked at: the subset is
 * what makes the lock short, and it trusts the watcher. */
static void test_unreported_not_seen(void **state)
{
	fx *x = *state;
	fake f = { .x = x, .act = act_site_css };
	ts_snap_stats st;
	struct stat a;

	settle_env();
	take_watched(x, &f, "s1", &st);
	assert_true(st.watched);
	sfx_snap_file(x, "s1", "htdocs/site.css", &a);
	assert_int_equal(a.st_size, (off_t)strlen(SITE_CSS));   /* as before the change */
	sfx_snap_text_is(x, "s1", "htdocs/site.css", SITE_CSS);
	sfx_store_clean_and_unlocked(x);
}

/* The watcher cannot tell: every entry is looked at, and the log says why. */
static void test_lost_looks_at_all(void **state)
{
	fx *x = *state;
	fake f = { .x = x, .act = act_site_css, .lose = true };
	ts_snap_stats st;
	char *log;

	settle_env();
	sfx_log_start();
	take_watched(x, &f, "s1", &st);
	log = sfx_log_take();
	assert_false(st.watched);
	assert_int_equal(sfx_count(log, "snapshot s1: every entry checked again under Trac's lock "
	                                "(the fake lost them)"), 1);
	free(log);
	sfx_snap_text_is(x, "s1", "htdocs/site.css", "changed, and not reported to the watcher\n");
	assert_int_equal(f.ends, 1);
	sfx_store_clean_and_unlocked(x);
}

/* A directory not watched all along: its entries are looked at whether
 * reported or not; the others still are not. */
static void test_unwatched_dir_looked_at(void **state)
{
	fx *x = *state;
	fake f = { .x = x, .act = act_site_css, .unwatched = "htdocs" };
	ts_snap_stats st;

	settle_env();
	take_watched(x, &f, "s1", &st);
	assert_true(st.watched);
	sfx_snap_text_is(x, "s1", "htdocs/site.css", "changed, and not reported to the watcher\n");
	assert_true(st.rechecked_locked >= 3 && st.rechecked_locked < 10);   /* htdocs and its entries */
	sfx_store_clean_and_unlocked(x);
}

/* A pre-copy longer than the catch-up's threshold (SNAP_CATCHUP_MS, 100
 * ms in take/snap.c) makes the catch-up pass run.  (A file written just
 * before the pass, racy, would too, but under load the pass may begin
 * after its racy window: the test then saw no catch-up.) */
static void act_slow(fake *f)
{
	struct timespec t = { 0, 150 * 1000 * 1000 };
	tu_put_in(f->x->env, "htdocs/early.txt", "written before the pass\n", 0644);
	nanosleep(&t, NULL);
}

static void act_before_catchup(fake *f)
{
	tu_put_in(f->x->env, "htdocs/a.txt", "changed before the catch-up pass\n", 0644);
}

/* A change reported to the catch-up pass (before the lock) is in the
 * snapshot though nobody reports it again under the lock: recording
 * started anew at that pass, in the same step (ts_snap_changes.since's
 * remark).  A slow pre-copy makes it run. */
static void test_catchup_narrowed(void **state)
{
	fx *x = *state;
	fake f = { .x = x, .act_mark = act_slow, .act_catchup = act_before_catchup,
	           .catchup = { "htdocs/a.txt" }, .ncatchup = 1 };
	ts_snap_stats st;

	settle_env();
	take_watched(x, &f, "s1", &st);
	assert_int_equal(f.catchups, 1);
	assert_int_equal(f.sinces, 1);
	sfx_snap_text_is(x, "s1", "htdocs/a.txt", "changed before the catch-up pass\n");
	sfx_compare_tree(x, "s1");
	sfx_store_clean_and_unlocked(x);
}

/* A directory swapped for a symlink while the pre-copy copies what is below
 * it, and back before Trac's lock: the copies that met the symlink failed
 * (retyped), and only files/A is reported, not the files below it.  The
 * pass under the lock must look at everything then, or those files would
 * be missing from a snapshot whose files/A is the real directory. */
#define SWAP_FILES 64

static void swap_a(fx *x, bool away)
{
	char a[TBUF], real[TBUF];
	tu_fmt(a, sizeof a, "%s/files/A", x->env);
	tu_fmt(real, sizeof real, "%s/files/.A-real", x->env);
	if (away) {
		assert_int_equal(rename(a, real), 0);
		assert_int_equal(symlink("/", a), 0);
	} else {
		assert_int_equal(unlink(a), 0);
		assert_int_equal(rename(real, a), 0);
	}
}

typedef struct swap_ctx {
	fx *x;
	bool swapped;
} swap_ctx;

static void swap_on_progress(void *arg, const ts_progress *p)
{
	swap_ctx *c = arg;
	(void)p;
	if (!c->swapped)
		swap_a(c->x, true);
	c->swapped = true;
}

static void act_swap_back(fake *f)
{
	swap_a(f->x, false);
}

static void test_retyped_looks_at_all(void **state)
{
	fx *x = *state;
	fake f = { .x = x, .act = act_swap_back, .report = { "files/A", "files/.A-real" }, .nreport = 2 };
	swap_ctx sc = { .x = x };
	ts_progress_sink sink = { .fn = swap_on_progress, .arg = &sc };
	ts_snap_changes ch = { .arg = &f, .mark = fk_mark, .unwatched = fk_unwatched, .since = fk_since,
	                       .end = fk_end };
	ts_snap_opts o = { .name = "s1", .lock_timeout_s = 5, .changes = &ch, .progress = &sink };
	ts_snap_stats st;
	ts_err e;
	char rel[TBUF], *log;

	tu_mkdir_in(x->env, "files/A", 0755);
	tu_mkdir_in(x->env, "files/A/B", 0755);
	for (int i = 0; i < SWAP_FILES; i++) {
		tu_fmt(rel, sizeof rel, "files/A/B/f%02d.txt", i);
		tu_put_in(x->env, rel, "real B\n", 0644);
	}
	settle_env();
	sfx_log_start();
	ts_err_clear(&e);
	if (ts_snap_take(&x->s, &x->e, &o, &st, &e) != TS_OK)
		fail_msg("%s", e.msg);
	log = sfx_log_take();
	assert_true(sc.swapped);
	for (int i = 0; i < SWAP_FILES; i++) {
		tu_fmt(rel, sizeof rel, "files/A/B/f%02d.txt", i);
		sfx_snap_text_is(x, "s1", rel, "real B\n");
	}
	assert_false(st.watched);
	assert_int_equal(sfx_count(log, "snapshot s1: every entry checked again under Trac's lock "
	                                "(a directory was met as a symlink or a file)"), 1);
	free(log);
	sfx_compare_tree(x, "s1");
	sfx_store_clean_and_unlocked(x);
}

/* The subset under the lock is found from candidates recorded where its
 * flags are set, not by a pass over every item (at 1,000,000 items such
 * passes held Trac's writers some 30 ms): after the preparation and the
 * watcher's report, the candidates are exactly the items flagged (looked
 * at, listed again) or racy: the reported file and its directory, a
 * directory not watched all along and its entries, and the racy files
 * nobody reported. */
static void test_candidates_cover_flags(void **state)
{
	static const struct { const char *rel; char type; bool racy; bool want; } v[] = {
		{ ".", 'd', false, false },   { "a", 'd', false, true },  { "a/x", 'f', false, true },
		{ "a/y", 'f', true, true },   { "b", 'd', false, true },  { "b/z", 'f', false, true },
		{ "c", 'f', true, true },     { "d", 'd', false, false }, { "d/w", 'f', false, false },
	};
	fake f = { .x = *state, .report = { "a/x" }, .nreport = 1, .unwatched = "b" };
	ts_snap_changes ch = { .arg = &f, .mark = fk_mark, .unwatched = fk_unwatched, .since = fk_since,
	                       .end = fk_end };
	ts_snap_opts o = { .name = "t", .changes = &ch };
	snap_run r;
	ts_err e;
	size_t n = sizeof v / sizeof v[0];

	memset(&r, 0, sizeof r);
	r.o = &o;
	for (size_t i = 0; i < n; i++) {
		snap_item it = { .rel = strdup(v[i].rel), .type = v[i].type, .racy = v[i].racy, .placed = true };
		assert_int_equal(snap_list_push(&r.items, &it, &e), TS_OK);
	}
	for (int round = 0; round < 2; round++) {   /* the second forgets the first's */
		bool seen[sizeof v / sizeof v[0]] = { false };
		snap_changes_mark(&r);
		assert_int_equal(snap_changes_prepare(&r, &e), TS_OK);
		assert_int_equal(snap_changes_flag(&r, &e), TS_OK);
		assert_true(r.subset);
		assert_true(r.cand_ok);
		for (size_t k = 0; k < r.ncand; k++) {
			assert_true(r.cand[k] < n);
			seen[r.cand[k]] = true;
		}
		for (size_t i = 0; i < n; i++) {
			const snap_item *it = &r.items.v[i];
			if (seen[i] != v[i].want || seen[i] != (it->look || it->relist || it->racy))
				fail_msg("round %d: %s: candidate %d, wanted %d", round, v[i].rel, seen[i], v[i].want);
		}
		snap_changes_end(&r);
	}
	snap_list_free(&r.items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reported_changes_found, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_unreported_not_seen, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_lost_looks_at_all, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_unwatched_dir_looked_at, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_catchup_narrowed, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_retyped_looks_at_all, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_candidates_cover_flags, sfx_setup, sfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
