/* snap.c - the snapshot protocol (see snap.h and doc/design.md). */
#include "take/snap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "db/dbsnap.h"
#include "base/pool.h"
#include "take/snap_int.h"
#include "take/stage.h"
#include "base/log.h"
#include "base/meminfo.h"
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

static bool snap_cancelled(const snap_run *r)
{
	return r->o->cancel && *r->o->cancel;
}

static ts_err_code snap_cancel_err(const snap_run *r, ts_err *e)
{
	return ts_err_set(e, TS_ERR_CANCELLED, "snapshot %s: cancelled (tracsnap is stopping)",
	                  r->o->name);
}

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
	/* Room for a hash where the walk may share the file (snap_put.c). */
	size_t room = snap_sha_room(type, w->place && r->prevfd >= 0);
	snap_item it = { .type = type, .borrowed = true, .sha_room = room > 0 };

	pthread_mutex_lock(&w->mu);
	it.rel = snap_paths_dup(&r->paths, rel, room);
	pthread_mutex_unlock(&w->mu);
	if (!it.rel)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	snap_item_stat_set(&it, st);
	rc = w->place ? snap_place(r, &it, e) : TS_OK;
	if (rc == TS_OK) {
		pthread_mutex_lock(&w->mu);
		rc = snap_list_push(w->l, &it, e);
		pthread_mutex_unlock(&w->mu);
	}
	return rc;   /* a path not kept stays in the run's blocks till its end */
}

/* The environment as it is now, sorted by path (parents first).  Each
 * entry is also put into the tree as far as that costs no copy
 * (snap_place), on the walk's threads: an incremental snapshot is mostly
 * directories made and files shared, system calls best spread over cores. */
static ts_err_code snap_walk(snap_run *r, snap_list *l, ts_err *e)
{
	ts_err_code rc;
	snap_walk_ctx w = { .r = r, .l = l, .place = true };
	snap_item root = { .rel = snap_paths_dup(&r->paths, ".", 0), .type = 'd', .borrowed = true,
	                   .placed = true };
	char msg[TS_ERR_MSG_MAX];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	r->listed_ns = snap_ns(&now);
	if (!root.rel)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	struct stat rst;
	if (fstat(r->envfd, &rst) < 0)
		return ts_err_sys(e, errno, "%s: cannot stat", r->env->root);
	snap_item_stat_set(&root, &rst);
	rc = snap_list_push(l, &root, e);
	snprintf(msg, sizeof msg, "snapshot %s: cancelled (tracsnap is stopping)", r->o->name);
	pthread_mutex_init(&w.mu, NULL);
	if (rc == TS_OK)
		rc = ts_walk(r->envfd, r->env->root, snap_walk_add, &w, r->o->cancel, msg, &r->retyped, e);
	pthread_mutex_destroy(&w.mu);
	if (rc == TS_OK)
		qsort(l->v, l->n, sizeof *l->v, snap_item_cmp);
	return rc;
}

/* Pre-copy of one item, on one of the pool's threads (pool.h): copying small
 * files is as much system calls as I/O.  Progress is reported by the
 * caller's thread only. */
