/* snap.c - the snapshot protocol (see snap.h and doc/design.md). */
#include "take/snap.h"

#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "db/dbsnap.h"
#include "base/pool.h"
#include "db/journal.h"
#include "take/snap_int.h"
#include "take/stage.h"
#include "base/log.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "store/name.h"
#include "base/progress.h"
#include "base/walk.h"

/* A pre-copy shorter than this leaves too little changed for a catch-up pass
 * to be worth a pass of its own (see ts_snap_take). */
#define SNAP_CATCHUP_MS 100.0

int64_t snap_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static double snap_ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(snap_ns(&now) - snap_ns(t0)) / 1e6;
}

void snap_list_free(snap_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].rel);
	free(l->v);
	memset(l, 0, sizeof *l);
}

int snap_item_cmp(const void *a, const void *b)
{
	return strcmp(((const snap_item *)a)->rel, ((const snap_item *)b)->rel);
}

/* Appends *it; the list owns it->rel from then on, the caller still on
 * failure. */
ts_err_code snap_list_push(snap_list *l, const snap_item *it, ts_err *e)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		snap_item *nv = realloc(l->v, ncap * sizeof *nv);
		if (!nv)
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = *it;
	return TS_OK;
}

/* Drop the items that went (type 0): the list is then what the tree holds. */
void snap_list_compact(snap_list *l)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].type)
			l->v[k++] = l->v[i];
		else
			free(l->v[i].rel);
	}
	l->n = k;
}

static bool snap_cancelled(const snap_run *r)
{
	return r->o->cancel && *r->o->cancel;
}

static ts_err_code snap_cancel_err(const snap_run *r, ts_err *e)
{
	return ts_err_set(e, TS_ERR_CANCELLED, "snapshot %s: cancelled (tracsnap is stopping)",
	                  r->o->name);
}

static ts_err_code snap_place(snap_run *r, snap_item *it, ts_err *e);
static ts_err_code snap_put_at(snap_run *r, snap_item *it, bool in_walk, ts_err *e);

/* Special files are skipped (with a warning on the first walk); journals of
 * the database and the database itself are never listed. */
ts_err_code snap_walk_add(void *arg, const char *rel, const struct stat *st, ts_err *e)
{
	snap_walk_ctx *w = arg;
	snap_run *r = w->r;
	char type = ts_manifest_type_of(st->st_mode);
	ts_err_code rc;

	if (ts_db_excluded(r->env, rel))
		return TS_ERR_NOTFOUND;
	if (!type) {
		if (r->warn) {
			const char *what = S_ISFIFO(st->st_mode) ? "FIFO" : S_ISSOCK(st->st_mode) ? "socket" :
			                   S_ISCHR(st->st_mode) ? "character device" : "block device";
			ts_log(LOG_WARNING, "%s/%s: skipped %s (only directories, regular files and "
			       "symlinks are copied)", r->env->root, rel, what);
		}
		return TS_ERR_NOTFOUND;
	}
	snap_item it = { .rel = strdup(rel), .type = type, .st = *st };
	if (!it.rel)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	rc = w->place ? snap_place(r, &it, e) : TS_OK;
	if (rc == TS_OK) {
		pthread_mutex_lock(&w->mu);
		rc = snap_list_push(w->l, &it, e);
		pthread_mutex_unlock(&w->mu);
	}
	if (rc != TS_OK)
		free(it.rel);
	return rc;
}

/* The environment as it is now, sorted by path (parents first).  Each
 * entry is also put into the tree as far as that costs no copy
 * (snap_place), on the walk's threads: an incremental snapshot is mostly
 * directories made and files shared, system calls best spread over cores. */
