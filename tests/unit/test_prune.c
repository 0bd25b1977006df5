/* test_prune.c - retention policies: parsing keep= and which snapshots each
 * policy keeps, by hand on a small history and against a simple reference
 * (group by period, newest first) on a long one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>
#include <sys/stat.h>

#include "store/prune.h"
#include "store/hold.h"
#include "tutil.h"

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

static time_t utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
	                 .tm_min = mi };
	return timegm(&tm);
}

/* Run the policy on times[0..n) (oldest first); return the kept indices as
 * a string "1,2,5" for readable failures. */
static char *kept_set(const time_t *times, size_t n, ts_prune_policy p)
{
	ts_store_snap *v = calloc(n, sizeof *v);
	bool *keep = calloc(n, sizeof *keep);
	char *out = calloc(1, n * 8 + 1);
	assert_non_null(v);
	assert_non_null(keep);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		v[i].time.tv_sec = times[i];
		v[i].sealed = true;
	}
	ts_prune_select(v, n, &p, keep);
	for (size_t i = 0; i < n; i++)
		if (keep[i])
			sprintf(out + strlen(out), "%s%zu", *out ? "," : "", i);
	free(v);
	free(keep);
	return out;
}

static void expect_kept(const time_t *times, size_t n, ts_prune_policy p, const char *want)
{
	char *got = kept_set(times, n, p);
	assert_string_equal(got, want);
	free(got);
}

/* 2026-01-01 is a Thursday: ISO week 2026-W01 runs from 2025-12-29 to
 * 2026-01-04, W02 starts on Monday 2026-01-05. */
static void test_small_by_hand(void **state)
{
	(void)state;
	set_tz("UTC");
	const time_t t[] = {
		utc(2026, 1, 1, 10, 0),   /* 0 */
		utc(2026, 1, 1, 10, 30),  /* 1 same hour as 0 */
		utc(2026, 1, 1, 11, 15),  /* 2 */
		utc(2026, 1, 2, 9, 0),    /* 3 */
		utc(2026, 1, 5, 8, 0),    /* 4 W02 */
		utc(2026, 1, 5, 8, 40),   /* 5 same hour as 4 */
		utc(2026, 2, 10, 12, 0),  /* 6 */
	};
	size_t n = sizeof t / sizeof t[0];

	expect_kept(t, n, (ts_prune_policy){ .last = 2 }, "5,6");
	expect_kept(t, n, (ts_prune_policy){ .last = 100 }, "0,1,2,3,4,5,6");
	expect_kept(t, n, (ts_prune_policy){ .hourly = 3 }, "3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .hourly = 10 }, "1,2,3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .daily = 3 }, "3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .daily = 4 }, "2,3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .weekly = 2 }, "5,6");
	expect_kept(t, n, (ts_prune_policy){ .weekly = 3 }, "3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .monthly = 2 }, "5,6");
	expect_kept(t, n, (ts_prune_policy){ .monthly = 1 }, "6");
	/* A snapshot kept by any rule is kept; rules count independently. */
	expect_kept(t, n, (ts_prune_policy){ .last = 1, .daily = 4 }, "2,3,5,6");
	expect_kept(t, n, (ts_prune_policy){ .last = 3, .monthly = 2 }, "4,5,6");
	expect_kept(t, n, (ts_prune_policy){ .hourly = 1, .weekly = 3 }, "3,5,6");
	/* Nothing to choose from. */
	expect_kept(t, 0, (ts_prune_policy){ .last = 1 }, "");
}

/* Local time decides the periods: 23:30 UTC on Jan 1 is Jan 2 in Tokyo. */
static void test_local_time(void **state)
{
	(void)state;
	const time_t t[] = { utc(2026, 1, 1, 14, 0), utc(2026, 1, 1, 16, 0) };
	set_tz("UTC");
	expect_kept(t, 2, (ts_prune_policy){ .daily = 2 }, "1");
	set_tz("Asia/Tokyo");   /* 23:00 Jan 1 and 01:00 Jan 2 */
	expect_kept(t, 2, (ts_prune_policy){ .daily = 2 }, "0,1");
	set_tz("UTC");
}

/* Reference: for each rule, the period keys of all snapshots (strftime, not
 * the engine's arithmetic), the distinct keys ordered by their newest
 * snapshot, newest first; keep the newest snapshot of each of the first N. */
