/* stage_build.c - the stage built from the newest sealed snapshot (stage.h).
 *
 * The build goes through the snapshot's manifest entry by entry, a pass for
 * each job (manifest.h: ts_manifest_cursor), and never holds it: the whole
 * manifest in memory, some 57 MB at 200,000 entries, was the daemon's peak
 * after every seal.  Each pass reads and checks the file again (a sealed
 * snapshot's, in the store, under the writers' lock: the same bytes each
 * time), which costs about what one whole read cost, per pass. */
#include "base/beneath.h"
#include "take/stage.h"
#include "take/stage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/copy.h"
#include "base/pathset.h"
#include "db/dbsnap.h"
#include "store/linklog.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "take/share_check.h"

/* Everything one build holds; released in one place. */
typedef struct stage_build {
	ts_store *s;
	const ts_stage_build_opts *o;
	char mpath[PATH_MAX];      /* the base's manifest, below the store */
	ts_manifest head;          /* its header (no entries) */
	const char *base_name;     /* for the damage line */
	int basefd, treefd;
	ts_beneath_cache bc, tc;
	bool root;                 /* owners can only be kept by root */
	ts_linklog links;          /* the engine's link batches (linklog.h) */
	size_t n;                  /* the manifest's entries */
	ts_pathset left_out;       /* damaged, not staged */
	ts_pathset left_dirs;      /* their directories */
	ts_pathset db;             /* the database's entries (with o->env) */
	bool stopped, kept_own;
} stage_build;

static bool stage_stopped(stage_build *b)
{
	if (!b->stopped && b->o->stop && __atomic_load_n(b->o->stop, __ATOMIC_RELAXED) != 0)
		b->stopped = true;
	return b->stopped;
}

static bool stage_is_db(const ts_env *env, const ts_manifest_entry *me)
{
	return env && strcmp(me->path, ".") && ts_db_excluded(env, me->path);
}

/* One pass: fn for each entry of the base's manifest (of type, unless 0),
 * until it fails or the build is stopped.  The first pass keeps the
 * header. */
typedef ts_err_code (*stage_entry_fn)(stage_build *b, const ts_manifest_entry *me, ts_err *e);

static ts_err_code stage_pass(stage_build *b, char type, stage_entry_fn fn, ts_err *e)
{
	ts_manifest head;
	ts_manifest_cursor *c;
	const ts_manifest_entry *me;
	ts_err_code rc = ts_manifest_cursor_open_at(b->s->dirfd, b->mpath, &head, &c, e);

	while (rc == TS_OK && !stage_stopped(b) && (rc = ts_manifest_cursor_next(c, &me, e)) == TS_OK && me)
		if (!type || me->type == type)
			rc = fn(b, me, e);
	ts_manifest_cursor_close(c);
	if (!b->head.env) {
		b->head = head;
	} else {
		ts_manifest_free(&head);
	}
	return rc;
}

/* Each directory of the staged tree to dir_fn, before the stage can be
 * adopted: what changes in one from here on, the watch sees. */
static ts_err_code stage_watch_one(stage_build *b, const ts_manifest_entry *me, ts_err *e)
{
	(void)e;
	b->o->dir_fn(b->o->arg, me->path);
	return TS_OK;
}

/* Is the base's copy of me, at bfd/bleaf, fit to be linked into the stage
 * (take/share_check.h)?  Logs the one line when not. */
static bool stage_copy_ok(stage_build *b, const ts_manifest_entry *me, int bfd, const char *bleaf)
{
	char what[TS_SHARE_WHAT_MAX];
	struct stat st;
	bool have = fstatat(bfd, bleaf, &st, AT_SYMLINK_NOFOLLOW) == 0;

	if (!have && errno != ENOENT)
		snprintf(what, sizeof what, "cannot stat");
	else if (me->type == 'f') {
		if (ts_share_check(me, have ? &st : NULL, &b->links, b->root, bfd, bleaf, what))
			return true;
	} else if (have && ts_manifest_copy_matches(me, &st, b->root)) {
		return true;   /* a symlink: type and size (manifest_stat.h) */
	} else {
		snprintf(what, sizeof what, "%s", have ? "type or size" : "missing");
	}
	ts_share_log_damaged(b->base_name, me->path, what);
	return false;
}

