/* test_seal.c - snapshots appear unsealed (pending hashes, marker with the
 * boot id) and ts_seal / ts_seal_all finish them: hashes, manifest swap,
 * marker removal, the snapshot instant kept; lost snapshots (written before
 * a restart) hidden and removed; refusals (changed size, gone, cancelled). */
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
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env/env.h"
#include "store/manifest.h"
#include "store/seal.h"
#include "take/snap.h"
#include "store/store.h"
#include "tutil.h"

#define TBUF (PATH_MAX * 2)
#define BIG_LEN (300 * 1024 + 17)
#define FAKE_BOOT "00000000-0000-0000-0000-000000000000\n"

typedef struct fx {
	char top[PATH_MAX];   /* realpath'd */
	char env[TBUF];       /* TOP/env */
	char store[TBUF];     /* TOP/store */
	ts_env e;
	ts_store s;
	bool env_open;
} fx;

static long db_tickets(const char *path)
{
	sqlite3 *db = tu_db_open(path, SQLITE_OPEN_READONLY);
	sqlite3_stmt *st;
	long n;

	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM ticket", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return n;
}

static int setup(void **state)
{
	fx *x = calloc(1, sizeof(*x));
	char path[TBUF];
	unsigned char *big;
	ts_err e;

	assert_non_null(x);
	tu_tmpdir("seal", x->top);
	tu_fmt(x->env, sizeof(x->env), "%s/env", x->top);
	tu_fmt(x->store, sizeof(x->store), "%s/store", x->top);
	assert_int_equal(mkdir(x->env, 0755), 0);

	tu_put_in(x->env, "VERSION", "Trac Environment Version 1\n", 0644);
	tu_put_in(x->env, "README", "This directory contains a Trac environment.\n", 0644);
	tu_mkdir_in(x->env, "conf", 0755);
	tu_put_in(x->env, "conf/trac.ini", "[trac]\ndatabase = sqlite:db/trac.db\n", 0600);
	tu_mkdir_in(x->env, "db", 0755);
	tu_fmt(path, sizeof(path), "%s/db/trac.db", x->env);
	tu_make_db(path, false);
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
	tu_put_in(x->env, "htdocs/empty", "", 0644);
	tu_mkdir_in(x->env, "log", 0750);
	tu_mkdir_in(x->env, "plugins", 0755);
	tu_put_in(x->env, "plugins/suid.sh", "#!/bin/sh\n", 04755);
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

	ts_err_clear(&e);
	if (ts_env_open(x->env, &x->e, &e) != TS_OK)
		fail_msg("ts_env_open: %s", e.msg);
	x->env_open = true;
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

/* ts_snap_take only: the snapshot is left unsealed. */
static void take_unsealed(fx *x, const char *name, ts_snap_stats *stats)
{
	ts_snap_opts o;
	ts_snap_stats local;
	ts_err e;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.lock_timeout_s = 5;
	ts_err_clear(&e);
	if (ts_snap_take(&x->s, &x->e, &o, stats ? stats : &local, &e) != TS_OK)
		fail_msg("snapshot %s: %s: %s", name, ts_err_name(e.code), e.msg);
}

static void seal_ok(fx *x, const char *name, ts_seal_stats *stats)
{
	ts_err e;

	ts_err_clear(&e);
	if (ts_seal(&x->s, name, NULL, stats, &e) != TS_OK)
		fail_msg("seal %s: %s: %s", name, ts_err_name(e.code), e.msg);
}

static void snap_path(const fx *x, const char *name, const char *leaf, char *buf, size_t size)
{
	if (leaf)
		tu_fmt(buf, size, "%s/%s/%s", x->store, name, leaf);
	else
		tu_fmt(buf, size, "%s/%s", x->store, name);
}

static void read_manifest(fx *x, const char *name, ts_manifest *m)
{
	char path[TBUF];
	ts_err e;

	snap_path(x, name, "manifest", path, sizeof(path));
	ts_manifest_init(m);
	ts_err_clear(&e);
	if (ts_manifest_read(path, m, &e) != TS_OK)
		fail_msg("%s", e.msg);
}

/* The running kernel's boot id, without the newline (proc files report
 * size 0: read, not stat). */
static void boot_id(char *out, size_t size)
{
	char buf[128];
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	assert_true(strlen(buf) > 0);
	tu_fmt(out, size, "%s", buf);
}

static bool marker_present(fx *x, const char *name)
{
	char p[TBUF];

	snap_path(x, name, TS_STORE_UNSEALED, p, sizeof(p));
	return tu_exists(p);
}

/* Is name listed, and how? */
static bool listed(fx *x, const char *name, bool *sealed, struct timespec *time)
{
	ts_store_snap *v;
	size_t n;
	ts_err e;
	bool found = false;

	ts_err_clear(&e);
	if (ts_store_list(&x->s, &v, &n, &e) != TS_OK)
		fail_msg("list: %s", e.msg);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, name))
			continue;
		found = true;
		if (sealed)
			*sealed = v[i].sealed;
		if (time)
			*time = v[i].time;
	}
	ts_store_list_free(v, n);
	return found;
}