static void reference(const time_t *t, size_t n, ts_prune_policy p, bool *keep)
{
	static const char *const fmts[] = { NULL, "%Y%m%d%H", "%Y%m%d", "%G-W%V", "%Y%m" };
	const int counts[] = { p.last, p.hourly, p.daily, p.weekly, p.monthly };
	char (*keys)[32] = calloc(n ? n : 1, sizeof *keys);

	assert_non_null(keys);
	memset(keep, 0, n * sizeof *keep);
	for (int r = 0; r < 5; r++) {
		int taken = 0;
		if (counts[r] <= 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			struct tm tm;
			localtime_r(&t[i], &tm);
			if (fmts[r])
				strftime(keys[i], sizeof keys[i], fmts[r], &tm);
			else
				snprintf(keys[i], sizeof keys[i], "#%zu", i);
		}
		/* Newest first; a key's newest snapshot is the first with that key
		 * that no later (newer) snapshot shares. */
		for (size_t k = n; k-- > 0 && taken < counts[r];) {
			bool newer_same = false;
			for (size_t j = k + 1; j < n; j++)
				if (!strcmp(keys[j], keys[k]))
					newer_same = true;
			if (newer_same)
				continue;
			keep[k] = true;
			taken++;
		}
	}
	free(keys);
}

static void check_against_reference(const time_t *t, size_t n, ts_prune_policy p)
{
	ts_store_snap *v = calloc(n, sizeof *v);
	bool *got = calloc(n, sizeof *got), *want = calloc(n, sizeof *want);
	size_t nkept = 0;

	assert_non_null(v);
	assert_non_null(got);
	assert_non_null(want);
	for (size_t i = 0; i < n; i++)
		v[i] = (ts_store_snap){ .time.tv_sec = t[i], .sealed = true };
	ts_prune_select(v, n, &p, got);
	reference(t, n, p, want);
	for (size_t i = 0; i < n; i++) {
		if (got[i] != want[i])
			fail_msg("snapshot %zu (%lld): engine %s, reference %s (policy last %d hourly %d "
			         "daily %d weekly %d monthly %d)", i, (long long)t[i],
			         got[i] ? "keeps" : "drops", want[i] ? "keeps" : "drops", p.last,
			         p.hourly, p.daily, p.weekly, p.monthly);
		nkept += got[i];
	}
	/* The newest is always kept by a non-empty policy. */
	if (n)
		assert_true(got[n - 1]);
	assert_true(nkept <= (size_t)(p.last + p.hourly + p.daily + p.weekly + p.monthly));
	free(v);
	free(got);
	free(want);
}

static int cmp_time(const void *a, const void *b)
{
	time_t x = *(const time_t *)a, y = *(const time_t *)b;
	return x < y ? -1 : x > y;
}

/* Every 3 hours for 60 days from 2026-01-20 (across the US DST change of
 * 2026-03-08), plus 6 snapshots within one hour on 2026-02-14. */
static size_t long_history(time_t **out)
{
	size_t n = 60 * 8 + 6, k = 0;
	time_t *t = calloc(n, sizeof *t), start = utc(2026, 1, 20, 0, 0);
	assert_non_null(t);
	for (int i = 0; i < 60 * 8; i++)
		t[k++] = start + (time_t)i * 3 * 3600;
	for (int i = 0; i < 6; i++)
		t[k++] = utc(2026, 2, 14, 13, 5 + 9 * i);
	qsort(t, n, sizeof *t, cmp_time);
	*out = t;
	return n;
}

static void run_long(void)
{
	static const ts_prune_policy policies[] = {
		{ .last = 7 }, { .hourly = 24 }, { .hourly = 1000 }, { .daily = 14 },
		{ .daily = 1000 }, { .weekly = 4 }, { .weekly = 52 }, { .monthly = 3 },
		{ .monthly = 1 }, { .last = 3, .daily = 7, .weekly = 4, .monthly = 12 },
		{ .last = 10, .hourly = 48, .daily = 30, .weekly = 8, .monthly = 6 },
	};
	time_t *t;
	size_t n = long_history(&t);
	for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
		check_against_reference(t, n, policies[i]);
	free(t);
}

static void test_long_history_utc(void **state)
{
	(void)state;
	set_tz("UTC");
	run_long();
}

static void test_long_history_dst(void **state)
{
	(void)state;
	set_tz("America/New_York");
	run_long();
	set_tz("UTC");
}

/* Exact counts for the long history in UTC, known without any algorithm:
 * 8 snapshots a day at 00,03,...,21h, the last on 2026-03-20 21:00. */
