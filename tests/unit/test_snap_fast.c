/* test_snap_fast.c - a snapshot from a stage that nothing changed since its
 * refresh (take/snap_fast.c).
 *
 * A fake watch stands in for the daemon's (fs/daemon/daemon_journal.c): it
 * records the manifest the refresh reports as done, and answers stage_clean
 * as the test says, before the take adopts the stage and again under Trac's
 * lock, where it can also change the environment first: the moment a real
 * watch must not miss.  The environment is snapfx.h's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db/dbsnap.h"
#include "store/seal.h"
#include "take/snap.h"
#include "tutil.h"

#include "snapfx.h"

typedef struct fake {
	fx *x;
	uint64_t gen;
	bool done;
	struct stat man;            /* what the refresh reported */
	bool clean;                 /* the answer before the lock */
	bool clean_locked;          /* and under it */
	void (*act_locked)(struct fake *f);   /* a change made right before that answer */
	const char *written[4];      /* files only written to: reported before the lock */
	const char *written_locked[4];  /* and under it (with the others) */
	int asked, asked_locked;
	int db_answer;              /* db_unchanged: 0 none, 1 true, 2 false */
	void (*act_db)(struct fake *f);   /* a change made right before that answer */
} fake;

static uint64_t fk_mark(void *arg)
{
	(void)arg;
	return 1;
}

static void fk_unwatched(void *arg, uint64_t mark, const char *const *dirs, size_t n, bool *out)
{
	(void)arg;
	(void)mark;
	(void)dirs;
	for (size_t i = 0; i < n; i++)
		out[i] = true;
}

/* Anything else the take asks: "cannot tell", so every entry is looked at. */
static bool fk_since(void *arg, uint64_t mark, void (*fn)(void *, const char *), void *fnarg,
                     const char **why, uint64_t *remark)
{
	(void)arg;
	(void)mark;
	(void)fn;
	(void)fnarg;
	*why = "the fake cannot tell";
	if (remark)
		*remark = 1;
	return false;
}

static void fk_end(void *arg)
{
	(void)arg;
}

static uint64_t fk_stage_mark(void *arg)
{
	fake *f = arg;
	f->done = false;
	return ++f->gen;
}

static void fk_stage_done(void *arg, uint64_t mark, const struct stat *man)
{
	fake *f = arg;
	assert_true(mark == f->gen);
	f->done = true;
	f->man = *man;
}

static bool fk_stage_clean(void *arg, const struct stat *man, void (*written)(void *, const char *),
                           void *fnarg)
{
	fake *f = arg;
	if (!man) {
		f->asked_locked++;
		if (f->act_locked)
			f->act_locked(f);
		for (size_t i = 0; f->clean_locked && i < 4; i++) {
			if (f->written[i])
				written(fnarg, f->written[i]);
			if (f->written_locked[i])
				written(fnarg, f->written_locked[i]);
		}
		return f->clean_locked;
	}
	f->asked++;
	bool clean = f->clean && f->done && man->st_ino == f->man.st_ino &&
	             man->st_ctim.tv_sec == f->man.st_ctim.tv_sec && man->st_ctim.tv_nsec == f->man.st_ctim.tv_nsec;
	for (size_t i = 0; clean && i < 4 && f->written[i]; i++)
		written(fnarg, f->written[i]);
	return clean;
}

static bool fk_db_unchanged(void *arg, uint64_t mark)
{
	fake *f = arg;
	assert_true(mark == 1);   /* fk_mark's, taken before the pre-copy */
	if (f->act_db)
		f->act_db(f);
	return f->db_answer == 1;
}

static ts_snap_changes fk_changes(fake *f)
{
	ts_snap_changes ch = { .arg = f, .mark = fk_mark, .unwatched = fk_unwatched, .since = fk_since,
	                       .end = fk_end, .stage_mark = fk_stage_mark, .stage_done = fk_stage_done,
	                       .stage_clean = fk_stage_clean,
	                       .db_unchanged = f->db_answer ? fk_db_unchanged : NULL };
	return ch;
}

/* s1 taken and sealed, the stage built from it, htdocs/a.txt changed and
 * the stage refreshed with the fake watch (ro/ left read-only when ro_dir:
 * the refresh reports no stage done then). */
