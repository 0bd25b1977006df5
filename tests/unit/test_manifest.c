/* test_manifest.c - the manifest in memory (store/manifest.h,
 * manifest.c): escaping paths, hex digests, adding, sorting and finding
 * entries, sealed or not.  Writing is tested in test_manifest_write.c,
 * reading in test_manifest_read.c, an entry against a stat in
 * test_manifest_stat.c. */
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
	/* From any hint, near or far, before or after: the same answer. */
	for (size_t h = 0; h <= m.n; h++) {
		const ts_manifest_entry *hint = h < m.n ? &m.entries[h] : NULL;
		for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			assert_ptr_equal(ts_manifest_find_after(&m, hint, paths[i]), ts_manifest_find(&m, paths[i]));
		assert_ptr_equal(ts_manifest_find_after(&m, hint, m.entries[m.n - 1].path), &m.entries[m.n - 1]);
		assert_null(ts_manifest_find_after(&m, hint, "conf/trac"));
		assert_null(ts_manifest_find_after(&m, hint, "zzz"));
		assert_null(ts_manifest_find_after(&m, hint, NULL));
	}
	ts_manifest_free(&m);
	assert_int_equal(m.n, 0);
	assert_null(m.entries);
}

/* Mostly sorted: a few entries appended out of order go into their place
 * (not through qsort), with their data. */
static void test_sort_tail(void **state)
{
	static const char *const late[] = { "p0999x", "a", "p0001" };
	ts_manifest_entry *ent;
	ts_manifest m;
	char p[32];
	size_t i;

	(void)state;
	ts_manifest_init(&m);
	for (i = 0; i < 1000; i += 2) {
		snprintf(p, sizeof(p), "p%04zu", i);
		ent = ts_manifest_add(&m, 'f', p);
		assert_non_null(ent);
		ent->size = i;
	}
	for (i = 0; i < sizeof(late) / sizeof(late[0]); i++) {
		ent = ts_manifest_add(&m, 'f', late[i]);
		assert_non_null(ent);
		ent->size = 5000 + i;
	}
	ts_manifest_sort(&m);
	assert_int_equal(m.n, 503);
	for (i = 1; i < m.n; i++)
		assert_true(strcmp(m.entries[i - 1].path, m.entries[i].path) < 0);
	assert_string_equal(m.entries[0].path, "a");
	for (i = 0; i < sizeof(late) / sizeof(late[0]); i++)
		assert_int_equal(ts_manifest_find(&m, late[i])->size, 5000 + i);
	assert_int_equal(ts_manifest_find(&m, "p0998")->size, 998);
	assert_int_equal(ts_manifest_find(&m, "p0000")->size, 0);
	ts_manifest_free(&m);
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
	assert_int_equal(ts_manifest_write(&m, mfx_file, &e), TS_OK);
	assert_int_equal(ts_manifest_read(mfx_file, &r, &e), TS_OK);
	assert_int_equal(r.n, 3000);
	assert_int_equal(ts_manifest_find(&r, "f01234")->src_ino, 1234);
	ts_manifest_free(&r);
	ts_manifest_free(&m);
}

/* ---- sealed or not ------------------------------------------------------- */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_unescape_bad),
		cmocka_unit_test(test_sha256_hex),
		cmocka_unit_test(test_sort_find),
		cmocka_unit_test(test_sort_tail),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_sealed),
	};

	return cmocka_run_group_tests(tests, mfx_setup, mfx_teardown);
}