static void test_long_history_counts(void **state)
{
	time_t *t;
	size_t n, kept = 0;
	ts_store_snap *v;
	bool *keep;
	(void)state;

	set_tz("UTC");
	n = long_history(&t);
	v = calloc(n, sizeof *v);
	keep = calloc(n, sizeof *keep);
	assert_non_null(v);
	assert_non_null(keep);
	for (size_t i = 0; i < n; i++)
		v[i] = (ts_store_snap){ .time.tv_sec = t[i], .sealed = true };
	/* daily 14: the 21:00 snapshot of each of the last 14 days. */
	ts_prune_select(v, n, &(ts_prune_policy){ .daily = 14 }, keep);
	for (size_t i = 0; i < n; i++) {
		struct tm tm;
		if (!keep[i])
			continue;
		kept++;
		gmtime_r(&t[i], &tm);
		assert_int_equal(tm.tm_hour, 21);
		assert_true(t[i] >= utc(2026, 3, 7, 21, 0));
	}
	assert_int_equal(kept, 14);
	/* hourly 1000: one per distinct hour: 480 three-hourly + the 13h hour of
	 * Feb 14 (its 6 snapshots share one hour, 13:05..13:50). */
	ts_prune_select(v, n, &(ts_prune_policy){ .hourly = 1000 }, keep);
	kept = 0;
	for (size_t i = 0; i < n; i++)
		kept += keep[i];
	assert_int_equal(kept, 481);
	/* monthly 12: Jan 31 21:00, Feb 28 21:00, Mar 20 21:00. */
	ts_prune_select(v, n, &(ts_prune_policy){ .monthly = 12 }, keep);
	kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (!keep[i])
			continue;
		kept++;
		assert_true(t[i] == utc(2026, 1, 31, 21, 0) || t[i] == utc(2026, 2, 28, 21, 0) ||
		            t[i] == utc(2026, 3, 20, 21, 0));
	}
	assert_int_equal(kept, 3);
	free(v);
	free(keep);
	free(t);
}

static void test_parse(void **state)
{
	ts_prune_policy p;
	ts_err e;
	(void)state;

	ts_err_clear(&e);
	assert_int_equal(ts_prune_policy_parse("last:7:daily:14:weekly:8", &p, &e), TS_OK);
	assert_int_equal(p.last, 7);
	assert_int_equal(p.daily, 14);
	assert_int_equal(p.weekly, 8);
	assert_int_equal(p.hourly, 0);
	assert_int_equal(p.monthly, 0);
	assert_int_equal(ts_prune_policy_parse("hourly:1:monthly:2", &p, &e), TS_OK);
	assert_int_equal(p.hourly, 1);
	assert_int_equal(p.monthly, 2);
	assert_false(ts_prune_policy_empty(&p));

	assert_int_equal(ts_prune_policy_parse("yearly:1", &p, &e), TS_ERR_USAGE);
	assert_non_null(strstr(e.msg, "keep=yearly:1"));
	assert_int_equal(ts_prune_policy_parse("last", &p, &e), TS_ERR_USAGE);
	assert_int_equal(ts_prune_policy_parse("last:x", &p, &e), TS_ERR_USAGE);
	assert_int_equal(ts_prune_policy_parse("last:0", &p, &e), TS_ERR_USAGE);
	assert_int_equal(ts_prune_policy_parse("last:-1", &p, &e), TS_ERR_USAGE);
	assert_int_equal(ts_prune_policy_parse("", &p, &e), TS_ERR_USAGE);
	memset(&p, 0, sizeof p);
	assert_true(ts_prune_policy_empty(&p));
}

/* Only sealed snapshots count: an unsealed one is kept and never takes a
 * sealed one's place in any rule (doc/contract.md section 5).  The old rule
 * counted it: last:1 then kept only the unsealed newest, and a crash before
 * its seal left nothing. */