static size_t n_listed(fx *x)
{
	ts_store_snap *v;
	size_t n;
	ts_err e;

	ts_err_clear(&e);
	assert_int_equal(ts_store_list(&x->s, &v, &n, &e), TS_OK);
	ts_store_list_free(v, n);
	return n;
}

/* Regular files of a tree, counted (recursively). */
static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	char p[TBUF];
	struct stat st;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		tu_fmt(p, sizeof(p), "%s/%s", dir, de->d_name);
		assert_int_equal(lstat(p, &st), 0);
		if (S_ISREG(st.st_mode))
			n++;
		else if (S_ISDIR(st.st_mode))
			n += count_files(p);
	}
	closedir(d);
	return n;
}

/* STORE/NAME holds exactly tree, manifest and (when unsealed) the marker:
 * no temporary manifest left behind. */
static void snap_dir_clean(fx *x, const char *name, bool unsealed)
{
	char p[TBUF];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snap_path(x, name, NULL, p, sizeof(p));
	d = opendir(p);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!strcmp(de->d_name, "tree") || !strcmp(de->d_name, "manifest") ||
		    (unsealed && !strcmp(de->d_name, TS_STORE_UNSEALED))) {
			n++;
			continue;
		}
		fail_msg("%s: unexpected %s", p, de->d_name);
	}
	closedir(d);
	assert_int_equal(n, unsealed ? 3 : 2);
}

static void symlink_sha(const char *path, unsigned char want[32], uint64_t *len)
{
	char t[PATH_MAX];
	ssize_t n = readlink(path, t, sizeof(t));

	assert_true(n >= 0);
	*len = (uint64_t)n;
	SHA256((unsigned char *)t, (size_t)n, want);
}

/* The manifest of a sealed snapshot: no unsealed line, nothing pending,
 * every file's and link's hash and size what the tree holds, one 'f' per
 * regular file of the tree. */
static void check_sealed(fx *x, const char *name)
{
	ts_manifest m;
	char tp[TBUF], hex_a[65], hex_b[65];
	size_t nf = 0;

	read_manifest(x, name, &m);
	assert_null(m.unsealed_boot);
	assert_true(ts_manifest_sealed(&m));
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];
		unsigned char want[32];
		struct stat st;
		uint64_t len;

		if (me->type == 'd')
			continue;
		assert_false(me->pending);
		tu_tree_path(x->store, name, me->path, tp, sizeof(tp));
		assert_int_equal(lstat(tp, &st), 0);
		if (me->type == 'f') {
			nf++;
			assert_true(S_ISREG(st.st_mode));
			assert_true(me->size == (uint64_t)st.st_size);
			tu_sha_file(tp, want);
		} else {
			assert_true(S_ISLNK(st.st_mode));
			symlink_sha(tp, want, &len);
			assert_true(me->size == len);
		}
		if (memcmp(me->sha256, want, 32)) {
			ts_sha256_hex(me->sha256, hex_a);
			ts_sha256_hex(want, hex_b);
			fail_msg("%s in %s: manifest sha256 %s, content %s", me->path, name, hex_a, hex_b);
		}
	}
	tu_tree_path(x->store, name, ".", tp, sizeof(tp));
	assert_int_equal(nf, count_files(tp));
	ts_manifest_free(&m);
	snap_dir_clean(x, name, false);
}

