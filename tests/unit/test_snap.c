/* test_snap.c - taking snapshots of a small Trac environment into a store:
 * the tree, the database copy, the manifest, sharing with the previous
 * snapshot, refusals, Trac's write lock, WAL mode. */
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
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "db/dbsnap.h"
#include "env/env.h"
#include "store/manifest.h"
#include "store/seal.h"
#include "take/snap.h"
#include "take/stage.h"
#include "store/store.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)
#define BIG_LEN (300 * 1024 + 17)

typedef struct fx {
	char top[PATH_MAX];   /* realpath'd */
	char env[TBUF];       /* TOP/env */
	char store[TBUF];     /* TOP/store */
	ts_env e;
	ts_store s;
	bool env_open;
} fx;

static void env_open(fx *x)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_env_open(x->env, &x->e, &e) != TS_OK)
		fail_msg("ts_env_open: %s", e.msg);
	x->env_open = true;
}

static int setup(void **state)
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

	env_open(x);
	ts_err_clear(&e);
	if (ts_store_open(x->store, true, &x->s, &e) != TS_OK)
		fail_msg("ts_store_open: %s", e.msg);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fx *x = *state;

	ts_store_close(&x->s);
	if (x->env_open)
		ts_env_close(&x->e);
	tu_rm_rf(x->top);
	free(x);
	return 0;
}

static ts_err_code take(fx *x, const char *name, bool no_database, int timeout_s,
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

static void take_ok(fx *x, const char *name, ts_snap_stats *stats)
{
	ts_err e;

	if (take(x, name, false, 5, stats, &e) != TS_OK)
		fail_msg("snapshot %s: %s: %s", name, ts_err_name(e.code), e.msg);
}

/* Nothing half-done in the store, and its lock is free. */
static void store_clean_and_unlocked(fx *x)
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

static size_t n_snapshots(fx *x)
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
static void compare_tree(fx *x, const char *name)
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
static void check_manifest(fx *x, const char *name, const ts_snap_stats *stats, ts_manifest *m)
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

static long query_long(sqlite3 *db, const char *q)
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

static void query_text(sqlite3 *db, const char *q, char *out, size_t size)
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
static void check_db(fx *x, const char *name, const char *rel, long want_tickets,
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
	query_text(db, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "delete");
	query_text(db, "PRAGMA integrity_check", text, sizeof(text));
	assert_string_equal(text, "ok");
	assert_int_equal(query_long(db, "SELECT count(*) FROM ticket"), want_tickets);
	assert_int_equal(query_long(db, "SELECT count(*) FROM attachment"), 2);
	query_text(db, "SELECT group_concat(summary, ',') FROM (SELECT summary FROM ticket ORDER BY id)",
	           text, sizeof(text));
	assert_string_equal(text, summaries);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		tu_fmt(side, sizeof(side), "%s%s", path, sfx[i]);
		assert_false(tu_exists(side));
	}
}

static void snap_file(fx *x, const char *name, const char *rel, struct stat *st)
{
	char p[TBUF];

	tu_tree_path(x->store, name, rel, p, sizeof(p));
	if (lstat(p, st) < 0)
		fail_msg("%s: %s", p, strerror(errno));
}

static void snap_text_is(fx *x, const char *name, const char *rel, const char *want)
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

static bool snap_has(fx *x, const char *name, const char *rel)
{
	char p[TBUF];

	tu_tree_path(x->store, name, rel, p, sizeof(p));
	return tu_exists(p);
}

/* ---- the tests ----------------------------------------------------------------- */

static void test_snap_basic(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	struct timespec before, after;
	struct stat sb;
	char p[TBUF], buf[64];
	ssize_t n;

	clock_gettime(CLOCK_REALTIME, &before);
	memset(&st, 0x5a, sizeof(st));
	take_ok(x, "s1", &st);
	clock_gettime(CLOCK_REALTIME, &after);

	/* STORE/s1/{tree,manifest}, its mtime the instant. */
	tu_fmt(p, sizeof(p), "%s/s1/tree", x->store);
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &sb), 0);
	assert_int_equal(sb.st_mtim.tv_sec, st.instant.tv_sec);
	assert_int_equal(sb.st_mtim.tv_nsec, st.instant.tv_nsec);
	assert_true(st.instant.tv_sec > before.tv_sec ||
	            (st.instant.tv_sec == before.tv_sec && st.instant.tv_nsec >= before.tv_nsec));
	assert_true(st.instant.tv_sec < after.tv_sec ||
	            (st.instant.tv_sec == after.tv_sec && st.instant.tv_nsec <= after.tv_nsec));
	assert_true(ts_store_exists(&x->s, "s1"));
	assert_int_equal(n_snapshots(x), 1);

	compare_tree(x, "s1");
	check_db(x, "s1", "db/trac.db", 3, "first,second,third");
	assert_true(snap_has(x, "s1", "db/trac.db.bak"));
	assert_false(snap_has(x, "s1", "db/trac.db-stmtjrnl"));
	assert_false(snap_has(x, "s1", "db/trac.db-mj01"));
	snap_file(x, "s1", "conf/trac.ini", &sb);
	assert_int_equal(sb.st_mode & 07777, 0600);
	snap_file(x, "s1", "plugins/suid.sh", &sb);
	assert_int_equal(sb.st_mode & 07777, 04755);
	snap_file(x, "s1", "plugins/secret.egg", &sb);
	assert_int_equal(sb.st_uid, 1234);
	assert_int_equal(sb.st_gid, 5678);
	tu_tree_path(x->store, "s1", "htdocs/site.css", p, sizeof(p));
	n = getxattr(p, "user.mime_type", buf, sizeof(buf));
	assert_int_equal(n, 8);
	assert_memory_equal(buf, "text/css", 8);

	check_manifest(x, "s1", &st, &m);
	assert_null(m.external_db);
	assert_false(m.no_database);
	assert_non_null(ts_manifest_find(&m, "db/trac.db"));
	assert_non_null(ts_manifest_find(&m, "."));
	assert_null(ts_manifest_find(&m, "db/trac.db-stmtjrnl"));
	assert_int_equal(ts_manifest_find(&m, "link-a")->type, 'l');
	ts_manifest_free(&m);

	/* Figures. */
	assert_true(st.files >= 10);
	assert_true(st.bytes_copied > BIG_LEN);
	assert_true(st.hold_ms >= 0);
	assert_true(st.total_ms > 0);
	assert_true(st.total_ms >= st.hold_ms);
	assert_true(st.bytes_shared == 0);
	assert_true(st.files_shared == 0);

	store_clean_and_unlocked(x);
}

