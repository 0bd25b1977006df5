/* stage.c - the next snapshot's tree, made ahead of time (stage.h). */
#include "base/beneath.h"
#include "take/stage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/copy.h"
#include "db/dbsnap.h"
#include "store/linklog.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "take/share_check.h"

#define STAGE_ID_MAX (NAME_MAX + 64 + TS_STORE_BOOT_ID_MAX)

/* "NAME\nDEV:INO\nBOOT\nform 2\n" of a snapshot whose tree is open on
 * treefd: the name alone could be a later snapshot made under a reused
 * name; the boot id keeps a stage a crash may have damaged (nothing in it is
 * synced) from being adopted after the reboot.  The last line is the
 * stage's form: since form 2 a refresh gives changed directories their
 * metadata (stage_refresh.c), so a stage without it, left by an older
 * tracsnap in this boot, is built again rather than adopted. */
static bool stage_id(const char *name, int treefd, char *buf, size_t len)
{
	struct stat st;
	char boot[TS_STORE_BOOT_ID_MAX];
	if (fstat(treefd, &st) < 0)
		return false;
	ts_store_boot_id(boot);
	int n = snprintf(buf, len, "%s\n%llu:%llu\n%s\nform 2\n", name, (unsigned long long)st.st_dev,
	                 (unsigned long long)st.st_ino, boot);
	return n > 0 && (size_t)n < len;
}

/* Is the stage (base file at dirfd/rel) made from the snapshot with id? */
static bool stage_is(int dirfd, const char *rel, const char *id)
{
	char buf[STAGE_ID_MAX];
	int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(id) && !memcmp(buf, id, (size_t)n);
}

bool ts_stage_of(ts_store *s, const char *name, int treefd)
{
	char id[STAGE_ID_MAX];
	return stage_id(name, treefd, id, sizeof id) && stage_is(s->dirfd, TS_STORE_STAGE_BASE, id);
}

static bool stage_stopped(const int *stop)
{
	return stop && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0;
}

/* What filling the stage needs and finds. */
typedef struct stage_fill_ctx {
	const ts_manifest *m;
	const char *base_name;     /* for the damage line */
	int basefd, treefd;
	ts_beneath_cache bc, tc;
	bool root;                 /* owners can only be kept by root */
	ts_linklog links;          /* the engine's link batches (linklog.h) */
	bool *left_out;            /* per entry of m: damaged, not staged (NULL: none) */
	size_t n_left_out;
} stage_fill_ctx;

/* Is the base's copy of me, at bfd/bleaf, fit to be linked into the stage
 * (take/share_check.h)?  Logs the one line when not. */
static bool stage_copy_ok(stage_fill_ctx *c, const ts_manifest_entry *me, int bfd, const char *bleaf)
{
	char what[TS_SHARE_WHAT_MAX];
	struct stat st;
	bool have = fstatat(bfd, bleaf, &st, AT_SYMLINK_NOFOLLOW) == 0;

	if (!have && errno != ENOENT)
		snprintf(what, sizeof what, "cannot stat");
	else if (me->type == 'f') {
		if (ts_share_check(me, have ? &st : NULL, &c->links, c->root, bfd, bleaf, what))
			return true;
	} else if (have && ts_manifest_copy_matches(me, &st, c->root)) {
		return true;   /* a symlink: type and size (manifest_stat.h) */
	} else {
		snprintf(what, sizeof what, "%s", have ? "type or size" : "missing");
	}
	ts_share_log_damaged(c->base_name, me->path, what);
	return false;
}

/* Directories and hard links, in the manifest's order (parents first).
 * Each name by its directory, reached beneath both trees and kept for the
 * entries that follow in it (beneath.h): a manifest that lists an entry
 * below a symlink (an older tracsnap could write one) fails here instead
 * of reaching through the link.  A base copy that is not what its
 * manifest sealed is left out (stage_left_out says so), never linked:
 * the snapshot copies that file afresh instead. */
