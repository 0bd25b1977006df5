/* restore_record.c - the environment as restored, recorded as a sealed
 * snapshot restored-<time> of the snapshot's store (restore_int.h;
 * doc/contract.md section 6).
 *
 * Why: a restore writes every file of ENV anew, so no file of the restored
 * ENV has the source identity (inode, ctime) any manifest recorded, and the
 * newest snapshot is the pre-restore one, whose content is not what was
 * restored anyway.  The next snapshot would copy the whole environment
 * again.  So once ENV is the restored tree, the engine records it as a
 * snapshot of its own: the restored snapshot's entries, each with the
 * source identity of the file restore just wrote, its files hard links to
 * the restored snapshot's stored copies.  The next snapshot compares with
 * it by the normal path (take/snap_put.c, snap_share; the daemon's stage
 * too) and shares every file whose content is unchanged; nothing in the
 * take knows of restores.
 *
 * Two steps:
 *   - restore_record_prepare, before the exchange, while the copy is a
 *     directory only root can enter (restore.c, step 4): one lstat per
 *     entry of the copy, beneath its descriptor.  Nobody else can have
 *     touched those files yet, so the identity recorded is the restored
 *     content's; anything ENV's owner does after the exchange moves a
 *     ctime (or the inode) away from it, and the next snapshot copies that
 *     file as changed.  A ctime so recent that a later change could carry
 *     the same one (base/racy.h's racy window) is first waited out
 *     (at most two seconds, on a filesystem with whole-second times).
 *   - restore_record_make, after the restore succeeded: the snapshot built
 *     in the store by its tmp/commit protocol (store.h) under the store's
 *     lock, one linklog batch (linklog.h) around its links, each stored
 *     copy checked before it is linked (take/share_check.h), directories
 *     and symlinks made anew from the restored snapshot's tree, then
 *     sealed.  ENV is not read at all: its files are the restored
 *     snapshot's content, hashed as restore copied them (restore_check.c).
 *
 * A record is made only when restore vouched for every entry: the snapshot
 * is in a store that passes the store's checks, sealed, of ENV, and
 * nothing was found damaged.  Otherwise (a --force of something unchecked)
 * nothing is recorded and the next snapshot copies everything, as before.
 */
#include "restore/restore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/clock.h"
#include "base/copy.h"
#include "base/parse.h"
#include "db/dbsnap.h"
#include "base/racy.h"
#include "store/linklog.h"
#include "store/manifest_stat.h"
#include "store/seal.h"
#include "take/share_check.h"


void restore_record_init(restore_record *r)
{
	memset(r, 0, sizeof *r);
	ts_manifest_init(&r->m);
}

void restore_record_free(restore_record *r)
{
	ts_manifest_free(&r->m);
	r->want = false;
}

/* Is path skip itself or below it? */
static bool record_below(const char *path, const char *skip)
{
	size_t n = skip ? strlen(skip) : 0;

	return n && !strncmp(path, skip, n) && (path[n] == '\0' || path[n] == '/');
}

/* Why a record cannot be made of what s restored, or NULL. */
static const char *record_refusal(const restore_src *s, const char *env_root, const ts_restore_out *out)
{
	if (!s->have_store || !s->have_manifest)
		return "the snapshot has no store or manifest";
	if (s->seal != TS_STORE_SEALED || !ts_manifest_sealed(&s->m))
		return "the snapshot is not sealed";
	if (!s->m.env || strcmp(s->m.env, env_root))
		return "the snapshot is of another environment";
	if (s->m.no_database)
		return "the snapshot holds no database";
	if (out->ndamaged)
		return "the snapshot was restored damaged";
	return NULL;
}

/* The header of the record's manifest: the snapshot's. */
static ts_err_code record_header(ts_manifest *m, const ts_manifest *from, const char *env_root, ts_err *e)
{
	m->no_database = from->no_database;
	m->env = strdup(env_root);
	m->external_db = from->external_db ? strdup(from->external_db) : NULL;
	m->external_db_rel = from->external_db_rel ? strdup(from->external_db_rel) : NULL;
	if (!m->env || !from->external_db != !m->external_db || !from->external_db_rel != !m->external_db_rel)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return TS_OK;
}