static void test_format_stats(void **state)
{
	ts_snap_stats st;
	char buf[256];

	(void)state;
	memset(&st, 0, sizeof(st));
	st.files = 42;
	st.bytes_copied = (uint64_t)(1.2 * 1024 * 1024);
	st.bytes_shared = (uint64_t)(3.4 * 1024 * 1024);
	st.hold_ms = 12.2;
	st.total_ms = 340.4;
	ts_snap_format_stats("NAME", &st, buf, sizeof(buf));
	if (!strstr(buf, "NAME: 42 files, 1.2 MiB copied, 3.4 MiB shared, lock held 12 ms, total 340 ms"))
		fail_msg("'%s'", buf);
	/* Never past the buffer. */
	memset(buf, 'x', sizeof(buf));
	ts_snap_format_stats("NAME", &st, buf, 10);
	assert_int_equal(strlen(buf), 9);
	assert_int_equal(buf[10], 'x');
}

/* The second snapshot shares what did not change and copies what did. */
static void test_snap_share(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2;
	ts_manifest m;
	struct stat a, b, old_css;
	char p[TBUF];
	int fd;

	take_ok(x, "s1", &s1);

	/* Change a file in place (same inode), one keeping its size and mtime
	 * (only ctime tells), remove one, add one. */
	tu_fmt(p, sizeof(p), "%s/htdocs/a.txt", x->env);
	fd = open(p, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "changed content\n", 16), 16);
	assert_int_equal(close(fd), 0);
	tu_fmt(p, sizeof(p), "%s/htdocs/site.css", x->env);
	assert_int_equal(lstat(p, &old_css), 0);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "BODY { COLOR: RED }\n", 20), 20);
	{
		struct timespec ts[2] = { old_css.st_atim, old_css.st_mtim };

		assert_int_equal(futimens(fd, ts), 0);
	}
	assert_int_equal(close(fd), 0);
	tu_fmt(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	assert_int_equal(unlink(p), 0);
	tu_put_in(x->env, "htdocs/new.txt", "new\n", 0644);

	take_ok(x, "s2", &s2);
	compare_tree(x, "s2");
	check_db(x, "s2", "db/trac.db", 3, "first,second,third");

	/* Unchanged: the same inode in both trees. */
	snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	snap_file(x, "s1", "conf/trac.ini", &a);
	snap_file(x, "s2", "conf/trac.ini", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_true(s2.bytes_shared >= BIG_LEN);
	assert_true(s2.files_shared >= 2);
	assert_true(s2.bytes_copied > 0);

	/* Changed: a new inode with the new content; the old copy untouched. */
	snap_file(x, "s1", "htdocs/a.txt", &a);
	snap_file(x, "s2", "htdocs/a.txt", &b);
	assert_int_not_equal(a.st_ino, b.st_ino);
	snap_text_is(x, "s2", "htdocs/a.txt", "changed content\n");
	snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	snap_file(x, "s1", "htdocs/site.css", &a);
	snap_file(x, "s2", "htdocs/site.css", &b);
	assert_int_not_equal(a.st_ino, b.st_ino);
	snap_text_is(x, "s2", "htdocs/site.css", "BODY { COLOR: RED }\n");
	snap_text_is(x, "s1", "htdocs/site.css", "body { color: red }\n");

	/* Removed and added. */
	assert_true(snap_has(x, "s1", "files/attachments/ticket/1/small.txt"));
	assert_false(snap_has(x, "s2", "files/attachments/ticket/1/small.txt"));
	assert_false(snap_has(x, "s1", "htdocs/new.txt"));
	snap_text_is(x, "s2", "htdocs/new.txt", "new\n");

	check_manifest(x, "s2", &s2, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	assert_non_null(ts_manifest_find(&m, "htdocs/new.txt"));
	ts_manifest_free(&m);
	/* The first snapshot still matches its own manifest. */
	check_manifest(x, "s1", &s1, &m);
	ts_manifest_free(&m);

	/* Oldest first. */
	{
		ts_store_snap *v;
		size_t n;
		ts_err e;

		assert_int_equal(ts_store_list(&x->s, &v, &n, &e), TS_OK);
		assert_int_equal(n, 2);
		assert_string_equal(v[0].name, "s1");
		assert_string_equal(v[1].name, "s2");
		ts_store_list_free(v, n);
	}
	store_clean_and_unlocked(x);
}

/* An incremental snapshot makes its directories and shares its files while
 * it walks (parents are made before their entries are listed): new deep
 * trees, in old directories and new ones, with their own modes, come out
 * whole, and a snapshot with nothing changed shares every file. */
static void test_snap_share_new_trees(void **state)
{
	fx *x = *state;
	ts_snap_stats s1, s2, s3;
	ts_manifest m;
	struct stat a, b;
	char rel[256];

	take_ok(x, "s1", &s1);
	tu_mkdir_in(x->env, "files/attachments/wiki", 0755);
	tu_fmt(rel, sizeof(rel), "files/attachments/wiki");
	for (int depth = 0; depth < 6; depth++) {
		char f[300];
		size_t len = strlen(rel);
		snprintf(rel + len, sizeof(rel) - len, "/d%d", depth);
		tu_mkdir_in(x->env, rel, depth % 2 ? 0750 : 0711);
		tu_fmt(f, sizeof(f), "%s/f%d.txt", rel, depth);
		tu_put_in(x->env, f, "deep\n", 0640);
	}
	tu_mkdir_in(x->env, "newtop", 0700);
	tu_mkdir_in(x->env, "newtop/empty", 0755);
	tu_mkdir_in(x->env, "newtop/sub", 0755);
	tu_put_in(x->env, "newtop/sub/x.txt", "x\n", 0600);

	take_ok(x, "s2", &s2);
	compare_tree(x, "s2");
	check_manifest(x, "s2", &s2, &m);
	assert_non_null(ts_manifest_find(&m, "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt"));
	assert_non_null(ts_manifest_find(&m, "newtop/empty"));
	ts_manifest_free(&m);
	snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);

	/* Nothing changed (but the database, which is always copied). */
	take_ok(x, "s3", &s3);
	compare_tree(x, "s3");
	assert_int_equal(s3.files_shared, s3.files - 1);
	snap_file(x, "s2", "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt", &a);
	snap_file(x, "s3", "files/attachments/wiki/d0/d1/d2/d3/d4/d5/f5.txt", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	check_manifest(x, "s3", &s3, &m);
	ts_manifest_free(&m);
	store_clean_and_unlocked(x);
}

/* Build the stage as the daemon does after a seal (stage.h). */
static void stage_ok(fx *x, const int *stop)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_stage_build(&x->s, stop, &e) != TS_OK)
		fail_msg("ts_stage_build: %s", e.msg);
	assert_false(x->s.locked);
}