static ts_err_code stage_fill_one(stage_fill_ctx *c, size_t i, ts_err *e)
{
	const ts_manifest_entry *me = &c->m->entries[i];
	const char *bleaf, *tleaf;
	int bfd, tfd;

	if (!strcmp(me->path, "."))
		return TS_OK;
	tfd = ts_beneath_cache_parent(&c->tc, c->treefd, me->path, &tleaf);
	if (tfd < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot reach its directory", me->path);
	if (me->type == 'd') {
		if (mkdirat(tfd, tleaf, 0700) < 0)
			return ts_err_sys(e, errno, "stage: %s: cannot create", me->path);
		return TS_OK;
	}
	bfd = ts_beneath_cache_parent(&c->bc, c->basefd, me->path, &bleaf);
	if (bfd < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot reach its directory", me->path);
	if (!stage_copy_ok(c, me, bfd, bleaf)) {
		if (!c->left_out && !(c->left_out = calloc(c->m->n, sizeof *c->left_out)))
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		c->left_out[i] = true;
		c->n_left_out++;
		return TS_OK;
	}
	/* All or nothing otherwise (EMLINK included): ts_snap_take trusts
	 * that the stage has every file its manifest lists. */
	if (linkat(bfd, bleaf, tfd, tleaf, 0) < 0)
		return ts_err_sys(e, errno, "stage: %s: cannot link", me->path);
	return TS_OK;
}

static ts_err_code stage_fill(stage_fill_ctx *c, const int *stop, bool *stopped, ts_err *e)
{
	ts_err_code rc = TS_OK;

	for (size_t i = 0; rc == TS_OK && i < c->m->n; i++) {
		if (stage_stopped(stop)) {
			*stopped = true;
			break;
		}
		rc = stage_fill_one(c, i, e);
	}
	ts_beneath_cache_drop(&c->bc);
	ts_beneath_cache_drop(&c->tc);
	return rc;
}

/* A stage with files left out has a manifest of its own (stage.h: as a
 * refresh writes one): the base's without them, where each one's directory
 * is recorded with no source inode.  That directory then never looks
 * unchanged, so the snapshot (or the next refresh) lists it again and finds
 * the file there as new, copied from the environment by the normal path. */
static ts_err_code stage_left_out(const stage_fill_ctx *c, int stagefd, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_manifest f;
	char boot[TS_STORE_BOOT_ID_MAX], parent[PATH_MAX];

	ts_manifest_init(&f);
	ts_store_boot_id(boot);
	f.time = c->m->time;
	f.no_database = c->m->no_database;
	f.env = strdup(c->m->env);
	f.unsealed_boot = strdup(boot);   /* never fsync'd, like a refresh's */
	f.external_db = c->m->external_db ? strdup(c->m->external_db) : NULL;
	f.external_db_rel = c->m->external_db_rel ? strdup(c->m->external_db_rel) : NULL;
	if (!f.env || !f.unsealed_boot || !c->m->external_db != !f.external_db ||
	    !c->m->external_db_rel != !f.external_db_rel)
		goto nomem;
	for (size_t i = 0; i < c->m->n; i++) {
		ts_manifest_entry *me;
		if (c->left_out[i])
			continue;
		if (!(me = ts_manifest_add(&f, c->m->entries[i].type, c->m->entries[i].path)))
			goto nomem;
		char *path = me->path;
		*me = c->m->entries[i];
		me->path = path;
	}
	for (size_t i = 0; i < c->m->n; i++) {
		const ts_manifest_entry *pe;
		const char *slash;
		if (!c->left_out[i])
			continue;
		slash = strrchr(c->m->entries[i].path, '/');
		snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - c->m->entries[i].path) : 1,
		         slash ? c->m->entries[i].path : ".");
		if ((pe = ts_manifest_find(&f, parent)) != NULL)
			f.entries[pe - f.entries].src_ino = 0;
	}
	rc = ts_manifest_write_at(&f, stagefd, "manifest", e);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	ts_manifest_free(&f);
	return rc;
}

