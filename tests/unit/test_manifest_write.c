/* test_manifest_write.c - writing a manifest (store/manifest.h,
 * manifest_write.c): the round trip through the reader, the exact layout,
 * sealed and unsealed, and what the writer refuses to write. */
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

#include "manifestfx.h"

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
	ent->store_ino = UINT64_MAX - 1;
	ent->store_ctime.tv_sec = 1700000002;
	ent->store_ctime.tv_nsec = 999999999;
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
	assert_true(a->store_ino == b->store_ino);
	assert_int_equal(a->store_ctime.tv_sec, b->store_ctime.tv_sec);
	assert_int_equal(a->store_ctime.tv_nsec, b->store_ctime.tv_nsec);
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
	if (ts_manifest_write(&m, mfx_file, &e) != TS_OK)
		fail_msg("%s", e.msg);
	assert_int_equal(stat(mfx_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	memset(&r, 0x5a, sizeof(r)); /* the reader initialises */
	if (ts_manifest_read(mfx_file, &r, &e) != TS_OK)
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
	assert_int_equal(chmod(mfx_file, 0644), 0);
	m.no_database = true;
	m.external_db = strdup("/var/lib/trac dbs/x.db");
	m.external_db_rel = strdup("tracsnap-external-db/x.db");
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	assert_int_equal(stat(mfx_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(ts_manifest_read(mfx_file, &r, &e), TS_OK);
	assert_true(r.no_database);
	assert_string_equal(r.external_db, "/var/lib/trac dbs/x.db");
	assert_string_equal(r.external_db_rel, "tracsnap-external-db/x.db");
	assert_int_equal(r.n, m.n);
	ts_manifest_free(&r);
	ts_manifest_free(&m);
	free(lp);
}

/* The layout on disk, field by field (manifest.h). */
/* Every byte but NUL and '/' in a path: the writer escapes it as
 * ts_manifest_escape does (the reader's other callers use that one), and
 * the reader gives the bytes back. */
static void test_escape_every_byte(void **state)
{
	ts_manifest m, r;
	char path[256], line[1024], *text, *esc;
	size_t n = 0;
	ts_err e;

	(void)state;
	for (int c = 1; c < 256; c++)
		if (c != '/')
			path[n++] = (char)c;
	path[n] = '\0';
	ts_manifest_init(&m);
	m.env = strdup("/e");
	assert_non_null(ts_manifest_add(&m, 'f', path));
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	text = tu_slurp(mfx_file, NULL);
	esc = ts_manifest_escape(path);
	snprintf(line, sizeof(line), "\t%s\nend\n", esc);
	assert_non_null(strstr(text, line));
	assert_int_equal(ts_manifest_read(mfx_file, &r, &e), TS_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.entries[0].path, path);
	free(esc);
	free(text);
	ts_manifest_free(&r);
	ts_manifest_free(&m);
}

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
	ent->store_ino = 12;
	ent->store_ctime.tv_sec = 13;
	ent->store_ctime.tv_nsec = 14;
	ts_manifest_sort(&m);
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	text = tu_slurp(mfx_file, NULL);
	assert_string_equal(text,
		"tracsnap-manifest\t2\n"
		"time\t1700000000.000000001\n"
		"env\t/srv/my\\x20env\n"
		"external-db\t/data/x.db\ttracsnap-external-db/x.db\n"
		"no-database\n"
		"entries\t2\n"
		"d\t0755\t0\t0\t0\t5.000000000\t-\t0\t0.000000000\t0\t0.000000000\t.\n"
		"f\t0644\t33\t34\t6\t7.000000008\t"
		"0101010101010101010101010101010101010101010101010101010101010101"
		"\t99\t10.000000011\t12\t13.000000014\ta\\x20b\n"
		"end\n");
	free(text);
	ts_manifest_free(&m);
}

static void test_write_refuses(void **state)
{
	ts_manifest m;
	ts_err e;

	(void)state;
	unlink(mfx_file);
	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'f', "b");
	ts_manifest_add(&m, 'f', "a");
	/* Not sorted: the reader would refuse the file, so none is written. */
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_ERR_CORRUPT);
	assert_int_equal(access(mfx_file, F_OK), -1);
	ts_manifest_sort(&m);
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	unlink(mfx_file);
	ts_manifest_add(&m, 'f', "b");
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_ERR_CORRUPT); /* duplicate */
	ts_manifest_free(&m);

	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'f', "../etc/passwd");
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_ERR_CORRUPT);
	ts_manifest_free(&m);

	ts_manifest_init(&m);
	m.env = strdup("/e");
	ts_manifest_add(&m, 'x', "a");
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_ERR_CORRUPT);
	ts_manifest_free(&m);

	ts_manifest_init(&m); /* no env */
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_ERR_CORRUPT);
	assert_int_equal(access(mfx_file, F_OK), -1);

	m.env = strdup("/e");
	assert_int_equal(ts_manifest_write(&m, "/nonexistent-dir/manifest", &e), TS_ERR_NOTFOUND);
	ts_manifest_free(&m);
}

