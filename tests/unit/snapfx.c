/* snapfx.c - the snapshot tests' fixture and checks; see snapfx.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "db/dbsnap.h"
#include "env/env.h"
#include "store/manifest.h"
#include "store/seal.h"
#include "store/store.h"
#include "take/snap.h"
#include "take/stage.h"
#include "tutil.h"

#include "snapfx.h"

void sfx_env_open(fx *x)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_env_open(x->env, &x->e, &e) != TS_OK)
		fail_msg("ts_env_open: %s", e.msg);
	x->env_open = true;
}

int sfx_setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));
	char path[TBUF];
	unsigned char *big;
	ts_err e;

	assert_non_null(x);
	tu_tmpdir("snap", x->top);
	tu_fmt(x->env, sizeof(x->env), "%s/env", x->top);
	tu_fmt(x->store, sizeof(x->store), "%s/store", x->top);
	assert_int_equal(mkdir(x->env, 0755), 0);

	tu_put_in(x->env, "VERSION", "Trac Environment Version 1\n", 0644);
	tu_put_in(x->env, "README", "This directory contains a Trac environment.\n", 0644);
	tu_mkdir_in(x->env, "conf", 0755);
	tu_put_in(x->env, "conf/trac.ini", "[trac]\ndatabase = sqlite:db/trac.db\n", 0600);
	tu_mkdir_in(x->env, "db", 0755);
	tu_fmt(path, sizeof(path), "%s/db/trac.db", x->env);
	tu_make_db(path, true);
	/* SQLite's side files that are never part of a snapshot (fake, empty;
	 * never a fake -journal or -wal: SQLite would take them for real). */
	tu_put_in(x->env, "db/trac.db-stmtjrnl", "", 0644);
	tu_put_in(x->env, "db/trac.db-mj01", "", 0644);
	/* An administrator's copy: an ordinary file. */
	tu_put_in(x->env, "db/trac.db.bak", "backup", 0644);
	tu_mkdir_in(x->env, "files", 0755);
	tu_mkdir_in(x->env, "files/attachments", 0755);
	tu_mkdir_in(x->env, "files/attachments/ticket", 0755);
	tu_mkdir_in(x->env, "files/attachments/ticket/1", 0755);
	big = tu_pattern(BIG_LEN, 42);
	tu_fmt(path, sizeof(path), "%s/files/attachments/ticket/1/big.bin", x->env);
	tu_put_bytes(path, big, BIG_LEN, 0644);
	free(big);
	tu_put_in(x->env, "files/attachments/ticket/1/small.txt", "small\n", 0644);
	tu_mkdir_in(x->env, "htdocs", 0755);
	tu_put_in(x->env, "htdocs/a.txt", "hello\n", 0644);
	tu_put_in(x->env, "htdocs/site.css", "body { color: red }\n", 0644);
	tu_fmt(path, sizeof(path), "%s/htdocs/site.css", x->env);
	assert_int_equal(setxattr(path, "user.mime_type", "text/css", 8, 0), 0);
	tu_mkdir_in(x->env, "log", 0750);
	tu_mkdir_in(x->env, "plugins", 0755);
	tu_put_in(x->env, "plugins/secret.egg", "egg", 0600);
	tu_fmt(path, sizeof(path), "%s/plugins/secret.egg", x->env);
	assert_int_equal(chown(path, 1234, 5678), 0);
	tu_put_in(x->env, "plugins/suid.sh", "#!/bin/sh\n", 04755);
	tu_mkdir_in(x->env, "templates", 0755);
	tu_mkdir_in(x->env, "ro", 0755);
	tu_put_in(x->env, "ro/f", "read only\n", 0444);
	tu_fmt(path, sizeof(path), "%s/ro", x->env);
	assert_int_equal(chmod(path, 0555), 0);
	tu_fmt(path, sizeof(path), "%s/link-a", x->env);
	assert_int_equal(symlink("htdocs/a.txt", path), 0);
	tu_fmt(path, sizeof(path), "%s/abs-link", x->env);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	tu_fmt(path, sizeof(path), "%s/htdocs/dangling", x->env);
	assert_int_equal(symlink("../nowhere", path), 0);

	sfx_env_open(x);
	ts_err_clear(&e);
	if (ts_store_open(x->store, true, &x->s, &e) != TS_OK)
		fail_msg("ts_store_open: %s", e.msg);
	*state = x;
	return 0;
}