/* Is there a stage made from snapshot name? */
static bool stage_from(fx *x, const char *name)
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

static bool stage_exists(fx *x)
{
	char p[TBUF];
	struct stat st;

	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE);
	return lstat(p, &st) == 0;
}

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
	take_ok(x, "s1", &s1);
	stage_ok(x, NULL);
	assert_true(stage_from(x, "s1"));
	snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
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

	take_ok(x, "s2", &s2);
	assert_false(stage_exists(x));   /* adopted: it became s2's tree */
	compare_tree(x, "s2");
	check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");
	check_manifest(x, "s2", &s2, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	assert_null(ts_manifest_find(&m, "plugins/secret.egg"));
	assert_null(ts_manifest_find(&m, "abs-link"));
	assert_non_null(ts_manifest_find(&m, "README/inside.txt"));
	ts_manifest_free(&m);
	snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(b.st_nlink, 2);   /* s1's and s2's: the stage's link became s2's */
	assert_true(s2.files_shared >= 5);
	snap_text_is(x, "s2", "htdocs/a.txt", "changed, and longer than before\n");
	snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	/* The first snapshot still matches its own manifest, byte for byte. */
	check_manifest(x, "s1", &s1, &m);
	ts_manifest_free(&m);
	store_clean_and_unlocked(x);
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

	stage_ok(x, NULL);   /* an empty store: nothing to stage */
	assert_false(stage_exists(x));
	take_ok(x, "s1", &s1);
	stage_ok(x, &stop);
	assert_false(stage_exists(x));
	assert_int_equal(tu_count_prefix(x->store, ".stage-new"), 0);
	stage_ok(x, NULL);
	assert_true(stage_from(x, "s1"));
	stage_ok(x, NULL);   /* staged already: kept as it is */
	assert_true(stage_from(x, "s1"));

	/* Made from s1, but s2 is the newest when s3 is taken. */
	take_ok(x, "s2", &s2);
	assert_false(stage_exists(x));
	stage_ok(x, NULL);
	assert_true(stage_from(x, "s2"));
	ts_err_clear(&e);
	assert_int_equal(ts_store_rename(&x->s, "s2", "renamed", &e), TS_OK);
	tu_put_in(x->env, "htdocs/a.txt", "third version\n", 0644);
	take_ok(x, "s3", &s3);
	assert_true(stage_from(x, "s2"));   /* not adopted: "renamed" was the newest */
	compare_tree(x, "s3");
	snap_file(x, "renamed", "files/attachments/ticket/1/big.bin", &a);
	snap_file(x, "s3", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);   /* shared all the same */

	/* The stage of s3 goes with s3. */
	stage_ok(x, NULL);
	assert_true(stage_from(x, "s3"));
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "s3", &e), TS_OK);
	ts_store_unlock(&x->s);
	assert_false(stage_exists(x));
	snap_file(x, "renamed", "files/attachments/ticket/1/big.bin", &a);
	assert_int_equal(a.st_nlink, 2);   /* s1's and renamed's: none left behind */

	/* A store copy no longer as its manifest says: no stage at all (a
	 * staged snapshot trusts every staged link), nothing left behind, and
	 * the next snapshot copies that file again instead of sharing it. */
	{
		char p[TBUF];
		ts_snap_stats s4;
		tu_tree_path(x->store, "renamed", "htdocs/site.css", p, sizeof(p));
		assert_int_equal(chmod(p, 0600), 0);
		ts_err_clear(&e);
		assert_int_equal(ts_stage_build(&x->s, NULL, &e), TS_ERR_CORRUPT);
		assert_non_null(strstr(e.msg, "htdocs/site.css"));
		assert_false(stage_exists(x));
		assert_false(x->s.locked);
		take_ok(x, "s4", &s4);
		snap_file(x, "renamed", "htdocs/site.css", &a);
		snap_file(x, "s4", "htdocs/site.css", &b);
		assert_int_not_equal(a.st_ino, b.st_ino);
		assert_int_equal(b.st_mode & 07777, 0644);
	}
	store_clean_and_unlocked(x);
}

/* The daemon's refresh of the stage (stage.h). */
static void dir_seen(void *arg, const char *rel)
{
	(void)rel;
	(*(size_t *)arg)++;
}