/* What the reader refuses about sealing is never written either. */
static void write_refused(ts_manifest *m, const char *why)
{
	ts_err e;

	unlink(mfx_file);
	ts_err_clear(&e);
	assert_int_equal(ts_manifest_write(m, mfx_file, &e), TS_ERR_CORRUPT);
	if (!strstr(e.msg, why))
		fail_msg("message '%s', want '%s'", e.msg, why);
	assert_int_equal(access(mfx_file, F_OK), -1);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	ts_manifest_free(&m);
	assert_null(m.unsealed_boot);
}

/* ---- unsealed manifests ---------------------------------------------------- */

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
	if (ts_manifest_write(&m, mfx_file, &e) != TS_OK)
		fail_msg("%s", e.msg);
	text = tu_slurp(mfx_file, NULL);
	assert_non_null(strstr(text, "\nno-database\nunsealed\t" BOOT "\nentries\t7\n"));
	assert_non_null(strstr(text, "\t-\t77\t0.000000000\t0\t0.000000000\tattachments/big\\x20file\n"));
	assert_non_null(strstr(text, "\t-\t0\t0.000000000\t0\t0.000000000\tconf/trac.ini\n"));
	assert_null(strstr(text, "cdcdcdcd")); /* a pending hash is not written */
	free(text);

	memset(&r, 0x5a, sizeof(r)); /* the reader initialises */
	if (ts_manifest_read(mfx_file, &r, &e) != TS_OK)
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
	mfx_sane_sealing(&r);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	assert_int_equal(ts_manifest_read(mfx_file, &r, &e), TS_OK);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	text = tu_slurp(mfx_file, NULL);
	assert_null(strstr(text, "unsealed"));
	assert_non_null(strstr(text, "\nno-database\nentries\t7\n"));
	free(text);
	assert_int_equal(ts_manifest_read(mfx_file, &r, &e), TS_OK);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	text = tu_slurp(mfx_file, NULL);
	assert_string_equal(text,
		"tracsnap-manifest\t2\n"
		"time\t1700000000.000000001\n"
		"env\t/srv/e\n"
		"external-db\t/data/x.db\ttracsnap-external-db/x.db\n"
		"unsealed\t" BOOT "\n"
		"entries\t3\n"
		"d\t0755\t0\t0\t0\t0.000000000\t-\t0\t0.000000000\t0\t0.000000000\t.\n"
		"f\t0644\t0\t0\t6\t0.000000000\t-\t0\t0.000000000\t0\t0.000000000\ta\n"
		"f\t0644\t0\t0\t0\t0.000000000\t"
		"0101010101010101010101010101010101010101010101010101010101010101"
		"\t0\t0.000000000\t0\t0.000000000\tb\n"
		"end\n");
	free(text);
	ts_manifest_free(&m);
}

/* ---- entry by entry ------------------------------------------------------- */

/* Gives m's entries as copies in scratch, from the one at skip on (n: none
 * skipped), as a take gives its items. */
typedef struct each_ctx {
	const ts_manifest *m;
	size_t skip;
} each_ctx;

static const ts_manifest_entry *each_next(void *arg, size_t i, ts_manifest_entry *scratch)
{
	const each_ctx *c = arg;
	*scratch = c->m->entries[i < c->skip ? i : i + 1];
	return scratch;
}

/* ts_manifest_write_each writes, byte for byte, what ts_manifest_write
 * writes of the same entries, sealed or not; an entry the reader would
 * refuse, or one out of order, fails it and leaves no file. */
static void test_write_each(void **state)
{
	ts_manifest m;
	char *lp = long_path(), other[160];
	size_t la, lb;
	ts_err e;

	(void)state;
	snprintf(other, sizeof(other), "%s.each", mfx_file);
	for (int sealed = 0; sealed < 2; sealed++) {
		if (sealed)
			fill(&m, lp);
		else
			fill_unsealed(&m);
		each_ctx c = { &m, m.n };
		assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
		assert_int_equal(ts_manifest_write_each(&m, m.n, each_next, &c, other, &e), TS_OK);
		unsigned char *a = tu_slurp(mfx_file, &la), *b = tu_slurp(other, &lb);
		assert_int_equal(la, lb);
		assert_memory_equal(a, b, la);
		free(a);
		free(b);

		/* Out of order: entry 1 given again where 2 is due. */
		ts_manifest_entry keep = m.entries[2];
		m.entries[2] = m.entries[1];
		assert_int_equal(ts_manifest_write_each(&m, m.n, each_next, &c, other, &e), TS_ERR_CORRUPT);
		assert_non_null(strstr(e.msg, "not sorted or duplicated at entry 2"));
		assert_int_equal(access(other, F_OK), -1);
		/* A bad type halfway. */
		m.entries[2].type = 'x';
		assert_int_equal(ts_manifest_write_each(&m, m.n, each_next, &c, other, &e), TS_ERR_CORRUPT);
		assert_int_equal(access(other, F_OK), -1);
		m.entries[2] = keep;
		ts_manifest_free(&m);
	}
	unlink(mfx_file);
	free(lp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_escape_every_byte),
		cmocka_unit_test(test_write_refuses),
		cmocka_unit_test(test_write_refuses_unsealed),
		cmocka_unit_test(test_unsealed_round_trip),
		cmocka_unit_test(test_format_unsealed),
		cmocka_unit_test(test_write_each),
	};

	return cmocka_run_group_tests(tests, mfx_setup, mfx_teardown);
}