/* Number of pending files and their total size. */
static void pending_of(const ts_manifest *m, uint64_t *files, uint64_t *bytes)
{
	*files = *bytes = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (!m->entries[i].pending)
			continue;
		assert_int_equal(m->entries[i].type, 'f');
		(*files)++;
		*bytes += m->entries[i].size;
	}
}

static struct stat lstat_ok(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		fail_msg("%s: %s", path, strerror(errno));
	return st;
}

static void assert_ts_equal(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec || a.tv_nsec != b.tv_nsec)
		fail_msg("time %lld.%09ld, want %lld.%09ld", (long long)a.tv_sec, a.tv_nsec,
		         (long long)b.tv_sec, b.tv_nsec);
}

/* ---- the tests ----------------------------------------------------------------- */

/* 1. ts_snap_take leaves the snapshot complete but unsealed. */
static void test_take_leaves_unsealed(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_manifest m;
	char boot[128], p[TBUF], ep[TBUF], tp[TBUF];
	size_t len, nf = 0;
	unsigned char *c;
	bool sealed = true;
	struct timespec lt;

	boot_id(boot, sizeof(boot));
	take_unsealed(x, "s1", &st);

	/* The marker, holding this boot's id. */
	snap_path(x, "s1", TS_STORE_UNSEALED, p, sizeof(p));
	assert_true(tu_exists(p));
	c = tu_slurp(p, &len);
	assert_true(len > 0);
	if (c[len - 1] == '\n')
		c[--len] = '\0';
	assert_int_equal(len, strlen(boot));
	assert_string_equal((char *)c, boot);
	free(c);
	snap_dir_clean(x, "s1", true);

	/* The manifest: unsealed with this boot id, every copied file pending,
	 * links hashed. */
	read_manifest(x, "s1", &m);
	assert_non_null(m.unsealed_boot);
	assert_string_equal(m.unsealed_boot, boot);
	assert_false(ts_manifest_sealed(&m));
	assert_ts_equal(m.time, st.instant);
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];

		tu_tree_path(x->store, "s1", me->path, tp, sizeof(tp));
		if (me->type == 'f') {
			struct stat sb = lstat_ok(tp);

			nf++;
			if (!me->pending)
				fail_msg("%s: not pending after ts_snap_take", me->path);
			assert_true(S_ISREG(sb.st_mode));
			assert_true(me->size == (uint64_t)sb.st_size);
			/* Already the right content. */
			if (strcmp(me->path, "db/trac.db")) {
				size_t la, lb;
				unsigned char *ca, *cb;

				tu_fmt(ep, sizeof(ep), "%s/%s", x->env, me->path);
				ca = tu_slurp(ep, &la);
				cb = tu_slurp(tp, &lb);
				if (la != lb || memcmp(ca, cb, la))
					fail_msg("%s: content differs in the unsealed snapshot", me->path);
				free(ca);
				free(cb);
			}
		} else if (me->type == 'l') {
			unsigned char want[32];
			uint64_t l;

			assert_false(me->pending);
			symlink_sha(tp, want, &l);
			assert_true(me->size == l);
			assert_memory_equal(me->sha256, want, 32);
		} else {
			assert_false(me->pending);
		}
	}
	assert_non_null(ts_manifest_find(&m, "db/trac.db"));
	assert_true(ts_manifest_find(&m, "db/trac.db")->pending);
	assert_true(ts_manifest_find(&m, "htdocs/empty")->pending);
	assert_int_equal(ts_manifest_find(&m, "link-a")->type, 'l');
	assert_int_equal(ts_manifest_find(&m, "abs-link")->type, 'l');
	assert_int_equal(ts_manifest_find(&m, "htdocs/dangling")->type, 'l');
	tu_tree_path(x->store, "s1", ".", tp, sizeof(tp));
	assert_int_equal(nf, count_files(tp));
	assert_true(nf == st.files);
	ts_manifest_free(&m);

	/* The database copy is usable already. */
	tu_tree_path(x->store, "s1", "db/trac.db", tp, sizeof(tp));
	assert_int_equal(db_tickets(tp), 3);

	/* Listed, unsealed, of this boot. */
	assert_true(listed(x, "s1", &sealed, &lt));
	assert_false(sealed);
	assert_ts_equal(lt, st.instant);
	assert_true(ts_store_exists(&x->s, "s1"));
	assert_int_equal(ts_store_seal_state_of(&x->s, "s1"), TS_STORE_UNSEALED_NOW);
	snap_path(x, "s1", NULL, p, sizeof(p));
	assert_ts_equal(lstat_ok(p).st_mtim, st.instant);
}