/* Directories and hard links, in the manifest's order (parents first).
 * Each name by its directory, reached beneath both trees and kept for the
 * entries that follow in it (beneath.h): a manifest that lists an entry
 * below a symlink (an older tracsnap could write one) fails here instead
 * of reaching through the link.  A base copy that is not what its
 * manifest sealed is left out (stage_left_out says so), never linked:
 * the snapshot copies that file afresh instead.  Counts the entries, and
 * notes the database's. */
static ts_err_code stage_fill_one(stage_build *b, const ts_manifest_entry *me, ts_err *e)
{
	const char *bleaf, *tleaf;
	int bfd, tfd;

	b->n++;
	if (stage_is_db(b->o->env, me) && !ts_pathset_add(&b->db, me->path))
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (!strcmp(me->path, "."))
		return TS_OK;
	tfd = ts_beneath_cache_parent(&b->tc, b->treefd, me->path, &tleaf);
	if (tfd < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot reach its directory", me->path);
	if (me->type == 'd') {
		if (mkdirat(tfd, tleaf, 0700) < 0)
			return ts_err_sys(e, errno, "stage: %s: cannot create", me->path);
		return TS_OK;
	}
	bfd = ts_beneath_cache_parent(&b->bc, b->basefd, me->path, &bleaf);
	if (bfd < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot reach its directory", me->path);
	if (!stage_copy_ok(b, me, bfd, bleaf))
		return ts_pathset_add(&b->left_out, me->path) ? TS_OK : ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	/* All or nothing otherwise (EMLINK included): ts_snap_take trusts
	 * that the stage has every file its manifest lists. */
	if (linkat(bfd, bleaf, tfd, tleaf, 0) < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot link", me->path);
	return TS_OK;
}

/* Then the directories' metadata as the snapshot's tree has it (owner, mode,
 * xattrs, times), so that the next snapshot need not set it again where
 * nothing changed (snap.c).  Not for a directory its owner could not write
 * into: a writer that is not root must still add and remove entries there,
 * so the snapshot sets that one itself, at the end. */
static ts_err_code stage_dir_meta_one(stage_build *b, const ts_manifest_entry *me, ts_err *e)
{
	struct stat st;
	/* (By its directory beneath the tree, see stage_fill_one.) */
	const char *leaf;
	int pfd = strcmp(me->path, ".") ? ts_beneath_cache_parent(&b->bc, b->basefd, me->path, &leaf)
	                                : (leaf = ".", b->basefd);

	if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ts_err_sys(e, errno, "stage: %s/%s: cannot stat", b->s->root, me->path);
	if (!S_ISDIR(st.st_mode))
		return ts_err_sys(e, ENOTDIR, "stage: %s/%s: not a directory", b->s->root, me->path);
	if ((st.st_mode & (S_IWUSR | S_IXUSR)) != (S_IWUSR | S_IXUSR)) {
		b->kept_own = true;
		return TS_OK;
	}
	return ts_copy_dir_meta(b->basefd, b->treefd, me->path, &st, b->s->root, e);
}

/* ts_manifest_map_fn of a manifest the stage writes from the base's: all
 * its entries but the left-out ones (their directories recorded with no
 * source inode) or, for a whole stage, all but the database's. */
typedef struct stage_mf_ctx {
	stage_build *b;
	bool skip_db;
} stage_mf_ctx;

static const ts_manifest_entry *stage_mf_map(void *arg, const ts_manifest_entry *me, ts_manifest_entry *scratch)
{
	const stage_mf_ctx *w = arg;

	if ((w->skip_db && stage_is_db(w->b->o->env, me)) ||
	    (me->type != 'd' && ts_pathset_has(&w->b->left_out, me->path)))
		return NULL;
	if (me->type == 'd' && ts_pathset_has(&w->b->left_dirs, me->path)) {
		*scratch = *me;
		scratch->src_ino = 0;
		return scratch;
	}
	return me;
}

/* STORE/.stage/manifest of n entries (see stage_mf_map), unsealed, in
 * this boot (never fsync'd, like a refresh's); *st: the file written. */
static ts_err_code stage_write_manifest(stage_build *b, int stagefd, bool skip_db, size_t n,
                                        struct stat *st, ts_err *e)
{
	char boot[TS_STORE_BOOT_ID_MAX];
	stage_mf_ctx w = { .b = b, .skip_db = skip_db };
	ts_manifest head = b->head;
	ts_err_code rc;

	ts_store_boot_id(boot);
	head.unsealed_boot = boot;
	head.base = NULL;
	rc = ts_manifest_rewrite_at(b->s->dirfd, b->mpath, &head, n, stage_mf_map, &w, stagefd, "manifest", e);
	if (rc == TS_OK && fstatat(stagefd, "manifest", st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = ts_err_sys(e, errno, "stage: cannot stat its manifest");
		(void)unlinkat(stagefd, "manifest", 0);
	}
	return rc;
}

/* A stage with files left out has a manifest of its own (stage.h: as a
 * refresh writes one): the base's without them, where each one's directory
 * is recorded with no source inode.  That directory then never looks
 * unchanged, so the snapshot (or the next refresh) lists it again and finds
 * the file there as new, copied from the environment by the normal path. */
static ts_err_code stage_left_out(stage_build *b, int stagefd, ts_err *e)
{
	struct stat st;

	for (size_t i = 0; i < b->left_out.n; i++)
		if (!ts_pathset_add_dir_of(&b->left_dirs, b->left_out.v[i]))
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	return stage_write_manifest(b, stagefd, false, b->n - b->left_out.n, &st, e);
}

/* The database's entries leave the staged tree of a whole stage, as a
 * refresh removes them: the take puts its own copy there, and must never
 * write into the snapshot's (a hard link).  Within the build's link batch:
 * the unlinks move that copy's ctime too (linklog.h). */
static ts_err_code stage_unlink_db(const stage_build *b, ts_err *e)
{
	for (size_t i = 0; i < b->db.n; i++) {
		const char *leaf;
		int pfd = ts_beneath_parent(b->treefd, b->db.v[i], &leaf);
		if (pfd < 0 || (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT)) {
			ts_err_code rc = ts_err_sys(e, errno, "stage: %s: cannot remove", b->db.v[i]);
			ts_beneath_parent_close(b->treefd, pfd);
			return rc;
		}
		ts_beneath_parent_close(b->treefd, pfd);
	}
	return TS_OK;
}

ts_err_code ts_stage_build(ts_store *s, const ts_stage_build_opts *o, ts_stage_build_out *out,
                           ts_err *e)
{
	static const ts_stage_build_opts none = { .stop = NULL };
	ts_err_code rc;
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_store_tmp t = { .dirfd = -1, .treefd = -1 };
	bool tmp_open = false;
	int fd;
	char id[STAGE_ID_MAX], path[PATH_MAX];
	stage_build b = { .s = s, .o = o ? o : &none, .basefd = -1, .bc = TS_BENEATH_CACHE_INIT,
	                  .tc = TS_BENEATH_CACHE_INIT, .root = geteuid() == 0 };
	struct timespec link_start;
	bool links_begun = false, whole = false;
	struct stat tst, mst;

	o = b.o;
	ts_manifest_init(&b.head);
	if (out)
		memset(out, 0, sizeof *out);
	rc = ts_store_lock(s, 0, e);
	if (rc == TS_ERR_BUSY) {
		ts_err_clear(e);   /* another writer: the next seal tries again */
		return TS_OK;
	}
	if (rc != TS_OK)
		return rc;
	rc = ts_store_list(s, &v, &n, e);
	if (rc != TS_OK || n == 0 || !v[n - 1].sealed)
		goto out;
	snprintf(path, sizeof path, "%s/tree", v[n - 1].name);
	b.basefd = ts_beneath_open(s->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	if (b.basefd < 0 || fstat(b.basefd, &tst) < 0 || !stage_id(v[n - 1].name, b.basefd, id, sizeof id)) {
		rc = ts_err_sys(e, errno, "stage: %s/%s: cannot open", s->root, path);
		goto out;
	}
	if (stage_is(s->dirfd, TS_STORE_STAGE_BASE, id))
		goto out;
	snprintf(b.mpath, sizeof b.mpath, "%s/manifest", v[n - 1].name);
	rc = ts_store_stage_begin(s, &t, e);
	if (rc != TS_OK)
		goto out;
	tmp_open = true;
	b.base_name = v[n - 1].name;
	b.treefd = t.treefd;
	ts_linklog_read(s->dirfd, &b.links);
	/* Watched before the question below, which a directory watched anew
	 * answers no. */
	if (o->dir_fn)
		rc = stage_pass(&b, 'd', stage_watch_one, e);
	/* The links move the base's copies' ctime: one batch (linklog.h). */
	ts_linklog_begin(&link_start);
	links_begun = true;
	if (rc == TS_OK)
		rc = stage_pass(&b, 0, stage_fill_one, e);
	ts_beneath_cache_drop(&b.tc);
	if (rc == TS_OK)
		rc = stage_pass(&b, 'd', stage_dir_meta_one, e);
	if (rc == TS_OK && !b.stopped && b.left_out.n)
		rc = stage_left_out(&b, t.dirfd, e);
	if (rc != TS_OK || b.stopped)
		goto out;
	/* An external database's place in the tree is none of the
	 * environment's: such a stage is left to a refresh. */
	if (o->env && o->env_name && !strcmp(o->env_name, v[n - 1].name) && o->env_dev == tst.st_dev &&
	    o->env_ino == tst.st_ino && !b.left_out.n && !b.kept_own && !b.head.external_db) {
		rc = stage_write_manifest(&b, t.dirfd, true, b.n - b.db.n, &mst, e);
		if (rc != TS_OK)
			goto out;
		whole = !o->env_still || o->env_still(o->arg, &mst);
		if (!whole)
			(void)unlinkat(t.dirfd, "manifest", 0);
		else
			rc = stage_unlink_db(&b, e);
		if (rc != TS_OK)
			goto out;
	}
	/* The last link is made: the batch ends before the stage can be
	 * seen (its base), not after, so that a copy changed once the stage
	 * is there never falls inside it (linklog.h). */
	ts_linklog_end(s->dirfd, &link_start);
	links_begun = false;
	fd = openat(t.dirfd, "base", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, id, strlen(id)) != (ssize_t)strlen(id)) {
		rc = ts_err_sys(e, errno, "stage: %s/%s/base: cannot write", s->root, t.dir);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	tmp_open = false;   /* consumed, success or not */
	rc = ts_store_stage_commit(s, &t, e);
	if (rc == TS_OK && out) {
		out->built = true;
		snprintf(out->base, sizeof out->base, "%s", v[n - 1].name);
		out->whole = whole;
	}
out:
	if (links_begun)   /* before the abort's guard looks (linkguard.h) */
		ts_linklog_end(s->dirfd, &link_start);
	if (tmp_open)
		ts_store_abort(s, &t);
	if (b.basefd >= 0)
		close(b.basefd);
	ts_beneath_cache_drop(&b.bc);
	ts_beneath_cache_drop(&b.tc);
	ts_linklog_free(&b.links);
	ts_pathset_free(&b.left_out);
	ts_pathset_free(&b.left_dirs);
	ts_pathset_free(&b.db);
	ts_manifest_free(&b.head);
	ts_store_list_free(v, n);
	ts_store_unlock(s);
	return rc;
}
