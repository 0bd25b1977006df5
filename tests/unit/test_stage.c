/* test_stage.c - the stage (take/stage.h): built from the newest sealed
 * snapshot, refreshed from the environment ahead of a snapshot, adopted by
 * the next snapshot, which is the environment exactly all the same.  The
 * environment and the checks are snapfx.h's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "env/env.h"
#include "store/linklog.h"
#include "store/manifest.h"
#include "store/store.h"
#include "take/snap.h"
#include "take/stage.h"
#include "tutil.h"

#include "snapfx.h"

/* A write to the environment's database, as Trac makes one. */
static void add_fourth_ticket(fx *x)
{
	char p[TBUF];
	sqlite3 *w;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* A snapshot made from a stage is the environment exactly, whatever
 * changed: files changed, removed and added, a directory removed with its
 * files, a file become a directory and a directory a file, symlinks new,
 * removed and retargeted, and the database.  Unchanged files keep the
 * previous snapshot's inode; nothing of the previous snapshot changes. */
static void test_snap_staged(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2;
	ts_manifest m;
	struct stat a, b;
	char p[TBUF];

	/* Older than the racy window at s1: unchanged directories keep the
	 * metadata the stage gave them (snap_dir_as_staged). */
	{
		struct timespec nap = { 0, 60 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	sfx_take_ok(x, "s1", &s1);
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s1"));
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	assert_int_equal(a.st_nlink, 2);   /* s1's and the stage's */
	tu_fmt(p, sizeof(p), "%s/conf", x->env);
	assert_int_equal(chmod(p, 0700), 0);   /* only its ctime and mode tell */

	tu_put_in(x->env, "htdocs/a.txt", "changed, and longer than before\n", 0644);
	tu_fmt(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	assert_int_equal(unlink(p), 0);
	tu_put_in(x->env, "files/attachments/ticket/1/new.txt", "new\n", 0644);
	tu_fmt(p, sizeof(p), "%s/plugins", x->env);
	tu_rm_rf(p);                                     /* a directory with files goes */
	tu_put_in(x->env, "plugins", "now a file\n", 0644);   /* ... and a file takes its name */
	tu_fmt(p, sizeof(p), "%s/README", x->env);
	assert_int_equal(unlink(p), 0);                  /* a file goes ... */
	tu_mkdir_in(x->env, "README", 0755);             /* ... and a directory takes its name */
	tu_put_in(x->env, "README/inside.txt", "inside\n", 0644);
	tu_fmt(p, sizeof(p), "%s/link-a", x->env);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("htdocs/site.css", p), 0);   /* retargeted */
	tu_fmt(p, sizeof(p), "%s/abs-link", x->env);
	assert_int_equal(unlink(p), 0);
	tu_fmt(p, sizeof(p), "%s/htdocs/new-link", x->env);
	assert_int_equal(symlink("a.txt", p), 0);
	tu_mkdir_in(x->env, "newtop", 0700);
	tu_mkdir_in(x->env, "newtop/sub", 0750);
	tu_put_in(x->env, "newtop/sub/x.txt", "x\n", 0600);
	add_fourth_ticket(x);

	sfx_take_ok(x, "s2", &s2);
	assert_false(sfx_stage_exists(x));   /* adopted: it became s2's tree */
	sfx_compare_tree(x, "s2");
	sfx_check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");
	sfx_check_manifest(x, "s2", &s2, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	assert_null(ts_manifest_find(&m, "plugins/secret.egg"));
	assert_null(ts_manifest_find(&m, "abs-link"));
	assert_non_null(ts_manifest_find(&m, "README/inside.txt"));
	ts_manifest_free(&m);
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(b.st_nlink, 2);   /* s1's and s2's: the stage's link became s2's */
	assert_true(s2.files_shared >= 5);
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed, and longer than before\n");
	sfx_snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	/* The first snapshot still matches its own manifest, byte for byte. */
	sfx_check_manifest(x, "s1", &s1, &m);
	ts_manifest_free(&m);
	sfx_store_clean_and_unlocked(x);
}

/* A stage is made from the newest sealed snapshot only, once; a stop makes
 * the builder give up leaving nothing; a stage made from another snapshot
 * than the newest is not used (the snapshot is still right); deleting the
 * snapshot a stage was made from deletes the stage. */
static void test_stage_lifecycle(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2, s3;
	struct stat a, b;
	int stop = 1;
	ts_err e;

	sfx_stage_ok(x, NULL);   /* an empty store: nothing to stage */
	assert_false(sfx_stage_exists(x));
	sfx_take_ok(x, "s1", &s1);
	sfx_stage_ok(x, &stop);
	assert_false(sfx_stage_exists(x));
	assert_int_equal(tu_count_prefix(x->store, ".stage-new"), 0);
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s1"));
	sfx_stage_ok(x, NULL);   /* staged already: kept as it is */
	assert_true(sfx_stage_from(x, "s1"));

	/* Made from s1, but s2 is the newest when s3 is taken. */
	sfx_take_ok(x, "s2", &s2);
	assert_false(sfx_stage_exists(x));
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s2"));
	ts_err_clear(&e);
	assert_int_equal(ts_store_rename(&x->s, "s2", "renamed", &e), TS_OK);
	tu_put_in(x->env, "htdocs/a.txt", "third version\n", 0644);
	sfx_take_ok(x, "s3", &s3);
	assert_true(sfx_stage_from(x, "s2"));   /* not adopted: "renamed" was the newest */
	sfx_compare_tree(x, "s3");
	sfx_snap_file(x, "renamed", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s3", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);   /* shared all the same */

	/* The stage of s3 goes with s3. */
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s3"));
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "s3", &e), TS_OK);
	ts_store_unlock(&x->s);
	assert_false(sfx_stage_exists(x));
	sfx_snap_file(x, "renamed", "files/attachments/ticket/1/big.bin", &a);
	assert_int_equal(a.st_nlink, 2);   /* s1's and renamed's: none left behind */

	/* A store copy no longer as its manifest says is never linked into
	 * the stage: the build logs the one line naming it, stages the rest,
	 * and its directory is listed again by the snapshot, which copies the
	 * file afresh from the environment (and logs nothing more) while it
	 * still shares the others. */
	{
		char p[TBUF], *log;
		ts_snap_stats s4;
		struct stat c;
		tu_tree_path(x->store, "renamed", "htdocs/site.css", p, sizeof(p));
		assert_int_equal(chmod(p, 0600), 0);
		sfx_log_start();
		ts_err_clear(&e);
		int rc = ts_stage_build(&x->s, NULL, NULL, &e);
		log = sfx_log_take();
		assert_int_equal(rc, TS_OK);
		assert_int_equal(sfx_count(log, "stored copy damaged"), 1);
		assert_non_null(strstr(log, "warning: renamed/htdocs/site.css: stored copy damaged (mode), "
		                        "copied afresh from the environment\n"));
		free(log);
		assert_true(sfx_stage_from(x, "renamed"));
		assert_false(x->s.locked);
		tu_fmt(p, sizeof(p), "%s/%s/htdocs/site.css", x->store, TS_STORE_STAGE_TREE);
		assert_false(tu_exists(p));
		tu_fmt(p, sizeof(p), "%s/%s/htdocs/a.txt", x->store, TS_STORE_STAGE_TREE);
		assert_true(tu_exists(p));
		/* Its manifest: the base's but that file, and its directory
		 * with no source inode. */
		{
			ts_manifest bm, gm;
			char q[TBUF];
			tu_fmt(p, sizeof(p), "%s/renamed/manifest", x->store);
			tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
			assert_int_equal(ts_manifest_read(p, &bm, &e), TS_OK);
			assert_int_equal(ts_manifest_read(q, &gm, &e), TS_OK);
			assert_int_equal(gm.n, bm.n - 1);
			assert_null(ts_manifest_find(&gm, "htdocs/site.css"));
			assert_true(ts_manifest_find(&gm, "htdocs")->src_ino == 0);
			assert_true(ts_manifest_find(&bm, "htdocs")->src_ino != 0);
			assert_true(ts_manifest_find(&gm, "conf")->src_ino == ts_manifest_find(&bm, "conf")->src_ino);
			assert_non_null(gm.unsealed_boot);
			ts_manifest_free(&bm);
			ts_manifest_free(&gm);
		}
		sfx_log_start();
		sfx_take_ok(x, "s4", &s4);
		log = sfx_log_take();
		assert_int_equal(sfx_count(log, "stored copy damaged"), 0);
		free(log);
		assert_false(sfx_stage_exists(x));   /* adopted */
		sfx_compare_tree(x, "s4");
		sfx_snap_file(x, "renamed", "htdocs/site.css", &a);
		sfx_snap_file(x, "s4", "htdocs/site.css", &b);
		assert_int_not_equal(a.st_ino, b.st_ino);
		assert_int_equal(b.st_mode & 07777, 0644);
		assert_int_equal(a.st_mode & 07777, 0600);   /* the damaged copy is left as it is */
		sfx_snap_file(x, "renamed", "files/attachments/ticket/1/big.bin", &a);
		sfx_snap_file(x, "s4", "files/attachments/ticket/1/big.bin", &c);
		assert_int_equal(a.st_ino, c.st_ino);
	}
	sfx_store_clean_and_unlocked(x);
}

static void nap_ms(long ms)
{
	struct timespec t = { 0, ms * 1000 * 1000 };
	nanosleep(&t, NULL);
}

/* What changed in the environment is copied into the stage ahead of the
 * snapshot; the snapshot adopts those copies (same inode: not copied
 * again), still catches what changed after the refresh, shares what did not
 * change, and is the environment exactly.  A refresh that did not finish is
 * never adopted; one that finds the store busy does nothing. */
static void test_stage_refresh(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2, s3, s4;
	ts_stage_refresh_out out;
	ts_manifest m;
	struct stat a, b, staged;
	size_t dirs;
	char p[TBUF], q[TBUF];
	const char *att = "new attachment, copied by the refresh\n";

	nap_ms(60);   /* out of the racy window at s1 */
	sfx_take_ok(x, "s1", &s1);
	assert_int_equal(sfx_refresh(x, true, &dirs, &out, NULL), TS_OK);
	assert_true(out.none);   /* nothing staged yet */
	assert_int_equal(dirs, 0);
	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, true, &dirs, &out, NULL), TS_OK);
	assert_false(out.none);
	assert_false(out.busy);
	assert_int_equal(out.bytes_copied, 0);   /* nothing changed */
	assert_true(dirs >= 5);                  /* every directory, to be watched */
	assert_true(sfx_stage_from(x, "s1"));

	tu_put_in(x->env, "htdocs/a.txt", "changed after s1\n", 0644);
	tu_put_in(x->env, "files/attachments/ticket/1/new.txt", att, 0644);
	tu_mkdir_in(x->env, "files/attachments/ticket/9", 0755);
	tu_put_in(x->env, "files/attachments/ticket/9/late.txt", "in a new directory\n", 0644);
	tu_fmt(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	assert_int_equal(unlink(p), 0);
	nap_ms(60);   /* the refresh's copies are not racy */
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	assert_int_equal(out.bytes_copied, strlen("changed after s1\n") + strlen(att) +
	                 strlen("in a new directory\n"));
	assert_true(dirs >= 5);   /* a new directory: all are watched again */
	assert_true(sfx_stage_from(x, "s1"));
	tu_fmt(p, sizeof(p), "%s/%s/files/attachments/ticket/1/new.txt", x->store, TS_STORE_STAGE_TREE);
	assert_int_equal(lstat(p, &staged), 0);
	tu_fmt(p, sizeof(p), "%s/%s/files/attachments/ticket/1/small.txt", x->store, TS_STORE_STAGE_TREE);
	assert_false(tu_exists(p));
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_DB);
	assert_true(tu_exists(p));
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	assert_true(tu_exists(p));

	/* Changed after the refresh: the snapshot still sees it. */
	tu_put_in(x->env, "htdocs/site.css", "changed after the refresh\n", 0644);
	add_fourth_ticket(x);
	sfx_take_ok(x, "s2", &s2);
	assert_false(sfx_stage_exists(x));   /* adopted */
	sfx_compare_tree(x, "s2");
	sfx_check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");
	sfx_snap_text_is(x, "s2", "htdocs/site.css", "changed after the refresh\n");
	sfx_snap_text_is(x, "s2", "files/attachments/ticket/1/new.txt", att);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/new.txt", &b);
	assert_int_equal(b.st_ino, staged.st_ino);   /* the refresh's copy */
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);        /* shared */
	assert_true(s2.bytes_copied >= strlen(att));  /* the refresh's copies count as copied */
	sfx_check_manifest(x, "s2", &s2, &m);
	ts_manifest_free(&m);

	/* A refresh that died half way leaves the stage busy: never adopted,
	 * and replaced by the next build. */
	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_BASE);
	tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_BUSY);
	assert_int_equal(rename(p, q), 0);
	tu_put_in(x->env, "htdocs/a.txt", "third version\n", 0644);
	sfx_take_ok(x, "s3", &s3);
	assert_true(sfx_stage_exists(x));   /* not adopted */
	sfx_compare_tree(x, "s3");
	sfx_stage_ok(x, NULL);
	assert_true(sfx_stage_from(x, "s3"));

	/* Another writer holds the store: nothing done. */
	{
		ts_store other;
		ts_err e;
		ts_err_clear(&e);
		assert_int_equal(ts_store_open(x->store, false, &other, &e), TS_OK);
		assert_int_equal(ts_store_lock(&other, 0, &e), TS_OK);
		tu_put_in(x->env, "htdocs/a.txt", "fourth version\n", 0644);
		assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
		assert_true(out.busy);
		ts_store_close(&other);
	}
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	assert_false(tu_exists(p));   /* not refreshed */

	/* Stopped: the stage is left unadoptable, the snapshot still right. */
	{
		volatile sig_atomic_t cancel = 1;
		ts_err_code rc = sfx_refresh(x, false, &dirs, &out, &cancel);
		assert_int_equal(rc, TS_ERR_CANCELLED);
	}
	assert_false(sfx_stage_from(x, "s3"));
	sfx_take_ok(x, "s4", &s4);
	sfx_compare_tree(x, "s4");
	sfx_snap_text_is(x, "s4", "htdocs/a.txt", "fourth version\n");

	/* A snapshot without the database leaves the stage's database copy
	 * nowhere (sfx_store_clean_and_unlocked: nothing else in a snapshot). */
	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_DB);
	assert_true(tu_exists(p));
	{
		ts_snap_stats s5;
		ts_err e;
		assert_int_equal(sfx_take(x, "s5", true, 5, &s5, &e), TS_OK);
	}
	assert_false(sfx_stage_exists(x));
	assert_false(sfx_snap_has(x, "s5", "db/trac.db"));
	sfx_store_clean_and_unlocked(x);
}