static void staged_and_refreshed_ro(fx *x, fake *f, bool ro_dir)
{
	char p[TBUF];
	ts_snap_stats st;
	ts_snap_changes ch = fk_changes(f);
	ts_snap_opts o = { .name = TS_STORE_STAGE, .changes = &ch };
	ts_stage_refresh_out out;
	ts_err e;

	f->x = x;
	if (!ro_dir) {   /* the fixture's read-only ro/ (snapfx.h), made one its owner can add to */
		tu_fmt(p, sizeof p, "%s/ro", x->env);
		assert_int_equal(chmod(p, 0755), 0);
	}
	sfx_take_ok(x, "s1", &st);
	sfx_stage_ok(x, NULL);
	tu_put_in(x->env, "htdocs/a.txt", "changed before the refresh\n", 0644);
	ts_err_clear(&e);
	if (ts_stage_refresh(&x->s, &x->e, &o, false, NULL, NULL, &out, &e) != TS_OK)
		fail_msg("refresh: %s", e.msg);
	assert_false(out.none);
	assert_true(f->done == !ro_dir);
}

static void staged_and_refreshed(fx *x, fake *f)
{
	staged_and_refreshed_ro(x, f, false);
}

/* Take name with the fake watch; not sealed. */
static void take_fake(fx *x, fake *f, const char *name, ts_snap_stats *st)
{
	ts_snap_changes ch = fk_changes(f);
	ts_snap_opts o = { .name = name, .lock_timeout_s = 5, .changes = &ch };
	ts_err e;

	ts_err_clear(&e);
	if (ts_snap_take(&x->s, &x->e, &o, st, &e) != TS_OK)
		fail_msg("snapshot %s: %s", name, e.msg);
}

static void seal_ok(fx *x, const char *name)
{
	ts_err e;
	ts_err_clear(&e);
	if (ts_seal(&x->s, name, NULL, NULL, &e) != TS_OK)
		fail_msg("seal %s: %s", name, e.msg);
}

static bool store_has(fx *x, const char *rel)
{
	char p[TBUF];
	struct stat st;
	tu_fmt(p, sizeof p, "%s/%s", x->store, rel);
	return lstat(p, &st) == 0;
}

static void add_ticket(fx *x, const char *summary)
{
	char p[TBUF];
	sqlite3 *db;
	char *sql = sqlite3_mprintf("INSERT INTO ticket (id, summary) VALUES (4, %Q)", summary);

	tu_fmt(p, sizeof p, "%s/db/trac.db", x->env);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_free(sql);
	sqlite3_close(db);
}

/* Nothing but the database changed since the refresh: the stage is the
 * snapshot, its manifest the base of one that lists the database; the
 * snapshot is the environment, before and after its seal. */
