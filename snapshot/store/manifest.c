/* manifest.c - the per-snapshot list of entries (see manifest.h).
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
#include "base/beneath.h"
#include "base/hex.h"
#include "store/manifest.h"

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

#define MANIFEST_MAGIC "tracsnap-manifest"
#define MANIFEST_VERSION "1"
#define MANIFEST_FIELDS 10
#define MANIFEST_WBUF (64 * 1024)

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

/* Append an entry that takes ownership of path (freed on failure too). */
static ts_manifest_entry *manifest_push(ts_manifest *m, char type, char *path)
{
	ts_manifest_entry *ent = NULL;

	if (!path)
		goto out;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		ts_manifest_entry *v;

		if (cap < m->cap || cap > SIZE_MAX / sizeof(*v))
			goto fail;
		v = realloc(m->entries, cap * sizeof(*v));
		if (!v)
			goto fail;
		m->entries = v;
		m->cap = cap;
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

void ts_manifest_sort(ts_manifest *m)
{
	if (m->n > 1)
		qsort(m->entries, m->n, sizeof(m->entries[0]), manifest_cmp);
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
static int manifest_unescape_to(const char *text, char **out)
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

/* Exactly 64 lowercase hex digits, as the writer produces. */
bool ts_sha256_unhex(const char *hex, unsigned char d[32])
{
	unsigned char tmp[32];
	int i;

	if (!hex)
		return false;
	for (i = 0; i < 64; i++) {
		char c = hex[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false; /* also stops at the NUL of a short string */
	}
	if (hex[64] != '\0')
		return false;
	for (i = 0; i < 32; i++)
		tmp[i] = (unsigned char)(ts_hexval(hex[2 * i]) << 4 |
		                         ts_hexval(hex[2 * i + 1]));
	memcpy(d, tmp, sizeof(tmp));
	return true;
}

/* A path inside the tree: "." for the root, else relative components that are
 * neither empty, "." nor "..".  Anything else could point outside on restore. */
static bool manifest_path_ok(const char *p)
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

static bool manifest_ts_ok(const struct timespec *t)
{
	return t->tv_nsec >= 0 && t->tv_nsec < 1000000000L;
}

/* A boot id as /proc/sys/kernel/random/boot_id gives it (without the LF):
 * 1 to 64 bytes of [0-9a-f-].  Nothing to escape, so written verbatim. */
static bool manifest_boot_ok(const char *b)
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

/* ---- writing ----------------------------------------------------------- */

typedef struct manifest_w {
	int fd;
	int err;     /* errno of the first failure, else 0 */
	size_t n;
	char buf[MANIFEST_WBUF];
} manifest_w;

static void mw_flush(manifest_w *w)
{
	size_t off = 0;

	while (!w->err && off < w->n) {
		ssize_t k = write(w->fd, w->buf + off, w->n - off);

		if (k < 0) {
			if (errno != EINTR)
				w->err = errno;
			continue;
		}
		off += (size_t)k;
	}
	w->n = 0;
}

static void mw_put(manifest_w *w, const char *s, size_t len)
{
	while (!w->err && len > 0) {
		size_t k = sizeof(w->buf) - w->n;

		if (k > len)
			k = len;
		memcpy(w->buf + w->n, s, k);
		w->n += k;
		s += k;
		len -= k;
		if (w->n == sizeof(w->buf))
			mw_flush(w);
	}
}

static void mw_str(manifest_w *w, const char *s)
{
	mw_put(w, s, strlen(s));
}

/* Numbers only: they always fit. */
__attribute__((format(printf, 2, 3)))
static void mw_printf(manifest_w *w, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (k > 0)
		mw_put(w, tmp, (size_t)k < sizeof(tmp) ? (size_t)k : sizeof(tmp) - 1);
}

/* An escaped field; false on out of memory. */
static bool mw_escaped(manifest_w *w, const char *raw)
{
	char *s = ts_manifest_escape(raw);

	if (!s)
		return false;
	mw_str(w, s);
	free(s);
	return true;
}

/* Refuse to write what the reader would refuse to read. */
static ts_err_code manifest_check(const ts_manifest *m, const char *file, ts_err *e)
{
	size_t i;

	if (!m->env || !m->env[0])
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: manifest has no environment path", file);
	if (!manifest_ts_ok(&m->time))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad snapshot time", file);
	if (!m->external_db != !m->external_db_rel || (m->external_db && !m->external_db[0]) ||
	    (m->external_db_rel && !manifest_path_ok(m->external_db_rel)))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad external database paths", file);
	if (m->unsealed_boot && !manifest_boot_ok(m->unsealed_boot))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad boot id", file);
	for (i = 0; i < m->n; i++) {
		const ts_manifest_entry *ent = &m->entries[i];

		if (!manifest_path_ok(ent->path))
			return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad path", file, i);
		if (ent->type != 'd' && ent->type != 'f' && ent->type != 'l')
			return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad type", file, i);
		if (!manifest_ts_ok(&ent->mtime) || !manifest_ts_ok(&ent->src_ctime))
			return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad time", file, i);
		if (ent->pending && ent->type != 'f')
			return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: pending but not a file",
			                  file, i);
		if (ent->pending && !m->unsealed_boot)
			return ts_err_set(e, TS_ERR_CORRUPT,
			                  "%s: entry %zu: pending in a sealed manifest", file, i);
		if (i > 0 && strcmp(m->entries[i - 1].path, ent->path) >= 0)
			return ts_err_set(e, TS_ERR_CORRUPT,
			                  "%s: entries not sorted or duplicated at entry %zu "
			                  "(call ts_manifest_sort)", file, i);
	}
	return TS_OK;
}

ts_err_code ts_manifest_write(const ts_manifest *m, const char *file, ts_err *e)
{
	ts_err_code rc;
	manifest_w *w = NULL;
	bool created = false;
	char hex[65];
	size_t i;

	rc = manifest_check(m, file, e);
	if (rc != TS_OK)
		goto out;
	w = malloc(sizeof(*w));
	if (!w) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", file);
		goto out;
	}
	w->n = 0;
	w->err = 0;
	w->fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->fd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot create manifest", file);
		goto out;
	}
	created = true;
	/* The umask may have taken bits away, an old file may have had more. */
	if (fchmod(w->fd, 0600) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot set mode", file);
		goto out;
	}

	mw_str(w, MANIFEST_MAGIC "\t" MANIFEST_VERSION "\n");
	mw_printf(w, "time\t%lld.%09ld\n", (long long)m->time.tv_sec, (long)m->time.tv_nsec);
	mw_str(w, "env\t");
	if (!mw_escaped(w, m->env))
		goto nomem;
	mw_str(w, "\n");
	if (m->external_db) {
		mw_str(w, "external-db\t");
		if (!mw_escaped(w, m->external_db))
			goto nomem;
		mw_str(w, "\t");
		if (!mw_escaped(w, m->external_db_rel))
			goto nomem;
		mw_str(w, "\n");
	}
	if (m->no_database)
		mw_str(w, "no-database\n");
	if (m->unsealed_boot) {
		mw_str(w, "unsealed\t");
		mw_str(w, m->unsealed_boot); /* checked: nothing to escape */
		mw_str(w, "\n");
	}
	mw_printf(w, "entries\t%zu\n", m->n);
	for (i = 0; i < m->n && !w->err; i++) {
		const ts_manifest_entry *ent = &m->entries[i];

		if (ent->type == 'd' || ent->pending)
			memcpy(hex, "-", 2);
		else
			ts_sha256_hex(ent->sha256, hex);
		mw_printf(w, "%c\t%04o\t%lu\t%lu\t%" PRIu64 "\t%lld.%09ld\t",
		          ent->type, (unsigned)(ent->mode & 07777),
		          (unsigned long)ent->uid, (unsigned long)ent->gid, ent->size,
		          (long long)ent->mtime.tv_sec, (long)ent->mtime.tv_nsec);
		mw_str(w, hex);
		mw_printf(w, "\t%" PRIu64 "\t%lld.%09ld\t", ent->src_ino,
		          (long long)ent->src_ctime.tv_sec, (long)ent->src_ctime.tv_nsec);
		if (!mw_escaped(w, ent->path))
			goto nomem;
		mw_str(w, "\n");
	}
	mw_str(w, "end\n");
	mw_flush(w);
	/* An unsealed manifest needs no fsync: after a crash its snapshot is
	 * discarded whatever the file holds (see store.h). */
	if (!w->err && !m->unsealed_boot && fsync(w->fd) < 0)
		w->err = errno;
	if (w->err) {
		rc = ts_err_sys(e, w->err, "%s: cannot write manifest", file);
		goto out;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		rc = ts_err_sys(e, errno, "%s: cannot write manifest", file);
		goto out;
	}
	w->fd = -1;
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", file);
out:
	if (w && w->fd >= 0)
		close(w->fd);
	/* Leave no half-written manifest behind. */
	if (rc != TS_OK && created)
		unlink(file);
	free(w);
	return rc;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct manifest_r {
	const char *file;
	FILE *f;
	char *line;
	size_t cap;
	size_t len;       /* of line, without the LF */
	unsigned long lineno;
	ts_err *e;
} manifest_r;

__attribute__((format(printf, 2, 3)))
static ts_err_code mr_bad(manifest_r *r, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return ts_err_set(r->e, TS_ERR_CORRUPT, "%s:%lu: %s", r->file, r->lineno, what);
}

/* Read the next line into r->line without its LF.  TS_OK with *eof set at the
 * end of the file. */
static ts_err_code mr_next(manifest_r *r, bool *eof)
{
	ssize_t n;

	*eof = false;
	errno = 0;
	n = getline(&r->line, &r->cap, r->f);
	if (n < 0) {
		if (ferror(r->f))
			return ts_err_sys(r->e, errno ? errno : EIO, "%s: cannot read", r->file);
		*eof = true;
		return TS_OK;
	}
	r->lineno++;
	r->len = (size_t)n;
	if (r->len == 0 || r->line[r->len - 1] != '\n')
		return mr_bad(r, "line not terminated (file truncated?)");
	r->line[--r->len] = '\0';
	if (memchr(r->line, '\0', r->len))
		return mr_bad(r, "NUL byte in line");
	return TS_OK;
}

/* Split r->line at TABs into f[0..max-1]; returns the number of fields, or
 * max + 1 when there are more. */
static size_t mr_split(manifest_r *r, char **f, size_t max)
{
	char *p = r->line;
	size_t n = 0;

	for (;;) {
		char *tab = strchr(p, '\t');

		if (n == max)
			return max + 1;
		f[n++] = p;
		if (!tab)
			return n;
		*tab = '\0';
		p = tab + 1;
	}
}

/* Decimal digits only (no sign, no space: strtoull would take both), at most
 * max. */
static bool mr_u64(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

/* "<sec>.<9 digits>", sec optionally negative. */
static bool mr_time(const char *s, struct timespec *t)
{
	const char *dot = strchr(s, '.');
	const char *d = s[0] == '-' ? s + 1 : s;
	char *end;
	long long sec;
	long nsec = 0;
	int i;

	if (!dot || *d < '0' || *d > '9' || strlen(dot + 1) != 9)
		return false;
	errno = 0;
	sec = strtoll(s, &end, 10);
	if (errno || end != dot)
		return false;
	for (i = 1; i <= 9; i++) {
		if (dot[i] < '0' || dot[i] > '9')
			return false;
		nsec = nsec * 10 + (dot[i] - '0');
	}
	if ((long long)(time_t)sec != sec)
		return false;
	t->tv_sec = (time_t)sec;
	t->tv_nsec = nsec;
	return true;
}

/* A header line "<keyword>" or "<keyword>\t<fields>": fields after the keyword
 * in f[], their count checked against want. */
static ts_err_code mr_header(manifest_r *r, const char *keyword, char **f, size_t want)
{
	char *all[4];
	size_t n = mr_split(r, all, 4);
	size_t i;

	if (strcmp(all[0], keyword) != 0)
		return mr_bad(r, "expected '%s'", keyword);
	if (n != want + 1)
		return mr_bad(r, "'%s' line needs %zu field%s", keyword, want, want == 1 ? "" : "s");
	for (i = 0; i < want; i++)
		f[i] = all[i + 1];
	return TS_OK;
}

/* Unescape field into *out; refuses bad escapes and, when path, paths that
 * leave the tree. */
static ts_err_code mr_path(manifest_r *r, const char *field, bool path, char **out,
                           const char *what)
{
	ts_err_code rc = TS_OK;
	char *s = NULL;
	int st = manifest_unescape_to(field, &s);

	if (st == -2)
		rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->file);
	else if (st != 0)
		rc = mr_bad(r, "bad escape in %s", what);
	else if (path ? !manifest_path_ok(s) : s[0] == '\0')
		rc = mr_bad(r, "bad %s", what);
	if (rc != TS_OK) {
		free(s);
		s = NULL;
	}
	*out = s;
	return rc;
}

static ts_err_code mr_entry(manifest_r *r, ts_manifest *m)
{
	char *f[MANIFEST_FIELDS];
	char *path = NULL;
	ts_manifest_entry *ent;
	ts_err_code rc = TS_OK;
	uint64_t uid, gid, size, ino;
	struct timespec mtime, ctime;
	unsigned char sha[32] = { 0 };
	unsigned mode = 0;
	bool pending = false;
	char type;
	int i;

	if (mr_split(r, f, MANIFEST_FIELDS) != MANIFEST_FIELDS) {
		rc = mr_bad(r, "entry needs %d fields", MANIFEST_FIELDS);
		goto out;
	}
	if (strlen(f[0]) != 1 || (f[0][0] != 'd' && f[0][0] != 'f' && f[0][0] != 'l')) {
		rc = mr_bad(r, "bad type");
		goto out;
	}
	type = f[0][0];
	if (strlen(f[1]) != 4) {
		rc = mr_bad(r, "bad mode");
		goto out;
	}
	for (i = 0; i < 4; i++) {
		if (f[1][i] < '0' || f[1][i] > '7') {
			rc = mr_bad(r, "bad mode");
			goto out;
		}
		mode = mode * 8 + (unsigned)(f[1][i] - '0');
	}
	if (!mr_u64(f[2], (uid_t)-1, &uid) || !mr_u64(f[3], (gid_t)-1, &gid)) {
		rc = mr_bad(r, "bad owner");
		goto out;
	}
	if (!mr_u64(f[4], UINT64_MAX, &size)) {
		rc = mr_bad(r, "bad size");
		goto out;
	}
	if (!mr_time(f[5], &mtime)) {
		rc = mr_bad(r, "bad mtime");
		goto out;
	}
	/* "-": a directory, or a file not hashed yet, which only an unsealed
	 * manifest may have (sha stays zero). */
	if (type == 'f' && m->unsealed_boot && strcmp(f[6], "-") == 0)
		pending = true;
	else if (type == 'd' ? strcmp(f[6], "-") != 0 : !ts_sha256_unhex(f[6], sha)) {
		rc = mr_bad(r, "bad sha256");
		goto out;
	}
	if (!mr_u64(f[7], UINT64_MAX, &ino)) {
		rc = mr_bad(r, "bad source inode");
		goto out;
	}
	if (!mr_time(f[8], &ctime)) {
		rc = mr_bad(r, "bad source ctime");
		goto out;
	}
	rc = mr_path(r, f[9], true, &path, "path");
	if (rc != TS_OK)
		goto out;
	if (m->n > 0) {
		int c = strcmp(m->entries[m->n - 1].path, path);

		if (c >= 0) {
			rc = mr_bad(r, c == 0 ? "duplicate path" : "entries not sorted");
			goto out;
		}
	}
	ent = manifest_push(m, type, path);
	path = NULL; /* taken, even on failure */
	if (!ent) {
		rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->file);
		goto out;
	}
	ent->mode = (mode_t)mode;
	ent->uid = (uid_t)uid;
	ent->gid = (gid_t)gid;
	ent->size = size;
	ent->mtime = mtime;
	memcpy(ent->sha256, sha, sizeof(sha));
	ent->pending = pending;
	ent->src_ino = ino;
	ent->src_ctime = ctime;
out:
	free(path);
	return rc;
}

