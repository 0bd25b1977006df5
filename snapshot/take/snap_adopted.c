/* snap_adopted.c - the check of a stage's copies that a snapshot taken from
 * the stage as it was (snap_fast.c) left for after it appeared.
 *
 * A take checks every stored copy it shares before the copy becomes part of
 * the new snapshot (share_check.h), so that a copy damaged in the store
 * never spreads.  A snapshot taken from the stage as it was skips that: it
 * costs a stat per file, and mkdir would wait for it.  The refresh checked
 * the copies when it ran; what is left is a copy damaged since, which the
 * snapshot now shares.  The daemon's sealer runs this before it seals
 * (a snapshot taken so still has its manifest.base, store/manifest.h): each
 * copy is checked as a take would, and a damaged one replaced by a copy of
 * the environment's file, which is the snapshot's content when that file
 * is still the one the stage copied (same inode, size, mtime, ctime: no
 * change since, so none before the snapshot either).  When it is not, the
 * snapshot keeps the damaged copy and the log says so; verify reports it.
 */
#include "take/snap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "base/log.h"
#include "base/pathset.h"
#include "store/linklog.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "take/share_check.h"

/* Where a fresh copy is made, beside the damaged one, before it is renamed
 * over it: a name the environment may use too, which O_EXCL then refuses
 * (the snapshot keeps the damaged copy, as when the file changed). */
#define ADOPTED_TMP ".tracsnap-recopy"

/* Is st (a regular file) the environment's file that pe records? */
static bool adopted_same_source(const ts_manifest_entry *pe, const struct stat *st)
{
	return S_ISREG(st->st_mode) && ts_manifest_same_source(pe, st) && (uint64_t)st->st_size == pe->size &&
	       st->st_mtim.tv_sec == pe->mtime.tv_sec && st->st_mtim.tv_nsec == pe->mtime.tv_nsec;
}

/* Copy rel afresh from the environment into the tree, if the environment's
 * file is still the one pe records; pe then records the new copy.  The copy
 * is made beside the damaged one and renamed over it, so that a copy that
 * fails or finds the file changed leaves the tree as it was.  False with
 * e->msg empty: the file is not (or was not all along the copy) the one
 * pe records; with e->msg set: the copy failed. */
static bool adopted_recopy(int envfd, int treefd, const ts_env *env, ts_manifest_entry *pe, ts_err *e)
{
	const char *leaf, *slash = strrchr(pe->path, '/');
	char tmp[PATH_MAX];
	struct stat placed, st;
	ts_copy_out co;
	bool in_place = false;
	int pfd = ts_beneath_parent(envfd, pe->path, &leaf);

	/* A file changed since is not read at all (the check after the copy
	 * is the one that counts: it may change while copied). */
	bool same = pfd >= 0 && fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && adopted_same_source(pe, &st);
	ts_beneath_parent_close(envfd, pfd);
	pfd = -1;
	if (!same)
		return false;
	if ((size_t)snprintf(tmp, sizeof tmp, "%.*s%s", slash ? (int)(slash - pe->path + 1) : 0, pe->path,
	                     ADOPTED_TMP) >= sizeof tmp) {
		ts_err_set(e, TS_ERR_IO, "%s: name too long for a copy beside it", pe->path);
		return false;
	}
	if (ts_copy_file_as(envfd, pe->path, treefd, tmp, 0, env->root, &co, e) != TS_OK) {
		if (e->code == TS_ERR_NOTFOUND)
			ts_err_clear(e);   /* gone, or no longer a file: changed */
		return false;
	}
	/* The source as the copy found it, not a stat before it. */
	if (co.changed || !adopted_same_source(pe, &co.st)) {
		/* changed: e stays clear */
	} else if ((pfd = ts_beneath_parent(treefd, pe->path, &leaf)) < 0 ||
	           fstatat(pfd, ADOPTED_TMP, &placed, AT_SYMLINK_NOFOLLOW) < 0) {
		ts_err_sys(e, errno, "%s: cannot stat the fresh copy", pe->path);
	} else if (renameat(pfd, ADOPTED_TMP, pfd, leaf) == 0) {
		in_place = true;
	} else if ((errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) &&
	           ts_copy_remove_tree(treefd, pe->path, e) == TS_OK) {
		/* A directory in the way (the file replaced by one) goes first. */
		in_place = renameat(pfd, ADOPTED_TMP, pfd, leaf) == 0;
		if (!in_place)
			ts_err_sys(e, errno, "%s: cannot put the fresh copy in place", pe->path);
	} else if (!e->msg[0]) {
		ts_err_sys(e, errno, "%s: cannot put the fresh copy in place", pe->path);
	}
	ts_beneath_parent_close(treefd, pfd);
	if (!in_place) {
		(void)ts_copy_remove_tree(treefd, tmp, NULL);   /* ours: the tree as it was */
		return false;
	}
	ts_manifest_entry_set_store(pe, &placed);
	pe->pending = true;   /* hashed by the seal that follows */
	memset(pe->sha256, 0, sizeof pe->sha256);
	return true;
}

