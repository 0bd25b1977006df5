/* test_daemon_journal.c - the watch's answer to "is the stage still the
 * environment?" (fs/daemon/daemon_journal.h: stage_mark, stage_done,
 * stage_clean), with real inotify watches on snapfx.h's environment.
 *
 * Clean: after a mark and its done, with no event but the database's and a
 * few files only written to (named).  Not clean: any other change, a directory newly watched after the mark,
 * another manifest than the one reported done, a done of an older mark. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon_journal.h"
#include "tutil.h"

#include "snapfx.h"

typedef struct jfx {
	fx *x;
	dmn_journal j;
	ts_snap_changes ch;
	struct stat man;    /* stands for the refreshed stage's manifest */
} jfx;

/* The journal open on the environment, every directory of it watched (as
 * the stager's first refresh leaves it), a mark done. */
static void jfx_open(fx *x, jfx *t)
{
	static const char *const dirs[] = { ".", "conf", "db", "htdocs", "log", "plugins", "templates",
	                                    "ro", "files", "files/attachments" };
	char p[TBUF];

	t->x = x;
	assert_int_equal(dmn_journal_open(&t->j, &x->e), 0);
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		tu_fmt(p, sizeof p, "%s/%s", x->env, dirs[i]);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			assert_true(dmn_journal_watch(&t->j, dirs[i]) >= 0);
	}
	dmn_journal_changes(&t->j, &t->ch);
	tu_fmt(p, sizeof p, "%s/VERSION", x->env);
	assert_int_equal(lstat(p, &t->man), 0);
}

static uint64_t jfx_refreshed(jfx *t)
{
	uint64_t mark = t->ch.stage_mark(t->ch.arg);
	t->ch.stage_done(t->ch.arg, mark, &t->man);
	return mark;
}

static bool jfx_clean(jfx *t)
{
	return t->ch.stage_clean(t->ch.arg, &t->man, NULL, NULL);
}

/* since()'s callback, when the paths do not matter. */
static void ignore_path(void *fnarg, const char *rel)
{
	(void)fnarg;
	(void)rel;
}

/* stage_clean's written callback: "a;b;" into fnarg (256 bytes). */
static void collect(void *fnarg, const char *rel)
{
	char *out = fnarg;
	size_t n = strlen(out);
	snprintf(out + n, 256 - n, "%s;", rel);
}

static void test_clean_until_a_change(void **state)
{
	fx *x = *state;
	jfx t;

	jfx_open(x, &t);
	assert_false(jfx_clean(&t));               /* no refresh yet */
	jfx_refreshed(&t);
	assert_true(jfx_clean(&t));
	assert_true(t.ch.stage_clean(t.ch.arg, NULL, NULL, NULL));

	/* The database and its journals: none of the stage's business. */
	tu_put_in(x->env, "db/trac.db-journal", "journal", 0644);
	char p[TBUF];
	tu_fmt(p, sizeof p, "%s/db/trac.db-journal", x->env);
	assert_int_equal(unlink(p), 0);
	assert_true(jfx_clean(&t));

	/* A file only written to: still clean, and named. */
	FILE *fp;
	tu_fmt(p, sizeof p, "%s/htdocs/a.txt", x->env);
	assert_non_null(fp = fopen(p, "a"));
	fputs("appended\n", fp);
	fclose(fp);
	char got[256] = "";
	assert_true(t.ch.stage_clean(t.ch.arg, &t.man, collect, got));
	assert_string_equal(got, "htdocs/a.txt;");

	/* Anything else: created, removed, metadata. */
	tu_put_in(x->env, "htdocs/new.txt", "new\n", 0644);
	assert_false(jfx_clean(&t));
	assert_false(t.ch.stage_clean(t.ch.arg, NULL, NULL, NULL));
	jfx_refreshed(&t);                         /* the next refresh saw it */
	assert_true(jfx_clean(&t));
	got[0] = '\0';
	assert_true(t.ch.stage_clean(t.ch.arg, &t.man, collect, got));
	assert_string_equal(got, "");              /* the mark forgot the written ones */
	assert_int_equal(chmod(p, 0600), 0);
	assert_false(jfx_clean(&t));
	jfx_refreshed(&t);
	assert_int_equal(unlink(p), 0);
	assert_false(jfx_clean(&t));
	dmn_journal_close(&t.j);
}

/* ENV renamed away and another directory put at its path: no watch sees
 * it (they follow the old one), yet the stage is not that environment. */
static void test_env_replaced(void **state)
{
	fx *x = *state;
	jfx t;
	char away[TBUF + 8];

	jfx_open(x, &t);
	jfx_refreshed(&t);
	assert_true(jfx_clean(&t));
	tu_fmt(away, sizeof away, "%s.away", x->env);
	assert_int_equal(rename(x->env, away), 0);
	assert_int_equal(mkdir(x->env, 0755), 0);
	assert_false(jfx_clean(&t));
	assert_int_equal(rmdir(x->env), 0);
	assert_int_equal(rename(away, x->env), 0);
	assert_true(jfx_clean(&t));                /* the same one again */
	dmn_journal_close(&t.j);
}

