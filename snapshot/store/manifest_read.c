/* manifest_read.c - read and validate a manifest file (manifest.h).
 *
 * The reader trusts nothing: the file may be truncated, edited or hostile.
 * It checks every field completely and refuses paths that could leave the
 * snapshot tree ("..", absolute paths), since restore follows them.
 */
#include "base/beneath.h"
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

/* ---- reading ----------------------------------------------------------- */

typedef struct manifest_r {
	const char *file;          /* what is opened */
	const char *name;          /* what messages call it: the caller's rel, or file */
	FILE *f;
	char *line;
	size_t cap;
	size_t len;       /* of line, without the LF */
	unsigned long lineno;
	size_t fields;    /* of an entry line: MANIFEST_FIELDS, or _V1 for version 1 */
	uint64_t size;    /* of the file, when opened */
	bool base_ok;     /* version 3: may name a base (manifest.h) */
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
	return ts_err_set(r->e, TS_ERR_CORRUPT, "%s:%lu: %s", r->name, r->lineno, what);
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
			return ts_err_sys(r->e, errno ? errno : EIO, "%s: cannot read", r->name);
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

/* Decimal digits of s up to stop (one at least; no sign, no space), at most
 * max; *end: where they stopped.  By hand, not strtoull: a manifest has a
 * million numbers, and strtoull's locale and sign handling cost a third of
 * reading one. */
static bool mr_digits(const char *s, uint64_t max, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (p == s)
		return false;
	*out = v;
	*end = p;
	return true;
}

/* Decimal digits only, the whole field, at most max. */
static bool mr_u64(const char *s, uint64_t max, uint64_t *out)
{
	const char *end;
	return mr_digits(s, max, out, &end) && *end == '\0';
}

/* "<sec>.<9 digits>", sec optionally negative. */
static bool mr_time(const char *s, struct timespec *t)
{
	bool neg = s[0] == '-';
	const char *dot;
	uint64_t sec;
	long nsec = 0;
	int i;

	/* time_t is 64 bits here; -(2^63) itself is never written. */
	if (!mr_digits(s + neg, INT64_MAX, &sec, &dot) || *dot != '.')
		return false;
	for (i = 1; i <= 9; i++) {
		if (dot[i] < '0' || dot[i] > '9')
			return false;
		nsec = nsec * 10 + (dot[i] - '0');
	}
	if (dot[10] != '\0')
		return false;
	t->tv_sec = neg ? -(time_t)sec : (time_t)sec;
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
		rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->name);
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

/* Parse the entry line in r->line into *ent (its path malloc'd, the
 * caller's on success), after last (NULL: the first).  unsealed: the
 * manifest's header has an unsealed line, so a file may be pending. */
static ts_err_code mr_entry_parse(manifest_r *r, bool unsealed, const char *last, ts_manifest_entry *ent)
{
	char *f[MANIFEST_FIELDS];
	char *path = NULL;
	ts_err_code rc = TS_OK;
	uint64_t uid, gid, size, ino, store_ino = 0;
	struct timespec mtime, ctime, store_ctime = { 0, 0 };
	unsigned char sha[32] = { 0 };
	unsigned mode = 0;
	bool pending = false;
	char type;
	int i;

	if (mr_split(r, f, r->fields) != r->fields) {
		rc = mr_bad(r, "entry needs %zu fields", r->fields);
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
	if (type == 'f' && unsealed && strcmp(f[6], "-") == 0)
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
	/* Version 2: the store copy's identity (version 1: unknown, 0). */
	if (r->fields == MANIFEST_FIELDS && !mr_u64(f[9], UINT64_MAX, &store_ino)) {
		rc = mr_bad(r, "bad store inode");
		goto out;
	}
	if (r->fields == MANIFEST_FIELDS && !mr_time(f[10], &store_ctime)) {
		rc = mr_bad(r, "bad store ctime");
		goto out;
	}
	rc = mr_path(r, f[r->fields - 1], true, &path, "path");
	if (rc != TS_OK)
		goto out;
	if (last) {
		int c = strcmp(last, path);

		if (c >= 0) {
			rc = mr_bad(r, c == 0 ? "duplicate path" : "entries not sorted");
			goto out;
		}
	}
	memset(ent, 0, sizeof *ent);
	ent->type = type;
	ent->mode = (mode_t)mode;
	ent->uid = (uid_t)uid;
	ent->gid = (gid_t)gid;
	ent->size = size;
	ent->mtime = mtime;
	memcpy(ent->sha256, sha, sizeof(sha));
	ent->pending = pending;
	ent->src_ino = ino;
	ent->src_ctime = ctime;
	ent->store_ino = store_ino;
	ent->store_ctime = store_ctime;
	ent->path = path;
	path = NULL;
out:
	free(path);
	return rc;
}

/* The entry in r->line, into m. */
static ts_err_code mr_entry(manifest_r *r, ts_manifest *m)
{
	ts_manifest_entry ent = { .path = NULL }, *slot;
	const char *last = m->n > 0 ? m->entries[m->n - 1].path : NULL;
	ts_err_code rc = mr_entry_parse(r, m->unsealed_boot != NULL, last, &ent);

	if (rc != TS_OK)
		return rc;
	slot = manifest_push(m, ent.type, ent.path);   /* takes the path, even on failure */
	if (!slot)
		return ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->name);
	*slot = ent;
	return TS_OK;
}

/* The next line, which must exist: what names it for the message. */
static ts_err_code mr_need(manifest_r *r, const char *what)
{
	bool eof;
	ts_err_code rc = mr_next(r, &eof);

	if (rc == TS_OK && eof)
		rc = ts_err_set(r->e, TS_ERR_CORRUPT, "%s:%lu: missing %s", r->name,
		                r->lineno + 1, what);
	return rc;
}

/* The header, up to its entries line: into m's fields, the count announced
 * into *count. */
static ts_err_code mr_head(manifest_r *r, ts_manifest *m, uint64_t *count)
{
	ts_err_code rc;
	char *f[2];
	bool eof;

	/* Line 1: what and which version. */
	rc = mr_next(r, &eof);
	if (rc == TS_OK && eof)
		rc = ts_err_set(r->e, TS_ERR_CORRUPT, "%s:1: empty file, not a tracsnap manifest", r->name);
	if (rc != TS_OK)
		goto out;
	if (strcmp(r->line, MANIFEST_MAGIC "\t" MANIFEST_VERSION) == 0) {
		r->fields = MANIFEST_FIELDS;
	} else if (strcmp(r->line, MANIFEST_MAGIC "\t" MANIFEST_VERSION_BASE) == 0) {
		r->fields = MANIFEST_FIELDS;
		r->base_ok = true;
	} else if (strcmp(r->line, MANIFEST_MAGIC "\t1") == 0) {
		r->fields = MANIFEST_FIELDS_V1;
	} else {
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
			rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->name);
			goto out;
		}
		rc = mr_need(r, "'entries' line");
		if (rc != TS_OK)
			goto out;
	}
	if (r->base_ok && strncmp(r->line, "base", 4) == 0 && (r->line[4] == '\t' || !r->line[4])) {
		rc = mr_header(r, "base", f, 1);
		if (rc != TS_OK)
			goto out;
		if (!m->unsealed_boot || !manifest_base_ok(f[0])) {
			rc = mr_bad(r, "bad base (a file name, in an unsealed manifest)");
			goto out;
		}
		m->base = strdup(f[0]);
		if (!m->base) {
			rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->name);
			goto out;
		}
		rc = mr_need(r, "'entries' line");
		if (rc != TS_OK)
			goto out;
	}
	rc = mr_header(r, "entries", f, 1);
	if (rc != TS_OK)
		goto out;
	if (!mr_u64(f[0], SIZE_MAX, count))
		rc = mr_bad(r, "bad entry count");