static ts_err_code refresh(fx *x, bool all_dirs, size_t *dirs, ts_stage_refresh_out *out,
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
	take_ok(x, "s1", &s1);
	assert_int_equal(refresh(x, true, &dirs, &out, NULL), TS_OK);
	assert_true(out.none);   /* nothing staged yet */
	assert_int_equal(dirs, 0);
	stage_ok(x, NULL);
	assert_int_equal(refresh(x, true, &dirs, &out, NULL), TS_OK);
	assert_false(out.none);
	assert_false(out.busy);
	assert_int_equal(out.bytes_copied, 0);   /* nothing changed */
	assert_true(dirs >= 5);                  /* every directory, to be watched */
	assert_true(stage_from(x, "s1"));

	tu_put_in(x->env, "htdocs/a.txt", "changed after s1\n", 0644);
	tu_put_in(x->env, "files/attachments/ticket/1/new.txt", att, 0644);
	tu_mkdir_in(x->env, "files/attachments/ticket/9", 0755);
	tu_put_in(x->env, "files/attachments/ticket/9/late.txt", "in a new directory\n", 0644);
	tu_fmt(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	assert_int_equal(unlink(p), 0);
	nap_ms(60);   /* the refresh's copies are not racy */
	assert_int_equal(refresh(x, false, &dirs, &out, NULL), TS_OK);
	assert_int_equal(out.bytes_copied, strlen("changed after s1\n") + strlen(att) +
	                 strlen("in a new directory\n"));
	assert_true(dirs >= 5);   /* a new directory: all are watched again */
	assert_true(stage_from(x, "s1"));
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
	take_ok(x, "s2", &s2);
	assert_false(stage_exists(x));   /* adopted */
	compare_tree(x, "s2");
	check_db(x, "s2", "db/trac.db", 4, "first,second,third,fourth");
	snap_text_is(x, "s2", "htdocs/site.css", "changed after the refresh\n");
	snap_text_is(x, "s2", "files/attachments/ticket/1/new.txt", att);
	snap_file(x, "s2", "files/attachments/ticket/1/new.txt", &b);
	assert_int_equal(b.st_ino, staged.st_ino);   /* the refresh's copy */
	snap_file(x, "s1", "files/attachments/ticket/1/big.bin", &a);
	snap_file(x, "s2", "files/attachments/ticket/1/big.bin", &b);
	assert_int_equal(a.st_ino, b.st_ino);        /* shared */
	assert_true(s2.bytes_copied >= strlen(att));  /* the refresh's copies count as copied */
	check_manifest(x, "s2", &s2, &m);
	ts_manifest_free(&m);

	/* A refresh that died half way leaves the stage busy: never adopted,
	 * and replaced by the next build. */
	stage_ok(x, NULL);
	assert_int_equal(refresh(x, false, &dirs, &out, NULL), TS_OK);
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_BASE);
	tu_fmt(q, sizeof(q), "%s/%s", x->store, TS_STORE_STAGE_BUSY);
	assert_int_equal(rename(p, q), 0);
	tu_put_in(x->env, "htdocs/a.txt", "third version\n", 0644);
	take_ok(x, "s3", &s3);
	assert_true(stage_exists(x));   /* not adopted */
	compare_tree(x, "s3");
	stage_ok(x, NULL);
	assert_true(stage_from(x, "s3"));

	/* Another writer holds the store: nothing done. */
	{
		ts_store other;
		ts_err e;
		ts_err_clear(&e);
		assert_int_equal(ts_store_open(x->store, false, &other, &e), TS_OK);
		assert_int_equal(ts_store_lock(&other, 0, &e), TS_OK);
		tu_put_in(x->env, "htdocs/a.txt", "fourth version\n", 0644);
		assert_int_equal(refresh(x, false, &dirs, &out, NULL), TS_OK);
		assert_true(out.busy);
		ts_store_close(&other);
	}
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_MANIFEST);
	assert_false(tu_exists(p));   /* not refreshed */

	/* Stopped: the stage is left unadoptable, the snapshot still right. */
	{
		volatile sig_atomic_t cancel = 1;
		ts_err_code rc = refresh(x, false, &dirs, &out, &cancel);
		assert_int_equal(rc, TS_ERR_CANCELLED);
	}
	assert_false(stage_from(x, "s3"));
	take_ok(x, "s4", &s4);
	compare_tree(x, "s4");
	snap_text_is(x, "s4", "htdocs/a.txt", "fourth version\n");

	/* A snapshot without the database leaves the stage's database copy
	 * nowhere (store_clean_and_unlocked: nothing else in a snapshot). */
	stage_ok(x, NULL);
	assert_int_equal(refresh(x, false, &dirs, &out, NULL), TS_OK);
	tu_fmt(p, sizeof(p), "%s/%s", x->store, TS_STORE_STAGE_DB);
	assert_true(tu_exists(p));
	{
		ts_snap_stats s5;
		ts_err e;
		assert_int_equal(take(x, "s5", true, 5, &s5, &e), TS_OK);
	}
	assert_false(stage_exists(x));
	assert_false(snap_has(x, "s5", "db/trac.db"));
	store_clean_and_unlocked(x);
}

static void test_snap_fifo(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	char p[TBUF];

	tu_fmt(p, sizeof(p), "%s/pipe", x->env);
	assert_int_equal(mkfifo(p, 0644), 0);
	tu_fmt(p, sizeof(p), "%s/log/trac.fifo", x->env);
	assert_int_equal(mkfifo(p, 0600), 0);
	take_ok(x, "s1", &st);
	assert_false(snap_has(x, "s1", "pipe"));
	assert_false(snap_has(x, "s1", "log/trac.fifo"));
	assert_true(snap_has(x, "s1", "log"));
	compare_tree(x, "s1");
	check_manifest(x, "s1", &st, &m);
	assert_null(ts_manifest_find(&m, "pipe"));
	assert_null(ts_manifest_find(&m, "log/trac.fifo"));
	ts_manifest_free(&m);
	store_clean_and_unlocked(x);
}