/* Wait until no ctime in m is within its racy window any more (bounded,
 * as the take's catch-up waits: take/snap.c), then forget the identity of
 * an entry still within it (the wait was cut short). */
static void record_settle(ts_manifest *m)
{
	struct timespec now;
	int64_t until = 0;

	for (size_t i = 0; i < m->n; i++) {
		const ts_manifest_entry *me = &m->entries[i];
		int64_t end = ts_racy_timespec_ns(&me->src_ctime) + ts_racy_ns(&me->src_ctime);
		if (me->src_ino && end > until)
			until = end;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t wait = until - ts_racy_timespec_ns(&now);
	if (wait > 0) {
		if (wait > TS_RACY_COARSE_NS)
			wait = TS_RACY_COARSE_NS;
		struct timespec nap = { wait / 1000000000LL, wait % 1000000000LL };
		nanosleep(&nap, NULL);
		clock_gettime(CLOCK_REALTIME, &now);
	}
	for (size_t i = 0; i < m->n; i++) {
		ts_manifest_entry *me = &m->entries[i];
		if (me->src_ino && ts_racy_timespec_ns(&me->src_ctime) >=
		                   ts_racy_timespec_ns(&now) - ts_racy_ns(&me->src_ctime)) {
			me->src_ino = 0;
			me->src_ctime = (struct timespec){ 0, 0 };
		}
	}
}

ts_err_code restore_record_prepare(restore_record *r, const restore_src *s, const ts_env *snap,
                                   const char *env_root, int copyfd, const char *skip,
                                   const ts_restore_out *out, ts_err *e)
{
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT;
	ts_err_code rc = TS_OK;
	const char *why = record_refusal(s, env_root, out);

	restore_record_free(r);
	ts_manifest_init(&r->m);
	if (why) {
		snprintf(r->why, sizeof r->why, "%s", why);
		return TS_OK;
	}
	rc = record_header(&r->m, &s->m, env_root, e);
	for (size_t i = 0; rc == TS_OK && i < s->m.n; i++) {
		const ts_manifest_entry *pe = &s->m.entries[i];
		ts_manifest_entry *me = ts_manifest_add(&r->m, pe->type, pe->path);
		const char *leaf;
		struct stat st;
		int pfd;

		if (!me) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			break;
		}
		{
			char *path = me->path;
			*me = *pe;
			me->path = path;
		}
		me->src_ino = 0;   /* unknown until the copy's lstat says otherwise */
		me->src_ctime = (struct timespec){ 0, 0 };
		/* Not in ENV (an external database's place in the tree), or
		 * never compared by source (the database and its journals: the
		 * backend captures it anew every time). */
		if (record_below(pe->path, skip) || (strcmp(pe->path, ".") && ts_db_excluded(snap, pe->path)))
			continue;
		pfd = strcmp(pe->path, ".") ? ts_beneath_cache_parent(&c, copyfd, pe->path, &leaf)
		                            : (leaf = ".", copyfd);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;   /* never in a complete copy; unknown is safe */
		if (ts_manifest_type_of(st.st_mode) == pe->type)
			ts_manifest_entry_set_source(me, &st);
	}
	ts_beneath_cache_drop(&c);
	if (rc != TS_OK) {
		ts_manifest_free(&r->m);
		ts_manifest_init(&r->m);
		return rc;
	}
	record_settle(&r->m);
	r->want = true;   /* (sorted as the snapshot's: same paths, same order) */
	return TS_OK;
}

/* ------------------------------------------------------------ the record */

/* What filling the record's tree needs. */
typedef struct record_fill_ctx {
	restore_record *r;
	const char *snapname;      /* the restored snapshot, in messages */
	int snapfd, treefd;        /* its tree; the record's */
	ts_beneath_cache sc, tc;
	ts_linklog links;          /* the engine's batches, read once */
	bool root;                 /* owners are kept (and checked) by root only */
} record_fill_ctx;

/* One entry, parents before children (the manifest's order): a directory
 * made, a symlink made anew from the snapshot's (its target's hash
 * checked), a file linked to the snapshot's copy once that copy is checked
 * to be the content its manifest sealed; its identity as checked becomes
 * the record's store identity (as take/snap_put.c records a share: the
 * link moves its ctime inside this batch, linklog.h). */