/* Then the directories' metadata as the snapshot's tree has it (owner, mode,
 * xattrs, times), so that the next snapshot need not set it again where
 * nothing changed (snap.c).  Not for a directory its owner could not write
 * into: a writer that is not root must still add and remove entries there,
 * so the snapshot sets that one itself, at the end. */
static ts_err_code stage_dir_meta(const ts_manifest *m, int basefd, int treefd, const char *desc,
                                  const int *stop, bool *stopped, bool *kept_own, ts_err *e)
{
	ts_beneath_cache bc = TS_BENEATH_CACHE_INIT;
	ts_err_code rc = TS_OK;

	for (size_t i = 0; rc == TS_OK && i < m->n; i++) {
		const ts_manifest_entry *me = &m->entries[i];
		struct stat st;
		if (me->type != 'd')
			continue;
		if (stage_stopped(stop)) {
			*stopped = true;
			break;
		}
		/* (By its directory beneath the tree, see stage_fill.) */
		const char *leaf;
		int pfd = strcmp(me->path, ".") ? ts_beneath_cache_parent(&bc, basefd, me->path, &leaf)
		                                : (leaf = ".", basefd);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = ts_err_sys(e, errno, "stage: %s/%s: cannot stat", desc, me->path);
			break;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc = ts_err_sys(e, ENOTDIR, "stage: %s/%s: not a directory", desc, me->path);
			break;
		}
		if ((st.st_mode & (S_IWUSR | S_IXUSR)) != (S_IWUSR | S_IXUSR)) {
			*kept_own = true;
			continue;
		}
		rc = ts_copy_dir_meta(basefd, treefd, me->path, &st, desc, e);
	}
	ts_beneath_cache_drop(&bc);
	return rc;
}

/* Every directory of the staged tree to dir_fn, before the stage can be
 * adopted: what changes in one from here on, the watch sees. */
static void stage_dirs(const ts_manifest *m, const int *stop, bool *stopped, ts_stage_dir_fn dir_fn,
                       void *arg)
{
	for (size_t i = 0; dir_fn && !*stopped && i < m->n; i++) {
		if (m->entries[i].type != 'd')
			continue;
		if (stage_stopped(stop))
			*stopped = true;
		else
			dir_fn(arg, m->entries[i].path);
	}
}

/* The manifest of a stage that is the environment (stage.h: whole), as a
 * refresh writes one: the snapshot's entries but the database's (the take
 * writes the database; the walk never lists it), unsealed, in this boot. */
typedef struct stage_mf_ctx {
	const ts_manifest *m;
	const ts_env *env;
	size_t at;
} stage_mf_ctx;

static bool stage_is_db(const ts_env *env, const ts_manifest_entry *me)
{
	return strcmp(me->path, ".") && ts_db_excluded(env, me->path);
}

static const ts_manifest_entry *stage_mf_next(void *arg, size_t k, ts_manifest_entry *scratch)
{
	stage_mf_ctx *c = arg;

	(void)k;
	(void)scratch;
	while (stage_is_db(c->env, &c->m->entries[c->at]))
		c->at++;
	return &c->m->entries[c->at++];
}

static ts_err_code stage_whole_manifest(const ts_manifest *m, const ts_env *env, int stagefd,
                                        struct stat *st, ts_err *e)
{
	char boot[TS_STORE_BOOT_ID_MAX];
	stage_mf_ctx c = { .m = m, .env = env };
	ts_manifest head = *m;
	size_t n = 0;
	ts_err_code rc;