int sfx_teardown(void **state)
{
	fx *x = *state;

	ts_store_close(&x->s);
	if (x->env_open)
		ts_env_close(&x->e);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

ts_err_code sfx_take(fx *x, const char *name, bool no_database, int timeout_s,
                     ts_snap_stats *stats, ts_err *e)
{
	ts_snap_opts o;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.lock_timeout_s = timeout_s;
	o.no_database = no_database;
	ts_err_clear(e);
	ts_err_code rc = ts_snap_take(&x->s, &x->e, &o, stats, e);
	/* As `tracsnap snapshot` does: the tests below check sealed manifests
	 * (test_seal.c covers the unsealed state). */
	if (rc == TS_OK)
		rc = ts_seal(&x->s, name, NULL, NULL, e);
	return rc;
}

void sfx_take_ok(fx *x, const char *name, ts_snap_stats *stats)
{
	ts_err e;

	if (sfx_take(x, name, false, 5, stats, &e) != TS_OK)
		fail_msg("snapshot %s: %s: %s", name, ts_err_name(e.code), e.msg);
}

/* Nothing half-done in the store, and its lock is free. */
void sfx_store_clean_and_unlocked(fx *x)
{
	ts_store s2;
	ts_err e;

	assert_int_equal(tu_count_prefix(x->store, ".tmp-"), 0);
	assert_int_equal(tu_count_prefix(x->store, ".del-"), 0);
	assert_int_equal(tu_count_prefix(x->store, ".stage-"), 0);
	assert_false(x->s.locked);
	/* Each snapshot holds its tree, manifest and (until sealed) marker,
	 * nothing else: the database's pre-copy went into the tree. */
	{
		DIR *d = opendir(x->store);
		struct dirent *de;
		assert_non_null(d);
		while ((de = readdir(d))) {
			char sp[TBUF];
			DIR *sd;
			struct dirent *se;
			if (de->d_name[0] == '.')
				continue;
			tu_fmt(sp, sizeof(sp), "%s/%s", x->store, de->d_name);
			if (!(sd = opendir(sp)))
				continue;   /* the store's own files */
			while ((se = readdir(sd)))
				if (strcmp(se->d_name, ".") && strcmp(se->d_name, "..") &&
				    strcmp(se->d_name, "tree") && strcmp(se->d_name, "manifest") &&
				    strcmp(se->d_name, "unsealed"))
					fail_msg("%s/%s: left in the snapshot", sp, se->d_name);
			closedir(sd);
		}
		closedir(d);
	}
	ts_err_clear(&e);
	if (ts_store_open(x->store, false, &s2, &e) != TS_OK)
		fail_msg("%s", e.msg);
	if (ts_store_lock(&s2, 0, &e) != TS_OK)
		fail_msg("store still locked: %s", e.msg);
	ts_store_close(&s2);
}

size_t sfx_n_snapshots(fx *x)
{
	ts_store_snap *v;
	size_t n;
	ts_err e;

	assert_int_equal(ts_store_list(&x->s, &v, &n, &e), TS_OK);
	ts_store_list_free(v, n);
	return n;
}

/* ---- walking a tree ---------------------------------------------------------- */

typedef struct relv {
	char **v;
	size_t n, cap;
} relv;

static void relv_add(relv *r, const char *rel)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		assert_non_null(r->v);
	}
	r->v[r->n] = strdup(rel);
	assert_non_null(r->v[r->n]);
	r->n++;
}

static void relv_free(relv *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static void walk_dir(const char *root, const char *rel, relv *out)
{
	char path[TBUF], child[TBUF];
	DIR *d;
	struct dirent *de;
	struct stat st;

	tu_fmt(path, sizeof(path), "%s/%s", root, rel);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!strcmp(rel, "."))
			tu_fmt(child, sizeof(child), "%s", de->d_name);
		else
			tu_fmt(child, sizeof(child), "%s/%s", rel, de->d_name);
		relv_add(out, child);
		tu_fmt(path, sizeof(path), "%s/%s", root, child);
		assert_int_equal(lstat(path, &st), 0);
		if (S_ISDIR(st.st_mode))
			walk_dir(root, child, out);
	}
	closedir(d);
}

/* Every entry below root, "." first. */
static void walk(const char *root, relv *out)
{
	memset(out, 0, sizeof(*out));
	relv_add(out, ".");
	walk_dir(root, ".", out);
}

/* What a snapshot never holds as a copied file: the database inside the
 * environment (db, copied its own way) and SQLite's side files.  With an
 * external database (db NULL) these names are ordinary files. */