ts_err_code snap_precopy_one(void *arg, size_t i, ts_err *e)
{
	snap_precopy_ctx *c = arg;
	snap_item *it = &c->r->items.v[c->idx ? c->idx[i] : i];
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
		snap_list_drop(&c->r->items, it);   /* vanished: the freeze walk decides */
		rc = TS_OK;
	} else if (rc == TS_OK) {
		it->placed = true;   /* a narrowed recheck leaves it be (snap_changes.c) */
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
		/* The items are the staged manifest's (snap_open_prev, or an
		 * abandoned fast take's).  Before the lock: the staged copies
		 * are the store's (share_check.h). */
		rc = snap_items_remove_db(r, e);
		if (rc == TS_OK)
			rc = snap_check_staged(r, e);
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

static bool snap_wait_racy(const snap_run *r);

/* The pre-copy and, when worth it, the catch-up pass, which takes out of
 * the lock what changed while the pre-copy ran, and what was racy.  After a
 * short pre-copy with nothing racy (an incremental snapshot, mostly shared
 * files) the walk under the lock finds just as little, and one walk is
 * saved.  With a watcher it looks only at what the watcher reports
 * (snap_changes.c).  t_pre: when the pre-copy began. */
static ts_err_code snap_precopy_all(snap_run *r, const struct timespec *t_pre, ts_err *e)
{
	ts_err_code rc = snap_precopy(r, e);

	if (rc == TS_OK && (snap_wait_racy(r) || snap_ms_since(t_pre) > SNAP_CATCHUP_MS))
		rc = r->changes_marked ? snap_changes_catchup(r, e) : snap_recheck(r, false, e);
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
			int64_t t = snap_ns(&it->st.st_ctim) + snap_racy_ns(&it->st.st_ctim);
			any = true;
			if (t > until)
				until = t;
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t wait = until - snap_ns(&now);
	if (wait > 0) {
		if (wait > TS_RACY_COARSE_NS)
			wait = TS_RACY_COARSE_NS;
		struct timespec nap = { wait / 1000000000LL, wait % 1000000000LL };
		nanosleep(&nap, NULL);
	}
	return any;
}

/* ts_stage_adopt's read: the items, from the staged tree's manifest. */
static bool snap_read_stage(void *arg, int dirfd, const char *rel)
{
	return snap_items_from_stage(arg, dirfd, rel, NULL, NULL) == TS_OK;
}

/* Drop what snap_read_stage made. */
static void snap_unstage(snap_run *r)
{
	snap_list_free(&r->items);
	ts_manifest_free(&r->prev);
	ts_manifest_init(&r->prev);
	snap_paths_free(&r->paths);
	ts_pathset_free(&r->db_gone);
	r->stats->bytes_copied = 0;
}

/* The newest snapshot, to share unchanged files with, and its manifest;
 * or its stage, and what the staged tree holds (stage.h). */
static void snap_open_prev(snap_run *r)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	char path[PATH_MAX];

	if (ts_store_list(r->store, &v, &n, NULL) != TS_OK || n == 0)
		goto out;
	snprintf(path, sizeof path, "%s/tree", v[n - 1].name);
	r->prevfd = ts_beneath_open(r->store->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	r->prev_name = strdup(v[n - 1].name);
	ts_linklog_read(r->store->dirfd, &r->links);   /* once: share_check.h */
	/* Nothing changed since the stage's refresh: its tree and manifest
	 * are the snapshot's but for the database and the files only written
	 * to since, which the callback makes items of (snap_fast.c). */
	r->fast = r->prevfd >= 0 && ts_stage_adopt_as_is(r->store, &r->tmp, v[n - 1].name, r->prevfd,
	                                                 r->o->changes, snap_fast_written, r);
	if (!r->fast)
		snap_list_free(&r->items);   /* a refusal after the watch's answer */
	if (r->fast) {
		/* It links nothing, and unlinks only the staged copies of the
		 * files written to: a batch that names those inodes, so that it
		 * explains no other change of a shared copy (snap_adopted.c). */
		r->noted = &r->fast_noted;
		r->staged = true;
		goto out;
	}
	r->staged = r->prevfd >= 0 &&
	            ts_stage_adopt(r->store, &r->tmp, v[n - 1].name, r->prevfd, snap_read_stage, r);
	if (r->staged)
		goto out;
	snap_unstage(r);   /* what a read made before the stage was refused */
	snprintf(path, sizeof path, "%s/manifest", v[n - 1].name);
	if (ts_manifest_read_at(r->store->dirfd, path, &r->prev, NULL) != TS_OK) {
		ts_manifest_free(&r->prev);
		ts_manifest_init(&r->prev);
		if (r->prevfd >= 0)
			close(r->prevfd);
		r->prevfd = -1;   /* nothing shared with a snapshot whose manifest is unread */
	}
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
	/* From here on the take adds and removes hard links to the previous
	 * snapshot's copies (sharing, adopting the stage): one batch of the
	 * linklog (linklog.h), ended however the take ends. */
	ts_linklog_begin(&r.link_start);
	r.links_begun = true;
	snap_open_prev(&r);
	r.dirty_budget = ts_dirty_budget();

	clock_gettime(CLOCK_MONOTONIC, &t_pre);
	/* Before the last full pass ahead of the lock: from here on the
	 * watcher records what changes (snap_changes.c). */
	snap_changes_mark(&r);
	if (!o->no_database)
		snap_dbpre_start(&dbpre, db, r.tmp.dirfd);
	else   /* a stage's copy (stage.h), of no use here */
		(void)unlinkat(r.tmp.dirfd, SNAP_DB_PRECOPY, 0);
	rc = r.fast ? snap_fast_precopy(&r, e) : TS_OK;
	if (rc == TS_OK && !r.fast)
		rc = snap_precopy_all(&r, &t_pre, e);
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
	if (r.fast) {
		rc = snap_cancelled(&r) ? snap_cancel_err(&r, e) : snap_fast_locked(&r, db, db_rel, e);
		/* Changed meanwhile: from the stage as any snapshot would. */
		if (rc == TS_OK && !r.fast)
			rc = snap_precopy_all(&r, &t_pre, e);
		if (rc != TS_OK)
			goto out;
	}
	if (r.fast) {
		stats->hold_ms = ts_dbsnap_hold_ms(db);
		rc = snap_manifest(&r, db_rel, e);
		goto commit;
	}
	rc = snap_changes_prepare(&r, e);
	if (rc != TS_OK)
		goto out;
	/* A stop asked for during the copy cancels until the very end: before
	 * Trac's lock is taken, and before the snapshot appears. */
	rc = snap_cancelled(&r) ? snap_cancel_err(&r, e) : db->ops->lock(db, e);
	if (rc != TS_OK)
		goto out;
	clock_gettime(CLOCK_REALTIME, &stats->instant);
	rc = snap_changes_flag(&r, e);
	uint64_t before = stats->rechecked;
	if (rc == TS_OK)
		rc = snap_recheck(&r, true, e);
	stats->rechecked_locked = stats->rechecked - before;
	if (rc != TS_OK)
		goto out;
	snap_changes_stage(&r, false);
	if (!o->no_database) {
		snap_changes_db(&r, db);
		rc = db->ops->capture(db, r.tmp.treefd, db_rel, e);
		stats->db_as_precopied = db->precopy_current;
	}
	db->ops->release(db);
	stats->hold_ms = ts_dbsnap_hold_ms(db);
	if (rc != TS_OK)
		goto out;
	rc = snap_dir_meta(&r, e);
	if (rc == TS_OK)
		rc = snap_manifest(&r, db_rel, e);
commit:
	/* Written: what the items and their paths held goes. */
	snap_list_free(&r.items);
	ts_manifest_free(&r.prev);
	snap_paths_free(&r.paths);
	if (rc == TS_OK)
		rc = snap_cancelled(&r) ? snap_cancel_err(&r, e) : ts_store_mark_unsealed(&r.tmp, e);
	/* The tree a stage built from this snapshot will name (stage_mark). */
	struct stat tst;
	if (rc == TS_OK && fstat(r.tmp.treefd, &tst) == 0) {
		stats->tree_dev = tst.st_dev;
		stats->tree_ino = tst.st_ino;
	} else {
		stats->stage_mark = 0;
	}
	if (rc == TS_OK) {
		rc = ts_store_commit(store, &r.tmp, &stats->instant, e);
		r.tmp_open = false;   /* commit consumed it, success or not */
	}
out:
	snap_changes_end(&r);
	if (dbpre.started)
		pthread_join(dbpre.th, NULL);   /* a failure before its result was wanted */
	if (db) {
		db->ops->release(db);
		if (!stats->hold_ms)
			stats->hold_ms = ts_dbsnap_hold_ms(db);
		ts_dbsnap_close(db);
	}
	/* The batch ends before an abort: the abort's guard (linkguard.h)
	 * must find this take's own links explained. */
	if (r.links_begun && r.noted)
		ts_linklog_end_inos(store->dirfd, &r.link_start, r.noted);
	else if (r.links_begun)
		ts_linklog_end(store->dirfd, &r.link_start);
	if (r.tmp_open)
		ts_store_abort(store, &r.tmp);
	if (store_locked)
		ts_store_unlock(store);
	if (r.envfd >= 0)
		close(r.envfd);
	if (r.prevfd >= 0)
		close(r.prevfd);
	ts_manifest_free(&r.prev);
	ts_linklog_free(&r.links);
	free(r.prev_name);
	snap_list_free(&r.items);
	snap_paths_free(&r.paths);   /* after the items, whose paths these are */
	ts_pathset_free(&r.db_gone);
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
	int n;
	if (s->from_stage)   /* no entry counted (snap_fast.c) */
		n = snprintf(buf, len, "snapshot %s: the stage as it was (nothing but the database changed "
		             "since its refresh), %s copied, lock held %.0f ms, total %.0f ms", name, c,
		             s->hold_ms, s->total_ms);
	else
		n = snprintf(buf, len, "snapshot %s: %llu files, %s copied, %s shared, lock held %.0f ms, "
		             "total %.0f ms", name, (unsigned long long)s->files, c, sh, s->hold_ms,
		             s->total_ms);
	/* With a watcher: how much it spared under the lock (snap_changes.c). */
	if (s->watched && !s->from_stage && n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, ", %llu entries checked under the lock",
		              (unsigned long long)s->rechecked_locked);
	if (s->db_as_precopied && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, ", database unchanged since its pre-copy");
}