static void test_snap_no_database(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	ts_err e;

	if (take(x, "files-only", true, 5, &st, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_false(snap_has(x, "files-only", "db/trac.db"));
	assert_true(snap_has(x, "files-only", "db"));
	assert_true(snap_has(x, "files-only", "db/trac.db.bak"));
	compare_tree(x, "files-only");
	check_manifest(x, "files-only", &st, &m);
	assert_true(m.no_database);
	assert_null(m.external_db);
	assert_null(ts_manifest_find(&m, "db/trac.db"));
	ts_manifest_free(&m);
	store_clean_and_unlocked(x);
}

static void test_snap_external_db(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	char ext[TBUF], dbp[TBUF], want[TBUF];
	const ts_manifest_entry *me;

	tu_fmt(ext, sizeof(ext), "%s/ext", x->top);
	assert_int_equal(mkdir(ext, 0755), 0);
	tu_fmt(dbp, sizeof(dbp), "%s/ext/x.db", x->top);
	tu_make_db(dbp, true);
	tu_fmt(want, sizeof(want), "%s/db/trac.db", x->env);
	assert_int_equal(unlink(want), 0);
	tu_fmt(want, sizeof(want), "[trac]\ndatabase = sqlite:%s\n", dbp);
	tu_put_in(x->env, "conf/trac.ini", want, 0600);
	ts_env_close(&x->e);
	x->env_open = false;
	env_open(x);
	assert_null(x->e.db_rel);

	take_ok(x, "ext", &st);
	check_db(x, "ext", TS_DBSNAP_EXTERNAL_DIR "/x.db", 3, "first,second,third");
	assert_false(snap_has(x, "ext", "db/trac.db"));
	compare_tree(x, "ext");
	check_manifest(x, "ext", &st, &m);
	assert_non_null(m.external_db);
	assert_string_equal(m.external_db, dbp);
	assert_string_equal(m.external_db_rel, TS_DBSNAP_EXTERNAL_DIR "/x.db");
	me = ts_manifest_find(&m, TS_DBSNAP_EXTERNAL_DIR "/x.db");
	assert_non_null(me);
	assert_int_equal(me->type, 'f');
	ts_manifest_free(&m);

	/* Staged and refreshed (stage.h), then the next snapshot. */
	{
		ts_stage_refresh_out out;
		ts_snap_stats st2;
		size_t dirs;
		stage_ok(x, NULL);
		tu_put_in(x->env, "htdocs/a.txt", "changed before the refresh\n", 0644);
		assert_int_equal(refresh(x, false, &dirs, &out, NULL), TS_OK);
		assert_false(out.none);
		take_ok(x, "ext2", &st2);
		assert_false(stage_exists(x));
		check_db(x, "ext2", TS_DBSNAP_EXTERNAL_DIR "/x.db", 3, "first,second,third");
		compare_tree(x, "ext2");
		check_manifest(x, "ext2", &st2, &m);
		assert_string_equal(m.external_db, dbp);
		ts_manifest_free(&m);
	}
	store_clean_and_unlocked(x);
}

/* A name that is taken: refused, and nothing changes. */
static void test_snap_exists(void **state)
{
	fx *x = *state;
	ts_snap_stats st, st2;
	ts_err e;
	ts_err_code rc;
	char p[TBUF];
	unsigned char *man1, *man2;
	size_t l1, l2;
	struct stat d1, d2;

	take_ok(x, "s1", &st);
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	man1 = tu_slurp(p, &l1);
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &d1), 0);

	tu_put_in(x->env, "htdocs/a.txt", "different\n", 0644);
	rc = take(x, "s1", false, 5, &st2, &e);
	assert_int_equal(rc, TS_ERR_EXISTS);
	assert_int_equal(e.code, TS_ERR_EXISTS);
	assert_non_null(strstr(e.msg, "s1"));

	assert_int_equal(n_snapshots(x), 1);
	tu_fmt(p, sizeof(p), "%s/s1/manifest", x->store);
	man2 = tu_slurp(p, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(man1, man2, l1);
	free(man1);
	free(man2);
	tu_fmt(p, sizeof(p), "%s/s1", x->store);
	assert_int_equal(lstat(p, &d2), 0);
	assert_int_equal(d1.st_ino, d2.st_ino);
	assert_int_equal(d1.st_mtim.tv_sec, d2.st_mtim.tv_sec);
	assert_int_equal(d1.st_mtim.tv_nsec, d2.st_mtim.tv_nsec);
	snap_text_is(x, "s1", "htdocs/a.txt", "hello\n");
	store_clean_and_unlocked(x);
}

static void test_snap_bad_name(void **state)
{
	fx *x = *state;
	static const char *const bad[] = { "a/b", ".x", "latest", "", ".", "..", ".tmp-1", "a\nb" };
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;
	char p[TBUF];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = take(x, bad[i], false, 5, &st, &e);
		if (rc != TS_ERR_NAME)
			fail_msg("name '%s': %s '%s', want name", bad[i], ts_err_name(rc), e.msg);
		assert_int_equal(e.code, TS_ERR_NAME);
		assert_null(strchr(e.msg, '\n'));
		store_clean_and_unlocked(x);
		assert_int_equal(n_snapshots(x), 0);
	}
	tu_fmt(p, sizeof(p), "%s/a", x->store);
	assert_false(tu_exists(p));
	tu_fmt(p, sizeof(p), "%s/latest", x->store);
	assert_false(tu_exists(p));
	/* A good name still works afterwards. */
	take_ok(x, "good", &st);
	assert_int_equal(n_snapshots(x), 1);
	store_clean_and_unlocked(x);
}

/* Trac's write lock held by another connection: busy, nothing left behind;
 * works again once it is released. */
