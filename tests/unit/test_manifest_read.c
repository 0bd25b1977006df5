/* test_manifest_read.c - reading a manifest (store/manifest.h,
 * manifest_read.c): a good file, and every kind of damage refused at its
 * line, sealed and unsealed, truncated and mutated. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/manifest.h"
#include "tutil.h"

#include "manifestfx.h"

#define HEX_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

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
	tu_put_bytes(mfx_file, text, len, 0600);
	ts_err_clear(e);
	return ts_manifest_read(mfx_file, m, e);
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
	snprintf(prefix, sizeof(prefix), "%s:%u: ", mfx_file, line);
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
	unlink(mfx_file);
	assert_int_equal(ts_manifest_read(mfx_file, &m, &e), TS_ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, mfx_file));
}

/* A manifest that is a symlink (to a good one) or a FIFO is refused as
 * damage, at once: never read through the link, never blocking on a FIFO. */
/* Version 2: each entry carries its store copy's identity (inode, ctime)
 * before the path; version 1's entries, without it, read with the identity
 * unknown (0).  Each version has exactly its own number of fields. */
#define V2 "tracsnap-manifest\t2\n"
#define F1 "d\t0755\t0\t0\t0\t1700000000.000000000\t-\t0\t0.000000000\t0\t0.000000000\t.\n"
#define F2 "d\t0755\t33\t33\t0\t1700000000.000000000\t-\t12\t1700000000.500000000\t0\t0.000000000\tconf\n"
#define F3 "f\t0600\t33\t33\t6061\t1700000000.000000000\t" HEX_A "\t13\t1700000000.500000000" \
	"\t18446744073709551615\t1700000002.000000007\tconf/trac.ini\n"
static void test_read_version2(void **state)
{
	ts_manifest m;
	ts_err e;
	const char *v2 = V2 L2 L3 L4 F1 F2 F3 END;

	(void)state;
	assert_int_equal(read_text(v2, strlen(v2), &m, &e), TS_OK);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.entries[2].path, "conf/trac.ini");
	assert_true(m.entries[2].src_ino == 13);
	assert_true(m.entries[2].store_ino == UINT64_MAX);
	assert_int_equal(m.entries[2].store_ctime.tv_sec, 1700000002);
	assert_int_equal(m.entries[2].store_ctime.tv_nsec, 7);
	assert_true(m.entries[1].store_ino == 0);
	ts_manifest_free(&m);

	/* Version 1: the same entries without the identity. */
	assert_int_equal(read_text(GOOD, strlen(GOOD), &m, &e), TS_OK);
	assert_int_equal(m.n, 3);
	assert_true(m.entries[2].store_ino == 0);
	assert_int_equal(m.entries[2].store_ctime.tv_sec, 0);
	assert_int_equal(m.entries[2].store_ctime.tv_nsec, 0);
	ts_manifest_free(&m);

	/* A version 2 entry in a version 1 file, and bad store fields. */
	bad_at(L1 L2 L3 L4 F1 F2 F3 END, 5, "entry needs 10 fields");
	bad_at(V2 L2 L3 L4 F1 F2 "f\t0600\t33\t33\t6061\t1700000000.000000000\t" HEX_A
	       "\t13\t1700000000.500000000\t-1\t1.000000000\tconf/trac.ini\n" END, 7, "bad store inode");
	bad_at(V2 L2 L3 L4 F1 F2 "f\t0600\t33\t33\t6061\t1700000000.000000000\t" HEX_A
	       "\t13\t1700000000.500000000\t1\t1.5\tconf/trac.ini\n" END, 7, "bad store ctime");
	bad_at(V2 L2 L3 L4 F1 F2 "f\t0600\t33\t33\t6061\t1700000000.000000000\t" HEX_A
	       "\t13\t1700000000.500000000\t1\t1.000000000\tx\tconf/trac.ini\n" END, 7, "entry needs 12");
}