static ts_err_code snap_walk(snap_run *r, snap_list *l, ts_err *e)
{
	ts_err_code rc;
	snap_walk_ctx w = { .r = r, .l = l, .place = true };
	snap_item root = { .rel = strdup("."), .type = 'd', .placed = true };
	char msg[TS_ERR_MSG_MAX];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	r->listed_ns = snap_ns(&now);
	if (!root.rel)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (fstat(r->envfd, &root.st) < 0) {
		free(root.rel);
		return ts_err_sys(e, errno, "%s: cannot stat", r->env->root);
	}
	rc = snap_list_push(l, &root, e);
	if (rc != TS_OK)
		free(root.rel);
	snprintf(msg, sizeof msg, "snapshot %s: cancelled (tracsnap is stopping)", r->o->name);
	pthread_mutex_init(&w.mu, NULL);
	if (rc == TS_OK)
		rc = ts_walk(r->envfd, r->env->root, snap_walk_add, &w, r->o->cancel, msg, &r->retyped, e);
	pthread_mutex_destroy(&w.mu);
	if (rc == TS_OK)
		qsort(l->v, l->n, sizeof *l->v, snap_item_cmp);
	return rc;
}

int64_t snap_racy_ns(const struct stat *st)
{
	return st->st_ctim.tv_nsec ? SNAP_RACY_FINE_NS : SNAP_RACY_COARSE_NS;
}

/* Can the previous snapshot's copy of it serve unchanged? */
static bool snap_unchanged_since_prev(const snap_run *r, const snap_item *it)
{
	const ts_manifest_entry *pe;
	if (r->prevfd < 0 || it->type != 'f')
		return false;
	pe = ts_manifest_find(&r->prev, it->rel);
	if (!pe || pe->type != 'f' || !ts_manifest_same_source(pe, &it->st))
		return false;
	/* The store's copy must still be what its manifest says, or damage to
	 * it would spread into every later snapshot.  Only what stat tells is
	 * checked here (a flipped byte needs `tracsnap verify`).  From inside
	 * the walk (snap_place): its thread's cache 1 holds the directory. */
	struct stat cur;
	const char *leaf;
	int pfd = ts_beneath_cache_parent(ts_walk_cache(1), r->prevfd, it->rel, &leaf);
	return pfd >= 0 && fstatat(pfd, leaf, &cur, AT_SYMLINK_NOFOLLOW) == 0 &&
	       ts_manifest_copy_matches(pe, &cur, r->root);
}

/* How much a snapshot may copy into the page cache without bounding its
 * writeback: 90% of what the kernel lets be dirty before its flusher starts
 * (dirty_background_bytes, or dirty_background_ratio of available memory),
 * less what is dirty already.  Below that threshold our pages stay
 * unallocated in the page cache (delayed allocation), so Trac's fsyncs never
 * wait for them; the seal writes them back at a bounded pace.  Beyond it the
 * flusher would write them back in bulk, so copies bound their own. */
static uint64_t snap_meminfo_kib(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

uint64_t snap_dirty_budget(void)
{
	char buf[8192];
	uint64_t bg_bytes = 0, ratio = 10, avail, dirty, limit;
	FILE *f;

	if ((f = fopen("/proc/sys/vm/dirty_background_bytes", "re"))) {
		if (fscanf(f, "%" SCNu64, &bg_bytes) != 1)
			bg_bytes = 0;
		fclose(f);
	}
	if ((f = fopen("/proc/sys/vm/dirty_background_ratio", "re"))) {
		if (fscanf(f, "%" SCNu64, &ratio) != 1)
			ratio = 10;
		fclose(f);
	}
	if (!(f = fopen("/proc/meminfo", "re")))
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	avail = snap_meminfo_kib(buf, "MemAvailable:") * 1024;
	dirty = (snap_meminfo_kib(buf, "Dirty:") + snap_meminfo_kib(buf, "Writeback:")) * 1024;
	limit = bg_bytes ? bg_bytes : avail / 100 * ratio;
	limit = limit / 10 * 9;
	return limit > dirty ? limit - dirty : 0;
}

/* Share a file unchanged since the previous snapshot: a hard link to its
 * copy there, whose hash it takes over.  False: it must be copied. */
static bool snap_share(snap_run *r, snap_item *it)
{
	const char *pleaf, *tleaf;
	int pfd, tfd;

	if (!snap_unchanged_since_prev(r, it))
		return false;
	/* Both directories beneath their trees, kept for the next entry of
	 * the same directory (the walk lists one directory at a time). */
	pfd = ts_beneath_cache_parent(ts_walk_cache(1), r->prevfd, it->rel, &pleaf);
	tfd = pfd < 0 ? -1 : ts_beneath_cache_parent(ts_walk_cache(0), r->tmp.treefd, it->rel, &tleaf);
	if (tfd < 0 || linkat(pfd, pleaf, tfd, tleaf, 0) < 0)
		return false;
	const ts_manifest_entry *pe = ts_manifest_find(&r->prev, it->rel);
	memcpy(it->sha256, pe->sha256, 32);
	it->unhashed = pe->pending;
	it->shared = true;
	return true;
}

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
	it->st = co.st;
	memcpy(it->sha256, co.sha256, 32);
	it->racy = co.changed || snap_ns(&co.st.st_ctim) >= snap_ns(&before) - snap_racy_ns(&co.st);
	it->unhashed = it->type == 'f';
	__atomic_fetch_add(&r->stats->bytes_copied, co.bytes, __ATOMIC_RELAXED);
	return TS_OK;
}