out:
	return rc;
}

/* The entries' end: the "end" line, after exactly count of them, then
 * nothing. */
static ts_err_code mr_end(manifest_r *r, uint64_t count, uint64_t k)
{
	bool eof;
	ts_err_code rc;

	if (k != count)
		return mr_bad(r, "%" PRIu64 " entries announced, %" PRIu64 " found", count, k);
	rc = mr_next(r, &eof);
	if (rc == TS_ERR_CORRUPT || (rc == TS_OK && !eof))
		rc = mr_bad(r, "data after 'end'");
	return rc;
}

static ts_err_code mr_parse(manifest_r *r, ts_manifest *m)
{
	ts_err_code rc;
	uint64_t count, k = 0;

	rc = mr_head(r, m, &count);
	if (rc != TS_OK)
		goto out;

	/* Room for the announced entries at once (no copying as the array
	 * grows), but never more than the file's bytes could hold: a hostile
	 * file could claim 2^60 entries. */
	if (!manifest_reserve(m, count < r->size / MANIFEST_MIN_LINE ? count : r->size / MANIFEST_MIN_LINE)) {
		rc = ts_err_set(r->e, TS_ERR_NOMEM, "%s: out of memory", r->name);
		goto out;
	}
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
	rc = mr_end(r, count, k);
out:
	return rc;
}

