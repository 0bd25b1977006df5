/* manifest.c - the per-snapshot list of entries in memory, and the
 * encoding of its fields (see manifest.h); manifest_write.c and
 * manifest_read.c hold the file format's two directions.
 *
 * Every field, the keyword of a header line included, is followed by exactly
 * one TAB or by the LF that ends the line ("tracsnap-manifest<TAB>1<LF>",
 * "entries<TAB>3<LF>", "end<LF>").  Times are the two fields of the timespec
 * as they are: "<tv_sec>.<tv_nsec, 9 digits>", tv_sec possibly negative.
 *
 * The reader trusts nothing: the file may be truncated, edited or hostile.
 * It checks every field completely and refuses paths that could leave the
 * snapshot tree ("..", absolute paths), since restore follows them.
 */
#include "base/hex.h"
#include "store/manifest.h"
#include "store/manifest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ts_manifest_init(ts_manifest *m)
{
	memset(m, 0, sizeof(*m));
}

void ts_manifest_free(ts_manifest *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n; i++)
		free(m->entries[i].path);
	free(m->entries);
	free(m->env);
	free(m->external_db);
	free(m->external_db_rel);
	free(m->unsealed_boot);
	free(m->base);
	memset(m, 0, sizeof(*m));
}

bool ts_manifest_sealed(const ts_manifest *m)
{
	size_t i;

	if (m->unsealed_boot)
		return false;
	for (i = 0; i < m->n; i++)
		if (m->entries[i].pending)
			return false;
	return true;
}

bool manifest_reserve(ts_manifest *m, size_t n)
{
	ts_manifest_entry *v;

	if (n <= m->cap)
		return true;
	if (n > SIZE_MAX / sizeof(*v))
		return false;
	v = realloc(m->entries, n * sizeof(*v));
	if (!v)
		return false;
	m->entries = v;
	m->cap = n;
	return true;
}

/* Append an entry that takes ownership of path (freed on failure too). */
ts_manifest_entry *manifest_push(ts_manifest *m, char type, char *path)
{
	ts_manifest_entry *ent = NULL;

	if (!path)
		goto out;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;

		if (cap < m->cap || !manifest_reserve(m, cap))
			goto fail;
	}
	ent = &m->entries[m->n++];
	memset(ent, 0, sizeof(*ent));
	ent->type = type;
	ent->path = path;
	goto out;
fail:
	free(path);
out:
	return ent;
}

ts_manifest_entry *ts_manifest_add(ts_manifest *m, char type, const char *path)
{
	return path ? manifest_push(m, type, strdup(path)) : NULL;
}

static int manifest_cmp(const void *a, const void *b)
{
	const ts_manifest_entry *x = a, *y = b;

	return strcmp(x->path, y->path);
}

/* Entries are mostly added in order (a walk's, a manifest's): a sorted
 * array, or one with a few entries appended out of order (a snapshot's
 * database copy), is not given to qsort, whose strcmp calls cost some
 * 100 ms at 200,000 entries. */
#define MANIFEST_SORT_TAIL 16

void ts_manifest_sort(ts_manifest *m)
{
	size_t p = 1;

	while (p < m->n && strcmp(m->entries[p - 1].path, m->entries[p].path) < 0)
		p++;
	if (p >= m->n)
		return;
	if (m->n - p > MANIFEST_SORT_TAIL) {
		qsort(m->entries, m->n, sizeof(m->entries[0]), manifest_cmp);
		return;
	}
	/* Sort the tail, then insert each of its entries into the prefix. */
	qsort(m->entries + p, m->n - p, sizeof(m->entries[0]), manifest_cmp);
	for (size_t k = p; k < m->n; k++) {
		ts_manifest_entry x = m->entries[k];
		size_t lo = 0, hi = k;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(m->entries[mid].path, x.path) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		memmove(&m->entries[lo + 1], &m->entries[lo], (k - lo) * sizeof(x));
		m->entries[lo] = x;
	}
}

const ts_manifest_entry *ts_manifest_find(const ts_manifest *m, const char *path)
{
	size_t lo = 0, hi = m->n;

	if (!path)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->entries[mid].path, path);

		if (c == 0)
			return &m->entries[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* How many entries after the hint are tried before a search. */
#define MANIFEST_FIND_AHEAD 4

const ts_manifest_entry *ts_manifest_find_after(const ts_manifest *m, const ts_manifest_entry *hint,
                                                const char *path)
{
	const ts_manifest_entry *end = m->entries + m->n;

	for (const ts_manifest_entry *p = hint ? hint + 1 : end; path && p < end &&
	     p <= hint + MANIFEST_FIND_AHEAD; p++) {
		int c = p->path == path ? 0 : strcmp(p->path, path);
		if (c == 0)
			return p;
		if (c > 0)
			break;
	}
	return ts_manifest_find(m, path);
}

/* ---- escaping ---------------------------------------------------------- */

static bool manifest_needs_hex(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == ' ';
}

char *ts_manifest_escape(const char *raw)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	size_t len = 0;
	char *out, *o;

	if (!raw)
		return NULL;
	for (p = (const unsigned char *)raw; *p; p++) {
		if (*p == '\\' || *p == '\t' || *p == '\n' || *p == '\r')
			len += 2;
		else if (manifest_needs_hex(*p))
			len += 4;
		else
			len += 1;
	}
	out = malloc(len + 1);
	if (!out)
		return NULL;
	o = out;
	for (p = (const unsigned char *)raw; *p; p++) {
		switch (*p) {
		case '\\': *o++ = '\\'; *o++ = '\\'; break;
		case '\t': *o++ = '\\'; *o++ = 't'; break;
		case '\n': *o++ = '\\'; *o++ = 'n'; break;
		case '\r': *o++ = '\\'; *o++ = 'r'; break;
		default:
			if (manifest_needs_hex(*p)) {
				*o++ = '\\';
				*o++ = 'x';
				*o++ = hex[*p >> 4];
				*o++ = hex[*p & 15];
			} else {
				*o++ = (char)*p;
			}
		}
	}
	*o = '\0';
	return out;
}