/* 2. ts_seal hashes, swaps the manifest, drops the marker, keeps the instant. */
static void test_seal_basic(void **state)
{
	fx *x = *state;
	ts_snap_stats st;
	ts_seal_stats ss;
	ts_manifest before, after;
	uint64_t pf, pb;
	char p[TBUF];
	bool sealed = false;
	struct timespec lt;

	take_unsealed(x, "s1", &st);
	read_manifest(x, "s1", &before);
	pending_of(&before, &pf, &pb);
	assert_true(pf >= 10);
	assert_true(pb > BIG_LEN);

	memset(&ss, 0x5a, sizeof(ss));
	seal_ok(x, "s1", &ss);
	assert_true(ss.files_hashed == pf);
	assert_true(ss.bytes_hashed == pb);
	assert_true(ss.ms >= 0);

	assert_false(marker_present(x, "s1"));
	check_sealed(x, "s1");

	/* Everything but the hashes and the unsealed line as before. */
	read_manifest(x, "s1", &after);
	assert_ts_equal(after.time, before.time);
	assert_string_equal(after.env, before.env);
	assert_int_equal(after.n, before.n);
	for (size_t i = 0; i < after.n; i++) {
		const ts_manifest_entry *a = &after.entries[i], *b = &before.entries[i];

		assert_string_equal(a->path, b->path);
		assert_int_equal(a->type, b->type);
		assert_int_equal(a->mode, b->mode);
		assert_true(a->size == b->size);
		assert_ts_equal(a->mtime, b->mtime);
		assert_true(a->src_ino == b->src_ino);
		assert_ts_equal(a->src_ctime, b->src_ctime);
		/* The store copy's identity as recorded at the take, not again. */
		assert_true(a->store_ino == b->store_ino);
		assert_ts_equal(a->store_ctime, b->store_ctime);
		if (a->type == 'l')
			assert_memory_equal(a->sha256, b->sha256, 32);
	}

	/* STORE/s1 is still dated by the snapshot instant, to the ns. */
	snap_path(x, "s1", NULL, p, sizeof(p));
	assert_ts_equal(lstat_ok(p).st_mtim, after.time);
	assert_ts_equal(lstat_ok(p).st_mtim, st.instant);

	assert_true(listed(x, "s1", &sealed, &lt));
	assert_true(sealed);
	assert_ts_equal(lt, st.instant);
	assert_int_equal(ts_store_seal_state_of(&x->s, "s1"), TS_STORE_SEALED);
	ts_manifest_free(&before);
	ts_manifest_free(&after);

	/* The manifest can be read by a fresh reader and the tree is intact. */
	tu_tree_path(x->store, "s1", "db/trac.db", p, sizeof(p));
	assert_int_equal(db_tickets(p), 3);
}

/* 3. Sealing a sealed snapshot changes nothing. */
static void test_seal_twice(void **state)
{
	fx *x = *state;
	ts_seal_stats ss;
	char mp[TBUF], dp[TBUF];
	unsigned char *c1, *c2;
	size_t l1, l2;
	struct stat m1, m2, d1, d2;

	take_unsealed(x, "s1", NULL);
	seal_ok(x, "s1", NULL);
	snap_path(x, "s1", "manifest", mp, sizeof(mp));
	snap_path(x, "s1", NULL, dp, sizeof(dp));
	c1 = tu_slurp(mp, &l1);
	m1 = lstat_ok(mp);
	d1 = lstat_ok(dp);

	/* Make a rewrite visible in the manifest's mtime. */
	{
		struct timespec nap = { 0, 20 * 1000 * 1000 };

		nanosleep(&nap, NULL);
	}
	memset(&ss, 0x5a, sizeof(ss));
	seal_ok(x, "s1", &ss);
	assert_true(ss.files_hashed == 0);
	assert_true(ss.bytes_hashed == 0);

	c2 = tu_slurp(mp, &l2);
	m2 = lstat_ok(mp);
	d2 = lstat_ok(dp);
	assert_int_equal(l1, l2);
	assert_memory_equal(c1, c2, l1);
	assert_int_equal(m1.st_ino, m2.st_ino);
	assert_ts_equal(m2.st_mtim, m1.st_mtim);
	assert_ts_equal(d2.st_mtim, d1.st_mtim);
	assert_false(marker_present(x, "s1"));
	snap_dir_clean(x, "s1", false);
	free(c1);
	free(c2);
}

