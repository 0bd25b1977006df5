/* test_manifest.c - the per-snapshot manifest: format, round trip, rejections. */
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
#include <unistd.h>

#include "store/manifest.h"
#include "tutil.h"

#define HEX_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[64];
static char file[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/tracsnap-test-manifest.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(file, sizeof(file), "%s/manifest", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(file);
	rmdir(dir);
	return 0;
}

/* ---- escaping and hex ---------------------------------------------------- */

static void esc_is(const char *raw, const char *want)
{
	char *s = ts_manifest_escape(raw);
	char *back;

	assert_non_null(s);
	assert_string_equal(s, want);
	back = ts_manifest_unescape(s);
	assert_non_null(back);
	assert_string_equal(back, raw);
	free(back);
	free(s);
}

static void test_escape(void **state)
{
	char all[256], *s, *back;
	int i;

	(void)state;
	esc_is("", "");
	esc_is("plain/path.txt", "plain/path.txt");
	esc_is("a b", "a\\x20b");
	esc_is("a\tb", "a\\tb");
	esc_is("a\nb", "a\\nb");
	esc_is("a\rb", "a\\rb");
	esc_is("a\\b", "a\\\\b");
	esc_is("\x01\x1f\x7f", "\\x01\\x1f\\x7f");
	esc_is("\xc3\xa9\xff\x80", "\xc3\xa9\xff\x80"); /* UTF-8 or not: verbatim */
	esc_is("\\x20", "\\\\x20");

	/* Every byte value survives, and the escaped form has no TAB, LF,
	 * space or other control byte. */
	for (i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	s = ts_manifest_escape(all);
	assert_non_null(s);
	for (i = 0; s[i]; i++)
		assert_false((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f);
	back = ts_manifest_unescape(s);
	assert_non_null(back);
	assert_memory_equal(back, all, 256);
	free(back);
	free(s);
}

static void test_unescape_bad(void **state)
{
	static const char *const bad[] = {
		"\\", "a\\", "\\q", "\\x", "\\x4", "\\x4g", "\\xg4", "\\x00", "a b", "a\tb",
		"a\rb", "a\x7f", "\\T", "\\N",
	};
	size_t i;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = ts_manifest_unescape(bad[i]);
		if (s)
			fail_msg("'%s' unescaped to '%s'", bad[i], s);
	}
	assert_null(ts_manifest_unescape(NULL));
	assert_null(ts_manifest_escape(NULL));
	s = ts_manifest_unescape("\\x4A\\x4a");
	assert_non_null(s);
	assert_string_equal(s, "JJ");
	free(s);
}

static void test_sha256_hex(void **state)
{
	unsigned char d[32], back[32];
	char hex[65];
	int i;

	(void)state;
	for (i = 0; i < 32; i++)
		d[i] = (unsigned char)(i * 8 + 7);
	ts_sha256_hex(d, hex);
	assert_int_equal(strlen(hex), 64);
	assert_string_equal(hex, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
	memset(back, 0, sizeof(back));
	assert_true(ts_sha256_unhex(hex, back));
	assert_memory_equal(back, d, 32);

	memset(back, 0x55, sizeof(back));
	assert_false(ts_sha256_unhex("070F171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff", back));
	assert_false(ts_sha256_unhex("070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7f", back));
	assert_false(ts_sha256_unhex("070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff0", back));
	assert_false(ts_sha256_unhex("g70f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff", back));
	assert_false(ts_sha256_unhex("", back));
	assert_false(ts_sha256_unhex("-", back));
	assert_false(ts_sha256_unhex(NULL, back));
	for (i = 0; i < 32; i++)
		assert_int_equal(back[i], 0x55); /* untouched on failure */
}

/* ---- building, sorting, finding ----------------------------------------- */

static void test_sort_find(void **state)
{
	static const char *const paths[] = {
		"conf/trac.ini", ".", "files", "conf", "a b", "conf/trac.ini.sample", "db",
		"conf-old", "-x", "db/trac.db",
	};
	ts_manifest m;
	size_t i;

	(void)state;
	ts_manifest_init(&m);
	assert_null(ts_manifest_find(&m, "."));
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		ts_manifest_entry *ent = ts_manifest_add(&m, 'f', paths[i]);

		assert_non_null(ent);
		assert_int_equal(ent->type, 'f');
		assert_string_equal(ent->path, paths[i]);
		assert_ptr_not_equal(ent->path, paths[i]); /* copied */
		ent->size = i;
	}
	assert_int_equal(m.n, sizeof(paths) / sizeof(paths[0]));
	ts_manifest_sort(&m);
	for (i = 1; i < m.n; i++)
		assert_true(strcmp(m.entries[i - 1].path, m.entries[i].path) < 0);
	/* Parents before children. */
	assert_string_equal(m.entries[0].path, "-x");
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const ts_manifest_entry *ent = ts_manifest_find(&m, paths[i]);

		assert_non_null(ent);
		assert_string_equal(ent->path, paths[i]);
		assert_int_equal(ent->size, i); /* the entry moved with its data */
	}
	assert_null(ts_manifest_find(&m, "conf/trac"));
	assert_null(ts_manifest_find(&m, "zzz"));
	assert_null(ts_manifest_find(&m, ""));
	assert_null(ts_manifest_find(&m, "-"));
	ts_manifest_free(&m);
	assert_int_equal(m.n, 0);
	assert_null(m.entries);
}

/* Many entries: the array grows past its first allocation. */
static void test_many(void **state)
{
	ts_manifest m, r;
	char p[32];
	ts_err e;
	int i;

	(void)state;
	ts_manifest_init(&m);
	m.env = strdup("/e");
	for (i = 2999; i >= 0; i--) {
		ts_manifest_entry *ent;

		snprintf(p, sizeof(p), "f%05d", i);
		ent = ts_manifest_add(&m, 'f', p);
		assert_non_null(ent);
		ent->src_ino = (uint64_t)i;
	}
	ts_manifest_sort(&m);
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	assert_int_equal(ts_manifest_read(file, &r, &e), TS_OK);
	assert_int_equal(r.n, 3000);
	assert_int_equal(ts_manifest_find(&r, "f01234")->src_ino, 1234);
	ts_manifest_free(&r);
	ts_manifest_free(&m);
}

/* ---- round trip ----------------------------------------------------------- */

static char *long_path(void)
{
	char *p = malloc(4001);
	int i;

	assert_non_null(p);
	for (i = 0; i < 4000; i++)
		p[i] = (i % 100 == 99) ? '/' : (char)('a' + i % 26);
	p[3999] = 'z'; /* no trailing '/' */
	p[4000] = '\0';
	return p;
}

static void fill(ts_manifest *m, char *lp)
{
	ts_manifest_entry *ent;

	ts_manifest_init(m);
	m->time.tv_sec = 1700000000;
	m->time.tv_nsec = 123456789;
	m->env = strdup("/srv/trac/my env\twith\\odd\nbytes\xff");
	assert_non_null(m->env);

	ent = ts_manifest_add(m, 'd', ".");
	ent->mode = 0755;
	ent->mtime.tv_sec = 1;
	ent = ts_manifest_add(m, 'f', "with space");
	ent->mode = 04755;
	ent->uid = 4294967294u;
	ent->gid = 65534;
	ent->size = UINT64_MAX;
	ent->mtime.tv_sec = -1;            /* before 1970 */
	ent->mtime.tv_nsec = 999999999;
	memset(ent->sha256, 0xab, 32);
	ent->src_ino = UINT64_MAX;
	ent->src_ctime.tv_sec = 1700000001;
	ent->src_ctime.tv_nsec = 5;
	ent = ts_manifest_add(m, 'f', "tab\there");
	ent->mode = 0600;
	ent->sha256[31] = 1;
	ent = ts_manifest_add(m, 'f', "new\nline\r");
	ent->mode = 01777;
	ent = ts_manifest_add(m, 'f', "back\\slash");
	ent = ts_manifest_add(m, 'f', "bad\xff\xfeutf8\xc3");
	ent = ts_manifest_add(m, 'l', "link");
	ent->size = 10;
	ent->mode = 0777;
	ent = ts_manifest_add(m, 'd', "dir");
	ent = ts_manifest_add(m, 'f', lp);
	ent->size = 42;
	ts_manifest_sort(m);
}

static void same_entry(const ts_manifest_entry *a, const ts_manifest_entry *b)
{
	assert_string_equal(a->path, b->path);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_true(a->size == b->size);
	assert_int_equal(a->mtime.tv_sec, b->mtime.tv_sec);
	assert_int_equal(a->mtime.tv_nsec, b->mtime.tv_nsec);
	if (a->type != 'd')
		assert_memory_equal(a->sha256, b->sha256, 32);
	assert_true(a->src_ino == b->src_ino);
	assert_int_equal(a->src_ctime.tv_sec, b->src_ctime.tv_sec);
	assert_int_equal(a->src_ctime.tv_nsec, b->src_ctime.tv_nsec);
}

static void test_round_trip(void **state)
{
	char *lp = long_path();
	ts_manifest m, r;
	struct stat st;
	ts_err e;
	size_t i;

	(void)state;
	fill(&m, lp);
	ts_err_clear(&e);
	if (ts_manifest_write(&m, file, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	memset(&r, 0x5a, sizeof(r)); /* the reader initialises */
	if (ts_manifest_read(file, &r, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(r.time.tv_sec, 1700000000);
	assert_int_equal(r.time.tv_nsec, 123456789);
	assert_string_equal(r.env, m.env);
	assert_null(r.external_db);
	assert_null(r.external_db_rel);
	assert_false(r.no_database);
	assert_int_equal(r.n, m.n);
	for (i = 0; i < m.n; i++)
		same_entry(&m.entries[i], &r.entries[i]);
	assert_non_null(ts_manifest_find(&r, lp));
	assert_non_null(ts_manifest_find(&r, "new\nline\r"));
	ts_manifest_free(&r);

	/* Overwriting works and takes the mode back to 0600. */
	assert_int_equal(chmod(file, 0644), 0);
	m.no_database = true;
	m.external_db = strdup("/var/lib/trac dbs/x.db");
	m.external_db_rel = strdup("tracsnap-external-db/x.db");
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(ts_manifest_read(file, &r, &e), TS_OK);
	assert_true(r.no_database);
	assert_string_equal(r.external_db, "/var/lib/trac dbs/x.db");
	assert_string_equal(r.external_db_rel, "tracsnap-external-db/x.db");
	assert_int_equal(r.n, m.n);
	ts_manifest_free(&r);
	ts_manifest_free(&m);
	free(lp);
}

/* The layout on disk, field by field (manifest.h). */
static void test_format(void **state)
{
	ts_manifest m;
	ts_manifest_entry *ent;
	char *text;
	ts_err e;

	(void)state;
	ts_manifest_init(&m);
	m.time.tv_sec = 1700000000;
	m.time.tv_nsec = 1;
	m.env = strdup("/srv/my env");
	m.external_db = strdup("/data/x.db");
	m.external_db_rel = strdup("tracsnap-external-db/x.db");
	m.no_database = true;
	ent = ts_manifest_add(&m, 'd', ".");
	ent->mode = 040755; /* type bits are dropped */
	ent->mtime.tv_sec = 5;
	ent = ts_manifest_add(&m, 'f', "a b");
	ent->mode = 0644;
	ent->uid = 33;
	ent->gid = 34;
	ent->size = 6;
	ent->mtime.tv_sec = 7;
	ent->mtime.tv_nsec = 8;
	memset(ent->sha256, 0x01, 32);
	ent->src_ino = 99;
	ent->src_ctime.tv_sec = 10;
	ent->src_ctime.tv_nsec = 11;
	ts_manifest_sort(&m);
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	text = tu_slurp(file, NULL);
	assert_string_equal(text,
		"tracsnap-manifest\t1\n"
		"time\t1700000000.000000001\n"
		"env\t/srv/my\\x20env\n"
		"external-db\t/data/x.db\ttracsnap-external-db/x.db\n"
		"no-database\n"
		"entries\t2\n"
		"d\t0755\t0\t0\t0\t5.000000000\t-\t0\t0.000000000\t.\n"
		"f\t0644\t33\t34\t6\t7.000000008\t"
		"0101010101010101010101010101010101010101010101010101010101010101"
		"\t99\t10.000000011\ta\\x20b\n"
		"end\n");
	free(text);
	ts_manifest_free(&m);
}

static void test_write_refuses(void **state)
{
	ts_manifest m;
	ts_err e;

	(void)state;
	unlink(file);
	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'f', "b");
	ts_manifest_add(&m, 'f', "a");
	/* Not sorted: the reader would refuse the file, so none is written. */
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_ERR_CORRUPT);
	assert_int_equal(access(file, F_OK), -1);
	ts_manifest_sort(&m);
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	unlink(file);
	ts_manifest_add(&m, 'f', "b");
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_ERR_CORRUPT); /* duplicate */
	ts_manifest_free(&m);

	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'f', "../etc/passwd");
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_ERR_CORRUPT);
	ts_manifest_free(&m);

	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'x', "a");
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_ERR_CORRUPT);
	ts_manifest_free(&m);

	ts_manifest_init(&m); /* no env */
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_ERR_CORRUPT);
	assert_int_equal(access(file, F_OK), -1);

	m.env = strdup("/e");
	assert_int_equal(ts_manifest_write(&m, "/nonexistent-dir/manifest", &e), TS_ERR_NOTFOUND);
	ts_manifest_free(&m);
}

