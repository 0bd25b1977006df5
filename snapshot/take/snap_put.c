/* snap_put.c - putting the environment's entries into the snapshot's tree
 * (snap_int.h): make a directory, share an unchanged file with the
 * previous snapshot, or copy; directories' metadata last. */
#include "take/snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "base/pool.h"
#include "base/walk.h"
#include "store/manifest_stat.h"
#include "take/share_check.h"

int64_t snap_racy_ns(const struct timespec *ctim)
{
	return ts_racy_ns(ctim);
}

bool snap_stored_ok(const snap_run *r, const ts_manifest_entry *pe, const struct stat *st,
                    int dirfd, const char *leaf)
{
	char what[TS_SHARE_WHAT_MAX];

	if (ts_share_check(pe, st, &r->links, r->root, dirfd, leaf, what))
		return true;
	ts_share_log_damaged(r->prev_name ? r->prev_name : "?", pe->path, what);
	return false;
}

/* Share a file unchanged since the previous snapshot: a hard link to its
 * copy there, whose hash it takes over, once that copy is checked to be
 * what its manifest sealed (share_check.h): damage to it must never spread
 * into every later snapshot.  False: it must be copied.  From inside the
 * walk (snap_place): both directories are reached beneath their trees
 * through the thread's caches (1: the previous tree, 0: ours), kept for
 * the next entry of the same directory (the walk lists one directory at a
 * time). */
static bool snap_share(snap_run *r, snap_item *it)
{
	const ts_manifest_entry *pe;
	const char *pleaf, *tleaf;
	struct stat cur;
	int pfd, tfd;
	bool have;

	if (r->prevfd < 0 || it->type != 'f')
		return false;
	pe = ts_manifest_find(&r->prev, it->rel);
	struct stat src;
	snap_item_stat_get(it, &src);
	if (!pe || pe->type != 'f' || !ts_manifest_same_source(pe, &src))
		return false;
	pfd = ts_beneath_cache_parent(ts_walk_cache(1), r->prevfd, it->rel, &pleaf);
	if (pfd < 0)
		return false;
	have = fstatat(pfd, pleaf, &cur, AT_SYMLINK_NOFOLLOW) == 0;
	if (!have && errno != ENOENT)
		return false;
	if (!snap_stored_ok(r, pe, have ? &cur : NULL, pfd, pleaf))
		return false;
	/* The item is the walk's own still: a hash set here is no other
	 * thread's concern (snap_item_set_sha). */
	if (!pe->pending && !snap_item_set_sha(it, pe->sha256))
		return false;
	tfd = ts_beneath_cache_parent(ts_walk_cache(0), r->tmp.treefd, it->rel, &tleaf);
	if (tfd < 0 || linkat(pfd, pleaf, tfd, tleaf, 0) < 0) {
		snap_item_clear_sha(it);
		return false;
	}
	/* The identity as checked, not restated after the link: the link
	 * moves the ctime inside the take's own batch (linklog.h), which
	 * explains it at the next share, and sharing stays one stat per file
	 * (doc/contract.md section 5). */
	it->store_ino = cur.st_ino;
	it->store_ctime = cur.st_ctim;
	it->unhashed = pe->pending;
	it->shared = true;
	return true;
}

static ts_err_code snap_put_at(snap_run *r, snap_item *it, bool in_walk, ts_err *e);

/* Put one walked entry into the tree: make the directory, or copy (sharing
 * is snap_place's, during the pre-copy's walk).  Returns TS_ERR_NOTFOUND when
 * the source vanished meanwhile (the caller drops the item).  Content is
 * never hashed here: ts_seal hashes the copies once the snapshot has appeared. */
ts_err_code snap_put(snap_run *r, snap_item *it, ts_err *e)
{
	return snap_put_at(r, it, false, e);
}