/* The next line, which must exist: what names it for the message. */
static ts_err_code mr_need(manifest_r *r, const char *what)
{
	bool eof;
	ts_err_code rc = mr_next(r, &eof);

	if (rc == TS_OK && eof)
		rc = ts_err_set(r->e, TS_ERR_CORRUPT, "%s:%lu: missing %s", r->file,
		                r->lineno + 1, what);
	return rc;
}

static ts_err_code mr_parse(manifest_r *r, ts_manifest *m)
{
	ts_err_code rc;
	char *f[2];
	uint64_t count, k = 0;
	bool eof;

	/* Line 1: what and which version. */
	rc = mr_next(r, &eof);
	if (rc == TS_OK && eof)
		rc = ts_err_set(r->e, TS_ERR_CORRUPT, "%s:1: empty file, not a tracsnap manifest", r->file);
	if (rc != TS_OK)
		goto out;
	if (strcmp(r->line, MANIFEST_MAGIC "\t" MANIFEST_VERSION) != 0) {
		rc = strncmp(r->line, MANIFEST_MAGIC "\t", strlen(MANIFEST_MAGIC) + 1) == 0
		     ? mr_bad(r, "unsupported manifest version")
		     : mr_bad(r, "not a tracsnap manifest");
		goto out;
	}

	rc = mr_need(r, "'time' line");
	if (rc != TS_OK)
		goto out;
	rc = mr_header(r, "time", f, 1);
	if (rc != TS_OK)
		goto out;
	if (!mr_time(f[0], &m->time)) {
		rc = mr_bad(r, "bad time");
		goto out;
	}

	rc = mr_need(r, "'env' line");
	if (rc != TS_OK)
		goto out;
	rc = mr_header(r, "env", f, 1);
	if (rc == TS_OK)
		rc = mr_path(r, f[0], false, &m->env, "environment path");
	if (rc != TS_OK)
		goto out;

	rc = mr_need(r, "'entries' line");
	if (rc != TS_OK)
		goto out;
	if (strncmp(r->line, "external-db", 11) == 0 && (r->line[11] == '\t' || !r->line[11])) {
		rc = mr_header(r, "external-db", f, 2);
		if (rc == TS_OK)
			rc = mr_path(r, f[0], false, &m->external_db, "external database path");
		if (rc == TS_OK)
			rc = mr_path(r, f[1], true, &m->external_db_rel, "external database place");
		if (rc != TS_OK)
			goto out;
		rc = mr_need(r, "'entries' line");
		if (rc != TS_OK)
			goto out;
	}
	if (strcmp(r->line, "no-database") == 0) {
		m->no_database = true;
		rc = mr_need(r, "'entries' line");
		if (rc != TS_OK)
			goto out;
	}
	if (strncmp(r->line, "unsealed", 8) == 0 && (r->line[8] == '\t' || !r->line[8])) {
		rc = mr_header(r, "unsealed", f, 1);
		if (rc != TS_OK)
			goto out;
		if (!manifest_boot_ok(f[0])) {
			rc = mr_bad(r, "bad boot id");
			goto out;
		}
		m->unsealed_boot = strdup(f[0]);
		if (!m->unsealed_boot) {
			rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->file);
			goto out;
		}
		rc = mr_need(r, "'entries' line");
		if (rc != TS_OK)
			goto out;
	}
	rc = mr_header(r, "entries", f, 1);
	if (rc != TS_OK)
		goto out;
	if (!mr_u64(f[0], SIZE_MAX, &count)) {
		rc = mr_bad(r, "bad entry count");
		goto out;
	}

	/* Never allocate by count: a hostile file could claim 2^60 entries. */
	for (;;) {
		rc = mr_need(r, "'end' line (file truncated?)");
		if (rc != TS_OK)
			goto out;
		if (strcmp(r->line, "end") == 0)
			break;
		if (k == count) {
			rc = mr_bad(r, "more entries than the %" PRIu64 " announced", count);
			goto out;
		}
		rc = mr_entry(r, m);
		if (rc != TS_OK)
			goto out;
		k++;
	}
	if (k != count) {
		rc = mr_bad(r, "%" PRIu64 " entries announced, %" PRIu64 " found", count, k);
		goto out;
	}
	rc = mr_next(r, &eof);
	if (rc == TS_ERR_CORRUPT || (rc == TS_OK && !eof))
		rc = mr_bad(r, "data after 'end'");