/* What the reader refuses about sealing is never written either. */
static void write_refused(ts_manifest *m, const char *why)
{
	ts_err e;

	unlink(file);
	ts_err_clear(&e);
	assert_int_equal(ts_manifest_write(m, file, &e), TS_ERR_CORRUPT);
	if (!strstr(e.msg, why))
		fail_msg("message '%s', want '%s'", e.msg, why);
	assert_int_equal(access(file, F_OK), -1);
}

static void test_write_refuses_unsealed(void **state)
{
	static const char *const bad_boot[] = {
		"", "ABCDEF", "a b", "a/b", "a\tb", "a\nb", "g", "x",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", /* 65 */
	};
	ts_manifest m;
	ts_manifest_entry *ent;
	ts_err e;
	size_t i;

	(void)state;
	ts_manifest_init(&m);
	m.env = strdup("/e");
	ent = ts_manifest_add(&m, 'f', "a");
	/* A pending file in a manifest that claims to be sealed. */
	ent->pending = true;
	write_refused(&m, "pending in a sealed manifest");
	m.unsealed_boot = strdup("14fb3176-495d-41a4-8546-7a479d8a9546");
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	for (i = 0; i < sizeof(bad_boot) / sizeof(bad_boot[0]); i++) {
		free(m.unsealed_boot);
		m.unsealed_boot = strdup(bad_boot[i]);
		write_refused(&m, "bad boot id");
	}
	free(m.unsealed_boot);
	m.unsealed_boot = strdup("14fb3176-495d-41a4-8546-7a479d8a9546");
	/* Only regular files can be pending. */
	ent = ts_manifest_add(&m, 'l', "b");
	ent->pending = true;
	write_refused(&m, "pending but not a file");
	ent->pending = false;
	ent = ts_manifest_add(&m, 'd', "c");
	ent->pending = true;
	write_refused(&m, "pending but not a file");
	ent->pending = false;
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	ts_manifest_free(&m);
	assert_null(m.unsealed_boot);
}