/* More files written to than the journal keeps: unclean. */
static void test_too_many_written(void **state)
{
	fx *x = *state;
	jfx t;
	char p[TBUF], name[64];

	for (int i = 0; i <= DMN_JOURNAL_STAGE_WRITTEN; i++) {
		snprintf(name, sizeof name, "htdocs/w%02d.txt", i);
		tu_put_in(x->env, name, "x\n", 0644);
	}
	jfx_open(x, &t);
	jfx_refreshed(&t);
	for (int i = 0; i <= DMN_JOURNAL_STAGE_WRITTEN; i++) {
		tu_fmt(p, sizeof p, "%s/htdocs/w%02d.txt", x->env, i);
		FILE *fp = fopen(p, "a");
		assert_non_null(fp);
		fputs("more\n", fp);
		fclose(fp);
		assert_true(jfx_clean(&t) == (i < DMN_JOURNAL_STAGE_WRITTEN));
	}
	dmn_journal_close(&t.j);
}

/* A directory watched for the first time after the mark may have changed
 * unseen before; one watched again by the same path has not. */
static void test_new_watch_after_the_mark(void **state)
{
	fx *x = *state;
	jfx t;
	char p[TBUF];

	tu_fmt(p, sizeof p, "%s/files/attachments/ticket", x->env);
	jfx_open(x, &t);
	jfx_refreshed(&t);
	assert_true(dmn_journal_watch(&t.j, "htdocs") >= 0);   /* again, same path */
	assert_true(jfx_clean(&t));
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	assert_true(dmn_journal_watch(&t.j, "files/attachments/ticket") >= 0);
	assert_false(jfx_clean(&t));
	dmn_journal_close(&t.j);
}

/* Another manifest, or the done of a mark that another has followed. */
static void test_other_manifest_or_mark(void **state)
{
	fx *x = *state;
	jfx t;

	jfx_open(x, &t);
	jfx_refreshed(&t);
	struct stat other = t.man;
	other.st_ino++;
	assert_false(t.ch.stage_clean(t.ch.arg, &other, NULL, NULL));
	uint64_t old = t.ch.stage_mark(t.ch.arg);
	uint64_t now = t.ch.stage_mark(t.ch.arg);
	assert_true(now != old);
	t.ch.stage_done(t.ch.arg, old, &t.man);
	assert_false(jfx_clean(&t));               /* the later refresh is not done */
	t.ch.stage_done(t.ch.arg, now, &t.man);
	assert_true(jfx_clean(&t));
	dmn_journal_close(&t.j);
}

/* unwatched: a directory that was there at a mark but watched only after
 * it counts as unwatched for that mark, even with no event in between
 * (what changed in it before the watch went unseen); for a later mark it
 * is watched. */
static void test_watched_after_the_mark_is_unwatched(void **state)
{
	fx *x = *state;
	jfx t;
	const char *const dirs[] = { "db", "htdocs" };
	bool out[2];

	assert_int_equal(dmn_journal_open(&t.j, &x->e), 0);
	dmn_journal_changes(&t.j, &t.ch);
	assert_true(dmn_journal_watch(&t.j, "htdocs") >= 0);
	uint64_t mark = t.ch.mark(t.ch.arg);
	assert_true(dmn_journal_watch(&t.j, "db") >= 0);
	t.ch.unwatched(t.ch.arg, mark, dirs, 2, out);
	assert_true(out[0]);
	assert_false(out[1]);
	t.ch.end(t.ch.arg);
	mark = t.ch.mark(t.ch.arg);
	t.ch.unwatched(t.ch.arg, mark, dirs, 2, out);
	assert_false(out[0]);
	assert_false(out[1]);
	t.ch.end(t.ch.arg);
	dmn_journal_close(&t.j);
}

/* db_unchanged: whether the database file had an event since a mark (a
 * snapshot's, taken before its pre-copy read the file).  Its journals and
 * the other files do not count; a write to it, a file put in its place, or
 * its directory watched only after the mark do. */
