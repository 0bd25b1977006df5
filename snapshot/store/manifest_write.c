/* manifest_write.c - write a manifest file (manifest.h): checked (a whole
 * array first, entries given one by one as they come), buffered, fsync'd
 * when sealed. */
#include "base/beneath.h"
#include "base/copy.h"
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

#define MANIFEST_WBUF (64 * 1024)

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

static void mw_char(manifest_w *w, char c)
{
	if (w->n == sizeof(w->buf))
		mw_flush(w);
	w->buf[w->n++] = c;
}

/* Decimal, by hand: vsnprintf was a fifth of writing a manifest. */
static void mw_u64(manifest_w *w, uint64_t v)
{
	char tmp[20];
	size_t k = sizeof(tmp);

	do {
		tmp[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mw_put(w, tmp + k, sizeof(tmp) - k);
}

/* "<sec>.<9 digits>" (manifest_read.c's mr_time). */
static void mw_time(manifest_w *w, const struct timespec *t)
{
	char ns[9];
	long v = t->tv_nsec;

	if (t->tv_sec < 0) {
		mw_char(w, '-');
		mw_u64(w, -(uint64_t)t->tv_sec);
	} else {
		mw_u64(w, (uint64_t)t->tv_sec);
	}
	for (int i = 8; i >= 0; i--, v /= 10)
		ns[i] = (char)('0' + v % 10);
	mw_char(w, '.');
	mw_put(w, ns, sizeof(ns));
}

/* An escaped field (ts_manifest_escape's rules), straight into the
 * buffer: runs of bytes that need no escape are copied as they are. */
static void mw_escaped(manifest_w *w, const char *raw)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)raw, *run = p;

	for (;; p++) {
		unsigned char c = *p;
		if (c != '\\' && c > ' ' && c != 0x7f)
			continue;
		mw_put(w, (const char *)run, (size_t)(p - run));
		if (c == '\0')
			break;
		mw_char(w, '\\');
		switch (c) {
		case '\\': mw_char(w, '\\'); break;
		case '\t': mw_char(w, 't'); break;
		case '\n': mw_char(w, 'n'); break;
		case '\r': mw_char(w, 'r'); break;
		default:
			mw_char(w, 'x');
			mw_char(w, hex[c >> 4]);
			mw_char(w, hex[c & 15]);
		}
		run = p + 1;
	}
}

/* Refuse to write a head the reader would refuse to read. */
static ts_err_code manifest_head_check(const ts_manifest *m, const char *file, ts_err *e)
{
	if (!m->env || !m->env[0])
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: manifest has no environment path", file);
	if (!manifest_ts_ok(&m->time))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad snapshot time", file);
	if (!m->external_db != !m->external_db_rel || (m->external_db && !m->external_db[0]) ||
	    (m->external_db_rel && !manifest_path_ok(m->external_db_rel)))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad external database paths", file);
	if (m->unsealed_boot && !manifest_boot_ok(m->unsealed_boot))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad boot id", file);
	if (m->base && (!m->unsealed_boot || !manifest_base_ok(m->base)))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: bad base (unsealed manifests only)", file);
	return TS_OK;
}

/* The same for entry i, which follows one with path last (NULL: none). */
static ts_err_code manifest_entry_check(const ts_manifest *head, const ts_manifest_entry *ent,
                                        const char *last, size_t i, const char *file, ts_err *e)
{
	if (!manifest_path_ok(ent->path))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad path", file, i);
	if (ent->type != 'd' && ent->type != 'f' && ent->type != 'l')
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad type", file, i);
	if (!manifest_ts_ok(&ent->mtime) || !manifest_ts_ok(&ent->src_ctime) ||
	    !manifest_ts_ok(&ent->store_ctime))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: bad time", file, i);
	if (ent->pending && ent->type != 'f')
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: pending but not a file", file, i);
	if (ent->pending && !head->unsealed_boot)
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entry %zu: pending in a sealed manifest", file, i);
	if (last && strcmp(last, ent->path) >= 0)
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: entries not sorted or duplicated at entry %zu "
		                  "(call ts_manifest_sort)", file, i);
	return TS_OK;
}

static void mw_head(manifest_w *w, const ts_manifest *m, size_t n)
{
	mw_str(w, m->base ? MANIFEST_MAGIC "\t" MANIFEST_VERSION_BASE "\n"
	                  : MANIFEST_MAGIC "\t" MANIFEST_VERSION "\n");
	mw_printf(w, "time\t%lld.%09ld\n", (long long)m->time.tv_sec, (long)m->time.tv_nsec);
	mw_str(w, "env\t");
	mw_escaped(w, m->env);
	mw_str(w, "\n");
	if (m->external_db) {
		mw_str(w, "external-db\t");
		mw_escaped(w, m->external_db);
		mw_str(w, "\t");
		mw_escaped(w, m->external_db_rel);
		mw_str(w, "\n");
	}
	if (m->no_database)
		mw_str(w, "no-database\n");
	if (m->unsealed_boot) {
		mw_str(w, "unsealed\t");
		mw_str(w, m->unsealed_boot); /* checked: nothing to escape */
		mw_str(w, "\n");
	}
	if (m->base) {
		mw_str(w, "base\t");
		mw_str(w, m->base);   /* checked: nothing to escape */
		mw_str(w, "\n");
	}
	mw_printf(w, "entries\t%zu\n", n);
}