/* Unescape text into *out: 0, -1 for a malformed text, -2 out of memory.
 * Besides unknown escapes, a byte that ts_manifest_escape() never leaves raw
 * (a control byte, DEL, space) is refused too: it means the file was not
 * written by us, e.g. CR LF line ends. */
int manifest_unescape_to(const char *text, char **out)
{
	const unsigned char *p;
	char *buf, *o;
	int rc = 0;

	*out = NULL;
	buf = malloc(strlen(text) + 1);
	if (!buf) {
		rc = -2;
		goto out;
	}
	o = buf;
	for (p = (const unsigned char *)text; *p && rc == 0; p++) {
		int hi, lo;

		if (manifest_needs_hex(*p)) {
			rc = -1;
			break;
		}
		if (*p != '\\') {
			*o++ = (char)*p;
			continue;
		}
		switch (*++p) {
		case '\\': *o++ = '\\'; break;
		case 't': *o++ = '\t'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 'x':
			/* p[1] is checked before p[2] is read: no overrun. */
			if ((hi = ts_hexval(p[1])) < 0 || (lo = ts_hexval(p[2])) < 0 ||
			    (hi == 0 && lo == 0)) { /* a NUL would cut the string */
				rc = -1;
				break;
			}
			*o++ = (char)(hi * 16 + lo);
			p += 2;
			break;
		default: /* includes the NUL after a trailing backslash */
			rc = -1;
			break;
		}
		if (rc != 0)
			break; /* before p++ can step over a NUL */
	}
	if (rc != 0) {
		free(buf);
		goto out;
	}
	*o = '\0';
	*out = buf;
out:
	return rc;
}

char *ts_manifest_unescape(const char *text)
{
	char *out = NULL;

	if (text)
		(void)manifest_unescape_to(text, &out);
	return out;
}

void ts_sha256_hex(const unsigned char d[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

/* One more than the value of a lowercase hex digit; 0 for any other byte
 * (NUL too). */
static const unsigned char manifest_lowhex[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
	['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Exactly 64 lowercase hex digits, as the writer produces. */
bool ts_sha256_unhex(const char *hex, unsigned char d[32])
{
	unsigned char tmp[32];
	int i;

	if (!hex)
		return false;
	/* Lowercase only; the NUL of a short string stops it (not a digit). */
	for (i = 0; i < 32; i++) {
		int hi = manifest_lowhex[(unsigned char)hex[2 * i]];
		int lo = hi ? manifest_lowhex[(unsigned char)hex[2 * i + 1]] : 0;
		if (!lo)
			return false;
		tmp[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
	}
	if (hex[64] != '\0')
		return false;
	memcpy(d, tmp, sizeof(tmp));
	return true;
}

/* A path inside the tree: "." for the root, else relative components that are
 * neither empty, "." nor "..".  Anything else could point outside on restore. */
bool manifest_path_ok(const char *p)
{
	if (!p || !p[0])
		return false;
	if (strcmp(p, ".") == 0)
		return true;
	for (;;) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

bool manifest_ts_ok(const struct timespec *t)
{
	return t->tv_nsec >= 0 && t->tv_nsec < 1000000000L;
}

/* A boot id as /proc/sys/kernel/random/boot_id gives it (without the LF):
 * 1 to 64 bytes of [0-9a-f-].  Nothing to escape, so written verbatim. */
bool manifest_boot_ok(const char *b)
{
	size_t i;

	if (!b)
		return false;
	for (i = 0; b[i]; i++) {
		if (i == 64)
			return false;
		if (!((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'f') || b[i] == '-'))
			return false;
	}
	return i > 0;
}

bool manifest_base_ok(const char *b)
{
	size_t i;

	if (!b || !strcmp(b, ".") || !strcmp(b, ".."))
		return false;
	for (i = 0; b[i]; i++) {
		if (i == 255)
			return false;
		if (!((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'z') ||
		      (b[i] >= 'A' && b[i] <= 'Z') || b[i] == '.' || b[i] == '_' || b[i] == '-'))
			return false;
	}
	return i > 0;
}