static ts_err_code mr_file(const char *file, const char *name, bool top, ts_manifest *m, ts_err *e);

/* m, just read from file, lists what differs from its base (manifest.h):
 * make it the whole list.  Both are sorted, so one merge pass does, in the
 * base's array grown by m's count (a second array as large as the base's
 * was the seal's memory peak, some 27 MB at 200,000 entries).  The merge
 * runs from the ends, where the grown array has room: an entry of the base
 * is always moved before its slot is written.  The base's first entries,
 * which nothing replaced, then move down over the gap that replaced ones
 * left. */
/* The base's file (and its name for messages) beside file (name). */
static char *mr_beside(const char *file, const char *base)
{
	const char *slash = strrchr(file, '/');
	char *path;
	return asprintf(&path, "%.*s%s", slash ? (int)(slash - file + 1) : 0, file, base) < 0 ? NULL : path;
}

static ts_err_code mr_merge(const char *file, const char *name, ts_manifest *m, ts_err *e)
{
	ts_err_code rc;
	ts_manifest b;
	ts_manifest_entry *v;
	char *path = mr_beside(file, m->base), *bname = mr_beside(name, m->base);
	size_t need, i, k, w;

	ts_manifest_init(&b);
	if (!path || !bname) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", name);
		goto out;
	}
	rc = mr_file(path, bname, false, &b, e);
	if (rc != TS_OK)
		goto out;
	need = b.n + m->n;
	if (need < b.n) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", name);
		goto out;
	}
	if (need > b.cap) {
		if (!(v = realloc(b.entries, (need ? need : 1) * sizeof *v))) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", name);
			goto out;
		}
		b.entries = v;
		b.cap = need;
	}
	v = b.entries;
	for (i = b.n, k = m->n, w = need; k > 0;) {
		int c = i == 0 ? -1 : strcmp(v[i - 1].path, m->entries[k - 1].path);
		if (c > 0) {
			v[--w] = v[--i];
		} else {
			if (c == 0)
				free(v[--i].path);   /* replaced */
			v[--w] = m->entries[--k];
		}
	}
	if (w > i)
		memmove(v + i, v + w, (need - w) * sizeof *v);
	free(m->entries);   /* its paths are v's now */
	m->entries = v;
	m->n = i + (need - w);
	m->cap = b.cap;
	b.entries = NULL;
	b.n = b.cap = 0;
	free(m->base);
	m->base = NULL;
out:
	ts_manifest_free(&b);
	free(path);
	free(bname);
	return rc;
}

/* Open file for r (r->file, r->name and r->e set): never through a link or from a
 * FIFO (which would block).  The store is checked to be root's (trust.h),
 * yet a manifest is read as data. */
static ts_err_code mr_open(manifest_r *r)
{
	struct stat st;
	int fd = open(r->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

	if (fd < 0 && errno == ELOOP)
		return ts_err_set(r->e, TS_ERR_CORRUPT, "%s: manifest is a symlink", r->name);
	if (fd < 0)
		return ts_err_sys(r->e, errno, "%s: cannot open manifest", r->name);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ts_err_set(r->e, TS_ERR_CORRUPT, "%s: manifest is not a regular file", r->name);
	}
	r->size = (uint64_t)st.st_size;
	r->f = fdopen(fd, "r");
	if (!r->f) {
		ts_err_code rc = ts_err_sys(r->e, errno, "%s: cannot open manifest", r->name);
		close(fd);
		return rc;
	}
	return TS_OK;
}

static void mr_close(manifest_r *r)
{
	if (r->f)
		fclose(r->f);
	r->f = NULL;
	free(r->line);
	r->line = NULL;
}

static ts_err_code mr_file(const char *file, const char *name, bool top, ts_manifest *m, ts_err *e)
{
	manifest_r r = { .file = file, .name = name, .e = e };
	ts_err_code rc;

	ts_manifest_init(m);
	rc = mr_open(&r);
	if (rc == TS_OK)
		rc = mr_parse(&r, m);
	if (rc == TS_OK && m->base && !top)
		rc = ts_err_set(e, TS_ERR_CORRUPT, "%s: a base manifest that has a base itself", name);
	if (rc == TS_OK && m->base)
		rc = mr_merge(file, name, m, e);
	if (rc != TS_OK)
		ts_manifest_free(m);
	mr_close(&r);
	return rc;
}