static ts_err_code record_fill_one(record_fill_ctx *c, ts_manifest_entry *me, ts_err *e)
{
	char what[TS_SHARE_WHAT_MAX];
	const char *sleaf, *tleaf;
	struct stat cur;
	ts_copy_out co;
	ts_err_code rc;
	int sfd, tfd;

	if (!strcmp(me->path, "."))
		return TS_OK;
	if (me->type == 'l') {
		rc = ts_copy_symlink(c->snapfd, c->treefd, me->path, c->snapname, &co, e);
		if (rc == TS_OK && memcmp(co.sha256, me->sha256, sizeof co.sha256))
			rc = ts_err_set(e, TS_ERR_CORRUPT, "%s/%s: stored copy damaged (content)", c->snapname,
			                me->path);
		return rc;
	}
	tfd = ts_beneath_cache_parent(&c->tc, c->treefd, me->path, &tleaf);
	if (tfd < 0)
		return ts_err_sys(e, errno, "%s: cannot reach its directory in the store", me->path);
	if (me->type == 'd') {
		if (mkdirat(tfd, tleaf, 0700) < 0)
			return ts_err_sys(e, errno, "%s: cannot create in the store", me->path);
		return TS_OK;
	}
	sfd = ts_beneath_cache_parent(&c->sc, c->snapfd, me->path, &sleaf);
	if (sfd < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot reach its directory", c->snapname, me->path);
	bool have = fstatat(sfd, sleaf, &cur, AT_SYMLINK_NOFOLLOW) == 0;
	if (!have && errno != ENOENT)
		return ts_err_sys(e, errno, "%s/%s: cannot stat", c->snapname, me->path);
	if (!ts_share_check(me, have ? &cur : NULL, &c->links, c->root, sfd, sleaf, what))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s/%s: stored copy damaged (%s)", c->snapname, me->path,
		                  what);
	if (linkat(sfd, sleaf, tfd, tleaf, 0) < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot link", c->snapname, me->path);
	ts_manifest_entry_set_store(me, &cur);
	return TS_OK;
}

/* Directories' metadata as the snapshot's tree has it (owner, mode,
 * xattrs, times), once nothing more is added to them. */
static ts_err_code record_dir_meta(record_fill_ctx *c, ts_err *e)
{
	ts_err_code rc = TS_OK;

	for (size_t i = 0; rc == TS_OK && i < c->r->m.n; i++) {
		const ts_manifest_entry *me = &c->r->m.entries[i];
		const char *leaf;
		struct stat st;
		int pfd;

		if (me->type != 'd')
			continue;
		pfd = strcmp(me->path, ".") ? ts_beneath_cache_parent(&c->sc, c->snapfd, me->path, &leaf)
		                            : (leaf = ".", c->snapfd);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
			rc = ts_err_sys(e, errno, "%s/%s: cannot stat", c->snapname, me->path);
		else if (!S_ISDIR(st.st_mode))
			rc = ts_err_set(e, TS_ERR_CORRUPT, "%s/%s: stored copy damaged (type)", c->snapname,
			                me->path);
		else
			rc = ts_copy_dir_meta(c->snapfd, c->treefd, me->path, &st, c->snapname, e);
	}
	return rc;
}

/* A free name restored-<time>[-N] into name (size bytes). */
static ts_err_code record_name(ts_store *store, char *name, size_t size, ts_err *e)
{
	char stamp[32];
	time_t now = ts_clock_name_time();
	struct tm tm;
	struct stat st;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H%M%S", &tm);
	for (int i = 0; i < 100; i++) {
		if (i)
			snprintf(name, size, TS_RESTORE_RECORD_PREFIX "%s-%d", stamp, i);
		else
			snprintf(name, size, TS_RESTORE_RECORD_PREFIX "%s", stamp);
		/* Not even a snapshot lost in a restart holds it (store.h): the
		 * commit's rename never replaces. */
		if (fstatat(store->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			return TS_OK;
	}
	return ts_err_set(e, TS_ERR_EXISTS, "snapshot %s: exists already", name);
}

/* Write the manifest (unsealed, nothing pending: ts_seal only makes it
 * durable), dated instant like a take's (take/snap_manifest.c). */
static ts_err_code record_manifest(restore_record *r, ts_store_tmp *t, const struct timespec *instant,
                                   ts_err *e)
{
	char boot[TS_STORE_BOOT_ID_MAX];
	struct timespec times[2] = { *instant, *instant };
	ts_err_code rc;

	ts_store_boot_id(boot);
	free(r->m.unsealed_boot);
	r->m.time = *instant;
	r->m.unsealed_boot = strdup(boot);
	if (!r->m.unsealed_boot)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	rc = ts_manifest_write_at(&r->m, t->dirfd, "manifest", e);
	if (rc == TS_OK && utimensat(t->dirfd, "manifest", times, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "%s/manifest: cannot set its time", t->dir);
	return rc;
}

ts_err_code restore_record_make(restore_record *r, restore_src *s, int snapfd, int lock_timeout_s,
                                ts_restore_out *out, ts_err *e)
{
	ts_store *store = &s->store;
	ts_store_tmp t = { .dirfd = -1, .treefd = -1 };
	record_fill_ctx c = { .r = r, .snapname = s->snapname, .snapfd = snapfd,
	                      .sc = TS_BENEATH_CACHE_INIT, .tc = TS_BENEATH_CACHE_INIT,
	                      .root = geteuid() == 0 };
	bool locked = false, tmp_open = false, links_begun = false, committed = false;
	struct timespec link_start, instant;
	char name[64];
	ts_err_code rc;

	out->recorded[0] = '\0';
	if (!r->want)
		return ts_err_set(e, TS_ERR_USAGE, "no record to make (%s)", r->why);
	rc = ts_store_lock(store, lock_timeout_s > 0 ? lock_timeout_s : TS_LOCK_TIMEOUT_DEFAULT, e);
	if (rc != TS_OK)
		goto out;
	locked = true;
	rc = record_name(store, name, sizeof name, e);
	if (rc == TS_OK)
		rc = ts_store_begin(store, name, &t, e);
	if (rc != TS_OK)
		goto out;
	tmp_open = true;
	c.treefd = t.treefd;
	ts_linklog_read(store->dirfd, &c.links);
	ts_linklog_begin(&link_start);
	links_begun = true;
	for (size_t i = 0; rc == TS_OK && i < r->m.n; i++)
		rc = record_fill_one(&c, &r->m.entries[i], e);
	if (rc == TS_OK)
		rc = record_dir_meta(&c, e);
	/* The last link is made: the batch ends before the snapshot can be
	 * seen, and before an abort's guard looks (linkguard.h). */
	ts_linklog_end(store->dirfd, &link_start);
	links_begun = false;
	if (rc != TS_OK)
		goto out;
	clock_gettime(CLOCK_REALTIME, &instant);
	rc = record_manifest(r, &t, &instant, e);
	if (rc == TS_OK)
		rc = ts_store_mark_unsealed(&t, e);
	if (rc == TS_OK) {
		rc = ts_store_commit(store, &t, &instant, e);
		tmp_open = false;   /* consumed, success or not */
		committed = rc == TS_OK;
	}
	if (rc != TS_OK)
		goto out;
	ts_store_unlock(store);
	locked = false;
	/* Nothing to hash: the seal makes the new directories and symlinks
	 * durable and swaps in the sealed manifest. */
	rc = ts_seal(store, name, NULL, NULL, e);
	if (rc == TS_OK)
		snprintf(out->recorded, sizeof out->recorded, "%s", name);
out:
	if (links_begun)
		ts_linklog_end(store->dirfd, &link_start);
	if (tmp_open)
		ts_store_abort(store, &t);
	if (rc != TS_OK && committed) {
		/* Appeared but could not be sealed: no record rather than one
		 * that might be incomplete. */
		ts_err ignore;
		if (locked || ts_store_lock(store, lock_timeout_s > 0 ? lock_timeout_s : TS_LOCK_TIMEOUT_DEFAULT,
		                            &ignore) == TS_OK) {
			locked = true;
			(void)ts_store_remove(store, name, &ignore);
		}
	}
	if (locked)
		ts_store_unlock(store);
	ts_beneath_cache_drop(&c.sc);
	ts_beneath_cache_drop(&c.tc);
	ts_linklog_free(&c.links);
	return rc;
}