/* 4. A snapshot left unsealed by another boot is hidden, then removed by
 * the next writer; the others stay. */
static void test_lost_snapshot(void **state)
{
	fx *x = *state;
	char p[TBUF];
	bool sealed = false;
	ts_err e;
	struct stat a, b;

	take_unsealed(x, "A", NULL);
	seal_ok(x, "A", NULL);
	take_unsealed(x, "B", NULL);
	assert_int_equal(n_listed(x), 2);
	/* B shares A's unchanged files. */
	tu_tree_path(x->store, "A", "files/attachments/ticket/1/big.bin", p, sizeof(p));
	a = lstat_ok(p);
	tu_tree_path(x->store, "B", "files/attachments/ticket/1/big.bin", p, sizeof(p));
	b = lstat_ok(p);
	assert_int_equal(a.st_ino, b.st_ino);

	snap_path(x, "B", TS_STORE_UNSEALED, p, sizeof(p));
	tu_put_bytes(p, FAKE_BOOT, strlen(FAKE_BOOT), 0600);

	assert_int_equal(ts_store_seal_state_of(&x->s, "B"), TS_STORE_UNSEALED_LOST);
	assert_int_equal(ts_store_seal_state_of(&x->s, "A"), TS_STORE_SEALED);
	assert_false(listed(x, "B", NULL, NULL));
	assert_true(listed(x, "A", &sealed, NULL));
	assert_true(sealed);
	assert_int_equal(n_listed(x), 1);
	/* Nothing removed by readers. */
	snap_path(x, "B", NULL, p, sizeof(p));
	assert_true(tu_exists(p));

	ts_err_clear(&e);
	if (ts_store_lock(&x->s, 5, &e) != TS_OK)
		fail_msg("lock: %s", e.msg);
	ts_store_unlock(&x->s);

	snap_path(x, "B", NULL, p, sizeof(p));
	assert_false(tu_exists(p));
	assert_false(ts_store_exists(&x->s, "B"));
	{
		DIR *d = opendir(x->store);
		struct dirent *de;

		assert_non_null(d);
		while ((de = readdir(d)) != NULL)
			if (!strncmp(de->d_name, ".del-", 5) || !strncmp(de->d_name, ".tmp-", 5))
				fail_msg("leftover %s", de->d_name);
		closedir(d);
	}
	/* A intact, its shared files too. */
	assert_true(listed(x, "A", &sealed, NULL));
	assert_true(sealed);
	tu_tree_path(x->store, "A", "files/attachments/ticket/1/big.bin", p, sizeof(p));
	assert_int_equal(lstat_ok(p).st_ino, a.st_ino);
	check_sealed(x, "A");
	tu_tree_path(x->store, "A", "db/trac.db", p, sizeof(p));
	assert_int_equal(db_tickets(p), 3);
}