static bool db_side(const char *rel, const char *db)
{
	static const char *const sfx[] = { "", "-journal", "-wal", "-shm", "-stmtjrnl" };
	size_t n;

	if (!db)
		return false;
	n = strlen(db);
	if (strncmp(rel, db, n))
		return false;
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
		if (!strcmp(rel + n, sfx[i]))
			return true;
	return !strncmp(rel + n, "-mj", 3);
}

/* The tree equals the environment (as it is now): same entries, types,
 * content, link targets, mode, owner, mtime; special files and the database's
 * side files left out; the database itself checked elsewhere. */
void sfx_compare_tree(fx *x, const char *name)
{
	relv ev, tv;
	char ep[TBUF], tp[TBUF], root[TBUF];
	struct stat a, b;

	walk(x->env, &ev);
	for (size_t i = 0; i < ev.n; i++) {
		const char *rel = ev.v[i];

		tu_fmt(ep, sizeof(ep), "%s/%s", x->env, rel);
		tu_tree_path(x->store, name, rel, tp, sizeof(tp));
		assert_int_equal(lstat(ep, &a), 0);
		if (db_side(rel, x->e.db_rel) || !(S_ISREG(a.st_mode) || S_ISDIR(a.st_mode) || S_ISLNK(a.st_mode))) {
			if ((!x->e.db_rel || strcmp(rel, x->e.db_rel)) && tu_exists(tp))
				fail_msg("%s: in the snapshot, should not be", rel);
			continue;
		}
		if (lstat(tp, &b) < 0)
			fail_msg("%s: missing from snapshot %s", rel, name);
		if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT))
			fail_msg("%s: type %o in the snapshot, %o in the environment", rel,
			         (unsigned)(b.st_mode & S_IFMT), (unsigned)(a.st_mode & S_IFMT));
		if (!S_ISLNK(a.st_mode) && (a.st_mode & 07777) != (b.st_mode & 07777))
			fail_msg("%s: mode %04o in the snapshot, %04o in the environment", rel,
			         (unsigned)(b.st_mode & 07777), (unsigned)(a.st_mode & 07777));
		if (a.st_uid != b.st_uid || a.st_gid != b.st_gid)
			fail_msg("%s: owner %u:%u in the snapshot, %u:%u in the environment", rel,
			         (unsigned)b.st_uid, (unsigned)b.st_gid, (unsigned)a.st_uid,
			         (unsigned)a.st_gid);
		if (a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec)
			fail_msg("%s: mtime %lld.%09ld in the snapshot, %lld.%09ld in the environment",
			         rel, (long long)b.st_mtim.tv_sec, b.st_mtim.tv_nsec,
			         (long long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec);
		if (S_ISREG(a.st_mode)) {
			size_t la, lb;
			unsigned char *ca = tu_slurp(ep, &la), *cb = tu_slurp(tp, &lb);

			if (la != lb || memcmp(ca, cb, la))
				fail_msg("%s: content differs", rel);
			free(ca);
			free(cb);
		} else if (S_ISLNK(a.st_mode)) {
			char ta[PATH_MAX], tb[PATH_MAX];
			ssize_t na = readlink(ep, ta, sizeof(ta)), nb = readlink(tp, tb, sizeof(tb));

			assert_true(na >= 0);
			assert_int_equal(na, nb);
			assert_memory_equal(ta, tb, (size_t)na);
		}
	}
	/* Nothing else in the tree (but the database and its external dir). */
	tu_tree_path(x->store, name, ".", root, sizeof(root));
	walk(root, &tv);
	for (size_t i = 0; i < tv.n; i++) {
		const char *rel = tv.v[i];

		tu_fmt(ep, sizeof(ep), "%s/%s", x->env, rel);
		if (x->e.db_rel && !strcmp(rel, x->e.db_rel))
			continue;
		if (!x->e.db_rel && !strncmp(rel, TS_DBSNAP_EXTERNAL_DIR, strlen(TS_DBSNAP_EXTERNAL_DIR)))
			continue;
		if (!tu_exists(ep))
			fail_msg("%s: in snapshot %s, not in the environment", rel, name);
	}
	relv_free(&tv);
	relv_free(&ev);
}

/* Read the manifest; one entry per tree entry, each matching what the tree
 * holds (type, mode, owner, size, mtime, SHA-256). */