ts_err_code ts_manifest_read(const char *file, ts_manifest *m, ts_err *e)
{
	return mr_file(file, file, true, m, e);
}

ts_err_code ts_manifest_read_at(int dirfd, const char *rel, ts_manifest *m, ts_err *e)
{
	char path[PATH_MAX + 64];

	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0) {
		ts_manifest_init(m);
		return ts_err_sys(e, errno, "%s: cannot read manifest", rel);
	}
	return mr_file(path, rel, true, m, e);
}

/* ---- one entry at a time (ts_manifest_cursor) ------------------------- */

/* One file's entries, with the one last read. */
typedef struct mc_stream {
	manifest_r r;
	char *file, *name;         /* owned; r.file, r.name */
	bool unsealed;
	uint64_t count, k;         /* entries announced, read */
	ts_manifest_entry cur;     /* the one last read (path owned), while have */
	bool have, ended;
} mc_stream;

struct ts_manifest_cursor {
	mc_stream top, base;       /* base: open when the top names one (manifest.h: Base) */
	bool merged;
	bool started;
	unsigned given;            /* which streams' entries the last call gave (MC_TOP, MC_BASE) */
	ts_err_code failed;        /* once a call failed, every later one does */
};

#define MC_TOP 1u
#define MC_BASE 2u

static ts_err_code mc_open(mc_stream *s, const char *file, const char *name, ts_manifest *head, ts_err *e)
{
	ts_err_code rc;

	s->file = strdup(file);
	s->name = strdup(name);
	if (!s->file || !s->name)
		return ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", name);
	s->r.file = s->file;
	s->r.name = s->name;
	s->r.e = e;
	rc = mr_open(&s->r);
	if (rc == TS_OK)
		rc = mr_head(&s->r, head, &s->count);
	s->unsealed = head->unsealed_boot != NULL;
	return rc;
}

/* The stream's next entry into s->cur (have false at the end, which is
 * checked as the whole reader checks it). */
static ts_err_code mc_advance(mc_stream *s, ts_err *e)
{
	ts_err_code rc;
	char *last = s->have ? s->cur.path : NULL;

	s->r.e = e;
	s->have = false;
	if (s->ended) {
		rc = TS_OK;
		goto out;
	}
	rc = mr_need(&s->r, "'end' line (file truncated?)");
	if (rc == TS_OK && strcmp(s->r.line, "end") == 0) {
		s->ended = true;
		rc = mr_end(&s->r, s->count, s->k);
		goto out;
	}
	if (rc == TS_OK && s->k == s->count)
		rc = mr_bad(&s->r, "more entries than the %" PRIu64 " announced", s->count);
	if (rc == TS_OK)
		rc = mr_entry_parse(&s->r, s->unsealed, last, &s->cur);
	if (rc == TS_OK) {
		s->have = true;
		s->k++;
	}
out:
	free(last);
	return rc;
}

static void mc_close(mc_stream *s)
{
	if (s->have)
		free(s->cur.path);
	s->have = false;
	mr_close(&s->r);
	free(s->file);
	free(s->name);
	s->file = s->name = NULL;
}

ts_err_code ts_manifest_cursor_open_at(int dirfd, const char *rel, ts_manifest *head,
                                       ts_manifest_cursor **out, ts_err *e)
{
	char path[PATH_MAX + 64], *bpath = NULL, *bname = NULL;
	ts_manifest_cursor *c = calloc(1, sizeof *c);
	ts_manifest bhead;
	ts_err_code rc;

	ts_manifest_init(head);
	ts_manifest_init(&bhead);
	*out = NULL;
	if (!c)
		return ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", rel);
	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot read manifest", rel);
		goto out;
	}
	rc = mc_open(&c->top, path, rel, head, e);
	if (rc != TS_OK || !head->base)
		goto out;
	/* Its base, a file beside it, read alongside (manifest.h: Base). */
	bpath = mr_beside(path, head->base);
	bname = mr_beside(rel, head->base);
	if (!bpath || !bname) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", rel);
		goto out;
	}
	rc = mc_open(&c->base, bpath, bname, &bhead, e);
	if (rc == TS_OK && bhead.base)
		rc = ts_err_set(e, TS_ERR_CORRUPT, "%s: a base manifest that has a base itself", bname);
	c->merged = true;
	free(head->base);
	head->base = NULL;   /* merged, as a whole read leaves it */