/* During the pre-copy's walk: make a directory (its parent was made when
 * the walk reached it, before listing it), or share an unchanged file.
 * Copies wait for the pool, which knows the totals for progress. */
static ts_err_code snap_place(snap_run *r, snap_item *it, ts_err *e)
{
	ts_err_code rc = TS_OK;
	if (it->type == 'd')
		rc = snap_put_at(r, it, true, e);
	it->placed = rc == TS_OK && (it->type == 'd' || (it->type == 'f' && snap_share(r, it)));
	return rc;
}

/* Pre-copy of one item, on one of the pool's threads (pool.h): copying small
 * files is as much system calls as I/O.  Progress is reported by the
 * caller's thread only. */
ts_err_code snap_precopy_one(void *arg, size_t i, ts_err *e)
{
	snap_precopy_ctx *c = arg;
	snap_item *it = &c->r->items.v[i];
	ts_err_code rc;

	if (snap_cancelled(c->r))
		return snap_cancel_err(c->r, e);
	if (it->type == 'd')
		return TS_OK;
	rc = it->placed ? TS_OK : snap_put(c->r, it, e);
	__atomic_fetch_add(&c->done.files_done, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->done.bytes_done, (uint64_t)it->st.st_size, __ATOMIC_RELAXED);
	if (c->r->o->progress && pthread_equal(pthread_self(), c->caller)) {
		ts_progress now = c->done;
		now.files_done = __atomic_load_n(&c->done.files_done, __ATOMIC_RELAXED);
		now.bytes_done = __atomic_load_n(&c->done.bytes_done, __ATOMIC_RELAXED);
		ts_progress_report(c->r->o->progress, &now);
	}
	if (rc == TS_ERR_NOTFOUND) {
		it->type = 0;   /* vanished: the freeze walk decides */
		rc = TS_OK;
	}
	return rc;
}

/* Pre-copy: everything, while Trac runs; from a stage, only what changed
 * since the previous snapshot, found as under the lock (snap_recheck). */
static ts_err_code snap_precopy(snap_run *r, ts_err *e)
{
	ts_err_code rc;
	snap_precopy_ctx c = { .r = r, .caller = pthread_self() };

	if (r->staged) {
		rc = snap_items_from_manifest(r, r->fresh.n ? &r->fresh : &r->prev, e);
		return rc == TS_OK ? snap_recheck(r, false, e) : rc;
	}
	r->warn = true;
	rc = snap_walk(r, &r->items, e);
	r->warn = false;
	if (rc != TS_OK)
		return rc;
	for (size_t i = 0; i < r->items.n; i++) {
		if (r->items.v[i].type == 'd')
			continue;
		c.done.files_total++;
		c.done.bytes_total += (uint64_t)r->items.v[i].st.st_size;
	}
	rc = ts_pool_run(r->items.n, SNAP_POOL_MIN, TS_POOL_IDLE_IO, snap_precopy_one, &c, e);
	snap_list_compact(&r->items);
	return rc;
}