static void test_db_unchanged_since_a_mark(void **state)
{
	fx *x = *state;
	jfx t;
	char p[TBUF];
	FILE *fp;

	jfx_open(x, &t);
	uint64_t mark = t.ch.mark(t.ch.arg);
	assert_true(t.ch.db_unchanged(t.ch.arg, mark));
	tu_put_in(x->env, "db/trac.db-journal", "journal", 0644);
	tu_put_in(x->env, "htdocs/new.txt", "new\n", 0644);
	assert_true(t.ch.db_unchanged(t.ch.arg, mark));

	tu_fmt(p, sizeof p, "%s/db/trac.db", x->env);
	assert_non_null(fp = fopen(p, "r+"));
	assert_int_equal(fseek(fp, 60, SEEK_SET), 0);
	fputc(0, fp);
	fclose(fp);
	assert_false(t.ch.db_unchanged(t.ch.arg, mark));
	t.ch.end(t.ch.arg);
	mark = t.ch.mark(t.ch.arg);                  /* a later take's mark */
	assert_true(t.ch.db_unchanged(t.ch.arg, mark));

	/* Another file put in its place (the database kept aside, and put
	 * back after). */
	char side[TBUF], keep[TBUF];
	tu_fmt(keep, sizeof keep, "%s/db/trac.db.keep", x->env);
	assert_int_equal(link(p, keep), 0);
	tu_put_in(x->env, "db/other.db", "x", 0644);
	tu_fmt(side, sizeof side, "%s/db/other.db", x->env);
	assert_int_equal(rename(side, p), 0);
	assert_false(t.ch.db_unchanged(t.ch.arg, mark));
	assert_int_equal(rename(keep, p), 0);
	t.ch.end(t.ch.arg);
	dmn_journal_close(&t.j);

	/* Its directory watched after the mark: what came before is unseen. */
	assert_int_equal(dmn_journal_open(&t.j, &x->e), 0);
	dmn_journal_changes(&t.j, &t.ch);
	assert_true(dmn_journal_watch(&t.j, ".") >= 0);
	mark = t.ch.mark(t.ch.arg);
	assert_false(t.ch.db_unchanged(t.ch.arg, mark));   /* not watched at all */
	assert_true(dmn_journal_watch(&t.j, "db") >= 0);
	assert_false(t.ch.db_unchanged(t.ch.arg, mark));
	t.ch.end(t.ch.arg);
	mark = t.ch.mark(t.ch.arg);
	assert_true(t.ch.db_unchanged(t.ch.arg, mark));
	t.ch.end(t.ch.arg);
	dmn_journal_close(&t.j);
}

/* A take's remark under the lock: since() reported a change up to it; the
 * remark.  stage_from then gives a stage mark (the snapshot is the
 * environment), unless an event came after the remark; the stage built
 * from it is clean once done, until the next change.  A take from a clean
 * stage (remark 0) carries that stage's mark on. */
static uint64_t jfx_take(jfx *t)
{
	uint64_t mark = t->ch.mark(t->ch.arg), remark = 0;
	const char *why = NULL;

	tu_put_in(t->x->env, "htdocs/taken.txt", "seen by the take\n", 0644);
	assert_true(t->ch.since(t->ch.arg, mark, ignore_path, NULL, &why, &remark));
	return remark;
}

static void test_stage_from_a_take(void **state)
{
	fx *x = *state;
	jfx t;

	jfx_open(x, &t);
	uint64_t remark = jfx_take(&t);
	uint64_t gen = t.ch.stage_from(t.ch.arg, remark);
	assert_true(gen != 0);
	assert_false(jfx_clean(&t));               /* no stage done yet */
	t.ch.stage_done(t.ch.arg, gen, &t.man);
	assert_true(jfx_clean(&t));
	assert_int_equal(t.ch.stage_from(t.ch.arg, 0), gen);   /* a take of that stage */
	tu_put_in(x->env, "htdocs/later.txt", "after\n", 0644);
	assert_false(jfx_clean(&t));
	assert_int_equal(t.ch.stage_from(t.ch.arg, 0), 0);
	t.ch.end(t.ch.arg);

	/* An event after the remark, before stage_from: the take may not have
	 * seen it. */
	remark = jfx_take(&t);
	tu_put_in(x->env, "htdocs/between.txt", "unseen\n", 0644);
	assert_int_equal(t.ch.stage_from(t.ch.arg, remark), 0);
	t.ch.end(t.ch.arg);

	/* After it, before the stage is built: the stage is not clean. */
	remark = jfx_take(&t);
	gen = t.ch.stage_from(t.ch.arg, remark);
	assert_true(gen != 0);
	tu_put_in(x->env, "htdocs/before-build.txt", "after the take\n", 0644);
	t.ch.stage_done(t.ch.arg, gen, &t.man);
	assert_false(jfx_clean(&t));
	t.ch.end(t.ch.arg);

	/* A directory the build watches anew: what changed in it is unseen. */
	tu_mkdir_in(x->env, "conf/sub", 0755);        /* conf is watched, sub is not */
	gen = t.ch.stage_from(t.ch.arg, jfx_take(&t));
	assert_true(gen != 0);
	assert_true(dmn_journal_watch(&t.j, "conf/sub") >= 0);
	t.ch.stage_done(t.ch.arg, gen, &t.man);
	assert_false(jfx_clean(&t));
	t.ch.end(t.ch.arg);
	dmn_journal_close(&t.j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean_until_a_change, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_new_watch_after_the_mark, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_other_manifest_or_mark, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_too_many_written, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_env_replaced, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_watched_after_the_mark_is_unwatched, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_db_unchanged_since_a_mark, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_from_a_take, sfx_setup, sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