static void mw_entry(manifest_w *w, const ts_manifest_entry *ent)
{
	char hex[65];

	if (ent->type == 'd' || ent->pending)
		memcpy(hex, "-", 2);
	else
		ts_sha256_hex(ent->sha256, hex);
	unsigned mode = (unsigned)(ent->mode & 07777);
	char lead[7] = { ent->type, '\t', (char)('0' + (mode >> 9)), (char)('0' + ((mode >> 6) & 7)),
	                 (char)('0' + ((mode >> 3) & 7)), (char)('0' + (mode & 7)), '\t' };
	mw_put(w, lead, sizeof(lead));
	mw_u64(w, (uint64_t)ent->uid);
	mw_char(w, '\t');
	mw_u64(w, (uint64_t)ent->gid);
	mw_char(w, '\t');
	mw_u64(w, ent->size);
	mw_char(w, '\t');
	mw_time(w, &ent->mtime);
	mw_char(w, '\t');
	mw_str(w, hex);
	mw_char(w, '\t');
	mw_u64(w, ent->src_ino);
	mw_char(w, '\t');
	mw_time(w, &ent->src_ctime);
	mw_char(w, '\t');
	mw_u64(w, ent->store_ino);
	mw_char(w, '\t');
	mw_time(w, &ent->store_ctime);
	mw_char(w, '\t');
	mw_escaped(w, ent->path);
	mw_str(w, "\n");
}

/* checked: the entries were checked before (ts_manifest_write). */
static ts_err_code manifest_write(const ts_manifest *head, size_t n, ts_manifest_entry_fn fn, void *arg,
                                  bool checked, const char *file, ts_err *e)
{
	ts_err_code rc;
	manifest_w *w = NULL;
	bool created = false;
	const char *last = NULL;
	char *last_buf = NULL;
	size_t i, last_cap = 0;

	rc = manifest_head_check(head, file, e);
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
	mw_head(w, head, n);
	for (i = 0; i < n && !w->err; i++) {
		ts_manifest_entry scratch;
		const ts_manifest_entry *ent = fn(arg, i, &scratch);
		if (!ent) {
			rc = ts_err_set(e, TS_ERR_IO, "%s: entry %zu of %zu missing", file, i + 1, n);
			goto out;
		}
		rc = checked ? TS_OK : manifest_entry_check(head, ent, last, i, file, e);
		if (rc != TS_OK)
			goto out;
		mw_entry(w, ent);
		if (!checked) {
			/* Kept here: fn's entry is valid only until its next
			 * call (manifest.h). */
			size_t len = strlen(ent->path) + 1;
			if (len > last_cap) {
				char *nb = realloc(last_buf, len * 2);
				if (!nb) {
					rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", file);
					goto out;
				}
				last_buf = nb;
				last_cap = len * 2;
			}
			memcpy(last_buf, ent->path, len);
			last = last_buf;
		}
	}
	mw_str(w, "end\n");
	mw_flush(w);
	/* An unsealed manifest needs no fsync: after a crash its snapshot is
	 * discarded whatever the file holds (see store.h). */
	if (!w->err && !head->unsealed_boot) {
		ts_copy_flush_bounded(w->fd);
		if (fsync(w->fd) < 0)
			w->err = errno;
	}
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
out:
	if (w && w->fd >= 0)
		close(w->fd);
	/* Leave no half-written manifest behind. */
	if (rc != TS_OK && created)
		unlink(file);
	free(w);
	free(last_buf);
	return rc;
}

ts_err_code ts_manifest_write_each(const ts_manifest *head, size_t n, ts_manifest_entry_fn fn, void *arg,
                                   const char *file, ts_err *e)
{
	return manifest_write(head, n, fn, arg, false, file, e);
}

static const ts_manifest_entry *manifest_entry_of(void *arg, size_t i, ts_manifest_entry *scratch)
{
	(void)scratch;
	return &((const ts_manifest *)arg)->entries[i];
}

/* All checked before the file is made: a manifest the reader would refuse
 * leaves an existing file as it was. */
ts_err_code ts_manifest_write(const ts_manifest *m, const char *file, ts_err *e)
{
	ts_err_code rc = manifest_head_check(m, file, e);
	for (size_t i = 0; rc == TS_OK && i < m->n; i++)
		rc = manifest_entry_check(m, &m->entries[i], i ? m->entries[i - 1].path : NULL, i, file, e);
	return rc == TS_OK ? manifest_write(m, m->n, manifest_entry_of, (void *)m, true, file, e) : rc;
}

ts_err_code ts_manifest_write_each_at(const ts_manifest *head, size_t n, ts_manifest_entry_fn fn, void *arg,
                                      int dirfd, const char *rel, ts_err *e)
{
	char path[PATH_MAX + 64];

	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0)
		return ts_err_sys(e, errno, "%s: cannot write manifest", rel);
	return ts_manifest_write_each(head, n, fn, arg, path, e);
}

ts_err_code ts_manifest_write_at(const ts_manifest *m, int dirfd, const char *rel, ts_err *e)
{
	char path[PATH_MAX + 64];

	if (ts_beneath_procpath(path, sizeof path, dirfd, rel) < 0)
		return ts_err_sys(e, errno, "%s: cannot write manifest", rel);
	return ts_manifest_write(m, path, e);
}
