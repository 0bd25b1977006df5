/* restore_check.c - restore's copy against the snapshot's manifest
 * (restore_int.h; doc/contract.md section 6).
 *
 * Restore must not put damage back: every entry of the copy is compared
 * with the manifest as it is made (type, size, and the content's SHA-256
 * for files and symlinks), and at the end whatever the manifest lists that
 * the copy never met is missing.  A file's hash is taken from the copy just
 * written, not from the snapshot: what is checked is what goes into ENV,
 * and its pages are still in the page cache (after a clone, its extents
 * are the snapshot's, read once).
 */
#include "restore/restore_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/copy.h"
#include "store/manifest_stat.h"

ts_err_code restore_check_init(restore_check *c, const ts_manifest *m, const char *name, bool force,
                               ts_restore_out *out, ts_err *e)
{
	const ts_manifest_entry *top;

	memset(c, 0, sizeof *c);
	c->name = name;
	c->force = force;
	c->out = out;
	if (!m)
		return TS_OK;
	c->seen = calloc(m->n ? m->n : 1, 1);
	if (!c->seen)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	c->m = m;
	/* The top is the copy's own directory, not one of its entries. */
	top = ts_manifest_find(m, ".");
	if (top)
		c->seen[top - m->entries] = 1;
	return TS_OK;
}

void restore_check_free(restore_check *c)
{
	free(c->seen);
	c->seen = NULL;
}

/* One difference: refused, or with force counted (the first one kept for
 * the warning). */
__attribute__((format(printf, 4, 5)))
static ts_err_code restore_damage(restore_check *c, const char *rel, ts_err *e, const char *fmt, ...)
{
	char what[512], line[TS_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	snprintf(line, sizeof line, "%.1800s/%.1800s: damaged (%s); see tracsnap verify --repair", c->name,
	         rel, what);
	if (!c->force)
		return ts_err_set(e, TS_ERR_CORRUPT, "%s", line);
	if (!c->out->ndamaged++)
		snprintf(c->out->damaged, sizeof c->out->damaged, "%s", line);
	return TS_OK;
}

static const char *restore_type_word(char t)
{
	return t == 'd' ? "a directory" : t == 'f' ? "a regular file" : t == 'l' ? "a symlink" : "special";
}

ts_err_code restore_check_entry(restore_check *c, const char *rel, const struct stat *st, int dst,
                                const char *dst_rel, const unsigned char *sha, ts_err *e)
{
	const ts_manifest_entry *me;
	unsigned char got[32];
	uint64_t size;
	char t = ts_manifest_type_of(st->st_mode);
	ts_err_code rc;

	if (!c->m)
		return TS_OK;
	me = ts_manifest_find(c->m, rel);
	if (!me)
		return restore_damage(c, rel, e, "not in the manifest");
	c->seen[me - c->m->entries] = 1;
	if (me->type != t)
		return restore_damage(c, rel, e, "%s, the manifest says %s", restore_type_word(t),
		                      restore_type_word(me->type));
	if (t == 'd')
		return TS_OK;
	if ((uint64_t)st->st_size != me->size)
		return restore_damage(c, rel, e, "%" PRIu64 " bytes, the manifest says %" PRIu64,
		                      (uint64_t)st->st_size, me->size);
	if (me->pending)
		return TS_OK;   /* unsealed, restored with force: nothing to compare */
	if (t == 'f') {
		rc = ts_copy_hash_file(dst, dst_rel, false, got, &size, e);
		if (rc != TS_OK)
			return rc;
		sha = got;
		if (size != me->size)
			return restore_damage(c, rel, e, "%" PRIu64 " bytes, the manifest says %" PRIu64, size,
			                      me->size);
	}
	if (!sha || memcmp(sha, me->sha256, 32))
		return restore_damage(c, rel, e, "content differs from the manifest");
	return TS_OK;
}

/* Is path skip itself or below it? */
static bool restore_below(const char *path, const char *skip)
{
	size_t n = skip ? strlen(skip) : 0;

	return n && !strncmp(path, skip, n) && (path[n] == '\0' || path[n] == '/');
}

ts_err_code restore_check_missing(restore_check *c, const char *skip, ts_err *e)
{
	ts_err_code rc = TS_OK;

	for (size_t i = 0; c->m && rc == TS_OK && i < c->m->n; i++)
		if (!c->seen[i] && !restore_below(c->m->entries[i].path, skip))
			rc = restore_damage(c, c->m->entries[i].path, e, "missing: the manifest lists %s",
			                    restore_type_word(c->m->entries[i].type));
	return rc;
}