/* in_walk: called by a walk's callback (the walk's caches serve). */
static ts_err_code snap_put_at(snap_run *r, snap_item *it, bool in_walk, ts_err *e)
{
	ts_copy_out co;
	ts_err_code rc;
	struct timespec before;

	if (it->type == 'd') {
		/* Beneath the tree (beneath.h); from the walk, through its
		 * thread's cache 0. */
		const char *leaf;
		int pfd;
		if (!strcmp(it->rel, "."))
			return TS_OK;
		pfd = in_walk ? ts_beneath_cache_parent(ts_walk_cache(0), r->tmp.treefd, it->rel, &leaf)
		              : ts_beneath_parent(r->tmp.treefd, it->rel, &leaf);
		if (pfd < 0 || (mkdirat(pfd, leaf, 0700) < 0 && errno != EEXIST)) {
			rc = ts_err_sys(e, errno, "%s: cannot create in the store", it->rel);
			if (!in_walk)
				ts_beneath_parent_close(r->tmp.treefd, pfd);
			return rc;
		}
		if (!in_walk)
			ts_beneath_parent_close(r->tmp.treefd, pfd);
		return TS_OK;
	}
	clock_gettime(CLOCK_REALTIME, &before);
	if (it->type == 'l')
		rc = ts_copy_symlink(r->envfd, r->tmp.treefd, it->rel, r->env->root, &co, e);
	else {
		uint64_t sz = (uint64_t)it->st.st_size;
		bool bounded = __atomic_add_fetch(&r->dirty, sz, __ATOMIC_RELAXED) > r->dirty_budget;
		rc = ts_copy_file(r->envfd, r->tmp.treefd, it->rel, bounded ? TS_COPY_BOUNDED : 0,
		                  r->env->root, &co, e);
	}
	if (rc == TS_ERR_NOTFOUND && e && (e->sys_errno == ELOOP || e->sys_errno == ENOTDIR))
		__atomic_store_n(&r->retyped, true, __ATOMIC_RELAXED);   /* a link on its way */
	if (rc != TS_OK)
		return rc;
	snap_item_stat_set(it, &co.st);
	/* A symlink's hash is its target's; a file's comes at the seal. */
	if (it->type == 'l' && !snap_item_set_sha(it, co.sha256))
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (it->type != 'l')
		snap_item_clear_sha(it);
	/* The copy's identity as placed (manifest.h); nothing touches it
	 * again before the snapshot appears. */
	if (it->type == 'f') {
		struct stat placed;
		if (snap_tree_stat(r, it->rel, &placed) == 0) {
			it->store_ino = placed.st_ino;
			it->store_ctime = placed.st_ctim;
		}
	}
	it->racy = co.changed || snap_ns(&co.st.st_ctim) >= snap_ns(&before) - snap_racy_ns(&co.st.st_ctim);
	it->unhashed = it->type == 'f';
	__atomic_fetch_add(&r->stats->bytes_copied, co.bytes, __ATOMIC_RELAXED);
	return TS_OK;
}

/* During the pre-copy's walk: make a directory (its parent was made when
 * the walk reached it, before listing it), or share an unchanged file.
 * Copies wait for the pool, which knows the totals for progress. */
ts_err_code snap_place(snap_run *r, snap_item *it, ts_err *e)
{
	ts_err_code rc = TS_OK;
	if (it->type == 'd')
		rc = snap_put_at(r, it, true, e);
	it->placed = rc == TS_OK && (it->type == 'd' || (it->type == 'f' && snap_share(r, it)));
	return rc;
}

/* lstat of rel ("." for the tree itself) in the store tree, never through
 * a link (beneath.h). */
int snap_tree_stat(const snap_run *r, const char *rel, struct stat *st)
{
	const char *leaf;
	int pfd, rc;

	if (!strcmp(rel, "."))
		return fstat(r->tmp.treefd, st);
	pfd = ts_beneath_parent(r->tmp.treefd, rel, &leaf);
	if (pfd < 0)
		return -1;
	rc = fstatat(pfd, leaf, st, AT_SYMLINK_NOFOLLOW);
	ts_beneath_parent_close(r->tmp.treefd, pfd);
	return rc;
}

/* A staged directory carries the metadata r->prev records: the previous
 * snapshot's (stage.c), or a refreshed stage's own (stage_refresh.c, which
 * sets it where a directory changed).  It serves as is when the
 * environment's directory is the same one, not changed since (ctime:
 * owner, mode, xattrs; mtime: entries), with a ctime old enough at
 * r->prev's time that a later change would have moved it, and when nothing
 * was added to or removed from the staged copy (its mtime is still the one
 * the stage gave it). */
static bool snap_dir_as_staged(const snap_run *r, const snap_item *it)
{
	const ts_manifest_entry *pe = ts_manifest_find(&r->prev, it->rel);
	struct stat cur;

	struct stat src;
	snap_item_stat_get(it, &src);
	if (!pe || pe->type != 'd' || !ts_manifest_same_source(pe, &src) ||
	    snap_ns(&pe->src_ctime) >= snap_ns(&r->prev.time) - snap_racy_ns(&it->st.st_ctim))
		return false;
	return snap_tree_stat(r, it->rel, &cur) == 0 && ts_manifest_copy_matches(pe, &cur, r->root);
}

/* Directories get their metadata last, once nothing more is added to them
 * (an entry added changes its directory's mtime; metadata set on an entry
 * does not), so in any order, on the pool's threads. */
static ts_err_code snap_dir_meta_one(void *arg, size_t i, ts_err *e)
{
	snap_run *r = arg;
	const snap_item *it = &r->items.v[i];
	if (it->type != 'd' || (r->staged && snap_dir_as_staged(r, it)))
		return TS_OK;
	/* A stage's directory stays one its owner can add entries to, as
	 * stage.c builds it: the snapshot that adopts it sets the rest. */
	if (r->stage_refresh && (it->st.st_mode & (S_IWUSR | S_IXUSR)) != (S_IWUSR | S_IXUSR))
		return TS_OK;
	struct stat src;
	snap_item_stat_get(it, &src);
	return ts_copy_dir_meta(r->envfd, r->tmp.treefd, it->rel, &src, r->env->root, e);
}

ts_err_code snap_dir_meta(snap_run *r, ts_err *e)
{
	return ts_pool_run(r->items.n, SNAP_POOL_MIN, 0, snap_dir_meta_one, r, e);
}