static void test_fast_from_clean_stage(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	ts_snap_stats st;
	ts_manifest m;
	struct stat staged, in_s2;
	char p[TBUF];

	staged_and_refreshed(x, &f);
	tu_fmt(p, sizeof p, "%s/.stage/tree/htdocs/a.txt", x->store);
	assert_int_equal(lstat(p, &staged), 0);
	add_ticket(x, "fourth");   /* the database alone changes */

	take_fake(x, &f, "s2", &st);
	assert_true(st.from_stage);
	assert_int_equal(f.asked, 1);
	assert_int_equal(f.asked_locked, 1);
	assert_false(sfx_stage_exists(x));
	assert_true(store_has(x, "s2/" TS_MANIFEST_BASE));
	tu_fmt(p, sizeof p, "%s/s2/manifest", x->store);
	size_t len;
	char *text = (char *)tu_slurp(p, &len);
	assert_true(!strncmp(text, "tracsnap-manifest\t3\n", 20));
	assert_non_null(strstr(text, "\nbase\t" TS_MANIFEST_BASE "\n"));
	free(text);
	sfx_snap_file(x, "s2", "htdocs/a.txt", &in_s2);
	assert_true(in_s2.st_ino == staged.st_ino);   /* the stage's copy, as it was */
	sfx_compare_tree(x, "s2");
	sfx_check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");

	seal_ok(x, "s2");
	assert_false(store_has(x, "s2/" TS_MANIFEST_BASE));
	sfx_compare_tree(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);
	assert_non_null(ts_manifest_find(&m, "db/trac.db"));
	assert_non_null(ts_manifest_find(&m, "htdocs/a.txt"));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

static void act_change(fake *f)
{
	tu_put_in(f->x->env, "htdocs/a.txt", "changed after the refresh\n", 0644);
	tu_put_in(f->x->env, "htdocs/new.txt", "new after the refresh\n", 0644);
}

/* Something changed between the adoption and Trac's lock: the take goes on
 * as from any stage, and finds it. */
static void test_changed_before_the_lock(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = false, .act_locked = act_change };
	ts_snap_stats st;
	ts_manifest m;

	staged_and_refreshed(x, &f);
	sfx_log_start();
	take_fake(x, &f, "s2", &st);
	char *log = sfx_log_take();
	assert_non_null(strstr(log, "changed since the stage was refreshed"));
	free(log);
	assert_false(st.from_stage);
	assert_int_equal(f.asked_locked, 1);
	assert_false(store_has(x, "s2/" TS_MANIFEST_BASE));
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed after the refresh\n");
	sfx_snap_text_is(x, "s2", "htdocs/new.txt", "new after the refresh\n");
	sfx_compare_tree(x, "s2");
	seal_ok(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

/* The watch says the stage is not the environment: never taken as it is. */
static void test_unclean_stage_not_taken_as_is(void **state)
{
	fx *x = *state;
	fake f = { .clean = false, .clean_locked = true };
	ts_snap_stats st;

	staged_and_refreshed(x, &f);
	tu_put_in(x->env, "htdocs/a.txt", "changed, and the watch saw it\n", 0644);
	take_fake(x, &f, "s2", &st);
	assert_false(st.from_stage);
	assert_int_equal(f.asked_locked, 0);
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed, and the watch saw it\n");
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* A manifest other than the one the refresh reported (a build made since,
 * say) is not the refresh's stage. */
static void test_other_manifest_not_taken_as_is(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	ts_snap_stats st;

	staged_and_refreshed(x, &f);
	f.man.st_ino++;
	take_fake(x, &f, "s2", &st);
	assert_false(st.from_stage);
	assert_int_equal(f.asked, 1);
	assert_int_equal(f.asked_locked, 0);
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* A directory its owner cannot add to: the staged tree's copy has the
 * stage's mode (snap_put.c), so the refresh offers no stage to take as it
 * is, and the snapshot gives it its own mode. */
static void test_read_only_dir_not_taken_as_is(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	ts_snap_stats st;
	struct stat ro;

	staged_and_refreshed_ro(x, &f, true);
	take_fake(x, &f, "s2", &st);
	assert_false(st.from_stage);
	sfx_snap_file(x, "s2", "ro", &ro);
	assert_int_equal(ro.st_mode & 07777, 0555);
	sfx_compare_tree(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* An external database goes into a directory the take makes at the
 * tree's top (dbsnap.h): that directory and the top get their metadata and
 * entries as from any take. */
static void test_external_db_from_clean_stage(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	ts_snap_stats st;
	ts_manifest m;
	char dbp[TBUF], text[TBUF];

	tu_fmt(dbp, sizeof dbp, "%s/ext", x->top);
	assert_int_equal(mkdir(dbp, 0755), 0);
	tu_fmt(dbp, sizeof dbp, "%s/ext/x.db", x->top);
	tu_make_db(dbp, true);
	tu_fmt(text, sizeof text, "%s/db/trac.db", x->env);
	assert_int_equal(unlink(text), 0);
	tu_fmt(text, sizeof text, "[trac]\ndatabase = sqlite:%s\n", dbp);
	tu_put_in(x->env, "conf/trac.ini", text, 0600);
	ts_env_close(&x->e);
	x->env_open = false;
	sfx_env_open(x);

	staged_and_refreshed(x, &f);
	take_fake(x, &f, "s2", &st);
	assert_true(st.from_stage);
	sfx_compare_tree(x, "s2");
	sfx_check_db(x, "s2", TS_DBSNAP_EXTERNAL_DIR "/x.db", 3, "first,second,third");
	seal_ok(x, "s2");
	sfx_compare_tree(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);
	assert_string_equal(m.external_db, dbp);
	assert_non_null(ts_manifest_find(&m, TS_DBSNAP_EXTERNAL_DIR));
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

/* A staged copy damaged in the store before the refresh: the refresh
 * checks the staged copies as a snapshot adopting them would, and copies
 * it again; the snapshot taken as it is has the environment's content. */
static void test_damaged_copy_found_by_the_refresh(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	ts_snap_stats st;
	ts_snap_changes ch;
	ts_snap_opts o = { .name = TS_STORE_STAGE };
	ts_stage_refresh_out out;
	struct stat before, after;
	char p[TBUF];
	ts_err e;

	staged_and_refreshed(x, &f);
	tu_fmt(p, sizeof p, "%s/.stage/tree/README", x->store);
	assert_int_equal(lstat(p, &before), 0);
	FILE *fp = fopen(p, "r+");
	assert_non_null(fp);
	assert_int_equal(fputc('#', fp), '#');   /* same size, other content */
	fclose(fp);
	struct timespec t[2] = { before.st_mtim, before.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);

	tu_put_in(x->env, "htdocs/a.txt", "changed again\n", 0644);
	ch = fk_changes(&f);
	o.changes = &ch;
	ts_err_clear(&e);
	sfx_log_start();
	ts_err_code rc = ts_stage_refresh(&x->s, &x->e, &o, false, NULL, NULL, &out, &e);
	char *log = sfx_log_take();
	if (rc != TS_OK)
		fail_msg("refresh: %s", e.msg);
	assert_non_null(strstr(log, "s1/README: stored copy damaged"));
	free(log);
	assert_int_equal(lstat(p, &after), 0);
	assert_true(after.st_ino != before.st_ino);   /* copied again */

	take_fake(x, &f, "s2", &st);
	assert_true(st.from_stage);
	sfx_compare_tree(x, "s2");
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

static void act_write_more(fake *f)
{
	tu_put_in(f->x->env, "htdocs/site.css", "written under the lock\n", 0644);
}

/* Files only written to since the refresh (Trac's log): copied, before the
 * lock and, when written again or new in the list, under it; the stage is
 * still taken as it is. */
static void test_written_files_copied(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true, .written = { "README" },
	           .written_locked = { "htdocs/site.css" }, .act_locked = act_write_more };
	ts_snap_stats st;
	ts_manifest m;

	staged_and_refreshed(x, &f);
	tu_put_in(x->env, "README", "written after the refresh\n", 0644);
	take_fake(x, &f, "s2", &st);
	assert_true(st.from_stage);
	sfx_snap_text_is(x, "s2", "README", "written after the refresh\n");
	sfx_snap_text_is(x, "s2", "htdocs/site.css", "written under the lock\n");
	sfx_compare_tree(x, "s2");
	seal_ok(x, "s2");
	sfx_check_manifest(x, "s2", NULL, &m);   /* the hashes of the new copies */
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

static void act_retype(fake *f)
{
	char p[TBUF];
	tu_fmt(p, sizeof p, "%s/README", f->x->env);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0755), 0);
}

/* A file said to be written is something else by the lock (a watch would
 * not say so; the take must not trust it blindly): every entry is checked,
 * and the copy made before the lock is no damage. */
static void test_written_file_retyped(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true, .written = { "README" }, .act_locked = act_retype };
	ts_snap_stats st;

	staged_and_refreshed(x, &f);
	tu_put_in(x->env, "README", "written after the refresh\n", 0644);
	sfx_log_start();
	take_fake(x, &f, "s2", &st);
	char *log = sfx_log_take();
	assert_null(strstr(log, "damaged"));
	assert_non_null(strstr(log, "changed since the stage was refreshed"));
	free(log);
	assert_false(st.from_stage);
	struct stat rd;
	sfx_snap_file(x, "s2", "README", &rd);
	assert_true(S_ISDIR(rd.st_mode));
	sfx_compare_tree(x, "s2");
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* Flip the first byte of path, its mtime put back (size and mtime as
 * before: only its ctime tells). */
static void flip_keep_mtime(const char *path)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	struct timespec nap = { 0, 20 * 1000 * 1000 };
	nanosleep(&nap, NULL);   /* out of the take's batch (linklog.h) */
	FILE *fp = fopen(path, "r+");
	assert_non_null(fp);
	int c = fgetc(fp);
	assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
	fputc(c ^ 0xff, fp);
	fclose(fp);
	struct timespec t[2] = { st.st_mtim, st.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

/* s1 staged and refreshed, the copies at rels (NULL-terminated) in s1
 * damaged with their mtimes kept, then s2 taken from the stage as it was. */
static void damaged_then_taken(fx *x, fake *f, const char *const *rels)
{
	ts_snap_stats st;
	char p[TBUF];

	staged_and_refreshed(x, f);
	for (size_t i = 0; rels[i]; i++) {
		tu_fmt(p, sizeof p, "%s/s1/tree/%s", x->store, rels[i]);
		flip_keep_mtime(p);
	}
	take_fake(x, f, "s2", &st);
	assert_true(st.from_stage);
}

/* The check before the seal, run; its log (the caller frees it). */
static char *adopted_checked(fx *x)
{
	ts_err e;

	ts_err_clear(&e);
	sfx_log_start();
	ts_err_code rc = ts_snap_check_adopted(&x->s, &x->e, 5, &e);
	char *log = sfx_log_take();
	if (rc != TS_OK)
		fail_msg("check: %s", e.msg);
	return log;
}

/* A copy damaged after the refresh went into a snapshot taken from the
 * stage as it was: the check before the seal replaces it by the
 * environment's file while that is unchanged, and says so; when the file
 * changed since, the snapshot keeps the damaged copy, and the log says
 * that too. */
static void test_damage_checked_before_the_seal(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	static const char *const rels[] = { "README", "htdocs/site.css", NULL };
	struct stat in_s1, in_s2;
	char p[TBUF];

	damaged_then_taken(x, &f, rels);
	tu_put_in(x->env, "htdocs/site.css", "changed since the snapshot\n", 0644);
	char *log = adopted_checked(x);
	assert_non_null(strstr(log, "s1/README: stored copy damaged (content), copied afresh"));
	assert_non_null(strstr(log, "s1/htdocs/site.css: stored copy damaged (content), and the "
	                            "environment's file changed since snapshot s2"));
	free(log);
	sfx_snap_file(x, "s1", "README", &in_s1);
	sfx_snap_file(x, "s2", "README", &in_s2);
	assert_true(in_s1.st_ino != in_s2.st_ino);
	tu_fmt(p, sizeof p, "%s/README", x->env);
	size_t l1, l2;
	unsigned char *live = tu_slurp(p, &l1);
	tu_fmt(p, sizeof p, "%s/s2/tree/README", x->store);
	unsigned char *copy = tu_slurp(p, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(live, copy, l1);
	free(live);
	free(copy);
	assert_false(store_has(x, "s2/" TS_MANIFEST_BASE));   /* the whole manifest written */
	/* The changed file's copy was made beside and dropped: the damaged
	 * copy is where it was, nothing beside it. */
	assert_true(store_has(x, "s2/tree/htdocs/site.css"));
	assert_false(store_has(x, "s2/tree/htdocs/.tracsnap-recopy"));
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* A fresh copy that cannot be made (here: the environment itself has a
 * file by the name the copy is made under) leaves the damaged copy and that
 * file as they were, and the log says why. */
static void test_recopy_that_fails_keeps_the_tree(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	static const char *const rels[] = { "README", NULL };
	char p[TBUF];

	tu_put_in(x->env, ".tracsnap-recopy", "the environment's own file\n", 0644);
	damaged_then_taken(x, &f, rels);
	tu_fmt(p, sizeof p, "%s/s1/tree/README", x->store);
	size_t l1, l2;
	unsigned char *damaged = tu_slurp(p, &l1);
	char *log = adopted_checked(x);
	assert_non_null(strstr(log, "s1/README: stored copy damaged (content), and copying it afresh "
	                            "failed ("));
	free(log);
	tu_fmt(p, sizeof p, "%s/s2/tree/README", x->store);
	unsigned char *kept = tu_slurp(p, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(damaged, kept, l1);
	free(damaged);
	free(kept);
	tu_fmt(p, sizeof p, "%s/s2/tree/.tracsnap-recopy", x->store);
	char *own = (char *)tu_slurp(p, &l2);
	assert_int_equal(l2, strlen("the environment's own file\n"));
	assert_memory_equal(own, "the environment's own file\n", l2);
	free(own);
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* The environment gone before the check: the copies are still checked,
 * a damaged one kept and said so, and the snapshot seals. */
static void test_damage_checked_with_the_environment_gone(void **state)
{
	fx *x = *state;
	fake f = { .clean = true, .clean_locked = true };
	static const char *const rels[] = { "README", NULL };
	char away[TBUF];

	damaged_then_taken(x, &f, rels);
	tu_fmt(away, sizeof away, "%s.away", x->env);
	assert_int_equal(rename(x->env, away), 0);
	char *log = adopted_checked(x);
	assert_int_equal(rename(away, x->env), 0);
	assert_non_null(strstr(log, "s1/README: stored copy damaged (content), and copying it afresh "
	                            "failed ("));
	assert_non_null(strstr(log, "cannot open the environment"));
	free(log);
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

/* The database's user_version (header bytes 60-63) set to 7 behind SQLite's
 * back, under the take's lock: a change the pass under the lock finds,
 * and one a take told the file is unchanged must not look for. */
static void poke_user_version(fake *f)
{
	char p[TBUF];
	unsigned char v[4] = { 0, 0, 0, 7 };
	tu_fmt(p, sizeof p, "%s/db/trac.db", f->x->env);
	int fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, v, sizeof v, 60), (ssize_t)sizeof v);
	close(fd);
}

static long snap_user_version(fx *x, const char *name)
{
	char p[TBUF];
	sqlite3 *db;
	tu_fmt(p, sizeof p, "%s/%s/tree/db/trac.db", x->store, name);
	assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	long v = sfx_query_long(db, "PRAGMA user_version");
	sqlite3_close(db);
	return v;
}

/* Under the lock the watch says whether the database file was written
 * since before its pre-copy read it (db_unchanged): when not, the pre-copy
 * is taken as it is, without the pass that compares it with the file;
 * when it was, that pass runs.  Both ways a take goes: from the stage as
 * it was, and over every entry. */
static void check_db_unchanged(fx *x, bool fast, int answer)
{
	fake f = { .clean = fast, .clean_locked = fast, .db_answer = answer, .act_db = poke_user_version };
	ts_snap_stats st;
	char line[512];

	staged_and_refreshed(x, &f);
	take_fake(x, &f, "s2", &st);
	assert_true(st.from_stage == fast);
	assert_true(st.db_as_precopied == (answer == 1));
	assert_int_equal(snap_user_version(x, "s2"), answer == 1 ? 0 : 7);
	ts_snap_format_stats("s2", &st, line, sizeof line);
	assert_true((strstr(line, ", database unchanged since its pre-copy") != NULL) == (answer == 1));
	seal_ok(x, "s2");
	sfx_store_clean_and_unlocked(x);
}

static void test_db_unchanged_taken_as_precopied(void **state)
{
	check_db_unchanged(*state, true, 1);
}

static void test_db_changed_compared_under_the_lock(void **state)
{
	check_db_unchanged(*state, true, 2);
}

static void test_db_unchanged_in_a_full_take(void **state)
{
	check_db_unchanged(*state, false, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fast_from_clean_stage, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_changed_before_the_lock, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_unclean_stage_not_taken_as_is, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_other_manifest_not_taken_as_is, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_read_only_dir_not_taken_as_is, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_external_db_from_clean_stage, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_copy_found_by_the_refresh, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_written_files_copied, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_written_file_retyped, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_damage_checked_before_the_seal, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_recopy_that_fails_keeps_the_tree, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_damage_checked_with_the_environment_gone, sfx_setup,
		                                sfx_teardown),
		cmocka_unit_test_setup_teardown(test_db_unchanged_taken_as_precopied, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_db_changed_compared_under_the_lock, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_db_unchanged_in_a_full_take, sfx_setup, sfx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