static void test_read_not_regular(void **state)
{
	char other[160];
	ts_manifest m;
	ts_err e;

	(void)state;
	tu_fmt(other, sizeof other, "%s/elsewhere", mfx_dir);
	tu_put_bytes(other, GOOD, strlen(GOOD), 0600);
	unlink(mfx_file);
	assert_int_equal(symlink(other, mfx_file), 0);
	assert_int_equal(ts_manifest_read(mfx_file, &m, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest is a symlink"));
	unlink(mfx_file);
	assert_int_equal(mkfifo(mfx_file, 0600), 0);
	assert_int_equal(ts_manifest_read(mfx_file, &m, &e), TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest is not a regular file"));
	unlink(mfx_file);
	unlink(other);
}

static void test_read_bad_first_line(void **state)
{
	(void)state;
	bad_at("", 1, "empty");
	bad_at("tracsnap-manifest\t4\n" L2 L3 L4 E1 E2 E3 END, 1, "version");
	bad_at("tracsnap-manifest\t0\n" L2 L3 L4 E1 E2 E3 END, 1, "version");
	/* Version 1's entries in a version 2 file: the store fields missing. */
	bad_at("tracsnap-manifest\t2\n" L2 L3 L4 E1 E2 E3 END, 5, "entry needs 12 fields");
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
	assert_int_not_equal(ts_manifest_read(mfx_dir, &m, &e), TS_OK);
	assert_int_equal(m.n, 0);
}

/* ---- unsealed manifests ---------------------------------------------------- */

#define LU "unsealed\t" BOOT "\n"
/* E3 with its hash not computed yet. */
#define E3P "f\t0600\t33\t33\t6061\t1700000000.000000000\t-\t13\t1700000000.500000000\tconf/trac.ini\n"
#define E4L "l\t0777\t33\t33\t8\t1700000000.000000000\t" HEX_A "\t14\t1700000000.500000000\tconf/x\n"
#define E4LP "l\t0777\t33\t33\t8\t1700000000.000000000\t-\t14\t1700000000.500000000\tconf/x\n"

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
	mfx_sane_sealing(&m);
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
			mfx_sane_sealing(&m);
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

/* ---- a manifest with a base (manifest.h) ---------------------------------- */

#define V3 "tracsnap-manifest\t3\n"
#define LB "base\tmanifest.base\n"
#define F3P "f\t0600\t33\t33\t6061\t1700000000.000000000\t-\t13\t1700000000.500000000" \
	"\t5\t1700000002.000000007\tconf/trac.ini\n"
#define FDB "d\t0755\t33\t33\t0\t1700000009.000000000\t-\t20\t1700000009.000000000\t0\t0.000000000\tdb\n"
#define FDBF "f\t0644\t33\t33\t4096\t1700000009.000000000\t-\t0\t0.000000000\t7\t1700000009.000000000" \
	"\tdb/trac.db\n"
#define FZ "f\t0644\t33\t33\t1\t1700000000.000000000\t" HEX_A "\t30\t1700000000.500000000\t8" \
	"\t1700000000.000000000\tzz\n"

static void put_base(const char *text)
{
	char path[200];
	snprintf(path, sizeof path, "%s/manifest.base", mfx_dir);
	tu_put_bytes(path, text, strlen(text), 0600);
}

static void drop_base(void)
{
	char path[200];
	snprintf(path, sizeof path, "%s/manifest.base", mfx_dir);
	unlink(path);
}

/* The base's entries, each replaced by the listed one of the same path, and
 * the listed ones it lacks, in order; the header is the listing file's. */
static void test_read_with_base(void **state)
{
	const char *top = V3 "time\t1700000100.000000000\n" L3 LU LB "entries\t3\n" F3 FDB FDBF END;
	ts_manifest m;
	ts_err e;

	(void)state;
	put_base(V2 L2 "env\t/srv/old\n" LU "entries\t4\n" F1 F2 F3P FZ END);
	assert_int_equal(read_text(top, strlen(top), &m, &e), TS_OK);
	assert_null(m.base);
	assert_string_equal(m.env, "/srv/trac/x");
	assert_int_equal(m.time.tv_sec, 1700000100);
	assert_int_equal(m.n, 6);
	static const char *const order[] = { ".", "conf", "conf/trac.ini", "db", "db/trac.db", "zz" };
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(m.entries[i].path, order[i]);
	assert_false(m.entries[2].pending);           /* the listed entry, not the base's */
	assert_true(m.entries[2].store_ino == UINT64_MAX);
	assert_true(m.entries[4].pending);
	assert_true(m.entries[5].src_ino == 30);
	mfx_sane_sealing(&m);
	ts_manifest_free(&m);

	/* No entry listed: the base's, under this header. */
	const char *none = V3 L2 L3 LU LB "entries\t0\n" END;
	assert_int_equal(read_text(none, strlen(none), &m, &e), TS_OK);
	assert_int_equal(m.n, 4);
	ts_manifest_free(&m);

	/* What is refused: a base in version 2, in a sealed manifest, a base
	 * that is a path, a base that has a base, a base that is missing or
	 * damaged. */
	bad_at(V2 L2 L3 LU LB "entries\t0\n" END, 5, "'entries'");
	bad_at(V3 L2 L3 LB "entries\t0\n" END, 4, "bad base");
	bad_at(V3 L2 L3 LU "base\t../manifest\n" "entries\t0\n" END, 5, "bad base");
	bad_at(V3 L2 L3 LU "base\t..\n" "entries\t0\n" END, 5, "bad base");
	put_base(V3 L2 L3 LU LB "entries\t0\n" END);
	assert_int_not_equal(read_text(none, strlen(none), &m, &e), TS_OK);
	assert_int_equal(e.code, TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "a base manifest that has a base itself"));
	assert_int_equal(m.n, 0);
	put_base(V2 L2 L3 LU "entries\t1\n" F1);
	assert_int_not_equal(read_text(none, strlen(none), &m, &e), TS_OK);
	assert_int_equal(e.code, TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest.base:"));
	drop_base();
	assert_int_equal(read_text(none, strlen(none), &m, &e), TS_ERR_NOTFOUND);
	assert_int_equal(m.n, 0);
}

/* ---- one entry at a time (ts_manifest_cursor) ----------------------------- */

/* What a cursor over mfx_file gives, gathered into *m (head and entries);
 * its result, and *e on failure (m then holds what came before). */
static ts_err_code cursor_gather(ts_manifest *m, ts_err *e)
{
	ts_manifest_cursor *c;
	const ts_manifest_entry *ent;
	int dfd = open(mfx_dir, O_RDONLY | O_DIRECTORY);
	ts_err_code rc;

	assert_true(dfd >= 0);
	ts_err_clear(e);
	rc = ts_manifest_cursor_open_at(dfd, "manifest", m, &c, e);
	close(dfd);
	if (rc != TS_OK) {
		assert_null(c);
		assert_int_equal(m->n, 0);
		return rc;
	}
	while ((rc = ts_manifest_cursor_next(c, &ent, e)) == TS_OK && ent) {
		ts_manifest_entry *me = ts_manifest_add(m, ent->type, ent->path);
		assert_non_null(me);
		char *path = me->path;
		*me = *ent;
		me->path = path;
	}
	if (rc != TS_OK) {
		/* Once failed, it stays so. */
		ts_err again;
		assert_int_not_equal(ts_manifest_cursor_next(c, &ent, &again), TS_OK);
		assert_null(ent);
	}
	ts_manifest_cursor_close(c);
	return rc;
}

/* A message past the file's directory: "manifest:LINE: ..." (the whole
 * read names the file by its path, the cursor by the caller's rel). */
static const char *after_dir(const char *msg)
{
	const char *colon = strchr(msg, ':'), *p = colon;
	while (p && p > msg && p[-1] != '/')
		p--;
	return p ? p : msg;
}

/* text (and the base file as it is) read whole and by a cursor: the same
 * verdict, the same message, the same header and entries. */
static void cursor_same(const char *text, size_t len)
{
	ts_manifest whole, cur;
	ts_err ew, ec;
	ts_err_code rw, rcur;

	tu_put_bytes(mfx_file, text, len, 0600);
	ts_err_clear(&ew);
	rw = ts_manifest_read(mfx_file, &whole, &ew);
	rcur = cursor_gather(&cur, &ec);
	assert_int_equal(rw, rcur);
	if (rw != TS_OK) {
		/* The same line and fault. */
		assert_string_equal(after_dir(ew.msg), after_dir(ec.msg));
		ts_manifest_free(&cur);
		return;
	}
	assert_true(whole.time.tv_sec == cur.time.tv_sec && whole.time.tv_nsec == cur.time.tv_nsec);
	assert_string_equal(whole.env, cur.env);
	assert_true(!whole.unsealed_boot == !cur.unsealed_boot);
	assert_true(!whole.external_db == !cur.external_db);
	assert_true(whole.no_database == cur.no_database);
	assert_null(cur.base);
	assert_int_equal(whole.n, cur.n);
	for (size_t i = 0; i < whole.n; i++) {
		ts_manifest_entry a = whole.entries[i], b = cur.entries[i];
		assert_string_equal(a.path, b.path);
		a.path = b.path = NULL;
		assert_memory_equal(&a, &b, sizeof a);
	}
	ts_manifest_free(&whole);
	ts_manifest_free(&cur);
}

/* Good files, a base merged, and every prefix and many damaged copies of
 * them: the cursor says what the whole read says, at the same line. */
static void test_cursor_as_read(void **state)
{
	static const char good[] = L1 L2 "env\t/srv/a\\x20b\n" "external-db\t/d/x.db\tx/x.db\n" "no-database\n"
	                           L4 E1 E2 E3 END;
	static const char unsealed[] = L1 L2 L3 LU "entries\t4\n" E1 E2 E3P E4L END;
	const char *top = V3 "time\t1700000100.000000000\n" L3 LU LB "entries\t3\n" F3 FDB FDBF END;
	const char *none = V3 L2 L3 LU LB "entries\t0\n" END;
	const char *empty = L1 L2 L3 "entries\t0\n" END;
	const char *texts[] = { good, unsealed, top, none, empty };
	unsigned seed = 4242;

	(void)state;
	put_base(V2 L2 "env\t/srv/old\n" LU "entries\t4\n" F1 F2 F3P FZ END);
	for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
		size_t len = strlen(texts[t]);
		char *buf = malloc(len);
		assert_non_null(buf);
		for (size_t i = 0; i <= len; i++)
			cursor_same(texts[t], i);
		for (int k = 0; k < 500; k++) {
			memcpy(buf, texts[t], len);
			seed = seed * 1103515245u + 12345u;
			size_t pos = (seed >> 8) % len;
			seed = seed * 1103515245u + 12345u;
			buf[pos] = (char)(seed >> 16);
			cursor_same(buf, len);
		}
		free(buf);
	}
	/* A damaged base: the cursor fails where the merge would. */
	put_base(V2 L2 L3 LU "entries\t4\n" F1 F3P F2 FZ END);
	cursor_same(top, strlen(top));
	put_base(V3 L2 L3 LU LB "entries\t0\n" END);
	cursor_same(none, strlen(none));
	drop_base();
	cursor_same(none, strlen(none));
}

/* ts_manifest_rewrite_at: conf's entry changed, conf/trac.ini left out. */
static const ts_manifest_entry *map_conf(void *arg, const ts_manifest_entry *me, ts_manifest_entry *scratch)
{
	(*(int *)arg)++;
	if (!strcmp(me->path, "conf/trac.ini"))
		return NULL;
	if (!strcmp(me->path, "conf")) {
		*scratch = *me;
		scratch->src_ino = 0;
		return scratch;
	}
	return me;
}

/* A manifest rewritten from another through a map: what it keeps, as it
 * changed it; a count that is not what the map keeps, or a damaged source,
 * fails with no file left. */
static void test_rewrite(void **state)
{
	const char *text = V2 L2 L3 "entries\t4\n" F1 F2 F3 FZ END;
	char out[200];
	ts_manifest head, m;
	ts_err e;
	int seen = 0;

	(void)state;
	tu_put_bytes(mfx_file, text, strlen(text), 0600);
	assert_int_equal(ts_manifest_read(mfx_file, &head, &e), TS_OK);
	int dfd = open(mfx_dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	snprintf(out, sizeof out, "%s/out", mfx_dir);
	assert_int_equal(ts_manifest_rewrite_at(dfd, "manifest", &head, 3, map_conf, &seen, dfd, "out", &e), TS_OK);
	assert_int_equal(seen, 4);
	assert_int_equal(ts_manifest_read(out, &m, &e), TS_OK);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.entries[1].path, "conf");
	assert_true(m.entries[1].src_ino == 0);
	assert_true(head.entries[1].src_ino == 12);
	assert_string_equal(m.entries[2].path, "zz");
	assert_true(m.entries[2].src_ino == 30);
	ts_manifest_free(&m);
	unlink(out);

	/* Counted wrong, either way: no file. */
	assert_int_equal(ts_manifest_rewrite_at(dfd, "manifest", &head, 2, map_conf, &seen, dfd, "out", &e),
	                 TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "more entries"));
	assert_int_equal(access(out, F_OK), -1);
	assert_int_equal(ts_manifest_rewrite_at(dfd, "manifest", &head, 4, map_conf, &seen, dfd, "out", &e),
	                 TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "fewer entries"));
	assert_int_equal(access(out, F_OK), -1);

	/* A source damaged at its last entry: its own error, no file. */
	const char *bad = V2 L2 L3 "entries\t4\n" F1 F2 F3 F1 END;
	tu_put_bytes(mfx_file, bad, strlen(bad), 0600);
	assert_int_equal(ts_manifest_rewrite_at(dfd, "manifest", &head, 3, map_conf, &seen, dfd, "out", &e),
	                 TS_ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "manifest:8: entries not sorted"));
	assert_int_equal(access(out, F_OK), -1);
	close(dfd);
	ts_manifest_free(&head);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_good_base),
		cmocka_unit_test(test_read_version2),
		cmocka_unit_test(test_read_not_regular),
		cmocka_unit_test(test_read_bad_first_line),
		cmocka_unit_test(test_read_bad_header),
		cmocka_unit_test(test_read_bad_entries),
		cmocka_unit_test(test_read_bad_structure),
		cmocka_unit_test(test_read_unsealed_good),
		cmocka_unit_test(test_read_bad_unsealed),
		cmocka_unit_test(test_read_truncated_and_mutated),
		cmocka_unit_test(test_read_with_base),
		cmocka_unit_test(test_cursor_as_read),
		cmocka_unit_test(test_rewrite),
	};

	return cmocka_run_group_tests(tests, mfx_setup, mfx_teardown);
}