/* Copies went in anew in directory de: its mtime, which that moved, back
 * to what the manifest records. */
static void adopted_dir_time(int treefd, const ts_manifest_entry *de)
{
	struct timespec t[2] = { de->mtime, de->mtime };
	int fd = ts_beneath_open(treefd, de->path, O_RDONLY | O_DIRECTORY, 0);
	if (fd >= 0) {
		(void)futimens(fd, t);
		close(fd);
	}
}

/* The entries copied afresh (paths owned), in the manifest's order, and
 * their directories; usually none. */
typedef struct adopted_fresh {
	ts_manifest_entry *v;
	size_t n, cap;
	ts_pathset dirs;
} adopted_fresh;

static bool adopted_fresh_add(adopted_fresh *f, const ts_manifest_entry *pe)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		ts_manifest_entry *nv = realloc(f->v, cap * sizeof *nv);
		if (!nv)
			return false;
		f->v = nv;
		f->cap = cap;
	}
	f->v[f->n] = *pe;
	if (!(f->v[f->n].path = strdup(pe->path)))
		return false;
	f->n++;
	return ts_pathset_add_dir_of(&f->dirs, pe->path);
}

static void adopted_fresh_free(adopted_fresh *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].path);
	free(f->v);
	ts_pathset_free(&f->dirs);
	memset(f, 0, sizeof *f);
}

/* ts_manifest_map_fn of the whole list again, as the seal would write it,
 * with the fresh copies' entries (both in path order); each directory that
 * got a fresh copy has its time put back on the way. */
typedef struct adopted_write_ctx {
	const adopted_fresh *f;
	int treefd;
	size_t k;
} adopted_write_ctx;

static const ts_manifest_entry *adopted_map(void *arg, const ts_manifest_entry *me, ts_manifest_entry *scratch)
{
	adopted_write_ctx *w = arg;

	(void)scratch;
	if (me->type == 'd' && ts_pathset_has(&w->f->dirs, me->path))
		adopted_dir_time(w->treefd, me);
	while (w->k < w->f->n && strcmp(w->f->v[w->k].path, me->path) < 0)
		w->k++;
	return w->k < w->f->n && !strcmp(w->f->v[w->k].path, me->path) ? &w->f->v[w->k] : me;
}

/* Check one snapshot taken from the stage as it was; prev: the snapshot
 * before it, whose copies the stage shared (for the messages). */