/* ---- reading: rejections ------------------------------------------------- */

#define L1 "tracsnap-manifest\t1\n"
#define L2 "time\t1700000000.000000001\n"
#define L3 "env\t/srv/trac/x\n"
#define L4 "entries\t3\n"
#define E1 "d\t0755\t0\t0\t0\t1700000000.000000000\t-\t0\t0.000000000\t.\n"
#define E2 "d\t0755\t33\t33\t0\t1700000000.000000000\t-\t12\t1700000000.500000000\tconf\n"
#define E3 "f\t0600\t33\t33\t6061\t1700000000.000000000\t" HEX_A "\t13\t1700000000.500000000\tconf/trac.ini\n"
#define END "end\n"
#define GOOD L1 L2 L3 L4 E1 E2 E3 END

static ts_err_code read_text(const char *text, size_t len, ts_manifest *m, ts_err *e)
{
	tu_put_bytes(file, text, len, 0600);
	ts_err_clear(e);
	return ts_manifest_read(file, m, e);
}

/* text must be refused as corrupt at line; the manifest is left empty. */
static void bad_at(const char *text, unsigned line, const char *why)
{
	char prefix[200];
	ts_manifest m;
	ts_err e;

	if (read_text(text, strlen(text), &m, &e) == TS_OK) {
		ts_manifest_free(&m);
		fail_msg("accepted:\n%s", text);
	}
	if (e.code != TS_ERR_CORRUPT)
		fail_msg("code %s (%s) for:\n%s", ts_err_name(e.code), e.msg, text);
	snprintf(prefix, sizeof(prefix), "%s:%u: ", file, line);
	if (strncmp(e.msg, prefix, strlen(prefix)) != 0 || !strstr(e.msg, why))
		fail_msg("message '%s', want '%s...%s'", e.msg, prefix, why);
	assert_int_equal(m.n, 0);
	assert_null(m.entries);
	assert_null(m.env);
	assert_null(m.unsealed_boot);
}

static void test_read_good_base(void **state)
{
	ts_manifest m;
	ts_err e;

	(void)state;
	assert_int_equal(read_text(GOOD, strlen(GOOD), &m, &e), TS_OK);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.entries[2].path, "conf/trac.ini");
	assert_int_equal(m.entries[2].mode, 0600);
	assert_int_equal(m.entries[2].size, 6061);
	assert_int_equal(m.entries[2].src_ctime.tv_nsec, 500000000);
	assert_int_equal(m.entries[2].sha256[0], 0x01);
	assert_int_equal(m.entries[2].sha256[31], 0xef);
	ts_manifest_free(&m);

	/* Missing file. */
	unlink(file);
	assert_int_equal(ts_manifest_read(file, &m, &e), TS_ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, file));
}

/* A manifest that is a symlink (to a good one) or a FIFO is refused as
 * damage, at once: never read through the link, never blocking on a FIFO. */