/* Wait until no copied file is within its racy window any more, so that the
 * catch-up pass can tell a change from a coarse timestamp (bounded: 2 s).
 * Returns whether any file was racy. */
static bool snap_wait_racy(const snap_run *r)
{
	struct timespec now;
	int64_t until = 0;
	bool any = false;
	for (size_t k = 0; k < r->items.n; k++) {
		const snap_item *it = &r->items.v[k];
		if (it->racy) {
			int64_t t = snap_ns(&it->st.st_ctim) + snap_racy_ns(&it->st);
			any = true;
			if (t > until)
				until = t;
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t wait = until - snap_ns(&now);
	if (wait > 0) {
		if (wait > SNAP_RACY_COARSE_NS)
			wait = SNAP_RACY_COARSE_NS;
		struct timespec nap = { wait / 1000000000LL, wait % 1000000000LL };
		nanosleep(&nap, NULL);
	}
	return any;
}

/* lstat of rel ("." for the tree itself) in the store tree, never through
 * a link (beneath.h). */
static int snap_tree_stat(const snap_run *r, const char *rel, struct stat *st)
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

/* A staged directory carries the previous snapshot's metadata (stage.c).
 * It serves as is when the environment's directory is the same one, not
 * changed since (ctime: owner, mode, xattrs; mtime: entries), with a ctime
 * old enough at the previous snapshot that a later change would have moved
 * it, and when nothing was added to or removed from the staged copy (its
 * mtime is still the one the stage gave it). */
static bool snap_dir_as_staged(const snap_run *r, const snap_item *it)
{
	const ts_manifest_entry *pe = ts_manifest_find(&r->prev, it->rel);
	struct stat cur;

	if (!pe || pe->type != 'd' || !ts_manifest_same_source(pe, &it->st) ||
	    snap_ns(&pe->src_ctime) >= snap_ns(&r->prev.time) - snap_racy_ns(&it->st))
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
	return ts_copy_dir_meta(r->envfd, r->tmp.treefd, it->rel, &it->st, r->env->root, e);
}

static ts_err_code snap_dir_meta(snap_run *r, ts_err *e)
{
	return ts_pool_run(r->items.n, SNAP_POOL_MIN, 0, snap_dir_meta_one, r, e);
}

ts_err_code snap_manifest(snap_run *r, const char *db_rel, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_manifest m;

	ts_manifest_init(&m);
	m.time = r->stats->instant;
	m.no_database = r->o->no_database;
	m.env = strdup(r->env->root);
	char boot[TS_STORE_BOOT_ID_MAX];
	ts_store_boot_id(boot);
	m.unsealed_boot = strdup(boot);
	if (!m.env || !m.unsealed_boot)
		goto nomem;
	/* (A stage's manifest, written without the database: no db_rel.) */
	if (db_rel && !r->env->db_rel && r->env->db_abs && !r->o->no_database) {
		m.external_db = strdup(r->env->db_abs);
		m.external_db_rel = strdup(db_rel);
		if (!m.external_db || !m.external_db_rel)
			goto nomem;
	}
	for (size_t k = 0; k < r->items.n; k++) {
		const snap_item *it = &r->items.v[k];
		ts_manifest_entry *me;
		if (!it->type)
			continue;
		me = ts_manifest_add(&m, it->type, it->rel);
		if (!me)
			goto nomem;
		ts_manifest_entry_set_meta(me, &it->st);
		memcpy(me->sha256, it->sha256, 32);
		me->pending = it->type == 'f' && it->unhashed;
		/* Directories too: a stage's directory may serve as is (snap_dir_as_staged). */
		ts_manifest_entry_set_source(me, &it->st);
		if (it->type == 'f')
			r->stats->files++;
		if (it->type == 'f' && it->shared) {
			r->stats->files_shared++;
			r->stats->bytes_shared += (uint64_t)it->st.st_size;
		}
	}
	if (db_rel) {
		struct stat st;
		ts_manifest_entry *me;
		uint64_t size = 0;
		if (snap_tree_stat(r, db_rel, &st) < 0) {
			rc = ts_err_sys(e, errno, "%s: database copy missing", db_rel);
			goto out;
		}
		me = ts_manifest_add(&m, 'f', db_rel);
		if (!me)
			goto nomem;
		size = (uint64_t)st.st_size;
		me->pending = true;
		ts_manifest_entry_set_meta(me, &st);
		r->stats->files++;
		r->stats->bytes_copied += size;
	}
	if (r->db_dir && db_rel) {
		/* The directory made for the database copy, as the tree has it,
		 * dated like the copy. */
		struct stat st;
		ts_manifest_entry *me;
		if (snap_tree_stat(r, db_rel, &st) == 0) {
			struct timespec t[2] = { st.st_mtim, st.st_mtim };
			(void)utimensat(r->tmp.treefd, r->db_dir, t, AT_SYMLINK_NOFOLLOW);
		}
		if (fstatat(r->tmp.treefd, r->db_dir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			me = ts_manifest_add(&m, 'd', r->db_dir);
			if (!me)
				goto nomem;
			ts_manifest_entry_set_meta(me, &st);
		}
	}
	ts_manifest_sort(&m);
	rc = ts_manifest_write_at(&m, r->tmp.dirfd, "manifest", e);
	/* The manifest's mtime is the snapshot instant: what lists snapshots in
	 * order (store.h), and unlike the directory's it never moves. */
	struct timespec times[2] = { m.time, m.time };
	if (rc == TS_OK && utimensat(r->tmp.dirfd, "manifest", times, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "%s/manifest: cannot set its time", r->tmp.dir);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	ts_manifest_free(&m);
	return rc;
}

/* The newest snapshot, to share unchanged files with. */
static void snap_open_prev(snap_run *r)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	char path[PATH_MAX];

	if (ts_store_list(r->store, &v, &n, NULL) != TS_OK || n == 0)
		goto out;
	snprintf(path, sizeof path, "%s/manifest", v[n - 1].name);
	if (ts_manifest_read_at(r->store->dirfd, path, &r->prev, NULL) != TS_OK) {
		ts_manifest_free(&r->prev);
		ts_manifest_init(&r->prev);
		goto out;
	}
	snprintf(path, sizeof path, "%s/tree", v[n - 1].name);
	r->prevfd = ts_beneath_open(r->store->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	r->staged = r->prevfd >= 0 &&
	            ts_stage_adopt(r->store, &r->tmp, v[n - 1].name, r->prevfd, &r->fresh);
out:
	ts_store_list_free(v, n);
}

/* The database's pre-copy runs on a thread of its own beside the files'
 * walk and copies, into the temporary directory (where it goes in the tree
 * is only known, and its directory only made, once the walk is done), and
 * is moved into the tree before the lock. */
#define SNAP_DB_PRECOPY TS_STAGE_DB_PRECOPY

typedef struct snap_dbpre {
	ts_dbsnap *db;
	int dirfd;
	pthread_t th;
	bool started;
	ts_err_code rc;
	ts_err err;
} snap_dbpre;

static void *snap_dbpre_main(void *arg)
{
	snap_dbpre *p = arg;
	ts_err_clear(&p->err);
	p->rc = p->db->ops->precopy(p->db, p->dirfd, SNAP_DB_PRECOPY, &p->err);
	return NULL;
}

static void snap_dbpre_start(snap_dbpre *p, ts_dbsnap *db, int dirfd)
{
	p->db = db;
	p->dirfd = dirfd;
	if (!db->ops->precopy)
		(void)unlinkat(dirfd, SNAP_DB_PRECOPY, 0);   /* a stage's copy (stage.h), of no use here */
	p->started = db->ops->precopy && pthread_create(&p->th, NULL, snap_dbpre_main, p) == 0;
}

/* Wait for the pre-copy (or make it here, if no thread could start) and
 * move it to rel in the tree.  A backend may have left none (SQLite in WAL
 * mode copies after the lock). */
static ts_err_code snap_dbpre_finish(snap_dbpre *p, int treefd, const char *rel, ts_err *e)
{
	if (p->started) {
		pthread_join(p->th, NULL);
		p->started = false;
		if (p->rc != TS_OK) {
			if (e)
				*e = p->err;
			return p->rc;
		}
	} else if (p->db->ops->precopy) {
		ts_err_code rc = p->db->ops->precopy(p->db, p->dirfd, SNAP_DB_PRECOPY, e);
		if (rc != TS_OK)
			return rc;
	}
	/* Into its directory reached beneath the tree: the environment may
	 * have had a link where the database's directory is (beneath.h). */
	const char *leaf;
	int pfd = ts_beneath_parent(treefd, rel, &leaf);
	if (pfd < 0 || (renameat(p->dirfd, SNAP_DB_PRECOPY, pfd, leaf) < 0 && errno != ENOENT)) {
		ts_err_code rc = ts_err_sys(e, errno, "%s: cannot move the database copy into the tree", rel);
		ts_beneath_parent_close(treefd, pfd);
		return rc;
	}
	ts_beneath_parent_close(treefd, pfd);
	return TS_OK;
}

ts_err_code ts_snap_take(ts_store *store, const ts_env *env, const ts_snap_opts *o,
                         ts_snap_stats *stats, ts_err *e)
{
	ts_err_code rc;
	snap_run r;
	ts_dbsnap *db = NULL;
	char *db_rel = NULL;
	struct timespec t0, t_pre;
	bool store_locked = false;
	snap_dbpre dbpre = { .started = false };

	memset(&r, 0, sizeof r);
	memset(stats, 0, sizeof *stats);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r.env = env;
	r.o = o;
	r.store = store;
	r.stats = stats;
	r.prevfd = r.envfd = -1;
	r.root = geteuid() == 0;
	ts_manifest_init(&r.prev);
	ts_manifest_init(&r.fresh);

	rc = ts_name_check(o->name, e);
	if (rc != TS_OK)
		goto out;
	rc = ts_store_lock(store, o->lock_timeout_s, e);
	if (rc != TS_OK)
		goto out;
	store_locked = true;
	if (ts_store_exists(store, o->name)) {
		rc = ts_err_set(e, TS_ERR_EXISTS, "snapshot %s: exists already (snapshots are never "
		                "overwritten)", o->name);
		goto out;
	}
	/* By path, each time: an environment replaced since the mount (by a
	 * restore, say) is the one snapshotted, if it still is one.  Never
	 * through a symlink put in its place (doc/security.md): the owner
	 * could point it at any tree of root's. */
	r.envfd = open(env->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r.envfd < 0) {
		struct stat lst;

		/* O_DIRECTORY | O_NOFOLLOW on a link: ELOOP or ENOTDIR */
		if (errno == ELOOP || (errno == ENOTDIR && lstat(env->root, &lst) == 0 && S_ISLNK(lst.st_mode)))
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: now a symlink, not the environment; refused",
			                env->root);
		else if (errno == ENOENT || errno == ENOTDIR)
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: the environment is gone (removed or "
			                "renamed)", env->root);
		else
			rc = ts_err_sys(e, errno, "%s: cannot open the environment", env->root);
		goto out;
	}
	if (faccessat(r.envfd, "VERSION", F_OK, 0) < 0) {
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment (VERSION missing)",
		                env->root);
		goto out;
	}
	rc = ts_dbsnap_open(env, o->lock_timeout_s, &db, e);
	if (rc != TS_OK)
		goto out;
	rc = ts_store_begin(store, o->name, &r.tmp, e);
	if (rc != TS_OK)
		goto out;
	r.tmp_open = true;
	snap_open_prev(&r);
	r.dirty_budget = snap_dirty_budget();

	clock_gettime(CLOCK_MONOTONIC, &t_pre);
	if (!o->no_database)
		snap_dbpre_start(&dbpre, db, r.tmp.dirfd);
	else   /* a stage's copy (stage.h), of no use here */
		(void)unlinkat(r.tmp.dirfd, SNAP_DB_PRECOPY, 0);
	rc = snap_precopy(&r, e);
	if (rc != TS_OK)
		goto out;
	/* The catch-up pass takes out of the lock what changed while the
	 * pre-copy ran, and what was racy.  After a short pre-copy with nothing
	 * racy (an incremental snapshot, mostly shared files) the walk under the
	 * lock finds just as little, and one walk is saved. */
	if (snap_wait_racy(&r) || snap_ms_since(&t_pre) > SNAP_CATCHUP_MS)
		rc = snap_recheck(&r, false, e);
	if (rc != TS_OK)
		goto out;
	if (!o->no_database) {
		/* A backend that can copy the database ahead does, so that under
		 * the lock only what changed since is copied. */
		rc = ts_db_place(env, r.tmp.treefd, r.envfd, &db_rel, &r.db_dir, e);
		if (rc == TS_OK)
			rc = snap_dbpre_finish(&dbpre, r.tmp.treefd, db_rel, e);
		if (rc != TS_OK)
			goto out;
	}
	/* A stop asked for during the copy cancels until the very end: before
	 * Trac's lock is taken, and before the snapshot appears. */
	rc = snap_cancelled(&r) ? snap_cancel_err(&r, e) : db->ops->lock(db, e);
	if (rc != TS_OK)
		goto out;
	clock_gettime(CLOCK_REALTIME, &stats->instant);
	rc = snap_recheck(&r, true, e);
	if (rc != TS_OK)
		goto out;
	if (!o->no_database)
		rc = db->ops->capture(db, r.tmp.treefd, db_rel, e);
	db->ops->release(db);
	stats->hold_ms = ts_dbsnap_hold_ms(db);
	if (rc != TS_OK)
		goto out;
	rc = snap_dir_meta(&r, e);
	if (rc == TS_OK)
		rc = snap_manifest(&r, db_rel, e);
	if (rc == TS_OK)
		rc = snap_cancelled(&r) ? snap_cancel_err(&r, e) : ts_store_mark_unsealed(&r.tmp, e);
	if (rc == TS_OK) {
		rc = ts_store_commit(store, &r.tmp, &stats->instant, e);
		r.tmp_open = false;   /* commit consumed it, success or not */
	}
out:
	if (dbpre.started)
		pthread_join(dbpre.th, NULL);   /* a failure before its result was wanted */
	if (db) {
		db->ops->release(db);
		if (!stats->hold_ms)
			stats->hold_ms = ts_dbsnap_hold_ms(db);
		ts_dbsnap_close(db);
	}
	if (r.tmp_open)
		ts_store_abort(store, &r.tmp);
	if (store_locked)
		ts_store_unlock(store);
	if (r.envfd >= 0)
		close(r.envfd);
	if (r.prevfd >= 0)
		close(r.prevfd);
	ts_manifest_free(&r.prev);
	ts_manifest_free(&r.fresh);
	snap_list_free(&r.items);
	free(db_rel);
	ts_copy_thread_done();   /* the caller's thread may be one of a pool that ends */
	stats->total_ms = snap_ms_since(&t0);
	return rc;
}

void ts_snap_format_stats(const char *name, const ts_snap_stats *s, char *buf, size_t len)
{
	char c[32], sh[32];
	ts_human_bytes((double)s->bytes_copied, c, sizeof c);
	ts_human_bytes((double)s->bytes_shared, sh, sizeof sh);
	snprintf(buf, len, "snapshot %s: %llu files, %s copied, %s shared, lock held %.0f ms, total %.0f ms",
	         name, (unsigned long long)s->files, c, sh, s->hold_ms, s->total_ms);
}