	for (size_t i = 0; i < m->n; i++)
		n += !stage_is_db(env, &m->entries[i]);
	ts_store_boot_id(boot);
	head.unsealed_boot = boot;   /* never fsync'd, like a refresh's */
	head.base = NULL;
	rc = ts_manifest_write_each_at(&head, n, stage_mf_next, &c, stagefd, "manifest", e);
	if (rc == TS_OK && fstatat(stagefd, "manifest", st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "stage: cannot stat its manifest");
	return rc;
}

/* The database's entries leave the staged tree of a whole stage, as a
 * refresh removes them: the take puts its own copy there, and must never
 * write into the snapshot's (a hard link).  Within the build's link batch:
 * the unlinks move that copy's ctime too (linklog.h). */
static ts_err_code stage_unlink_db(const ts_manifest *m, const ts_env *env, int treefd, ts_err *e)
{
	for (size_t i = 0; i < m->n; i++) {
		const char *leaf;
		int pfd;
		if (!stage_is_db(env, &m->entries[i]))
			continue;
		pfd = ts_beneath_parent(treefd, m->entries[i].path, &leaf);
		if (pfd < 0 || (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT)) {
			ts_err_code rc = ts_err_sys(e, errno, "stage: %s: cannot remove", m->entries[i].path);
			ts_beneath_parent_close(treefd, pfd);
			return rc;
		}
		ts_beneath_parent_close(treefd, pfd);
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
	ts_manifest m;
	ts_store_tmp t = { .dirfd = -1, .treefd = -1 };
	bool tmp_open = false, stopped = false;
	int basefd = -1, fd;
	char id[STAGE_ID_MAX], path[PATH_MAX];
	stage_fill_ctx fc = { .bc = TS_BENEATH_CACHE_INIT, .tc = TS_BENEATH_CACHE_INIT,
	                      .root = geteuid() == 0 };
	struct timespec link_start;
	bool links_begun = false, kept_own = false, whole = false;
	struct stat tst, mst;
	const int *stop;

	if (!o)
		o = &none;
	stop = o->stop;
	ts_manifest_init(&m);
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
	basefd = ts_beneath_open(s->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	if (basefd < 0 || fstat(basefd, &tst) < 0 || !stage_id(v[n - 1].name, basefd, id, sizeof id)) {
		rc = ts_err_sys(e, errno, "stage: %s/%s: cannot open", s->root, path);
		goto out;
	}
	if (stage_is(s->dirfd, TS_STORE_STAGE_BASE, id))
		goto out;
	snprintf(path, sizeof path, "%s/manifest", v[n - 1].name);
	rc = ts_manifest_read_at(s->dirfd, path, &m, e);
	if (rc != TS_OK)
		goto out;
	rc = ts_store_stage_begin(s, &t, e);
	if (rc != TS_OK)
		goto out;
	tmp_open = true;
	fc.m = &m;
	fc.base_name = v[n - 1].name;
	fc.basefd = basefd;
	fc.treefd = t.treefd;
	ts_linklog_read(s->dirfd, &fc.links);
	/* Watched before the question below, which a directory watched anew
	 * answers no. */
	stage_dirs(&m, stop, &stopped, o->dir_fn, o->arg);
	/* The links move the base's copies' ctime: one batch (linklog.h). */
	ts_linklog_begin(&link_start);
	links_begun = true;
	if (!stopped)
		rc = stage_fill(&fc, stop, &stopped, e);
	if (rc == TS_OK && !stopped)
		rc = stage_dir_meta(&m, basefd, t.treefd, s->root, stop, &stopped, &kept_own, e);
	if (rc == TS_OK && !stopped && fc.n_left_out)
		rc = stage_left_out(&fc, t.dirfd, e);
	if (rc != TS_OK || stopped)
		goto out;
	/* An external database's place in the tree is none of the
	 * environment's: such a stage is left to a refresh. */
	if (o->env && o->env_name && !strcmp(o->env_name, v[n - 1].name) && o->env_dev == tst.st_dev &&
	    o->env_ino == tst.st_ino && !fc.n_left_out && !kept_own && !m.external_db) {
		rc = stage_whole_manifest(&m, o->env, t.dirfd, &mst, e);
		if (rc != TS_OK)
			goto out;
		whole = !o->env_still || o->env_still(o->arg, &mst);
		if (!whole)
			(void)unlinkat(t.dirfd, "manifest", 0);
		else
			rc = stage_unlink_db(&m, o->env, t.treefd, e);
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
	if (basefd >= 0)
		close(basefd);
	ts_linklog_free(&fc.links);
	free(fc.left_out);
	ts_manifest_free(&m);
	ts_store_list_free(v, n);
	ts_store_unlock(s);
	return rc;
}

ts_err_code ts_stage_tree_manifest(ts_store *s, const char *base_name, ts_manifest *m, ts_err *e)
{
	char path[PATH_MAX + 64];
	ts_err_code rc = ts_manifest_read_at(s->dirfd, TS_STORE_STAGE_MANIFEST, m, e);
	if (rc != TS_ERR_NOTFOUND)
		return rc;
	ts_err_clear(e);
	snprintf(path, sizeof path, "%s/manifest", base_name);
	return ts_manifest_read_at(s->dirfd, path, m, e);
}

/* Move the stage's tree in as t's, and its database copy; its manifest
 * and base file go.  False, nothing moved, when the tree cannot be. */
static bool stage_move(ts_store *s, ts_store_tmp *t)
{
	int nfd;

	/* Opened before the rename, which it follows: once the rename is done
	 * nothing can fail any more. */
	nfd = ts_beneath_open(s->dirfd, TS_STORE_STAGE_TREE, O_RDONLY | O_DIRECTORY, 0);
	if (nfd < 0)
		return false;
	/* Over t's tree, still empty. */
	if (renameat(s->dirfd, TS_STORE_STAGE_TREE, t->dirfd, "tree") < 0) {
		close(nfd);
		return false;
	}
	close(t->treefd);
	t->treefd = nfd;
	/* The database's copy may be missing; the pre-copy makes one then. */
	(void)renameat(s->dirfd, TS_STORE_STAGE_DB, t->dirfd, TS_STAGE_DB_PRECOPY);
	/* What is left: the manifest (unless taken) and the base file.
	 * (Failing, the next build drops them.) */
	(void)unlinkat(s->dirfd, TS_STORE_STAGE_MANIFEST, 0);
	if (unlinkat(s->dirfd, TS_STORE_STAGE_BASE, 0) == 0)
		(void)unlinkat(s->dirfd, TS_STORE_STAGE, AT_REMOVEDIR);
	return true;
}

bool ts_stage_adopt(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd, ts_manifest *m)
{
	if (!ts_stage_of(s, base_name, basefd))
		return false;
	if (ts_stage_tree_manifest(s, base_name, m, NULL) != TS_OK || m->n == 0 || !stage_move(s, t)) {
		ts_manifest_free(m);
		ts_manifest_init(m);
		return false;
	}
	return true;
}

bool ts_stage_adopt_as_is(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd,
                          const ts_snap_changes *ch, void (*written)(void *fnarg, const char *rel),
                          void *fnarg)
{
	struct stat mst;

	if (!ch || !ch->stage_clean || !ts_stage_of(s, base_name, basefd) ||
	    fstatat(s->dirfd, TS_STORE_STAGE_MANIFEST, &mst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(mst.st_mode) || !ch->stage_clean(ch->arg, &mst, written, fnarg))
		return false;
	/* The manifest first: what the tree holds must go with it. */
	if (renameat(s->dirfd, TS_STORE_STAGE_MANIFEST, t->dirfd, TS_MANIFEST_BASE) < 0)
		return false;
	if (stage_move(s, t))
		return true;
	if (renameat(t->dirfd, TS_MANIFEST_BASE, s->dirfd, TS_STORE_STAGE_MANIFEST) < 0)
		ts_store_stage_drop(s);   /* a stage without its manifest is none */
	return false;
}