static ts_err_code adopted_check(ts_store *s, const ts_env *env, const char *name, const char *prev,
                                 ts_err *e)
{
	char path[PATH_MAX];
	ts_manifest head;
	ts_manifest_cursor *c = NULL;
	const ts_manifest_entry *me;
	adopted_fresh fresh = { 0 };
	ts_linklog links = { 0 };
	ts_err_code rc;
	int dirfd = -1, treefd = -1, envfd = -1, env_errno = 0;
	size_t n = 0;

	ts_manifest_init(&head);
	dirfd = ts_beneath_open(s->dirfd, name, O_RDONLY | O_DIRECTORY, 0);
	if (dirfd < 0 || faccessat(dirfd, TS_MANIFEST_BASE, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = TS_OK;   /* gone, or not taken so */
		goto out;
	}
	/* One entry at a time (manifest.h: cursor), never the whole list. */
	rc = ts_manifest_cursor_open_at(dirfd, "manifest", &head, &c, e);
	if (rc != TS_OK)
		goto out;
	treefd = ts_beneath_open(dirfd, "tree", O_RDONLY | O_DIRECTORY, 0);
	/* By path, as a take opens it, never through a link (doc/security.md). */
	if (treefd < 0) {
		rc = ts_err_sys(e, errno, "snapshot %s: cannot open its tree", name);
		goto out;
	}
	/* An environment gone (or a link now) is no reason to leave the
	 * copies unchecked: a damaged one is then kept, and said so. */
	envfd = open(env->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	env_errno = envfd < 0 ? errno : 0;
	ts_linklog_read(s->dirfd, &links);
	while ((rc = ts_manifest_cursor_next(c, &me, e)) == TS_OK && me) {
		ts_manifest_entry pe = *me;
		char what[TS_SHARE_WHAT_MAX];
		const char *leaf;
		struct stat st;
		n++;
		if (pe.type != 'f')
			continue;
		int pfd = ts_beneath_parent(treefd, pe.path, &leaf);
		bool have = pfd >= 0 && fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
		bool ok = pfd >= 0 && ts_share_check(&pe, have ? &st : NULL, &links, geteuid() == 0, pfd, leaf, what);
		ts_beneath_parent_close(treefd, pfd);
		if (ok)
			continue;
		ts_err ce;
		ts_err_clear(&ce);
		bool recopied = false;
		if (envfd < 0)
			ts_err_sys(&ce, env_errno, "%s: cannot open the environment", env->root);
		else
			recopied = adopted_recopy(envfd, treefd, env, &pe, &ce);
		if (recopied) {
			if (!adopted_fresh_add(&fresh, &pe)) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				break;
			}
			ts_share_log_damaged(prev ? prev : name, pe.path, what);
		} else if (ce.msg[0]) {
			ts_log(LOG_ERR, "%s/%s: stored copy damaged (%s), and copying it afresh failed (%s): "
			       "snapshot %s keeps the damaged copy (tracsnap verify reports it)",
			       prev ? prev : name, pe.path, what, ce.msg, name);
		} else {
			ts_log(LOG_ERR, "%s/%s: stored copy damaged (%s), and the environment's file changed "
			       "since snapshot %s: the snapshot keeps the damaged copy (tracsnap verify "
			       "reports it)", prev ? prev : name, pe.path, what, name);
		}
	}
	ts_manifest_cursor_close(c);
	c = NULL;
	if (rc == TS_OK && fresh.n) {
		/* The whole list, as the seal would write it; the base goes. */
		struct timespec t[2] = { head.time, head.time };
		adopted_write_ctx w = { .f = &fresh, .treefd = treefd };
		snprintf(path, sizeof path, "manifest.adopted-%ld", (long)getpid());
		rc = ts_manifest_rewrite_at(dirfd, "manifest", &head, n, adopted_map, &w, dirfd, path, e);
		if (rc == TS_OK && (utimensat(dirfd, path, t, AT_SYMLINK_NOFOLLOW) < 0 ||
		                    renameat(dirfd, path, dirfd, "manifest") < 0))
			rc = ts_err_sys(e, errno, "snapshot %s: cannot replace the manifest", name);
		if (rc != TS_OK)
			(void)unlinkat(dirfd, path, 0);
		else
			(void)unlinkat(dirfd, TS_MANIFEST_BASE, 0);
	}
out:
	ts_manifest_cursor_close(c);
	if (envfd >= 0)
		close(envfd);
	if (treefd >= 0)
		close(treefd);
	if (dirfd >= 0)
		close(dirfd);
	ts_linklog_free(&links);
	adopted_fresh_free(&fresh);
	ts_manifest_free(&head);
	return rc;
}

ts_err_code ts_snap_check_adopted(ts_store *s, const ts_env *env, int lock_timeout_s, ts_err *e)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_store own;
	ts_err_code rc;

	/* Most of the time there is none: no lock taken then. */
	rc = ts_store_list(s, &v, &n, e);
	bool any = false;
	for (size_t i = 0; rc == TS_OK && i < n && !any; i++) {
		char base[PATH_MAX];
		snprintf(base, sizeof base, "%s/%s", v[i].name, TS_MANIFEST_BASE);
		any = !v[i].sealed && faccessat(s->dirfd, base, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	}
	ts_store_list_free(v, n);
	v = NULL;
	n = 0;
	if (rc != TS_OK || !any)
		return rc;
	/* The daemon's takes lock s from another thread: this one locks a
	 * handle of its own (ts_store_dup), or it would run beside a take. */
	if (!ts_store_dup(s, &own))
		return ts_err_sys(e, errno, "store %s: cannot open it again", s->root);
	rc = ts_store_lock(&own, lock_timeout_s, e);
	if (rc == TS_OK)
		rc = ts_store_list(&own, &v, &n, e);
	for (size_t i = 0; rc == TS_OK && i < n; i++)
		if (!v[i].sealed)
			rc = adopted_check(&own, env, v[i].name, i > 0 ? v[i - 1].name : NULL, e);
	ts_store_list_free(v, n);
	ts_store_close(&own);   /* unlocks */
	return rc;
}