static int count_char(const char *s, char c)
{
	int n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

/* The lines a refresh added to STORE/.linklog (after the first skip
 * bytes), NUL-terminated; *len: the file's length now. */
static char *linklog_since(fx *x, size_t skip, size_t *len)
{
	char p[TBUF];
	char *text;

	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_LINKLOG_FILE);
	text = tu_slurp(p, len);
	assert_true(*len >= skip);
	memmove(text, text + skip, *len - skip);
	text[*len - skip] = '\0';
	return text;
}

/* What the linklog gained after its first skip bytes is one line, "I start
 * end INO": a batch naming inode ino alone.  *len: the file's length. */
static void assert_named_alone(fx *x, size_t skip, uint64_t ino, size_t *len)
{
	char want[64];
	char *added = linklog_since(x, skip, len);

	snprintf(want, sizeof want, " %llu\n", (unsigned long long)ino);
	assert_true(added[0] == 'I');
	assert_true(strlen(added) > strlen(want) &&
	            !strcmp(added + strlen(added) - strlen(want), want));
	assert_int_equal(strchr(added, '\n') - added + 1, (long)strlen(added));   /* one line */
	assert_int_equal(count_char(added, ' '), 3);
	free(added);
}

/* A refresh's batch names the inodes it unlinks (store/linklog.h): it
 * explains the moved ctime of the base's copy of a changed file only, and a
 * refresh that unlinks nothing logs nothing.  A plain line would explain a
 * change made meanwhile to any copy the stage shares. */