void sfx_check_manifest(fx *x, const char *name, const ts_snap_stats *stats, ts_manifest *m)
{
	char path[TBUF], root[TBUF], tp[TBUF], hex_a[65], hex_b[65];
	relv tv;
	ts_err e;
	uint64_t nfiles = 0;
	size_t i;

	tu_fmt(path, sizeof(path), "%s/%s/manifest", x->store, name);
	ts_err_clear(&e);
	if (ts_manifest_read(path, m, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_string_equal(m->env, x->e.root);
	if (stats) {
		assert_int_equal(m->time.tv_sec, stats->instant.tv_sec);
		assert_int_equal(m->time.tv_nsec, stats->instant.tv_nsec);
	}
	tu_tree_path(x->store, name, ".", root, sizeof(root));
	walk(root, &tv);
	for (i = 0; i < tv.n; i++) {
		const char *rel = tv.v[i];
		const ts_manifest_entry *me = ts_manifest_find(m, rel);
		struct stat st;
		unsigned char want[32];
		char type;

		if (!me)
			fail_msg("%s: in the tree of %s, not in its manifest", rel, name);
		tu_tree_path(x->store, name, rel, tp, sizeof(tp));
		assert_int_equal(lstat(tp, &st), 0);
		type = S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : S_ISLNK(st.st_mode) ? 'l' : '?';
		if (me->type != type)
			fail_msg("%s: manifest type %c, tree %c", rel, me->type, type);
		if (type != 'l' && me->mode != (st.st_mode & 07777))
			fail_msg("%s: manifest mode %04o, tree %04o", rel, (unsigned)me->mode,
			         (unsigned)(st.st_mode & 07777));
		assert_int_equal(me->uid, st.st_uid);
		assert_int_equal(me->gid, st.st_gid);
		if (me->mtime.tv_sec != st.st_mtim.tv_sec || me->mtime.tv_nsec != st.st_mtim.tv_nsec)
			fail_msg("%s: manifest mtime %lld.%09ld, tree %lld.%09ld", rel,
			         (long long)me->mtime.tv_sec, me->mtime.tv_nsec,
			         (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		if (type == 'f') {
			nfiles++;
			assert_true(me->size == (uint64_t)st.st_size);
			tu_sha_file(tp, want);
		} else if (type == 'l') {
			char t[PATH_MAX];
			ssize_t n = readlink(tp, t, sizeof(t));

			assert_true(n >= 0);
			assert_true(me->size == (uint64_t)n);
			SHA256((unsigned char *)t, (size_t)n, want);
		} else {
			continue;
		}
		if (memcmp(me->sha256, want, 32)) {
			ts_sha256_hex(me->sha256, hex_a);
			ts_sha256_hex(want, hex_b);
			fail_msg("%s: manifest sha256 %s, content %s", rel, hex_a, hex_b);
		}
	}
	if (m->n != tv.n)
		fail_msg("manifest of %s: %zu entries, tree: %zu", name, m->n, tv.n);
	if (stats)
		assert_true(stats->files == nfiles);
	relv_free(&tv);
}

static int count_cb(void *arg, int n, char **v, char **names)
{
	(void)n;
	(void)names;
	*(long *)arg = v[0] ? atol(v[0]) : -1;
	return 0;
}

long sfx_query_long(sqlite3 *db, const char *q)
{
	long v = -2;
	char *err = NULL;

	if (sqlite3_exec(db, q, count_cb, &v, &err) != SQLITE_OK) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", err ? err : "?");
		sqlite3_free(err);
		fail_msg("%s: %s", q, msg);
	}
	return v;
}

void sfx_query_text(sqlite3 *db, const char *q, char *out, size_t size)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	tu_fmt(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

/* The copy of the database at rel inside snapshot name: a rollback-journal
 * database, with no side files, holding want_tickets tickets whose summaries
 * concatenate (by id) to summaries. */
void sfx_check_db(fx *x, const char *name, const char *rel, long want_tickets,
                  const char *summaries)
{
	char path[TBUF], side[TBUF + 16], text[1024];
	static const char *const sfx[] = { "-journal", "-wal", "-shm", "-stmtjrnl", "-mj01" };
	unsigned char hdr[100];
	sqlite3 *db;
	int fd;

	tu_tree_path(x->store, name, rel, path, sizeof(path));
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		tu_fmt(side, sizeof(side), "%s%s", path, sfx[i]);
		if (tu_exists(side))
			fail_msg("%s: in the snapshot", side);
	}
	/* File format bytes 18 and 19: 1 = rollback journal, 2 = WAL. */
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	close(fd);
	assert_memory_equal(hdr, "SQLite format 3", 16);
	if (hdr[18] != 1 || hdr[19] != 1)
		fail_msg("%s: header write/read version %d/%d, want 1/1 (not WAL)", path, hdr[18], hdr[19]);

	db = tu_db_open(path, SQLITE_OPEN_READONLY);
	sfx_query_text(db, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "delete");
	sfx_query_text(db, "PRAGMA integrity_check", text, sizeof(text));
	assert_string_equal(text, "ok");
	assert_int_equal(sfx_query_long(db, "SELECT count(*) FROM ticket"), want_tickets);
	assert_int_equal(sfx_query_long(db, "SELECT count(*) FROM attachment"), 2);
	sfx_query_text(db, "SELECT group_concat(summary, ',') FROM (SELECT summary FROM ticket ORDER BY id)",
	               text, sizeof(text));
	assert_string_equal(text, summaries);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		tu_fmt(side, sizeof(side), "%s%s", path, sfx[i]);
		assert_false(tu_exists(side));
	}
}

void sfx_snap_file(fx *x, const char *name, const char *rel, struct stat *st)
{
	char p[TBUF];

	tu_tree_path(x->store, name, rel, p, sizeof(p));
	if (lstat(p, st) < 0)
		fail_msg("%s: %s", p, strerror(errno));
}

void sfx_snap_text_is(fx *x, const char *name, const char *rel, const char *want)
{
	char p[TBUF];
	size_t len;
	unsigned char *c;

	tu_tree_path(x->store, name, rel, p, sizeof(p));
	c = tu_slurp(p, &len);
	if (len != strlen(want) || memcmp(c, want, len))
		fail_msg("%s in %s: '%s', want '%s'", rel, name, (char *)c, want);
	free(c);
}

bool sfx_snap_has(fx *x, const char *name, const char *rel)
{
	char p[TBUF];

	tu_tree_path(x->store, name, rel, p, sizeof(p));
	return tu_exists(p);
}

/* ---- the stage ------------------------------------------------------------------ */

/* Build the stage as the daemon does after a seal (stage.h). */
void sfx_stage_ok(fx *x, const int *stop)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_stage_build(&x->s, &(ts_stage_build_opts){ .stop = stop }, NULL, &e) != TS_OK)
		fail_msg("ts_stage_build: %s", e.msg);
	assert_false(x->s.locked);
}