static void test_snap_write_lock_busy(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;
	sqlite3 *w;
	char p[TBUF];
	struct timespec t0, t1;
	double dt;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(w, "BEGIN IMMEDIATE");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = take(x, "s1", false, 1, &st, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (rc != TS_ERR_BUSY)
		fail_msg("%s '%s', want busy", ts_err_name(rc), e.msg);
	assert_int_equal(e.code, TS_ERR_BUSY);
	if (!strstr(e.msg, "write lock"))
		fail_msg("message '%s' does not say 'write lock'", e.msg);
	assert_true(dt >= 0.8 && dt < 10);
	assert_false(ts_store_exists(&x->s, "s1"));
	assert_int_equal(n_snapshots(x), 0);
	store_clean_and_unlocked(x);

	/* The other connection still holds its transaction and can write. */
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	tu_sql(w, "ROLLBACK");

	take_ok(x, "s1", &st);
	check_db(x, "s1", "db/trac.db", 3, "first,second,third");
	/* Our connection works after the snapshot's (Trac's writers go on). */
	tu_sql(w, "BEGIN IMMEDIATE; INSERT INTO ticket VALUES (5, 'fifth'); COMMIT");
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
	store_clean_and_unlocked(x);
}

/* WAL mode: rows that are only in the -wal are in the snapshot, which is a
 * rollback-journal database. */
static void test_snap_wal(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	sqlite3 *w, *c;
	char p[TBUF], wal[TBUF + 8], copy[TBUF], text[64];
	struct stat sb;
	unsigned char *bytes;
	size_t len;

	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	tu_fmt(wal, sizeof(wal), "%s-wal", p);
	w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	query_text(w, "PRAGMA journal_mode=WAL", text, sizeof(text));
	assert_string_equal(text, "wal");
	tu_sql(w, "PRAGMA wal_autocheckpoint=0");
	tu_sql(w, "INSERT INTO ticket VALUES (4, 'fourth')");
	tu_sql(w, "INSERT INTO ticket VALUES (5, 'fifth')");
	tu_sql(w, "BEGIN; UPDATE ticket SET summary = 'FIRST' WHERE id = 1;"
	       " INSERT INTO ticket VALUES (6, 'sixth'); COMMIT");
	assert_int_equal(lstat(wal, &sb), 0);
	assert_true(sb.st_size > 0);

	/* The main file alone does not have them (they are only in the -wal). */
	tu_fmt(copy, sizeof(copy), "%s/main-only.db", x->top);
	bytes = tu_slurp(p, &len);
	tu_put_bytes(copy, bytes, len, 0644);
	free(bytes);
	c = tu_db_open(copy, SQLITE_OPEN_READONLY);
	assert_int_equal(query_long(c, "SELECT count(*) FROM ticket"), 3);
	assert_int_equal(sqlite3_close(c), SQLITE_OK);

	take_ok(x, "wal", &st);
	check_db(x, "wal", "db/trac.db", 6, "FIRST,second,third,fourth,fifth,sixth");
	assert_false(snap_has(x, "wal", "db/trac.db-wal"));
	assert_false(snap_has(x, "wal", "db/trac.db-shm"));
	compare_tree(x, "wal");
	check_manifest(x, "wal", &st, &m);
	ts_manifest_free(&m);
	/* The environment is still in WAL mode, and writable. */
	query_text(w, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "wal");
	tu_sql(w, "INSERT INTO ticket VALUES (7, 'seventh')");
	assert_int_equal(query_long(w, "SELECT count(*) FROM ticket"), 7);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
	store_clean_and_unlocked(x);
}

/* The environment changes after the pre-copy, while the snapshot waits for
 * Trac's write lock: the snapshot is the state at the lock (file removed,
 * rewritten, chmod'ed, added; a row committed by the writer it waited for). */
typedef struct mutator {
	fx *x;
	sqlite3 *w;          /* holds BEGIN IMMEDIATE until we are done */
	int failed;          /* step that failed, 0 when all went well */
	bool saw_precopy;
} mutator;

static bool tmp_has(const char *store, const char *rel)
{
	DIR *d = opendir(store);
	struct dirent *de;
	bool found = false;
	char p[TBUF];
	struct stat st;

	if (!d)
		return false;
	while (!found && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5))
			continue;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s/tree/%s", store, de->d_name, rel) < sizeof(p))
			found = lstat(p, &st) == 0;
	}
	closedir(d);
	return found;
}

/* For the mutator's thread, where cmocka's assertions cannot be used: a new
 * file holding text, a new directory; false on failure. */
static bool mu_new(fx *x, const char *rel, const char *text, mode_t mode)
{
	char p[TBUF + 64];
	size_t len = strlen(text);
	snprintf(p, sizeof(p), "%s/%s", x->env, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, mode);
	bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
	return fd >= 0 && close(fd) == 0 && ok;
}

static bool mu_mkdir(fx *x, const char *rel, mode_t mode)
{
	char p[TBUF + 64];
	snprintf(p, sizeof(p), "%s/%s", x->env, rel);
	return mkdir(p, mode) == 0;
}

static void *mutate(void *arg)
{
	mutator *mu = arg;
	fx *x = mu->x;
	char p[TBUF + 64];
	struct timespec nap = { 0, 2 * 1000 * 1000 };
	int fd, i;

	/* Wait (up to 20 s) until the pre-copy has copied what we remove. */
	for (i = 0; i < 10000 && !mu->saw_precopy; i++) {
		mu->saw_precopy = tmp_has(x->store, "files/attachments/ticket/1/small.txt") &&
		                  tmp_has(x->store, "htdocs/a.txt");
		if (!mu->saw_precopy)
			nanosleep(&nap, NULL);
	}
	nap.tv_nsec = 200 * 1000 * 1000; /* let it reach the lock */
	nanosleep(&nap, NULL);

	snprintf(p, sizeof(p), "%s/files/attachments/ticket/1/small.txt", x->env);
	if (unlink(p) < 0)
		mu->failed = 1;
	snprintf(p, sizeof(p), "%s/htdocs/a.txt", x->env);
	fd = open(p, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, "during\n", 7) != 7 || close(fd) < 0)
		mu->failed = 2;
	snprintf(p, sizeof(p), "%s/htdocs/site.css", x->env);
	if (chmod(p, 0600) < 0)
		mu->failed = 3;
	if (!mu_new(x, "htdocs/late.txt", "late\n", 0644))
		mu->failed = 4;
	if (!mu_mkdir(x, "newdir", 0711))
		mu->failed = 5;
	if (!mu_new(x, "newdir/x", "", 0640))
		mu->failed = 6;
	/* Deeper news, gone directories and changed types: found under the
	 * lock by listing again only directories whose stat changed. */
	if (!mu_mkdir(x, "newdir/deep", 0755) || !mu_mkdir(x, "newdir/deep/er", 0700) ||
	    !mu_new(x, "newdir/deep/er/f.txt", "deep\n", 0644))
		mu->failed = 8;
	snprintf(p, sizeof(p), "%s/templates", x->env);
	if (rmdir(p) < 0)
		mu->failed = 9;
	snprintf(p, sizeof(p), "%s/README", x->env);
	if (unlink(p) < 0 || !mu_mkdir(x, "README", 0755) || !mu_new(x, "README/inside.txt", "", 0644))
		mu->failed = 10;
	snprintf(p, sizeof(p), "%s/plugins/secret.egg", x->env);
	if (unlink(p) < 0)
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/plugins/suid.sh", x->env);
	if (unlink(p) < 0)
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/plugins", x->env);
	if (rmdir(p) < 0 || !mu_new(x, "plugins", "file\n", 0644))
		mu->failed = 11;
	snprintf(p, sizeof(p), "%s/htdocs/new-link", x->env);
	if (symlink("late.txt", p) < 0)
		mu->failed = 12;
	if (sqlite3_exec(mu->w, "INSERT INTO ticket VALUES (4, 'during'); COMMIT", NULL, NULL,
	                 NULL) != SQLITE_OK)
		mu->failed = 7;
	return NULL;
}