out:
	free(bpath);
	free(bname);
	ts_manifest_free(&bhead);
	if (rc == TS_OK) {
		*out = c;
	} else {
		ts_manifest_cursor_close(c);
		ts_manifest_free(head);
		ts_manifest_init(head);
	}
	return rc;
}

ts_err_code ts_manifest_cursor_next(ts_manifest_cursor *c, const ts_manifest_entry **ent, ts_err *e)
{
	ts_err_code rc = c->failed;

	*ent = NULL;
	if (rc != TS_OK)
		return ts_err_set(e, rc, "manifest: read on after a failure");
	/* What the last call gave goes now: its entry was the caller's until
	 * this call. */
	unsigned adv = c->started ? c->given : MC_TOP | (c->merged ? MC_BASE : 0);
	c->started = true;
	if (adv & MC_TOP)
		rc = mc_advance(&c->top, e);
	if (rc == TS_OK && (adv & MC_BASE))
		rc = mc_advance(&c->base, e);
	if (rc != TS_OK) {
		c->failed = rc;
		return rc;
	}
	c->given = 0;
	if (c->top.have && c->base.have) {
		int cmp = strcmp(c->top.cur.path, c->base.cur.path);
		c->given = cmp < 0 ? MC_TOP : cmp > 0 ? MC_BASE : MC_TOP | MC_BASE;   /* equal: the top's replaces */
	} else if (c->top.have) {
		c->given = MC_TOP;
	} else if (c->base.have) {
		c->given = MC_BASE;
	}
	if (c->given)
		*ent = c->given & MC_TOP ? &c->top.cur : &c->base.cur;
	return TS_OK;
}

void ts_manifest_cursor_close(ts_manifest_cursor *c)
{
	if (!c)
		return;
	mc_close(&c->top);
	mc_close(&c->base);
	free(c);
}

/* ---- a manifest rewritten from another (ts_manifest_rewrite_at) -------- */

typedef struct mc_rewrite {
	const char *src;           /* for messages */
	ts_manifest_cursor *c;
	ts_manifest_map_fn fn;
	void *arg;
	ts_err_code rc;            /* the source's fault, and why */
	ts_err err;
} mc_rewrite;

/* The next entry fn keeps; NULL at the source's end (rc TS_OK) or on a
 * fault (rc set). */
static const ts_manifest_entry *mc_rewrite_pull(mc_rewrite *w, ts_manifest_entry *scratch)
{
	const ts_manifest_entry *me, *out = NULL;

	while (!out && (w->rc = ts_manifest_cursor_next(w->c, &me, &w->err)) == TS_OK && me)
		out = w->fn(w->arg, me, scratch);
	return out;
}

static const ts_manifest_entry *mc_rewrite_next(void *arg, size_t i, ts_manifest_entry *scratch)
{
	mc_rewrite *w = arg;
	const ts_manifest_entry *out = mc_rewrite_pull(w, scratch);

	(void)i;
	if (!out && w->rc == TS_OK)
		w->rc = ts_err_set(&w->err, TS_ERR_CORRUPT, "%s: fewer entries than counted", w->src);
	return out;
}

ts_err_code ts_manifest_rewrite_at(int src_dirfd, const char *src_rel, const ts_manifest *head, size_t n,
                                   ts_manifest_map_fn fn, void *arg, int dirfd, const char *rel, ts_err *e)
{
	mc_rewrite w = { .src = src_rel, .fn = fn, .arg = arg };
	ts_manifest h;
	ts_manifest_entry scratch;
	ts_err_code rc;

	ts_err_clear(&w.err);
	rc = ts_manifest_cursor_open_at(src_dirfd, src_rel, &h, &w.c, e);
	if (rc == TS_OK)
		rc = ts_manifest_write_each_at(head, n, mc_rewrite_next, &w, dirfd, rel, e);
	if (rc != TS_OK && w.rc != TS_OK) {
		rc = w.rc;   /* the source's fault, not the writer's */
		if (e)
			*e = w.err;
	}
	/* Nothing more to keep after the n written (the writer removes its
	 * file when it fails; this one, written, goes here). */
	if (rc == TS_OK && (mc_rewrite_pull(&w, &scratch) || w.rc != TS_OK)) {
		rc = w.rc != TS_OK ? w.rc : ts_err_set(&w.err, TS_ERR_CORRUPT, "%s: more entries than counted", src_rel);
		if (e)
			*e = w.err;
		(void)unlinkat(dirfd, rel, 0);
	}
	ts_manifest_cursor_close(w.c);
	ts_manifest_free(&h);
	return rc;
}