static void test_read_not_regular(void **state)
{
	char other[160];
	ts_manifest m;
	ts_err e;

	(void)state;
	tu_fmt(other, sizeof other, "%s/elsewhere", dir);
	tu_put_bytes(other, GOOD, strlen(GOOD), 0600);
	unlink(file);
	assert_int_equal(symlink(other, file), 0);
	assert_int_equal(ts_manifest_read(file, &m, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest is a symlink"));
	unlink(file);
	assert_int_equal(mkfifo(file, 0600), 0);
	assert_int_equal(ts_manifest_read(file, &m, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest is not a regular file"));
	unlink(file);
	unlink(other);
}

static void test_read_bad_first_line(void **state)
{
	(void)state;
	bad_at("", 1, "empty");
	bad_at("tracsnap-manifest\t2\n" L2 L3 L4 E1 E2 E3 END, 1, "version");
	bad_at("tracsnap-manifest 1\n" L2 L3 L4 E1 E2 E3 END, 1, "not a tracsnap manifest");
	bad_at("hello\n" L2 L3 L4 E1 E2 E3 END, 1, "not a tracsnap manifest");
	bad_at("tracsnap-manifest\t1\t\n" L2 L3 L4 E1 E2 E3 END, 1, "");
	bad_at("tracsnap-manifest\t1", 1, "not terminated");
}

static void test_read_bad_header(void **state)
{
	(void)state;
	bad_at(L1, 2, "missing 'time'");
	bad_at(L1 L3 L4 E1 E2 E3 END, 2, "expected 'time'");
	bad_at(L1 "time\t1700000000\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t1.12345678\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t1.1234567890\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\tx.000000000\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t1.00000000x\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t+1.000000000\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t99999999999999999999.000000000\n" L3 L4 E1 E2 E3 END, 2, "bad time");
	bad_at(L1 "time\t1.000000000\tx\n" L3 L4 E1 E2 E3 END, 2, "field");
	bad_at(L1 "time 1.000000000\n" L3 L4 E1 E2 E3 END, 2, "expected 'time'");
	bad_at(L1 L2, 3, "missing 'env'");
	bad_at(L1 L2 "env\t\n" L4 E1 E2 E3 END, 3, "bad environment path");
	bad_at(L1 L2 "env\t/a b\n" L4 E1 E2 E3 END, 3, "bad escape");
	bad_at(L1 L2 "env\n" L4 E1 E2 E3 END, 3, "field");
	bad_at(L1 L2 L3, 4, "missing 'entries'");
	bad_at(L1 L2 L3 E1 E2 E3 END, 4, "expected 'entries'");
	bad_at(L1 L2 L3 "entries\tabc\n" E1 E2 E3 END, 4, "bad entry count");
	bad_at(L1 L2 L3 "entries\t-1\n" E1 E2 E3 END, 4, "bad entry count");
	bad_at(L1 L2 L3 "entries\t\n" E1 E2 E3 END, 4, "bad entry count");
	bad_at(L1 L2 L3 "entries\t99999999999999999999999\n" E1 E2 E3 END, 4, "bad entry count");
	bad_at(L1 L2 L3 "external-db\t/x.db\n" L4 E1 E2 E3 END, 4, "field");
	bad_at(L1 L2 L3 "external-db\t/x.db\t../x.db\n" L4 E1 E2 E3 END, 4, "bad external");
	/* Fixed order: no-database after external-db, each once. */
	bad_at(L1 L2 L3 "no-database\nexternal-db\t/x.db\tx.db\n" L4 E1 E2 E3 END, 5, "expected 'entries'");
	bad_at(L1 L2 L3 "no-database\nno-database\n" L4 E1 E2 E3 END, 5, "expected 'entries'");
	bad_at(L1 L2 L3 "no-database\tyes\n" L4 E1 E2 E3 END, 4, "expected 'entries'");
}

static void test_read_bad_entries(void **state)
{
	(void)state;
	/* Field count. */
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\tconf/trac.ini\n" END,
	       7, "fields");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/x\textra\n" END,
	       7, "fields");
	bad_at(L1 L2 L3 L4 E1 E2 "\n" END, 7, "fields");
	/* Type. */
	bad_at(L1 L2 L3 L4 E1 E2 "x\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/trac.ini\n" END, 7, "bad type");
	bad_at(L1 L2 L3 L4 E1 E2 "ff\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/trac.ini\n" END, 7, "bad type");
	/* Octal mode. */
	bad_at(L1 L2 L3 L4 "d\t0855\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad mode");
	bad_at(L1 L2 L3 L4 "d\t755\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad mode");
	bad_at(L1 L2 L3 L4 "d\t07555\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad mode");
	bad_at(L1 L2 L3 L4 "d\t-755\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad mode");
	/* Decimal numbers. */
	bad_at(L1 L2 L3 L4 "d\t0755\t-1\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad owner");
	bad_at(L1 L2 L3 L4 "d\t0755\t4294967296\t0\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad owner");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t\t0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad owner");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t+0\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad size");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t18446744073709551616\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad size");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t1e3\t1.000000000\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad size");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.0\t-\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad mtime");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.000000000\t-\t0x1\t0.000000000\t.\n" E2 E3 END, 5, "bad source inode");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.000000000\t-\t0\t0.-00000000\t.\n" E2 E3 END, 5, "bad source ctime");
	/* Hex. */
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" "ABCDEF" HEX_A "\t13\t1.000000000\tconf/trac.ini\n" END, 7, "bad sha256");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t-\t13\t1.000000000\tconf/trac.ini\n" END, 7, "bad sha256");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t"
	       "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\t13\t1.000000000\tconf/trac.ini\n" END, 7, "bad sha256");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.000000000\t" HEX_A "\t0\t0.000000000\t.\n" E2 E3 END, 5, "bad sha256");
	/* Escapes and paths. */
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/tr\\qac.ini\n" END, 7, "bad escape");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/x\\x0g\n" END, 7, "bad escape");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/x\\\n" END, 7, "bad escape");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/x\\x00\n" END, 7, "bad escape");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/a b\n" END, 7, "bad escape");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/../../x\n" END, 7, "bad path");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf//x\n" END, 7, "bad path");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/x/\n" END, 7, "bad path");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/./x\n" END, 7, "bad path");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\t\n" END, 7, "bad path");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t/\n" E2 E3 END, 5, "bad path");
	bad_at(L1 L2 L3 L4 "d\t0755\t0\t0\t0\t1.000000000\t-\t0\t0.000000000\t..\n" E2 E3 END, 5, "bad path");
}