/* 5. A stored file whose size changed before sealing: refused, unsealed. */
static void test_seal_size_changed(void **state)
{
	fx *x = *state;
	const char *rel = "files/attachments/ticket/1/big.bin";
	char p[TBUF];
	ts_err e;
	ts_manifest m;
	bool sealed = true;

	take_unsealed(x, "s1", NULL);
	tu_tree_path(x->store, "s1", rel, p, sizeof(p));
	assert_int_equal(chmod(p, 0644), 0);
	assert_int_equal(truncate(p, 1000), 0);

	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "s1", NULL, NULL, &e), TS_ERR_CORRUPT);
	assert_int_equal(e.code, TS_ERR_CORRUPT);
	if (!strstr(e.msg, rel))
		fail_msg("message does not name %s: %s", rel, e.msg);

	assert_true(marker_present(x, "s1"));
	read_manifest(x, "s1", &m);
	assert_non_null(m.unsealed_boot);
	assert_false(ts_manifest_sealed(&m));
	assert_true(ts_manifest_find(&m, rel)->pending);
	ts_manifest_free(&m);
	snap_dir_clean(x, "s1", true);
	assert_true(listed(x, "s1", &sealed, NULL));
	assert_false(sealed);
	assert_int_equal(ts_store_seal_state_of(&x->s, "s1"), TS_STORE_UNSEALED_NOW);

	/* Back to its recorded size (the content is not checked before the
	 * hash exists); now a read-only file in a 0555 directory grows. */
	tu_tree_path(x->store, "s1", rel, p, sizeof(p));
	assert_int_equal(truncate(p, BIG_LEN), 0);
	tu_tree_path(x->store, "s1", "ro/f", p, sizeof(p));
	assert_int_equal(chmod(p, 0644), 0);
	assert_int_equal(truncate(p, 100), 0);
	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "s1", NULL, NULL, &e), TS_ERR_CORRUPT);
	if (!strstr(e.msg, "ro/f"))
		fail_msg("message does not name ro/f: %s", e.msg);
	assert_true(marker_present(x, "s1"));
}

/* 5b. An unsealed manifest damaged at its last entry: the seal, which
 * hashes and writes it a chunk at a time, has written most of the sealed
 * one when it finds the fault; it fails with the manifest's own line,
 * leaves no temporary file, and the snapshot stays unsealed as it was. */
static void test_seal_damaged_manifest(void **state)
{
	fx *x = *state;
	char p[TBUF], *text, *bad;
	size_t len;
	ts_err e;

	take_unsealed(x, "s1", NULL);
	snap_path(x, "s1", "manifest", p, sizeof(p));
	text = tu_slurp(p, &len);
	char *end = strstr(text, "\nend\n"), *tab = end;
	assert_non_null(end);
	while (tab[-1] != '\t')
		tab--;
	size_t keep = (size_t)(tab - text);
	bad = malloc(keep + 8);
	assert_non_null(bad);
	memcpy(bad, text, keep);
	memcpy(bad + keep, ".\nend\n", 6);   /* the last path made the root's: out of order */
	tu_put_bytes(p, bad, keep + 6, 0600);
	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "s1", NULL, NULL, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "snapshot s1: manifest:"));
	assert_non_null(strstr(e.msg, "not sorted"));
	assert_true(marker_present(x, "s1"));
	snap_dir_clean(x, "s1", true);
	size_t len2;
	char *after = tu_slurp(p, &len2);
	assert_int_equal(len2, keep + 6);
	assert_memory_equal(after, bad, len2);   /* the manifest as it was */
	free(after);
	free(bad);
	free(text);
}

/* 6. A snapshot removed before it was sealed. */
static void test_seal_removed(void **state)
{
	fx *x = *state;
	ts_err e;

	take_unsealed(x, "s1", NULL);
	ts_err_clear(&e);
	assert_int_equal(ts_store_lock(&x->s, 5, &e), TS_OK);
	assert_int_equal(ts_store_remove(&x->s, "s1", &e), TS_OK);
	ts_store_unlock(&x->s);

	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "s1", NULL, NULL, &e), TS_ERR_NOTFOUND);
	assert_int_equal(e.code, TS_ERR_NOTFOUND);
	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "never-was", NULL, NULL, &e), TS_ERR_NOTFOUND);
	assert_int_equal(n_listed(x), 0);
}

/* 7b. Two sealers of one snapshot take turns (seal.h): one that finds the
 * marker locked waits, writes nothing meanwhile, and once its turn comes
 * either finds the snapshot sealed by the other (leaving its manifest as
 * it is) or seals it itself. */
typedef struct seal_turn {
	fx *x;
	const char *name;
	ts_err_code rc;
	int done;   /* atomic */
} seal_turn;