static void test_stage_refresh_linklog(void **state)
{
	fx *x = *state;
	ts_snap_stats s1;
	ts_stage_refresh_out out;
	struct stat a, other;
	size_t dirs, len0, len;
	char *added;
	ts_linklog l;
	int fd;

	nap_ms(60);
	sfx_take_ok(x, "s1", &s1);
	sfx_stage_ok(x, NULL);
	/* The first refresh after a build unlinks the database copy the
	 * build linked (the database is the snapshot's own copy), and names
	 * that inode only. */
	sfx_snap_file(x, "s1", "db/trac.db", &a);
	free(linklog_since(x, 0, &len0));
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	assert_false(out.none);
	assert_named_alone(x, len0, (uint64_t)a.st_ino, &len);
	len0 = len;
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	added = linklog_since(x, len0, &len);
	assert_string_equal(added, "");   /* nothing unlinked, nothing logged */
	free(added);

	sfx_snap_file(x, "s1", "htdocs/a.txt", &a);
	sfx_snap_file(x, "s1", "htdocs/site.css", &other);
	assert_true(a.st_nlink >= 2);       /* the stage shares it */
	assert_true(other.st_nlink >= 2);
	tu_put_in(x->env, "htdocs/a.txt", "changed after s1\n", 0644);
	nap_ms(60);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	assert_named_alone(x, len0, (uint64_t)a.st_ino, &len);

	/* What it explains: a's base copy, whose ctime the unlink moved, and
	 * not the other copy's. */
	sfx_snap_file(x, "s1", "htdocs/a.txt", &a);
	fd = open(x->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	ts_linklog_read(fd, &l);
	assert_true(ts_linklog_explains(&l, (uint64_t)a.st_ino, &a.st_ctim));
	assert_false(ts_linklog_explains(&l, (uint64_t)other.st_ino, &a.st_ctim));
	ts_linklog_free(&l);
	close(fd);
	sfx_store_clean_and_unlocked(x);
}

/* A directory's xattrs in the store, as "name=value;..." (sorted by the
 * filesystem's order, the same for the same set). */
static void dir_xattrs(const char *path, char *out, size_t len)
{
	char names[512], val[128];
	ssize_t n = llistxattr(path, names, sizeof(names));
	size_t used = 0;

	out[0] = '\0';
	assert_true(n >= 0);
	for (ssize_t k = 0; k < n; k += (ssize_t)strlen(names + k) + 1) {
		ssize_t v = lgetxattr(path, names + k, val, sizeof(val) - 1);
		assert_true(v >= 0);
		val[v] = '\0';
		used += (size_t)snprintf(out + used, len - used, "%s=%s;", names + k, val);
		assert_true(used < len);
	}
}

/* A refresh gives the directories that changed their metadata, and the
 * snapshot that adopts the stage takes the stage's manifest for the base's:
 * it does not read the base's at all, yet every directory ends as the
 * environment has it, also one whose only change was an xattr (which
 * moves its ctime, nothing else). */
static void test_stage_refresh_dirs(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2;
	ts_stage_refresh_out out;
	struct stat a, b;
	size_t dirs;
	char p[TBUF], q[TBUF], xe[256], xs[256];
	FILE *f;

	nap_ms(60);
	sfx_take_ok(x, "s1", &s1);
	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);

	tu_fmt(p, sizeof(p), "%s/log", x->env);
	assert_int_equal(chmod(p, 0710), 0);
	tu_fmt(p, sizeof(p), "%s/plugins", x->env);
	assert_int_equal(setxattr(p, "user.note", "before the refresh", 18, 0), 0);
	tu_put_in(x->env, "htdocs/new.txt", "new\n", 0644);
	nap_ms(60);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	assert_false(out.none);

	/* Already in the staged tree. */
	tu_fmt(p, sizeof(p), "%s/%s/log", x->store, TS_STORE_STAGE_TREE);
	assert_int_equal(lstat(p, &b), 0);
	assert_int_equal(b.st_mode & 07777, 0710);
	tu_fmt(p, sizeof(p), "%s/plugins", x->env);
	dir_xattrs(p, xe, sizeof(xe));
	assert_non_null(strstr(xe, "user.note=before the refresh;"));
	tu_fmt(q, sizeof(q), "%s/%s/plugins", x->store, TS_STORE_STAGE_TREE);
	dir_xattrs(q, xs, sizeof(xs));
	assert_string_equal(xs, xe);
	tu_fmt(p, sizeof(p), "%s/htdocs", x->env);
	assert_int_equal(lstat(p, &a), 0);
	tu_fmt(q, sizeof(q), "%s/%s/htdocs", x->store, TS_STORE_STAGE_TREE);
	assert_int_equal(lstat(q, &b), 0);
	assert_int_equal(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
	assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);

	/* After the refresh, an xattr only: the snapshot still sees it. */
	tu_fmt(p, sizeof(p), "%s/templates", x->env);
	assert_int_equal(setxattr(p, "user.note", "after the refresh", 17, 0), 0);
	/* s1's manifest made unreadable: the snapshot must not need it (the
	 * seal of s2 does not either: it compares with the stage's copies). */
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	assert_int_equal(lstat(p, &a), 0);
	assert_non_null(f = fopen(p, "r+"));
	assert_int_equal(fputs("not a manifest\n", f) >= 0, 1);
	fclose(f);
	sfx_take_ok(x, "s2", &s2);
	assert_false(sfx_stage_exists(x));   /* adopted */
	sfx_compare_tree(x, "s2");
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);   /* shared through the stage */
	for (int k = 0; k < 2; k++) {
		const char *rel = k ? "templates" : "plugins";
		tu_fmt(p, sizeof(p), "%s/%s", x->env, rel);
		dir_xattrs(p, xe, sizeof(xe));
		tu_tree_path(x->store, "s2", rel, q, sizeof(q));
		dir_xattrs(q, xs, sizeof(xs));
		assert_string_equal(xs, xe);
	}
}