static void test_snap_changes_before_lock(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	mutator mu;
	pthread_t th;
	char p[TBUF];
	struct stat sb;

	memset(&mu, 0, sizeof(mu));
	mu.x = x;
	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	mu.w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(mu.w, "BEGIN IMMEDIATE");
	assert_int_equal(pthread_create(&th, NULL, mutate, &mu), 0);
	take_ok(x, "s1", &st);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sqlite3_close(mu.w), SQLITE_OK);
	assert_true(mu.saw_precopy);
	assert_int_equal(mu.failed, 0);

	assert_false(snap_has(x, "s1", "files/attachments/ticket/1/small.txt"));
	snap_text_is(x, "s1", "htdocs/a.txt", "during\n");
	snap_file(x, "s1", "htdocs/site.css", &sb);
	assert_int_equal(sb.st_mode & 07777, 0600);
	snap_text_is(x, "s1", "htdocs/late.txt", "late\n");
	snap_file(x, "s1", "newdir", &sb);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0711);
	assert_true(snap_has(x, "s1", "newdir/x"));
	snap_text_is(x, "s1", "newdir/deep/er/f.txt", "deep\n");
	snap_text_is(x, "s1", "plugins", "file\n");
	assert_true(snap_has(x, "s1", "README/inside.txt"));
	assert_false(snap_has(x, "s1", "templates"));
	assert_true(snap_has(x, "s1", "htdocs/new-link"));
	compare_tree(x, "s1");
	check_db(x, "s1", "db/trac.db", 4, "first,second,third,during");
	check_manifest(x, "s1", &st, &m);
	assert_null(ts_manifest_find(&m, "files/attachments/ticket/1/small.txt"));
	ts_manifest_free(&m);
	store_clean_and_unlocked(x);
}

/* A hostile owner of the environment swaps a directory for a symlink to a
 * tree of root's between the pre-copy and the check under the lock.  The
 * check stats every entry by its path, the store tree then holds the link,
 * and the directories' metadata, file copies and removals all act on paths
 * below it: nothing may be reached through either link (beneath.h). */
#define CANARY_N 4
static const char *const canary_rel[CANARY_N] = { "B", "B/f.txt", "B/sub", "B/sub/deep.txt" };

typedef struct canary_rec {
	struct stat st[CANARY_N];
	size_t names;        /* entries below the canary's top, all levels */
} canary_rec;