out:
	return rc;
}

ts_err_code ts_manifest_read(const char *file, ts_manifest *m, ts_err *e)
{
	ts_err_code rc;
	manifest_r r = { .file = file, .e = e };
	struct stat st;
	int fd;

	ts_manifest_init(m);
	/* The store is checked to be root's (trust.h), yet a manifest is read
	 * as data, never through a link or from a FIFO (which would block). */
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 && errno == ELOOP) {
		rc = ts_err_set(e, TS_ERR_CORRUPT, "%s: manifest is a symlink", file);
		goto out;
	}
	if (fd < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot open manifest", file);
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = ts_err_set(e, TS_ERR_CORRUPT, "%s: manifest is not a regular file", file);
		close(fd);
		goto out;
	}
	r.f = fdopen(fd, "r");
	if (!r.f) {
		rc = ts_err_sys(e, errno, "%s: cannot open manifest", file);
		close(fd);
		goto out;
	}
	rc = mr_parse(&r, m);
out:
	if (rc != TS_OK)
		ts_manifest_free(m);
	if (r.f)
		fclose(r.f);
	free(r.line);
	return rc;
}

ts_err_code ts_manifest_read_at(int dirfd, const char *rel, ts_manifest *m, ts_err *e)
{
	char path[PATH_MAX + 64];

	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0) {
		ts_manifest_init(m);
		return ts_err_sys(e, errno, "%s: cannot read manifest", rel);
	}
	return ts_manifest_read(path, m, e);
}

ts_err_code ts_manifest_write_at(const ts_manifest *m, int dirfd, const char *rel, ts_err *e)
{
	char path[PATH_MAX + 64];

	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0)
		return ts_err_sys(e, errno, "%s: cannot write manifest", rel);
	return ts_manifest_write(m, path, e);
}