static void test_select_ignores_unsealed(void **state)
{
	const time_t t[] = {
		utc(2026, 1, 1, 10, 0),   /* 0 sealed */
		utc(2026, 1, 2, 10, 0),   /* 1 sealed */
		utc(2026, 1, 2, 11, 0),   /* 2 unsealed, same day as 1 */
		utc(2026, 1, 3, 10, 0),   /* 3 unsealed */
	};
	const bool sealed[] = { true, true, false, false };
	ts_store_snap v[4];
	bool keep[4];
	(void)state;

	set_tz("UTC");
	for (size_t i = 0; i < 4; i++)
		v[i] = (ts_store_snap){ .time.tv_sec = t[i], .sealed = sealed[i] };
	ts_prune_select(v, 4, &(ts_prune_policy){ .last = 1 }, keep);
	assert_false(keep[0]);
	assert_true(keep[1]);
	assert_true(keep[2]);
	assert_true(keep[3]);
	/* daily 1: the newest sealed of the newest day that has a sealed one. */
	ts_prune_select(v, 4, &(ts_prune_policy){ .daily = 1 }, keep);
	assert_false(keep[0]);
	assert_true(keep[1]);
	/* daily 2: both sealed days. */
	ts_prune_select(v, 4, &(ts_prune_policy){ .daily = 2 }, keep);
	assert_true(keep[0]);
	assert_true(keep[1]);
}

typedef struct verdicts {
	char line[512];
} verdicts;

static void record_verdict(void *arg, const char *name, ts_prune_verdict v, const char *why)
{
	verdicts *r = arg;
	static const char *const word[] = { "keep", "remove", "unsealed", "busy", "held" };
	snprintf(r->line + strlen(r->line), sizeof r->line - strlen(r->line), "%s%s=%s%s%s",
	         *r->line ? " " : "", name, word[v], *why ? ":" : "", why);
}

static bool busy_b(void *arg, const char *name, char *why, size_t len)
{
	(*(int *)arg)++;
	if (strcmp(name, "b"))
		return false;
	snprintf(why, len, "in use by pid 1 (x)");
	return true;
}

/* A store of snapshots a, b, c, d (oldest first), d not sealed yet. */
static void make_store(char *top, ts_store *s)
{
	const char *names[] = { "a", "b", "c", "d" };
	char path[PATH_MAX + 32], boot[TS_STORE_BOOT_ID_MAX + 1];
	ts_err e;

	ts_err_clear(&e);
	tu_tmpdir("prune", top);
	tu_fmt(path, sizeof path, "%s/store", top);
	if (ts_store_open(path, true, s, &e) != TS_OK)
		fail_msg("ts_store_open: %s", e.msg);
	for (int i = 0; i < 4; i++) {
		struct timespec t[2] = { { .tv_sec = 1000000 + i * 100 }, { .tv_sec = 1000000 + i * 100 } };
		assert_int_equal(mkdirat(s->dirfd, names[i], 0700), 0);
		if (i == 3) {
			ts_store_boot_id(boot);
			strcat(boot, "\n");
			tu_put_bytes_at(s->dirfd, "d/" TS_STORE_UNSEALED, boot, strlen(boot), 0600);
		}
		assert_int_equal(utimensat(s->dirfd, names[i], t, 0), 0);
	}
}

static void expect_names(ts_store *s, const char *want)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	char got[64] = "";
	ts_err e;

	assert_int_equal(ts_store_list(s, &v, &n, &e), TS_OK);
	for (size_t i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", v[i].name);
	ts_store_list_free(v, n);
	assert_string_equal(got, want);
}

/* ts_prune_store on a real store: protected names stay whatever the policy
 * says; an unsealed snapshot is neither counted nor removed; one in use is
 * kept and reported, and only candidates for removal are asked about. */
static void test_store(void **state)
{
	char top[PATH_MAX];
	const char *protect[] = { "a", "nosuch", NULL };
	ts_prune_policy p = { .last = 1 };
	ts_store s;
	verdicts r = { "" };
	ts_prune_result res;
	int asked = 0;
	ts_err e;
	(void)state;

	ts_err_clear(&e);
	make_store(top, &s);
	ts_prune_opts o = { .lock_timeout_s = 5, .protect = protect, .nprotect = 3,
	                    .busy = busy_b, .busy_arg = &asked, .fn = record_verdict, .arg = &r };
	/* A dry run removes nothing and says what would happen. */
	o.dry_run = true;
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	assert_string_equal(r.line, "a=keep b=busy:in use by pid 1 (x) c=keep d=unsealed");
	assert_int_equal(res.busy, 1);
	assert_int_equal(res.removed, 0);   /* b, the one to go, is in use */
	assert_int_equal(asked, 1);
	expect_names(&s, "a,b,c,d");
	/* For real: b stays while in use. */
	o.dry_run = false;
	r.line[0] = '\0';
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	assert_string_equal(r.line, "a=keep b=busy:in use by pid 1 (x) c=keep d=unsealed");
	expect_names(&s, "a,b,c,d");
	/* No longer in use, not protected: only c, the newest sealed, and the
	 * unsealed d stay. */
	o.busy = NULL;
	o.nprotect = 0;
	o.fn = NULL;
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	assert_int_equal(res.busy, 0);
	assert_int_equal(res.removed, 2);
	expect_names(&s, "c,d");
	ts_store_close(&s);
	tu_rm_rf(top);
}