static void test_read_bad_structure(void **state)
{
	static const char nul[] = L1 L2 L3 L4 E1 "d\t0755\t33\t33\t0\t1.000000000\t-\t12\t1.000000000\tco\0nf\n" E3 END;
	ts_manifest m;
	ts_err e;

	(void)state;
	/* Count differs from the 'entries' line. */
	bad_at(L1 L2 L3 "entries\t4\n" E1 E2 E3 END, 8, "4 entries announced, 3 found");
	bad_at(L1 L2 L3 "entries\t2\n" E1 E2 E3 END, 7, "more entries than");
	bad_at(L1 L2 L3 "entries\t0\n" E1 END, 5, "more entries than");
	/* Missing or damaged 'end'. */
	bad_at(L1 L2 L3 L4 E1 E2 E3, 8, "missing 'end'");
	bad_at(L1 L2 L3 L4 E1 E2 E3 "end", 8, "not terminated");
	bad_at(L1 L2 L3 L4 E1 E2 E3 "END\n", 8, "more entries than");
	bad_at(L1 L2 L3 L4 E1 E2 E3 "end\t\n", 8, "more entries than");
	/* Trailing garbage. */
	bad_at(GOOD "x\n", 9, "data after 'end'");
	bad_at(GOOD "\n", 9, "data after 'end'");
	bad_at(GOOD "x", 9, "data after 'end'");
	bad_at(GOOD GOOD, 9, "data after 'end'");
	/* Order. */
	bad_at(L1 L2 L3 L4 E1 E3 E2 END, 7, "not sorted");
	bad_at(L1 L2 L3 L4 E2 E1 E3 END, 6, "not sorted");
	bad_at(L1 L2 L3 L4 E1 E2 E2 END, 7, "duplicate path");
	/* CR LF line ends, NUL bytes. */
	bad_at("tracsnap-manifest\t1\r\n" L2 L3 L4 E1 E2 E3 END, 1, "");
	bad_at(L1 L2 L3 L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t" HEX_A "\t13\t1.000000000\tconf/trac.ini\r\n" END,
	       7, "bad escape");
	assert_int_equal(read_text(nul, sizeof(nul) - 1, &m, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, ":6: NUL"));
	assert_int_equal(m.n, 0);

	/* A directory is not a manifest. */
	ts_err_clear(&e);
	assert_int_not_equal(ts_manifest_read(dir, &m, &e), TS_OK);
	assert_int_equal(m.n, 0);
}

/* ---- unsealed manifests ---------------------------------------------------- */

#define BOOT "14fb3176-495d-41a4-8546-7a479d8a9546"
#define LU "unsealed\t" BOOT "\n"
/* E3 with its hash not computed yet. */
#define E3P "f\t0600\t33\t33\t6061\t1700000000.000000000\t-\t13\t1700000000.500000000\tconf/trac.ini\n"
#define E4L "l\t0777\t33\t33\t8\t1700000000.000000000\t" HEX_A "\t14\t1700000000.500000000\tconf/x\n"
#define E4LP "l\t0777\t33\t33\t8\t1700000000.000000000\t-\t14\t1700000000.500000000\tconf/x\n"

/* The state an accepted manifest must be in, whatever the input. */
static void sane_sealing(const ts_manifest *m)
{
	size_t i, pending = 0;

	if (m->unsealed_boot) {
		size_t len = strlen(m->unsealed_boot);

		assert_true(len >= 1 && len <= 64);
		assert_int_equal(strspn(m->unsealed_boot, "0123456789abcdef-"), len);
	}
	for (i = 0; i < m->n; i++) {
		const ts_manifest_entry *ent = &m->entries[i];
		static const unsigned char zero[32];

		if (!ent->pending)
			continue;
		pending++;
		assert_int_equal(ent->type, 'f');
		assert_non_null(m->unsealed_boot);
		assert_memory_equal(ent->sha256, zero, 32);
	}
	assert_int_equal(ts_manifest_sealed(m), !m->unsealed_boot && pending == 0);
}

/* Build an unsealed manifest: pending and hashed files, a link, directories.
 * The pending entries get garbage in sha256, which must not be written. */
static void fill_unsealed(ts_manifest *m)
{
	ts_manifest_entry *ent;

	ts_manifest_init(m);
	m->time.tv_sec = 1700000000;
	m->time.tv_nsec = 42;
	m->env = strdup("/srv/trac/e");
	m->no_database = true;
	m->unsealed_boot = strdup(BOOT);
	assert_non_null(m->unsealed_boot);
	ent = ts_manifest_add(m, 'd', ".");
	ent->mode = 0755;
	ent = ts_manifest_add(m, 'd', "conf");
	ent->mode = 0750;
	ent = ts_manifest_add(m, 'f', "conf/trac.ini");
	ent->size = 6061;
	ent->pending = true;
	memset(ent->sha256, 0xcd, 32);
	ent = ts_manifest_add(m, 'f', "README");
	ent->size = 99;
	memset(ent->sha256, 0x3c, 32);
	ent->sha256[0] = 0;
	ent = ts_manifest_add(m, 'l', "link");
	ent->size = 6;
	memset(ent->sha256, 0x77, 32);
	ent = ts_manifest_add(m, 'f', "attachments/big file");
	ent->size = 1u << 30;
	ent->pending = true;
	ent->src_ino = 77;
	ent = ts_manifest_add(m, 'f', "VERSION");
	ent->size = 27;
	memset(ent->sha256, 0xfe, 32);
	ts_manifest_sort(m);
}