/* The database's raw copy is brought up to the file in chunks on several
 * threads (dbsnap_sqlite.c): a database of many chunks, changed at its
 * start, middle and end after the stage's copy was made, and then shrunk,
 * ends in the snapshot byte for byte as the file is. */
static void db_blobs(fx *x, const char *sql)
{
	char p[TBUF];
	sqlite3 *w;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(w, sql);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

static void db_same_bytes(fx *x, const char *name)
{
	char p[TBUF], q[TBUF];
	size_t la, lb;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	tu_tree_path(x->store, name, "db/trac.db", q, sizeof(q));
	unsigned char *a = tu_slurp(p, &la), *b = tu_slurp(q, &lb);
	assert_true(la > 3 * 4 * 1024 * 1024 / 2);   /* several of dbsnap_sqlite.c's chunks */
	assert_int_equal(la, lb);
	if (memcmp(a, b, la))
		fail_msg("%s: the database copy differs from the file", name);
	free(a);
	free(b);
}

static void test_stage_db_chunks(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_stage_refresh_out out;
	size_t dirs;

	db_blobs(x, "CREATE TABLE blob(id INTEGER PRIMARY KEY, b BLOB);"
	            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
	            "INSERT INTO blob SELECT i, randomblob(4000) FROM n");
	nap_ms(60);
	sfx_take_ok(x, "s1", &st);
	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	db_blobs(x, "UPDATE blob SET b = randomblob(4000) WHERE id IN (1, 2000, 3999, 4000)");
	sfx_take_ok(x, "s2", &st);
	db_same_bytes(x, "s2");

	sfx_stage_ok(x, NULL);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	db_blobs(x, "DELETE FROM blob WHERE id > 2500; VACUUM");
	sfx_take_ok(x, "s3", &st);
	db_same_bytes(x, "s3");
	sfx_check_db(x, "s3", "db/trac.db", 3, "first,second,third");
}

/* ts_stage_dir_fn: counts the directories. */
static void count_dir(void *arg, const char *rel)
{
	(void)rel;
	(*(size_t *)arg)++;
}

/* ts_stage_build_opts' env_still: the answer in *arg, the manifest's inode
 * noted there. */
typedef struct still_ctx {
	bool answer;
	ino_t ino;
	size_t dirs;
} still_ctx;

static bool env_still(void *arg, const struct stat *manifest)
{
	still_ctx *c = arg;
	c->ino = manifest->st_ino;
	return c->answer;
}

static void count_dir_still(void *arg, const char *rel)
{
	count_dir(&((still_ctx *)arg)->dirs, rel);
}

/* A build gives every directory to dir_fn; built from the snapshot known to
 * be the environment, and still so, the stage is whole (stage.h): a
 * manifest of its own, the database out of it and out of the tree, so
 * that the next take never writes into the snapshot's copy.  A directory
 * its owner cannot add to keeps the stage from being whole. */
static void test_stage_build_whole(void **state)
{
	fx *x = *state;
	ts_snap_stats s1;
	ts_stage_build_out out;
	struct stat snapm, stagem, tree;
	size_t len1, len2;
	char p[TBUF], q[TBUF];
	ts_err e;

	tu_fmt(p, sizeof(p), "%s/ro", x->env);   /* snapfx's directory nobody adds to */
	assert_int_equal(chmod(p, 0755), 0);
	nap_ms(60);
	sfx_take_ok(x, "s1", &s1);
	ts_err_clear(&e);
	still_ctx still = { .answer = false };
	ts_stage_build_opts o = { .dir_fn = count_dir_still, .arg = &still, .env = &x->e, .env_name = "s1",
	                          .env_dev = s1.tree_dev, .env_ino = s1.tree_ino, .env_still = env_still };
	/* Changed since: no manifest of its own. */
	assert_int_equal(ts_stage_build(&x->s, &o, &out, &e), TS_OK);
	assert_true(out.built);
	assert_false(out.whole);
	assert_true(still.ino != 0);
	tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	assert_false(tu_exists(q));
	ts_store_stage_drop(&x->s);
	still = (still_ctx){ .answer = true };
	assert_int_equal(ts_stage_build(&x->s, &o, &out, &e), TS_OK);
	assert_true(out.built);
	assert_string_equal(out.base, "s1");
	assert_true(out.whole);
	assert_true(still.dirs >= 5);
	/* Its own manifest, as a refresh writes it: the snapshot's entries but
	 * the database's, which left the staged tree too; the snapshot's copy
	 * of the database is untouched. */
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	assert_int_equal(lstat(p, &snapm), 0);
	assert_int_equal(lstat(q, &stagem), 0);
	assert_true(snapm.st_ino != stagem.st_ino);
	assert_int_equal(still.ino, stagem.st_ino);
	ts_manifest sm, gm;
	assert_int_equal(ts_manifest_read(p, &sm, &e), TS_OK);
	assert_int_equal(ts_manifest_read(q, &gm, &e), TS_OK);
	assert_non_null(ts_manifest_find(&sm, "db/trac.db"));
	assert_null(ts_manifest_find(&gm, "db/trac.db"));
	assert_int_equal(gm.n, sm.n - 1);
	assert_non_null(gm.unsealed_boot);
	ts_manifest_free(&sm);
	ts_manifest_free(&gm);
	tu_fmt(q, sizeof(q), "%s/%s/db/trac.db", x->store, TS_STORE_STAGE_TREE);
	assert_false(tu_exists(q));
	tu_fmt(q, sizeof(q), "%s/s1/tree", x->store);
	assert_int_equal(lstat(q, &tree), 0);
	assert_int_equal(s1.tree_ino, tree.st_ino);
	tu_fmt(p, sizeof(p), "%s/s1/tree/db/trac.db", x->store);
	char *before = tu_slurp(p, &len1);
	add_fourth_ticket(x);
	ts_snap_stats s2;
	sfx_take_ok(x, "s2", &s2);
	sfx_check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");
	char *after = tu_slurp(p, &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(before, after, len1);
	free(before);
	free(after);
	tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);

	/* Not the snapshot known to be the environment: the stage has no
	 * manifest until a refresh writes one.  Already staged: nothing built. */
	assert_int_equal(ts_stage_build(&x->s, &o, &out, &e), TS_OK);
	assert_true(out.built);
	assert_string_equal(out.base, "s2");
	assert_false(out.whole);
	assert_false(tu_exists(q));
	assert_int_equal(ts_stage_build(&x->s, NULL, &out, &e), TS_OK);
	assert_false(out.built);

	/* A directory its owner cannot add to keeps the stage's own mode. */
	tu_fmt(p, sizeof(p), "%s/ro", x->env);
	assert_int_equal(chmod(p, 0555), 0);
	sfx_take_ok(x, "s3", &s2);
	o = (ts_stage_build_opts){ .env = &x->e, .env_name = "s3", .env_dev = s2.tree_dev,
	                           .env_ino = s2.tree_ino };
	assert_int_equal(ts_stage_build(&x->s, &o, &out, &e), TS_OK);
	assert_true(out.built);
	assert_false(out.whole);
	assert_false(tu_exists(q));
}

/* A base manifest damaged past its first entries: the build, which reads
 * it entry by entry, has linked some when it finds the fault; it fails
 * with the one line naming the file and leaves no stage, no link. */
static void test_stage_build_damaged_manifest(void **state)
{
	fx *x = *state;
	ts_snap_stats s1;
	ts_stage_build_out out;
	struct stat a;
	char p[TBUF], *text;
	size_t len;
	ts_err e;

	sfx_take_ok(x, "s1", &s1);
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	text = tu_slurp(p, &len);
	/* The last entry's path made the root's, ".": out of order at its
	 * line, after every other entry. */
	char *end = strstr(text, "\nend\n"), *tab = end;
	while (tab[-1] != '\t')
		tab--;
	size_t keep = (size_t)(tab - text);
	char *bad = malloc(keep + 8);
	assert_non_null(bad);
	memcpy(bad, text, keep);
	memcpy(bad + keep, ".\nend\n", 6);
	tu_put_bytes(p, bad, keep + 6, 0600);
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	assert_int_equal(a.st_nlink, 1);
	ts_err_clear(&e);
	assert_int_equal(ts_stage_build(&x->s, NULL, &out, &e), TS_ERR_CORRUPT);
	assert_false(out.built);
	assert_non_null(strstr(e.msg, "s1/manifest:"));
	assert_non_null(strstr(e.msg, "not sorted"));
	assert_null(strchr(e.msg, '\n'));
	assert_false(sfx_stage_exists(x));
	assert_int_equal(tu_count_prefix(x->store, ".stage-new"), 0);
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	assert_int_equal(a.st_nlink, 1);   /* what was linked went with the build */
	free(bad);
	free(text);
	assert_false(x->s.locked);
}

/* The stage's own manifest damaged near its end (the take reads it one
 * entry at a time, and has made items of the entries before the fault
 * when it finds it): the stage is not adopted, the snapshot is made from
 * the previous one as without a stage, and is the environment exactly;
 * nothing is left behind. */
static void test_stage_damaged_manifest_not_adopted(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2;
	ts_stage_refresh_out out;
	size_t dirs, len;
	char p[TBUF], *text;
	struct stat a, b;

	nap_ms(60);
	sfx_take_ok(x, "s1", &s1);
	sfx_stage_ok(x, NULL);
	tu_put_in(x->env, "htdocs/a.txt", "changed after s1\n", 0644);
	nap_ms(60);
	assert_int_equal(sfx_refresh(x, false, &dirs, &out, NULL), TS_OK);
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	text = tu_slurp(p, &len);
	char *end = strstr(text, "\nend\n");
	assert_non_null(end);
	tu_put_bytes(p, text, (size_t)(end - text) + 1, 0600);   /* no "end" line */
	free(text);
	sfx_take_ok(x, "s2", &s2);
	assert_true(sfx_stage_from(x, "s1"));   /* not adopted: still there */
	sfx_compare_tree(x, "s2");
	sfx_snap_text_is(x, "s2", "htdocs/a.txt", "changed after s1\n");
	sfx_snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	sfx_snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);   /* shared with s1 all the same */
	sfx_store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snap_staged, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_lifecycle, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_refresh, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_refresh_linklog, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_refresh_dirs, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_db_chunks, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_build_damaged_manifest, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_damaged_manifest_not_adopted, sfx_setup, sfx_teardown),
		cmocka_unit_test_setup_teardown(test_stage_build_whole, sfx_setup, sfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