/* Is there a stage made from snapshot name? */
bool sfx_stage_from(fx *x, const char *name)
{
	char p[TBUF], buf[256] = "";
	FILE *f;

	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_BASE);
	if (!(f = fopen(p, "r")))
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return !strcmp(buf, name);
}

bool sfx_stage_exists(fx *x)
{
	char p[TBUF];
	struct stat st;

	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE);
	return lstat(p, &st) == 0;
}

/* The daemon's refresh of the stage (stage.h). */
static void dir_seen(void *arg, const char *rel)
{
	(void)rel;
	(*(size_t *)arg)++;
}

ts_err_code sfx_refresh(fx *x, bool all_dirs, size_t *dirs, ts_stage_refresh_out *out,
                        volatile sig_atomic_t *cancel)
{
	ts_snap_opts o = { .name = TS_STORE_STAGE, .cancel = cancel };
	ts_err e;

	*dirs = 0;
	ts_err_clear(&e);
	ts_err_code rc = ts_stage_refresh(&x->s, &x->e, &o, all_dirs, dir_seen, dirs, out, &e);
	assert_false(x->s.locked);
	return rc;
}

/* The engine logs to stderr (base/log.h): while capturing, fd 2 is a
 * temporary file. */
static int sfx_saved_stderr = -1;
static FILE *sfx_capture;

void sfx_log_start(void)
{
	assert_int_equal(sfx_saved_stderr, -1);
	fflush(stderr);
	sfx_capture = tmpfile();
	assert_non_null(sfx_capture);
	sfx_saved_stderr = dup(STDERR_FILENO);
	assert_true(sfx_saved_stderr >= 0);
	assert_int_equal(dup2(fileno(sfx_capture), STDERR_FILENO), STDERR_FILENO);
}

char *sfx_log_take(void)
{
	long len;
	char *text;

	assert_true(sfx_saved_stderr >= 0);
	fflush(stderr);
	assert_int_equal(dup2(sfx_saved_stderr, STDERR_FILENO), STDERR_FILENO);
	close(sfx_saved_stderr);
	sfx_saved_stderr = -1;
	len = lseek(fileno(sfx_capture), 0, SEEK_END);
	assert_true(len >= 0);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(pread(fileno(sfx_capture), text, (size_t)len, 0), len);
	fclose(sfx_capture);
	sfx_capture = NULL;
	fputs(text, stderr);   /* still shown with the test's output */
	return text;
}

size_t sfx_count(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}