static void test_unsealed_round_trip(void **state)
{
	static const unsigned char zero[32];
	ts_manifest m, r;
	const ts_manifest_entry *a, *b;
	char *text;
	ts_err e;
	size_t i, pending = 0;

	(void)state;
	fill_unsealed(&m);
	assert_false(ts_manifest_sealed(&m));
	ts_err_clear(&e);
	if (ts_manifest_write(&m, file, &e) != TS_OK)
		fail_msg("%s", e.msg);
	text = tu_slurp(file, NULL);
	assert_non_null(strstr(text, "\nno-database\nunsealed\t" BOOT "\nentries\t7\n"));
	assert_non_null(strstr(text, "\t-\t77\t0.000000000\tattachments/big\\x20file\n"));
	assert_non_null(strstr(text, "\t-\t0\t0.000000000\tconf/trac.ini\n"));
	assert_null(strstr(text, "cdcdcdcd")); /* a pending hash is not written */
	free(text);

	memset(&r, 0x5a, sizeof(r)); /* the reader initialises */
	if (ts_manifest_read(file, &r, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_non_null(r.unsealed_boot);
	assert_string_equal(r.unsealed_boot, BOOT);
	assert_ptr_not_equal(r.unsealed_boot, m.unsealed_boot);
	assert_true(r.no_database);
	assert_false(ts_manifest_sealed(&r));
	assert_int_equal(r.n, m.n);
	for (i = 0; i < m.n; i++) {
		a = &m.entries[i];
		b = &r.entries[i];
		assert_string_equal(a->path, b->path);
		assert_int_equal(a->type, b->type);
		assert_int_equal(a->size, b->size);
		assert_int_equal(a->mode, b->mode);
		assert_true(a->src_ino == b->src_ino);
		assert_int_equal(a->pending, b->pending);
		if (b->pending) {
			pending++;
			assert_memory_equal(b->sha256, zero, 32);
		} else if (b->type != 'd') {
			assert_memory_equal(a->sha256, b->sha256, 32);
		}
	}
	assert_int_equal(pending, 2);
	assert_true(ts_manifest_find(&r, "conf/trac.ini")->pending);
	assert_true(ts_manifest_find(&r, "attachments/big file")->pending);
	assert_false(ts_manifest_find(&r, "README")->pending);
	assert_false(ts_manifest_find(&r, "link")->pending);
	assert_false(ts_manifest_find(&r, "VERSION")->pending);
	assert_int_equal(ts_manifest_find(&r, "VERSION")->sha256[0], 0xfe);
	assert_int_equal(ts_manifest_find(&r, "link")->sha256[31], 0x77);
	sane_sealing(&r);
	ts_manifest_free(&r);
	assert_null(r.unsealed_boot);

	/* Hashes done, not durable yet: unsealed, no pending entry. */
	for (i = 0; i < m.n; i++) {
		if (m.entries[i].pending) {
			m.entries[i].pending = false;
			memset(m.entries[i].sha256, 0x11, 32);
		}
	}
	assert_false(ts_manifest_sealed(&m));
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	assert_int_equal(ts_manifest_read(file, &r, &e), TS_OK);
	assert_string_equal(r.unsealed_boot, BOOT);
	assert_false(ts_manifest_sealed(&r));
	for (i = 0; i < r.n; i++)
		assert_false(r.entries[i].pending);
	assert_int_equal(ts_manifest_find(&r, "conf/trac.ini")->sha256[5], 0x11);
	ts_manifest_free(&r);

	/* Sealed: the line is gone, as in manifests from before sealing. */
	free(m.unsealed_boot);
	m.unsealed_boot = NULL;
	assert_true(ts_manifest_sealed(&m));
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	text = tu_slurp(file, NULL);
	assert_null(strstr(text, "unsealed"));
	assert_non_null(strstr(text, "\nno-database\nentries\t7\n"));
	free(text);
	assert_int_equal(ts_manifest_read(file, &r, &e), TS_OK);
	assert_null(r.unsealed_boot);
	assert_true(ts_manifest_sealed(&r));
	ts_manifest_free(&r);
	ts_manifest_free(&m);
}

/* The exact layout of the optional line and of a pending entry. */
static void test_format_unsealed(void **state)
{
	ts_manifest m;
	ts_manifest_entry *ent;
	char *text;
	ts_err e;

	(void)state;
	ts_manifest_init(&m);
	m.time.tv_sec = 1700000000;
	m.time.tv_nsec = 1;
	m.env = strdup("/srv/e");
	m.external_db = strdup("/data/x.db");
	m.external_db_rel = strdup("tracsnap-external-db/x.db");
	m.unsealed_boot = strdup(BOOT);
	ent = ts_manifest_add(&m, 'd', ".");
	ent->mode = 0755;
	ent = ts_manifest_add(&m, 'f', "a");
	ent->mode = 0644;
	ent->size = 6;
	ent->pending = true;
	ent = ts_manifest_add(&m, 'f', "b");
	ent->mode = 0644;
	memset(ent->sha256, 0x01, 32);
	assert_int_equal(ts_manifest_write(&m, file, &e), TS_OK);
	text = tu_slurp(file, NULL);
	assert_string_equal(text,
		"tracsnap-manifest\t1\n"
		"time\t1700000000.000000001\n"
		"env\t/srv/e\n"
		"external-db\t/data/x.db\ttracsnap-external-db/x.db\n"
		"unsealed\t" BOOT "\n"
		"entries\t3\n"
		"d\t0755\t0\t0\t0\t0.000000000\t-\t0\t0.000000000\t.\n"
		"f\t0644\t0\t0\t6\t0.000000000\t-\t0\t0.000000000\ta\n"
		"f\t0644\t0\t0\t0\t0.000000000\t"
		"0101010101010101010101010101010101010101010101010101010101010101"
		"\t0\t0.000000000\tb\n"
		"end\n");
	free(text);
	ts_manifest_free(&m);
}

static void test_read_unsealed_good(void **state)
{
	static const unsigned char zero[32];
	static const char *const good_boot[] = {
		"-", "0", "f", BOOT, "14fb3176495d41a485467a479d8a9546",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", /* 64 */
	};
	char text[1024];
	ts_manifest m;
	ts_err e;
	size_t i;

	(void)state;
	/* A pending file. */
	assert_int_equal(read_text(L1 L2 L3 LU L4 E1 E2 E3P END,
	                           strlen(L1 L2 L3 LU L4 E1 E2 E3P END), &m, &e), TS_OK);
	assert_string_equal(m.unsealed_boot, BOOT);
	assert_int_equal(m.n, 3);
	assert_false(m.entries[0].pending);
	assert_false(m.entries[1].pending);
	assert_true(m.entries[2].pending);
	assert_memory_equal(m.entries[2].sha256, zero, 32);
	assert_int_equal(m.entries[2].size, 6061);
	assert_false(ts_manifest_sealed(&m));
	sane_sealing(&m);
	ts_manifest_free(&m);

	/* No pending entry: valid, still unsealed. */
	assert_int_equal(read_text(L1 L2 L3 LU L4 E1 E2 E3 END,
	                           strlen(L1 L2 L3 LU L4 E1 E2 E3 END), &m, &e), TS_OK);
	assert_string_equal(m.unsealed_boot, BOOT);
	for (i = 0; i < m.n; i++)
		assert_false(m.entries[i].pending);
	assert_int_equal(m.entries[2].sha256[0], 0x01);
	assert_false(ts_manifest_sealed(&m));
	ts_manifest_free(&m);

	/* After both other optional lines; no entries at all. */
	assert_int_equal(read_text(L1 L2 L3 "external-db\t/d/x.db\tx/x.db\n" "no-database\n" LU
	                           "entries\t0\n" END,
	                           strlen(L1 L2 L3 "external-db\t/d/x.db\tx/x.db\n" "no-database\n" LU
	                                  "entries\t0\n" END), &m, &e), TS_OK);
	assert_true(m.no_database);
	assert_non_null(m.external_db);
	assert_string_equal(m.unsealed_boot, BOOT);
	assert_int_equal(m.n, 0);
	assert_false(ts_manifest_sealed(&m));
	ts_manifest_free(&m);

	/* An old (sealed) manifest: no line, nothing pending. */
	assert_int_equal(read_text(GOOD, strlen(GOOD), &m, &e), TS_OK);
	assert_null(m.unsealed_boot);
	for (i = 0; i < m.n; i++)
		assert_false(m.entries[i].pending);
	assert_true(ts_manifest_sealed(&m));
	ts_manifest_free(&m);

	/* Boot ids: 1 to 64 bytes of [0-9a-f-]. */
	for (i = 0; i < sizeof(good_boot) / sizeof(good_boot[0]); i++) {
		snprintf(text, sizeof(text), L1 L2 L3 "unsealed\t%s\n" L4 E1 E2 E3P END, good_boot[i]);
		if (read_text(text, strlen(text), &m, &e) != TS_OK)
			fail_msg("boot id '%s' refused: %s", good_boot[i], e.msg);
		assert_string_equal(m.unsealed_boot, good_boot[i]);
		assert_true(m.entries[2].pending);
		ts_manifest_free(&m);
	}
}

static void test_read_bad_unsealed(void **state)
{
	static const char *const bad_boot[] = {
		"", "14FB3176-495D-41A4-8546-7A479D8A9546", "A", "14fb3176 495d", " 14fb", "14fb ",
		"14fb/3176", "/", "..", "14fb\\x20", "g", "14fb_3176", "+1",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", /* 65 */
		"\xc3\xa9",
	};
	char text[1024];
	size_t i;

	(void)state;
	/* A pending file needs the unsealed line; other types never pend. */
	bad_at(L1 L2 L3 L4 E1 E2 E3P END, 7, "bad sha256");
	bad_at(L1 L2 L3 "no-database\n" L4 E1 E2 E3P END, 8, "bad sha256");
	bad_at(L1 L2 L3 LU "entries\t4\n" E1 E2 E3P E4LP END, 9, "bad sha256");
	bad_at(L1 L2 L3 "entries\t4\n" E1 E2 E3 E4LP END, 8, "bad sha256");
	bad_at(L1 L2 L3 LU "entries\t4\n" E1 E2 E3 E4L END "x", 11, "data after"); /* E4L is fine */
	bad_at(L1 L2 L3 LU L4 "d\t0755\t0\t0\t0\t1.000000000\t" HEX_A "\t0\t0.000000000\t.\n" E2 E3P END,
	       6, "bad sha256");
	/* Nothing else than "-" or a full hash, even when unsealed. */
	bad_at(L1 L2 L3 LU L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t--\t13\t1.000000000\tconf/trac.ini\n" END,
	       8, "bad sha256");
	bad_at(L1 L2 L3 LU L4 E1 E2 "f\t0600\t33\t33\t6061\t1.000000000\t\t13\t1.000000000\tconf/trac.ini\n" END,
	       8, "bad sha256");

	/* Bad boot ids. */
	for (i = 0; i < sizeof(bad_boot) / sizeof(bad_boot[0]); i++) {
		snprintf(text, sizeof(text), L1 L2 L3 "unsealed\t%s\n" L4 E1 E2 E3P END, bad_boot[i]);
		bad_at(text, 4, "bad boot id");
	}
	bad_at(L1 L2 L3 "unsealed\n" L4 E1 E2 E3 END, 4, "field");
	bad_at(L1 L2 L3 "unsealed\t" BOOT "\tx\n" L4 E1 E2 E3 END, 4, "field");
	bad_at(L1 L2 L3 "unsealed\t" BOOT "\t\n" L4 E1 E2 E3 END, 4, "field");
	bad_at(L1 L2 L3 "unsealed " BOOT "\n" L4 E1 E2 E3 END, 4, "expected 'entries'");
	bad_at(L1 L2 L3 "Unsealed\t" BOOT "\n" L4 E1 E2 E3 END, 4, "expected 'entries'");
	bad_at(L1 L2 L3 "unsealedx\t" BOOT "\n" L4 E1 E2 E3 END, 4, "expected 'entries'");
	bad_at(L1 L2 L3 LU, 5, "missing 'entries'");

	/* Wrong place: once, after no-database, before entries. */
	bad_at(L1 L2 L3 LU LU L4 E1 E2 E3P END, 5, "expected 'entries'");
	bad_at(L1 L2 L3 LU "no-database\n" L4 E1 E2 E3 END, 5, "expected 'entries'");
	bad_at(L1 L2 L3 LU "external-db\t/x.db\tx.db\n" L4 E1 E2 E3 END, 5, "expected 'entries'");
	bad_at(L1 L2 LU L3 L4 E1 E2 E3 END, 3, "expected 'env'");
	bad_at(L1 LU L2 L3 L4 E1 E2 E3 END, 2, "expected 'time'");
	bad_at(L1 L2 L3 L4 LU E1 E2 E3 END, 5, "fields");
	bad_at(L1 L2 L3 L4 LU E1 E2 E3P END, 5, "fields");
	bad_at(L1 L2 L3 L4 E1 LU E2 E3 END, 6, "fields");
	bad_at(L1 L2 L3 LU L4 E1 E2 E3P LU END, 9, "more entries than");
	bad_at(L1 L2 L3 L4 E1 E2 E3 END LU, 9, "data after 'end'");
}

static void test_sealed(void **state)
{
	ts_manifest m;
	ts_manifest_entry *ent;
	size_t i;

	(void)state;
	ts_manifest_init(&m);
	assert_null(m.unsealed_boot);
	assert_true(ts_manifest_sealed(&m));
	ent = ts_manifest_add(&m, 'f', "a");
	assert_false(ent->pending);
	ts_manifest_add(&m, 'd', "b");
	ts_manifest_add(&m, 'l', "c");
	assert_true(ts_manifest_sealed(&m));
	/* The header alone makes it unsealed. */
	m.unsealed_boot = strdup(BOOT);
	assert_false(ts_manifest_sealed(&m));
	/* So does a pending entry alone (the writer refuses that state). */
	free(m.unsealed_boot);
	m.unsealed_boot = NULL;
	m.entries[0].pending = true;
	assert_false(ts_manifest_sealed(&m));
	m.entries[0].pending = false;
	assert_true(ts_manifest_sealed(&m));
	/* The last entry counts too. */
	m.entries[m.n - 1].pending = true;
	assert_false(ts_manifest_sealed(&m));
	ts_manifest_free(&m);
	assert_null(m.unsealed_boot);

	/* New entries are never pending, even in reused memory: fill an array
	 * with pending entries, free it, build one of the same size again. */
	ts_manifest_init(&m);
	for (i = 0; i < 200; i++) {
		char p[16];

		snprintf(p, sizeof(p), "p%03zu", i);
		ent = ts_manifest_add(&m, 'f', p);
		assert_non_null(ent);
		memset(ent, 0xff, offsetof(ts_manifest_entry, path));
		ent->pending = true;
	}
	ts_manifest_free(&m);
	ts_manifest_init(&m);
	for (i = 0; i < 200; i++) {
		char p[16];

		snprintf(p, sizeof(p), "p%03zu", i);
		ent = ts_manifest_add(&m, 'f', p);
		assert_non_null(ent);
		assert_false(ent->pending);
		assert_int_equal(ent->size, 0);
	}
	assert_true(ts_manifest_sealed(&m));
	ts_manifest_free(&m);
}

/* Every proper prefix of a valid file is refused; damaged bytes never crash
 * (the sanitizer and valgrind runs make this a small fuzz test). */
static void truncate_and_mutate(const char *good, size_t len, size_t n)
{
	char *buf = malloc(len);
	size_t i;
	unsigned seed = 12345;
	ts_manifest m;
	ts_err e;
	int k;

	assert_non_null(buf);
	assert_int_equal(read_text(good, len, &m, &e), TS_OK);
	assert_int_equal(m.n, n);
	ts_manifest_free(&m);
	for (i = 0; i < len; i++) {
		if (read_text(good, i, &m, &e) == TS_OK)
			fail_msg("prefix of %zu bytes accepted", i);
		assert_int_equal(m.n, 0);
	}
	for (k = 0; k < 1500; k++) {
		memcpy(buf, good, len);
		for (i = 0; i < 1 + (size_t)(k % 3); i++) {
			seed = seed * 1103515245u + 12345u;
			size_t pos = (seed >> 8) % len;
			seed = seed * 1103515245u + 12345u;
			buf[pos] = (char)(seed >> 16);
		}
		if (read_text(buf, len, &m, &e) == TS_OK) {
			/* Only a harmless change may pass: still sorted, sane. */
			for (i = 1; i < m.n; i++)
				assert_true(strcmp(m.entries[i - 1].path, m.entries[i].path) < 0);
			sane_sealing(&m);
			ts_manifest_free(&m);
		} else {
			assert_int_equal(m.n, 0);
			assert_null(m.unsealed_boot);
		}
	}
	free(buf);
}

static void test_read_truncated_and_mutated(void **state)
{
	static const char good[] = L1 L2 "env\t/srv/a\\x20b\n" "external-db\t/d/x.db\tx/x.db\n" "no-database\n"
	                           L4 E1 E2 E3 END;
	static const char unsealed[] = L1 L2 "env\t/srv/a\\x20b\n" "external-db\t/d/x.db\tx/x.db\n"
	                               "no-database\n" LU "entries\t4\n" E1 E2 E3P E4L END;

	(void)state;
	truncate_and_mutate(good, sizeof(good) - 1, 3);
	truncate_and_mutate(unsealed, sizeof(unsealed) - 1, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_unescape_bad),
		cmocka_unit_test(test_sha256_hex),
		cmocka_unit_test(test_sort_find),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_write_refuses),
		cmocka_unit_test(test_read_good_base),
		cmocka_unit_test(test_read_not_regular),
		cmocka_unit_test(test_read_bad_first_line),
		cmocka_unit_test(test_read_bad_header),
		cmocka_unit_test(test_read_bad_entries),
		cmocka_unit_test(test_read_bad_structure),
		cmocka_unit_test(test_write_refuses_unsealed),
		cmocka_unit_test(test_unsealed_round_trip),
		cmocka_unit_test(test_format_unsealed),
		cmocka_unit_test(test_read_unsealed_good),
		cmocka_unit_test(test_read_bad_unsealed),
		cmocka_unit_test(test_sealed),
		cmocka_unit_test(test_read_truncated_and_mutated),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