static void *seal_turn_main(void *arg)
{
	seal_turn *t = arg;
	ts_err e;

	ts_err_clear(&e);
	t->rc = ts_seal(&t->x->s, t->name, NULL, NULL, &e);
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_seal_takes_turns(void **state)
{
	fx *x = *state;
	const char *names[2] = { "s1", "s2" };

	for (int k = 0; k < 2; k++) {
		seal_turn t = { .x = x, .name = names[k] };
		struct timespec nap = { 0, 300 * 1000 * 1000 };
		char mp[TBUF], kp[TBUF];
		unsigned char *c1, *c2;
		size_t l1, l2;
		pthread_t th;
		int fd;

		take_unsealed(x, names[k], NULL);
		snap_path(x, names[k], "manifest", mp, sizeof(mp));
		snap_path(x, names[k], "unsealed", kp, sizeof(kp));
		c1 = tu_slurp(mp, &l1);
		fd = open(kp, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(flock(fd, LOCK_EX), 0);   /* "another sealer" */
		assert_int_equal(pthread_create(&th, NULL, seal_turn_main, &t), 0);
		nanosleep(&nap, NULL);
		/* Waiting: neither the manifest nor the marker touched. */
		assert_int_equal(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
		assert_true(marker_present(x, names[k]));
		c2 = tu_slurp(mp, &l2);
		assert_int_equal(l1, l2);
		assert_memory_equal(c1, c2, l1);
		free(c2);
		if (k == 0)   /* the other finished: marker gone, its manifest stays */
			assert_int_equal(unlink(kp), 0);
		close(fd);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(t.rc, TS_OK);
		assert_false(marker_present(x, names[k]));
		if (k == 0) {
			c2 = tu_slurp(mp, &l2);
			assert_int_equal(l1, l2);
			assert_memory_equal(c1, c2, l1);
			free(c2);
		} else {
			check_sealed(x, names[k]);
		}
		free(c1);
	}
}

/* 7. Cancelled: stays unsealed, and can be sealed later. */
static void test_seal_cancel(void **state)
{
	fx *x = *state;
	volatile sig_atomic_t cancel = 1;
	ts_err e;
	ts_manifest m;
	unsigned n = 99;

	take_unsealed(x, "s1", NULL);
	ts_err_clear(&e);
	assert_int_equal(ts_seal(&x->s, "s1", &cancel, NULL, &e), TS_ERR_CANCELLED);
	assert_int_equal(e.code, TS_ERR_CANCELLED);
	assert_true(marker_present(x, "s1"));
	read_manifest(x, "s1", &m);
	assert_non_null(m.unsealed_boot);
	assert_false(ts_manifest_sealed(&m));
	ts_manifest_free(&m);
	snap_dir_clean(x, "s1", true);
	assert_int_equal(ts_store_seal_state_of(&x->s, "s1"), TS_STORE_UNSEALED_NOW);

	/* ts_seal_all too. */
	ts_err_clear(&e);
	assert_int_equal(ts_seal_all(&x->s, &cancel, true, &n, &e), TS_ERR_CANCELLED);
	assert_int_equal(n, 0);
	assert_true(marker_present(x, "s1"));

	/* Cleared: seals. */
	cancel = 0;
	seal_ok(x, "s1", NULL);
	check_sealed(x, "s1");
}

/* 8. A snapshot shares pending files with an unsealed previous one; both
 * get sealed with the right hashes. */
static void test_share_from_unsealed(void **state)
{
	fx *x = *state;
	ts_snap_stats s2;
	ts_manifest m;
	ts_err e;
	unsigned n = 99;
	char pa[TBUF], pb[TBUF];
	static const char *const shared[] = {
		"files/attachments/ticket/1/big.bin", "conf/trac.ini", "htdocs/a.txt", "ro/f",
	};

	take_unsealed(x, "A", NULL);
	take_unsealed(x, "B", &s2);
	assert_true(s2.files_shared >= 4);
	assert_true(s2.bytes_shared >= BIG_LEN);
	for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
		tu_tree_path(x->store, "A", shared[i], pa, sizeof(pa));
		tu_tree_path(x->store, "B", shared[i], pb, sizeof(pb));
		if (lstat_ok(pa).st_ino != lstat_ok(pb).st_ino)
			fail_msg("%s: not shared between A and B", shared[i]);
	}
	read_manifest(x, "B", &m);
	assert_non_null(m.unsealed_boot);
	for (size_t i = 0; i < m.n; i++)
		if (m.entries[i].type == 'f' && !m.entries[i].pending)
			fail_msg("%s: not pending in B (shared from an unsealed A)", m.entries[i].path);
	for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++)
		assert_true(ts_manifest_find(&m, shared[i])->pending);
	ts_manifest_free(&m);

	ts_err_clear(&e);
	if (ts_seal_all(&x->s, NULL, true, &n, &e) != TS_OK)
		fail_msg("seal all: %s", e.msg);
	assert_int_equal(n, 2);
	assert_false(marker_present(x, "A"));
	assert_false(marker_present(x, "B"));
	check_sealed(x, "A");
	check_sealed(x, "B");
	{
		ts_manifest ma, mb;

		read_manifest(x, "A", &ma);
		read_manifest(x, "B", &mb);
		for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++)
			assert_memory_equal(ts_manifest_find(&ma, shared[i])->sha256,
			                    ts_manifest_find(&mb, shared[i])->sha256, 32);
		ts_manifest_free(&ma);
		ts_manifest_free(&mb);
	}
	/* And a third, shared from the sealed B: hashes carried over, not pending. */
	take_unsealed(x, "C", NULL);
	read_manifest(x, "C", &m);
	for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
		const ts_manifest_entry *me = ts_manifest_find(&m, shared[i]);
		unsigned char want[32];

		assert_false(me->pending);
		tu_tree_path(x->store, "C", shared[i], pa, sizeof(pa));
		tu_sha_file(pa, want);
		assert_memory_equal(me->sha256, want, 32);
	}
	assert_true(ts_manifest_find(&m, "db/trac.db")->pending);
	ts_manifest_free(&m);
	ts_err_clear(&e);
	assert_int_equal(ts_seal_all(&x->s, NULL, true, &n, &e), TS_OK);
	assert_int_equal(n, 1);
	check_sealed(x, "C");
}