/* A held snapshot stays whatever the policy says, is reported as held, and
 * no other removal takes it either (ts_store_remove); released, it goes.
 * The space counted is what the removed snapshots held alone: a file linked
 * from a kept snapshot frees nothing. */
static void test_store_held_and_freed(void **state)
{
	char top[PATH_MAX];
	ts_prune_policy p = { .last = 1 };
	ts_store s;
	verdicts r = { "" };
	ts_prune_result res;
	bool changed;
	struct stat st;
	ts_err e;
	(void)state;

	ts_err_clear(&e);
	make_store(top, &s);
	/* a holds a file of its own (64 KiB) and one it shares with c. */
	char big[65536];
	memset(big, 'x', sizeof big);
	tu_put_bytes_at(s.dirfd, "a/own", big, sizeof big, 0600);
	tu_put_bytes_at(s.dirfd, "a/shared", big, sizeof big, 0600);
	assert_int_equal(linkat(s.dirfd, "a/shared", s.dirfd, "c/shared", 0), 0);
	/* The directories' mtimes are their snapshots' instants: as make_store set them. */
	struct timespec ta[2] = { { .tv_sec = 1000000 }, { .tv_sec = 1000000 } };
	struct timespec tc[2] = { { .tv_sec = 1000200 }, { .tv_sec = 1000200 } };
	assert_int_equal(utimensat(s.dirfd, "a", ta, 0), 0);
	assert_int_equal(utimensat(s.dirfd, "c", tc, 0), 0);
	assert_int_equal(fstatat(s.dirfd, "a/own", &st, 0), 0);
	uint64_t own = (uint64_t)st.st_blocks * 512;

	assert_int_equal(ts_hold_set(&s, "b", true, &changed, &e), TS_OK);
	assert_true(changed);
	assert_int_equal(ts_hold_set(&s, "b", true, &changed, &e), TS_OK);
	assert_false(changed);   /* held already: nothing to do */
	assert_true(ts_hold_is_held(&s, "b", NULL));
	assert_int_equal(ts_hold_set(&s, "nosuch", true, &changed, &e), TS_ERR_NOTFOUND);
	assert_int_equal(ts_store_remove(&s, "b", &e), TS_ERR_BUSY);
	assert_string_equal(e.msg, "snapshot b: held (tracsnap release b first)");

	ts_prune_opts o = { .lock_timeout_s = 5, .busy = busy_b, .fn = record_verdict, .arg = &r,
	                    .measure = true, .dry_run = true };
	o.busy = NULL;
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	assert_string_equal(r.line, "a=remove b=held c=keep d=unsealed");
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.held, 1);
	assert_int_equal(res.kept, 3);
	/* a's own file and a's directory: not the shared file. */
	assert_true(res.freed >= own && res.freed < own + 65536);
	expect_names(&s, "a,b,c,d");
	o.dry_run = false;
	r.line[0] = '\0';
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	assert_string_equal(r.line, "a=remove b=held c=keep d=unsealed");
	expect_names(&s, "b,c,d");
	assert_int_equal(fstatat(s.dirfd, "c/shared", &st, 0), 0);
	assert_int_equal(st.st_nlink, 1);
	/* Released: the policy has its way. */
	assert_int_equal(ts_hold_set(&s, "b", false, &changed, &e), TS_OK);
	assert_true(changed);
	assert_false(ts_hold_is_held(&s, "b", NULL));
	assert_int_equal(ts_prune_store(&s, &p, &o, &res, &e), TS_OK);
	expect_names(&s, "c,d");
	ts_store_close(&s);
	tu_rm_rf(top);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_by_hand),
		cmocka_unit_test(test_local_time),
		cmocka_unit_test(test_long_history_utc),
		cmocka_unit_test(test_long_history_dst),
		cmocka_unit_test(test_long_history_counts),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_select_ignores_unsealed),
		cmocka_unit_test(test_store),
		cmocka_unit_test(test_store_held_and_freed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