static bool snap_same_ts(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static size_t count_below(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	char p[TBUF];

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		n++;
		tu_fmt(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			n += count_below(p);
	}
	closedir(d);
	return n;
}

static void canary_record(const char *canary, canary_rec *c)
{
	char p[TBUF];

	for (int i = 0; i < CANARY_N; i++) {
		tu_fmt(p, sizeof(p), "%s/%s", canary, canary_rel[i]);
		assert_int_equal(lstat(p, &c->st[i]), 0);
	}
	c->names = count_below(canary);
}

static void canary_unchanged(const char *canary, const canary_rec *before)
{
	canary_rec now;

	canary_record(canary, &now);
	for (int i = 0; i < CANARY_N; i++) {
		const struct stat *a = &before->st[i], *b = &now.st[i];
		if (a->st_mode != b->st_mode || a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
		    a->st_size != b->st_size || !snap_same_ts(&a->st_ctim, &b->st_ctim) ||
		    !snap_same_ts(&a->st_mtim, &b->st_mtim))
			fail_msg("%s/%s changed: mode %o -> %o, owner %u:%u -> %u:%u, ctime %ld.%09ld -> "
			         "%ld.%09ld", canary, canary_rel[i], (unsigned)a->st_mode,
			         (unsigned)b->st_mode, (unsigned)a->st_uid, (unsigned)a->st_gid,
			         (unsigned)b->st_uid, (unsigned)b->st_gid, (long)a->st_ctim.tv_sec,
			         a->st_ctim.tv_nsec, (long)b->st_ctim.tv_sec, b->st_ctim.tv_nsec);
	}
	if (now.names != before->names)
		fail_msg("%s: %zu entries, was %zu: something was created or removed there", canary,
		         now.names, before->names);
}

typedef struct flipper {
	fx *x;
	sqlite3 *w;          /* holds BEGIN IMMEDIATE until the swap is done */
	const char *canary;
	int failed;
	bool saw_precopy;
} flipper;

static void *flip_to_link(void *arg)
{
	flipper *f = arg;
	char a[TBUF + 64], kept[TBUF + 64];
	struct timespec nap = { 0, 2 * 1000 * 1000 };

	for (int i = 0; i < 10000 && !f->saw_precopy; i++) {
		f->saw_precopy = tmp_has(f->x->store, "files/A/B/sub/deep.txt");
		if (!f->saw_precopy)
			nanosleep(&nap, NULL);
	}
	nap.tv_nsec = 200 * 1000 * 1000;   /* let it reach the lock */
	nanosleep(&nap, NULL);
	snprintf(a, sizeof(a), "%s/files/A", f->x->env);
	snprintf(kept, sizeof(kept), "%s/files/A.real", f->x->env);
	if (rename(a, kept) < 0 || symlink(f->canary, a) < 0)
		f->failed = 1;
	if (sqlite3_exec(f->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		f->failed = 2;
	return NULL;
}

static void test_snap_dir_swapped_for_link(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	flipper f;
	pthread_t th;
	char canary[TBUF], p[TBUF], kept[TBUF];
	canary_rec before;
	struct stat sb;
	ts_err_code rc;
	ts_err e;

	/* Root's tree outside the environment, with modes and owners of its
	 * own, and the environment's directory of the same shape. */
	tu_fmt(canary, sizeof(canary), "%s/canary", x->top);
	tu_mkdir_in(x->top, "canary", 0700);
	tu_mkdir_in(canary, "B", 0700);
	tu_put_in(canary, "B/f.txt", "root's\n", 0600);
	tu_mkdir_in(canary, "B/sub", 0710);
	tu_put_in(canary, "B/sub/deep.txt", "root's deep\n", 0640);
	tu_mkdir_in(x->env, "files/A", 0777);
	tu_mkdir_in(x->env, "files/A/B", 0777);
	tu_put_in(x->env, "files/A/B/f.txt", "real B\n", 0666);
	tu_mkdir_in(x->env, "files/A/B/sub", 0777);
	tu_put_in(x->env, "files/A/B/sub/deep.txt", "real deep\n", 0666);
	tu_put_in(x->env, "files/A/B/sub/only-env.txt", "env only\n", 0666);
	for (const char *const *r = (const char *const[]){ "files/A", "files/A/B", "files/A/B/f.txt",
	     "files/A/B/sub", "files/A/B/sub/deep.txt", "files/A/B/sub/only-env.txt", NULL }; *r; r++) {
		tu_fmt(p, sizeof(p), "%s/%s", x->env, *r);
		assert_int_equal(lchown(p, 4321, 4321), 0);
	}
	canary_record(canary, &before);

	memset(&f, 0, sizeof(f));
	f.x = x;
	f.canary = canary;
	tu_fmt(p, sizeof(p), "%s/db/trac.db", x->env);
	f.w = tu_db_open(p, SQLITE_OPEN_READWRITE);
	tu_sql(f.w, "BEGIN IMMEDIATE");
	assert_int_equal(pthread_create(&th, NULL, flip_to_link, &f), 0);
	rc = take(x, "s1", false, 5, &st, &e);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(sqlite3_close(f.w), SQLITE_OK);
	assert_true(f.saw_precopy);
	assert_int_equal(f.failed, 0);

	/* Nothing of root's was chown'ed, chmod'ed, touched, created or
	 * removed, whatever became of the snapshot; and it was taken. */
	canary_unchanged(canary, &before);
	if (rc != TS_OK)
		fail_msg("snapshot s1: %s: %s", ts_err_name(e.code), e.msg);
	/* The snapshot holds the link as a link, and nothing below it. */
	tu_tree_path(x->store, "s1", "files/A", p, sizeof(p));
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	check_manifest(x, "s1", &st, &m);
	for (size_t i = 0; i < m.n; i++)
		if (!strncmp(m.entries[i].path, "files/A/", 8))
			fail_msg("manifest lists %s, below the symlink files/A", m.entries[i].path);
	assert_int_equal(ts_manifest_find(&m, "files/A")->type, 'l');
	ts_manifest_free(&m);

	/* Back to a directory: the next snapshot reads its real content. */
	tu_fmt(p, sizeof(p), "%s/files/A", x->env);
	tu_fmt(kept, sizeof(kept), "%s/files/A.real", x->env);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(rename(kept, p), 0);
	take_ok(x, "s2", &st);
	canary_unchanged(canary, &before);
	snap_text_is(x, "s2", "files/A/B/f.txt", "real B\n");
	snap_text_is(x, "s2", "files/A/B/sub/deep.txt", "real deep\n");
	snap_text_is(x, "s2", "files/A/B/sub/only-env.txt", "env only\n");
	snap_file(x, "s2", "files/A/B", &sb);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0777);
	assert_int_equal(sb.st_uid, 4321);
	compare_tree(x, "s2");
	store_clean_and_unlocked(x);
}

/* Another writer holds the store: busy, nothing changes. */
static void test_snap_store_busy(void **state)
{
	fx *x = *state;
	ts_store other;
	ts_snap_stats st;
	ts_err e;
	ts_err_code rc;

	ts_err_clear(&e);
	assert_int_equal(ts_store_open(x->store, false, &other, &e), TS_OK);
	assert_int_equal(ts_store_lock(&other, 0, &e), TS_OK);
	rc = take(x, "s1", false, 1, &st, &e);
	assert_int_equal(rc, TS_ERR_BUSY);
	assert_false(x->s.locked);
	assert_int_equal(n_snapshots(x), 0);
	ts_store_close(&other);
	store_clean_and_unlocked(x);
	take_ok(x, "s1", &st);
	store_clean_and_unlocked(x);
}

static void test_snap_cancel(void **state)
{
	fx *x = *state;
	volatile sig_atomic_t cancel = 1;
	ts_snap_opts o;
	ts_snap_stats st;
	ts_err e;

	memset(&o, 0, sizeof(o));
	o.name = "c";
	o.lock_timeout_s = 5;
	o.cancel = &cancel;
	ts_err_clear(&e);
	assert_int_equal(ts_snap_take(&x->s, &x->e, &o, &st, &e), TS_ERR_CANCELLED);
	assert_false(ts_store_exists(&x->s, "c"));
	assert_int_equal(n_snapshots(x), 0);
	store_clean_and_unlocked(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snap_basic, setup, teardown),
		cmocka_unit_test(test_format_stats),
		cmocka_unit_test_setup_teardown(test_snap_share, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_share_new_trees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_staged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_no_database, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_external_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_bad_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_write_lock_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_wal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_changes_before_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_dir_swapped_for_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_store_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_cancel, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