/* 9. Nothing to seal: ts_seal_all does nothing and succeeds. */
static void test_seal_all_nothing(void **state)
{
	fx *x = *state;
	ts_err e;
	unsigned n = 99;
	char pa[TBUF], pb[TBUF];
	unsigned char *ca, *cb;
	size_t la, lb;
	struct stat sa, sb;

	/* Empty store. */
	ts_err_clear(&e);
	assert_int_equal(ts_seal_all(&x->s, NULL, true, &n, &e), TS_OK);
	assert_int_equal(n, 0);
	assert_int_equal(ts_seal_all(&x->s, NULL, true, NULL, &e), TS_OK);

	take_unsealed(x, "A", NULL);
	seal_ok(x, "A", NULL);
	take_unsealed(x, "B", NULL);
	seal_ok(x, "B", NULL);
	snap_path(x, "A", "manifest", pa, sizeof(pa));
	snap_path(x, "B", "manifest", pb, sizeof(pb));
	ca = tu_slurp(pa, &la);
	cb = tu_slurp(pb, &lb);
	sa = lstat_ok(pa);
	sb = lstat_ok(pb);

	n = 99;
	ts_err_clear(&e);
	assert_int_equal(ts_seal_all(&x->s, NULL, true, &n, &e), TS_OK);
	assert_int_equal(n, 0);
	/* Sealed ones untouched, even with cancel set (nothing to cancel). */
	{
		volatile sig_atomic_t cancel = 1;

		n = 99;
		assert_int_equal(ts_seal_all(&x->s, &cancel, true, &n, &e), TS_OK);
		assert_int_equal(n, 0);
	}
	{
		size_t l;
		unsigned char *c = tu_slurp(pa, &l);

		assert_int_equal(l, la);
		assert_memory_equal(c, ca, la);
		free(c);
		c = tu_slurp(pb, &l);
		assert_int_equal(l, lb);
		assert_memory_equal(c, cb, lb);
		free(c);
	}
	assert_int_equal(lstat_ok(pa).st_ino, sa.st_ino);
	assert_int_equal(lstat_ok(pb).st_ino, sb.st_ino);
	assert_ts_equal(lstat_ok(pa).st_mtim, sa.st_mtim);
	assert_ts_equal(lstat_ok(pb).st_mtim, sb.st_mtim);
	free(ca);
	free(cb);
	check_sealed(x, "A");
	check_sealed(x, "B");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_take_leaves_unsealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_size_changed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_damaged_manifest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_takes_turns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_share_from_unsealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_all_nothing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
