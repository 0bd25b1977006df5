/* snap_recheck.c - checking a snapshot's tree against the environment by
 * stat, listing again only directories that changed (snap_int.h). */
#include "take/snap_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/beneath.h"
#include "take/share_check.h"
#include "base/copy.h"
#include "base/log.h"
#include "db/dbsnap.h"
#include "base/pool.h"
#include "base/walk.h"
#include "store/manifest_stat.h"

static void snap_note_unlink(void *arg, uint64_t ino)
{
	ts_linklog_note(arg, ino);
}

ts_err_code snap_remove(snap_run *r, const char *rel, ts_err *e)
{
	if (r->noted)
		return ts_copy_remove_tree_noting(r->tmp.treefd, rel, snap_note_unlink, r->noted, e);
	return ts_copy_remove_tree(r->tmp.treefd, rel, e);
}

/* Is rel an item of l?  An item dropped in this pass (type 0, still in
 * the array until the list is compacted) is not: its entry was gone or
 * changed when it was stat'ed, and if the listing finds it there again, it
 * must be walked and put again. */
static bool snap_known(const snap_list *l, const char *rel)
{
	snap_item key = { .rel = (char *)rel };
	const snap_item *it = bsearch(&key, l->v, l->n, sizeof *l->v, snap_item_cmp);
	return it && it->type;
}

/* The item of entry pe as the staged tree holds it (its path the run's
 * copy, rel).  An entry changed so shortly before the manifest's time (ns)
 * that a later change could carry the same ctime counts as changed.  Files
 * the manifest records unhashed were copied by a refresh, not shared. */
static snap_item snap_item_staged(snap_run *r, const ts_manifest_entry *pe, char *rel, int64_t ns,
                                  dev_t dev)
{
	snap_item it = { .rel = rel, .borrowed = true, .sha_room = snap_sha_room(pe->type, true) > 0,
	                 .type = pe->type, .placed = true, .shared = pe->type == 'f' && !pe->pending,
	                 .unhashed = pe->pending };
	struct stat pst;

	/* Room made by the caller, by the same rule: a list no thread
	 * searches yet. */
	if (it.sha_room && !pe->pending)
		(void)snap_item_set_sha(&it, pe->sha256);
	ts_manifest_entry_to_stat(pe, &pst);
	pst.st_dev = dev;   /* as ts_copy_same_stat compares it */
	snap_item_stat_set(&it, &pst);
	if (pe->type == 'f') {
		it.store_ino = pe->store_ino;   /* as the manifest recorded it: checked on adoption */
		it.store_ctime = pe->store_ctime;
	}
	it.racy = pe->type != 'd' && snap_ns(&pe->src_ctime) >= ns - snap_racy_ns(&it.st.st_ctim);
	if (pe->type == 'f' && pe->pending)
		r->stats->bytes_copied += pe->size;
	return it;
}

/* What the abandoned fast take copied already (snap_fast.c: over, sorted),
 * recorded in pe as copied: checked by identity, hashed at the seal
 * (snap_check_staged).  One removed and not copied again (the file went
 * meanwhile) is then copied again quietly, not taken for damage. */
static void snap_item_over(ts_manifest_entry *pe, const snap_item *ov)
{
	if (pe->type != 'f')
		return;
	if (ov->placed) {
		struct stat src;
		snap_item_stat_get(ov, &src);
		ts_manifest_entry_set_meta(pe, &src);
		ts_manifest_entry_set_source(pe, &src);
		pe->store_ino = ov->store_ino;
		pe->store_ctime = ov->store_ctime;
	}
	pe->pending = true;
	memset(pe->sha256, 0, sizeof pe->sha256);
}

ts_err_code snap_items_from_stage(snap_run *r, int dirfd, const char *mrel, const snap_list *over, ts_err *e)
{
	ts_manifest head;
	ts_manifest_cursor *c = NULL;
	const ts_manifest_entry *me;
	ts_err_code rc;
	struct stat root;
	size_t k = 0;
	int64_t ns;

	if (fstat(r->envfd, &root) < 0)
		return ts_err_sys(e, errno, "%s: cannot stat", r->env->root);
	rc = ts_manifest_cursor_open_at(dirfd, mrel, &head, &c, e);
	if (rc != TS_OK)
		return rc;
	ns = snap_ns(&head.time);
	r->prev.time = head.time;
	while ((rc = ts_manifest_cursor_next(c, &me, e)) == TS_OK && me) {
		ts_manifest_entry pe = *me;
		char *rel;
		if (strcmp(pe.path, ".") && ts_db_excluded(r->env, pe.path)) {
			/* Its copy leaves the tree once the tree is the take's
			 * (snap_items_remove_db). */
			if (!ts_pathset_add(&r->db_gone, pe.path)) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				break;
			}
			continue;
		}
		while (over && k < over->n && strcmp(over->v[k].rel, pe.path) < 0)
			k++;
		if (over && k < over->n && !strcmp(over->v[k].rel, pe.path))
			snap_item_over(&pe, &over->v[k]);
		/* A directory's entry is kept whole (snap_dir_as_staged); the
		 * rest lives on in the items only. */
		ts_manifest_entry *de = pe.type == 'd' ? ts_manifest_add(&r->prev, 'd', pe.path) : NULL;
		if (pe.type == 'd' && !de) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			break;
		}
		if (de) {
			char *keep = de->path;
			*de = pe;
			de->path = keep;
		}
		if (!(rel = snap_paths_dup(&r->paths, pe.path, snap_sha_room(pe.type, true)))) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			break;
		}
		snap_item it = snap_item_staged(r, &pe, rel, ns, root.st_dev);
		rc = snap_list_push(&r->items, &it, e);
		if (rc != TS_OK)
			break;
	}
	ts_manifest_cursor_close(c);
	ts_manifest_free(&head);
	/* Without the root, nothing new at the top would be found. */
	if (rc == TS_OK && !snap_known(&r->items, ".")) {
		snap_item it = { .rel = snap_paths_dup(&r->paths, ".", 0), .borrowed = true, .type = 'd', .placed = true };
		rc = it.rel ? snap_list_push(&r->items, &it, e) : ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		if (rc == TS_OK)
			qsort(r->items.v, r->items.n, sizeof *r->items.v, snap_item_cmp);
	}
	/* Each directory's entries as of the manifest's time. */
	r->listed_ns = ns;
	return rc;
}

ts_err_code snap_items_remove_db(snap_run *r, ts_err *e)
{
	ts_err_code rc = TS_OK;

	for (size_t i = 0; rc == TS_OK && i < r->db_gone.n; i++)
		rc = snap_remove(r, r->db_gone.v[i], e);
	ts_pathset_free(&r->db_gone);
	return rc;
}

/* Staged files are checked in runs of this many per pool job, each run
 * with its own cache of the tree's directories (beneath.h). */
#define SNAP_STAGED_RUN 32

/* The entry the staged manifest recorded for item it, before anything
 * changed it (snap_item_staged, the other way). */
static void snap_item_recorded(const snap_item *it, ts_manifest_entry *pe)
{
	struct stat st;

	snap_item_stat_get(it, &st);
	memset(pe, 0, sizeof *pe);
	pe->type = it->type;
	pe->path = it->rel;
	ts_manifest_entry_set_meta(pe, &st);
	ts_manifest_entry_set_source(pe, &st);
	memcpy(pe->sha256, snap_item_sha(it), 32);
	pe->pending = it->unhashed;
	if (it->type == 'f') {
		pe->store_ino = it->store_ino;
		pe->store_ctime = it->store_ctime;
	}
}

/* A staged link shares the inode of the base snapshot's copy (or is a
 * refresh's copy): damage done to it since the stage was built shows here,
 * before it becomes part of the snapshot.  A copy that is not provably the
 * sealed content is made racy, which snap_recheck copies again from the
 * environment like any changed file.  The items are as the staged
 * manifest recorded them (snap_items_from_stage): no recheck yet. */
static ts_err_code snap_check_staged_run(void *arg, size_t run, ts_err *e)
{
	snap_run *r = arg;
	ts_beneath_cache bc = TS_BENEATH_CACHE_INIT;
	size_t end = (run + 1) * SNAP_STAGED_RUN < r->items.n ? (run + 1) * SNAP_STAGED_RUN : r->items.n;

	(void)e;
	for (size_t i = run * SNAP_STAGED_RUN; i < end; i++) {
		snap_item *it = &r->items.v[i];
		ts_manifest_entry rec, *pe = &rec;
		const char *leaf;
		struct stat st;
		int pfd;
		bool have;

		if (it->type != 'f' || !it->placed)
			continue;
		snap_item_recorded(it, pe);
		pfd = ts_beneath_cache_parent(&bc, r->tmp.treefd, it->rel, &leaf);
		have = pfd >= 0 && fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (pe->pending) {
			/* A refresh's own copy, never sealed: one that no
			 * longer matches its record (a file still being
			 * written when the refresh copied it) is copied again,
			 * as any changed file; it is no damage to report. */
			char what[TS_SHARE_WHAT_MAX];
			if (have && ts_share_check(pe, &st, &r->links, r->root, pfd, leaf, what)) {
				it->store_ino = st.st_ino;
				it->store_ctime = st.st_ctim;
			} else {
				it->racy = true;
			}
			continue;
		}
		if (have && snap_stored_ok(r, pe, &st, pfd, leaf)) {
			it->store_ino = st.st_ino;   /* the identity as placed */
			it->store_ctime = st.st_ctim;
			continue;
		}
		if (pfd >= 0 && !have && errno == ENOENT)
			(void)snap_stored_ok(r, pe, NULL, pfd, leaf);   /* says it is missing */
		it->racy = true;
		it->shared = false;
	}
	ts_beneath_cache_drop(&bc);
	return TS_OK;
}

ts_err_code snap_check_staged(snap_run *r, ts_err *e)
{
	return ts_pool_run((r->items.n + SNAP_STAGED_RUN - 1) / SNAP_STAGED_RUN,
	                   SNAP_POOL_MIN / SNAP_STAGED_RUN, 0, snap_check_staged_run, r, e);
}

/* Bring the tree to the environment's state from stat alone where stat
 * tells (snap_recheck): under Trac's lock; before it, to catch up with what
 * changed during a long pre-copy; and as the whole pre-copy of a staged
 * tree, whose items are the previous snapshot's.  Every known entry is
 * stat'ed (on every core); a file or symlink whose stat changed, or that was
 * racy, is copied again; a directory is listed again only if its own stat
 * changed since the pass that listed it, or changed so shortly before that
 * pass that a later change could carry the same timestamp (adding, removing
 * or renaming an entry always updates its directory's mtime and ctime).
 * Entries found in such a directory that were not known are walked and put.
 * A full walk under the lock held Trac's writers 10-12 ms for the 831
 * entries of a 2 GB environment, this 6-8 ms; for 100,000 files ~0.41 s,
 * this ~0.35 s (the stat of every file remains).  From a stage, the walk of
 * 416 directories before the lock goes too. */
enum { SNAP_CHECK_SAME, SNAP_CHECK_GONE, SNAP_CHECK_CHANGED, SNAP_CHECK_RELIST };

/* Items are stat'ed in runs of this many, one run per pool job, each by
 * name from its parent directory, reached beneath the environment through
 * the run's cache of the directories on the way (beneath.h): no symlink on
 * the way is followed.  That costs one openat and close per directory more
 * than a stat by the whole path did (doc/performance.md, 2026-12-05). */
#define SNAP_RECHECK_RUN 32

static ts_err_code snap_recheck_item(snap_run *r, snap_item *it, ts_beneath_cache *c, ts_err *e)
{
	struct stat st;
	const char *leaf;
	int pfd = strcmp(it->rel, ".") ? ts_beneath_cache_parent(c, r->envfd, it->rel, &leaf)
	                               : (leaf = ".", r->envfd);

	if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ELOOP || errno == ENOTDIR) {
			/* A link or a file where a directory on its way was: that
			 * directory changed type since its own stat.  What is below
			 * it goes; the next pass lists it again (snap_recheck). */
			__atomic_store_n(&r->retyped, true, __ATOMIC_RELAXED);
		} else if (errno != ENOENT) {
			return ts_err_sys(e, errno, "%s/%s: cannot stat", r->env->root, it->rel);
		}
		it->check = SNAP_CHECK_GONE;   /* what the freeze sees */
		return TS_OK;
	}
	char type = ts_manifest_type_of(st.st_mode);
	if (!type) {
		it->check = SNAP_CHECK_GONE;   /* now a special file: never copied */
	} else if (type != it->type) {
		it->check = SNAP_CHECK_CHANGED;
		snap_item_retype(it, type);
	} else if (type == 'd') {
		/* Not ts_copy_same_stat: whether its entries may have changed,
		 * which its inode and times tell (its size is the filesystem's).
		 * The watcher's word (relist) counts too. */
		bool same = st.st_ino == it->st.st_ino && snap_same_time(&st.st_mtim, &it->st.st_mtim) &&
		            snap_same_time(&st.st_ctim, &it->st.st_ctim);
		bool racy = snap_ns(&it->st.st_ctim) >= r->listed_ns - snap_racy_ns(&it->st.st_ctim);
		it->check = same && !racy && !r->relist_all && !(r->subset && it->relist)
		            ? SNAP_CHECK_SAME : SNAP_CHECK_RELIST;
	} else {
		struct stat was;
		snap_item_stat_get(it, &was);
		it->check = it->racy || !ts_copy_same_stat(&was, &st) ? SNAP_CHECK_CHANGED : SNAP_CHECK_SAME;
	}
	snap_item_stat_set(it, &st);   /* directories: their metadata as of now */
	return TS_OK;
}

static ts_err_code snap_recheck_run(void *arg, size_t run, ts_err *e)
{
	snap_run *r = arg;
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT;
	size_t n = r->subset ? r->nlook : r->items.n;
	size_t end = (run + 1) * SNAP_RECHECK_RUN < n ? (run + 1) * SNAP_RECHECK_RUN : n;
	ts_err_code rc = TS_OK;

	for (size_t i = run * SNAP_RECHECK_RUN; rc == TS_OK && i < end; i++)
		rc = snap_recheck_item(r, &r->items.v[r->subset ? r->look_idx[i] : i], &c, e);
	ts_beneath_cache_drop(&c);
	return rc;
}

static int snap_idx_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* The items a subset recheck stats (snap_changes.c flagged them), and the
 * racy ones, which are copied again whatever their stat says, in path
 * order; the others are as the last full pass found them (their verdict:
 * SAME, as every item's is between passes).  From the candidates recorded
 * where the flags were set, or, failing those, by a pass over all. */
static ts_err_code snap_recheck_select(snap_run *r, ts_err *e)
{
	free(r->look_idx);
	r->nlook = 0;
	r->look_idx = malloc(((r->cand_ok ? r->ncand : r->items.n) + 1) * sizeof *r->look_idx);
	if (!r->look_idx)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (r->cand_ok) {
		qsort(r->cand, r->ncand, sizeof *r->cand, snap_idx_cmp);
		for (size_t k = 0; k < r->ncand && r->cand[k] < r->items.n; k++)
			if (!r->nlook || r->look_idx[r->nlook - 1] != r->cand[k])
				r->look_idx[r->nlook++] = r->cand[k];
	} else {
		for (size_t i = 0; i < r->items.n; i++) {
			const snap_item *it = &r->items.v[i];
			if (it->look || it->racy || it->relist)
				r->look_idx[r->nlook++] = i;
		}
	}
	r->ncand = 0;
	r->cand_ok = false;   /* used: the next subset records its own */
	return TS_OK;
}

/* Is an ancestor of rel among gone, the sorted names of the items that went
 * or changed type?  What was below them went with them: a stat that still
 * found it there went through a directory that has since changed. */
static int snap_prefix_cmp(const void *key, const void *elt)
{
	const char *k = key, *g = *(const char *const *)elt;
	size_t kn = strcspn(k, "\x01");   /* key: "prefix\x01" (see snap_under_gone) */
	int c = strncmp(k, g, kn);
	return c ? c : g[kn] ? -1 : 0;
}

static bool snap_under_gone(const char *rel, const char **gone, size_t n)
{
	char key[PATH_MAX + 1];

	for (const char *p = strchr(rel, '/'); p; p = strchr(p + 1, '/')) {
		size_t len = (size_t)(p - rel);
		memcpy(key, rel, len);
		key[len] = '\x01';
		key[len + 1] = '\0';
		if (bsearch(key, gone, n, sizeof *gone, snap_prefix_cmp))
			return true;
	}
	return false;
}

/* ts_walk callback for a new directory's subtree: its entries, named from
 * the environment's root. */
typedef struct snap_sub_ctx {
	snap_walk_ctx *w;
	const char *prefix;
} snap_sub_ctx;

static ts_err_code snap_sub_add(void *arg, const char *rel, const struct stat *st, ts_err *e)
{
	snap_sub_ctx *c = arg;
	char full[PATH_MAX];
	if ((size_t)snprintf(full, sizeof full, "%s/%s", c->prefix, rel) >= sizeof full)
		return ts_err_set(e, TS_ERR_IO, "%s/%s/%s: path too long", c->w->r->env->root, c->prefix, rel);
	return snap_walk_add(c->w, full, st, e);
}

/* Everything below name, a directory of dirfd that the listing found new
 * (rel from the environment's root, st its stat, its item just made from
 * it), into w's list.  The directory is opened after that stat: if it has
 * since changed into a symlink or a file, gone, or been replaced by another
 * directory, its item says nothing of what is there now, and sealing it
 * as made would leave an empty directory in the snapshot where the
 * environment never had one (the hostile-tree test once found exactly
 * that).  The next pass then looks at everything again (snap_recheck),
 * which finds the entry as it is by then. */
static ts_err_code snap_relist_new_dir(snap_run *r, snap_walk_ctx *w, int dirfd, const char *name,
                                       const char *rel, const struct stat *st, const char *msg,
                                       ts_err *e)
{
	snap_sub_ctx c = { .w = w, .prefix = rel };
	int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat now;
	ts_err_code rc;

	if (sub < 0) {
		if (errno != ELOOP && errno != ENOTDIR && errno != ENOENT)
			return ts_err_sys(e, errno, "%s/%s: cannot list", r->env->root, rel);
		r->retyped = true;
		return TS_OK;
	}
	if (fstat(sub, &now) < 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev) {
		close(sub);
		r->retyped = true;
		return TS_OK;
	}
	rc = ts_walk(sub, r->env->root, snap_sub_add, &c, r->o->cancel, msg, &r->retyped, e);
	close(sub);
	return rc;
}

/* Entries of directory dir (known, listed again) that items lacks, with
 * everything below those that are directories, into w's list. */
static ts_err_code snap_relist(snap_run *r, snap_walk_ctx *w, const char *dir, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct dirent *de;
	char rel[PATH_MAX], msg[TS_ERR_MSG_MAX];
	int fd = ts_beneath_open(r->envfd, dir, O_RDONLY | O_DIRECTORY, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		/* Gone since its stat: the freeze is what it was.  Replaced by a
		 * link or a file, or an ancestor so replaced: never followed,
		 * listed again by the next pass (snap_recheck). */
		if (errno == ELOOP || errno == ENOTDIR) {
			r->retyped = true;
			return TS_OK;
		}
		return errno == ENOENT ? TS_OK : ts_err_sys(e, errno, "%s/%s: cannot list", r->env->root, dir);
	}
	snprintf(msg, sizeof msg, "snapshot %s: cancelled (tracsnap is stopping)", r->o->name);
	while (rc == TS_OK && (de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((size_t)snprintf(rel, sizeof rel, "%s%s%s", strcmp(dir, ".") ? dir : "",
		                     strcmp(dir, ".") ? "/" : "", de->d_name) >= sizeof rel) {
			rc = ts_err_set(e, TS_ERR_IO, "%s/%s/%s: path too long", r->env->root, dir, de->d_name);
			break;
		}
		if (snap_known(&r->items, rel) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		size_t before = w->l->n;
		rc = snap_walk_add(w, rel, &st, e);
		if (rc == TS_ERR_NOTFOUND) {
			rc = TS_OK;   /* left out, like the walk leaves it out */
			continue;
		}
		if (rc == TS_OK && w->l->n > before && S_ISDIR(st.st_mode))
			rc = snap_relist_new_dir(r, w, dirfd(d), de->d_name, rel, &st, msg, e);
	}
	closedir(d);
	return rc;
}

/* Merge sorted add into sorted items (both owned by the caller until
 * then), dropping entries that went (type 0).  In items' own array, grown
 * by add's count, from the ends: an item is always moved before its slot
 * is written.  A second array as large beside it was 34 MB more at the
 * peak of a take over 200,000 items; under Trac's lock, rebuilding them
 * one push at a time cost tens of milliseconds. */
static ts_err_code snap_merge(snap_list *items, snap_list *add, ts_err *e)
{
	size_t i, j, w;
	ts_err_code rc = TS_OK;

	if (add->n && !snap_list_reserve(items, items->n + add->n)) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		for (j = 0; j < add->n; j++)
			snap_item_free_rel(&add->v[j]);
		goto out;
	}
	for (i = items->n, j = add->n, w = items->n + add->n; j > 0;) {
		if (i > 0 && strcmp(items->v[i - 1].rel, add->v[j - 1].rel) > 0)
			items->v[--w] = items->v[--i];
		else
			items->v[--w] = add->v[--j];
	}
	items->n += add->n;
	snap_list_compact(items);   /* the items that went */
out:
	free(add->v);
	memset(add, 0, sizeof *add);
	return rc;
}

/* The items not placed yet (changed or new), put: directories first, in
 * path order (parents first), then the rest on the pool's threads.  Items
 * that vanished meanwhile go.  Only among the n at among (in path order)
 * when among is not NULL: every other item is known to be placed. */
static ts_err_code snap_put_unplaced(snap_run *r, bool locked, const size_t *among, size_t n_among,
                                     ts_err *e)
{
	ts_err_code rc = TS_OK;
	snap_precopy_ctx c = { .r = r, .caller = pthread_self() };
	size_t *idx = NULL;
	size_t n_all = among ? n_among : r->items.n;
#define SNAP_AMONG(k) (among ? among[k] : (k))

	for (size_t k = 0; rc == TS_OK && k < n_all; k++) {
		snap_item *it = &r->items.v[SNAP_AMONG(k)];
		if (it->placed || !it->type)
			continue;
		if (it->type == 'd') {
			rc = snap_put(r, it, e);
			it->placed = rc == TS_OK;
		} else {
			c.done.files_total++;
			c.done.bytes_total += (uint64_t)it->st.st_size;
		}
	}
	/* The pool's jobs are those files only, not every item. */
	if (rc == TS_OK && c.done.files_total && !(idx = malloc(c.done.files_total * sizeof *idx)))
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (rc == TS_OK && c.done.files_total) {
		size_t n = 0;
		for (size_t k = 0; k < n_all; k++) {
			const snap_item *it = &r->items.v[SNAP_AMONG(k)];
			if (!it->placed && it->type && it->type != 'd')
				idx[n++] = SNAP_AMONG(k);
		}
#undef SNAP_AMONG
		c.idx = idx;
		rc = ts_pool_run(n, SNAP_POOL_MIN, locked ? 0 : TS_POOL_IDLE_IO, snap_precopy_one, &c, e);
	}
	free(idx);
	snap_list_compact(&r->items);
	return rc;
}

static ts_err_code snap_recheck_pass(snap_run *r, bool locked, ts_err *e)
{
	ts_err_code rc;
	snap_list add = { 0 };
	snap_walk_ctx w = { .r = r, .l = &add, .place = false };
	struct timespec now;
	const char **gone = NULL;
	size_t ngone = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	rc = r->subset ? snap_recheck_select(r, e) : TS_OK;
	if (rc == TS_OK)
		rc = ts_pool_run(((r->subset ? r->nlook : r->items.n) + SNAP_RECHECK_RUN - 1) / SNAP_RECHECK_RUN,
		                 SNAP_POOL_MIN / SNAP_RECHECK_RUN, 0, snap_recheck_run, r, e);
	if (r->stats)
		r->stats->rechecked += r->subset ? r->nlook : r->items.n;
	/* Only the looked-at items can have a verdict other than SAME: the
	 * loops below visit just those (in path order, as idx is). */
	const size_t *idx = r->subset ? r->look_idx : NULL;
	size_t n = r->subset ? r->nlook : r->items.n;
#define SNAP_AT(k) (&r->items.v[idx ? idx[k] : (k)])
	r->subset = false;   /* one pass: a further one (retyped) looks at everything */
	r->listed_ns = snap_ns(&now);   /* what is listed below is as of now, or later */
	r->relist_all = false;
	/* What lies below an entry that went or changed type goes with it,
	 * whatever its own stat said (snap_under_gone). */
	for (size_t k = 0; rc == TS_OK && k < n; k++) {
		const snap_item *it = SNAP_AT(k);
		if (it->check != SNAP_CHECK_GONE && it->check != SNAP_CHECK_CHANGED)
			continue;
		if (!gone && !(gone = malloc(r->items.n * sizeof *gone)))
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		else
			gone[ngone++] = it->rel;
	}
	for (size_t i = 0; rc == TS_OK && ngone && i < r->items.n; i++) {
		snap_item *it = &r->items.v[i];
		if (it->check != SNAP_CHECK_GONE && snap_under_gone(it->rel, gone, ngone))
			it->check = SNAP_CHECK_GONE;
	}
	free(gone);
	if (ngone)
		idx = NULL, n = r->items.n;   /* what went with them was not looked at */
	/* In path order: a directory replaced by a file is removed before
	 * anything below it is looked at. */
	for (size_t k = 0; rc == TS_OK && k < n; k++) {
		snap_item *it = SNAP_AT(k);
		if (it->check == SNAP_CHECK_GONE || it->check == SNAP_CHECK_CHANGED)
			rc = snap_remove(r, it->rel, e);
		if (it->check == SNAP_CHECK_GONE)
			snap_list_drop(&r->items, it);
		it->placed = it->check != SNAP_CHECK_CHANGED;
		if (it->check == SNAP_CHECK_CHANGED) {
			it->racy = false;
			it->shared = false;
		}
	}
	/* Directories whose entries may have changed, and files become
	 * directories (all they hold is new). */
	pthread_mutex_init(&w.mu, NULL);
	for (size_t k = 0; rc == TS_OK && k < n; k++) {
		const snap_item *it = SNAP_AT(k);
		if (it->type == 'd' && (it->check == SNAP_CHECK_RELIST || it->check == SNAP_CHECK_CHANGED))
			rc = snap_relist(r, &w, it->rel, e);
	}
	pthread_mutex_destroy(&w.mu);
	/* Between passes every verdict is SAME (snap_recheck_select). */
	for (size_t k = 0; k < n; k++)
		SNAP_AT(k)->check = SNAP_CHECK_SAME;
#undef SNAP_AT
	if (rc == TS_OK && !add.n && idx) {
		/* Nothing new, and what changed is among the looked-at: under
		 * the lock, no pass over every item. */
		free(add.v);
		return snap_put_unplaced(r, locked, idx, n, e);
	}
	for (size_t i = 0; i < add.n; i++)
		r->dirs_added += add.v[i].type == 'd';
	if (add.n > 1)
		qsort(add.v, add.n, sizeof *add.v, snap_item_cmp);
	ts_err_code mrc = snap_merge(&r->items, &add, e);   /* sorted again; gone entries dropped */
	if (rc == TS_OK)
		rc = mrc;
	return rc == TS_OK ? snap_put_unplaced(r, locked, NULL, 0, e) : rc;
}

/* A pass that met a directory changed into a link or a file on some path
 * (r->retyped: ELOOP/ENOTDIR from beneath.h, in a stat, a listing, a walk
 * or a copy), or a directory changed between its stat and its listing
 * (walk.h, snap_relist_new_dir), left out what it could not reach; the next
 * pass lists every directory again, which finds it where it now is.  An
 * environment whose directories keep changing type is refused. */
#define SNAP_RECHECK_PASSES 3

ts_err_code snap_recheck(snap_run *r, bool locked, ts_err *e)
{
	for (int pass = 0; pass < SNAP_RECHECK_PASSES; pass++) {
		if (r->retyped) {
			/* What the last pass could not reach lies below a
			 * directory that may have no event of its own (a
			 * directory above it was swapped out and back): a pass
			 * narrowed to the watcher's report would never list it
			 * (snap_changes.c), so this one looks at everything. */
			if (r->subset && locked)
				ts_log(LOG_INFO, "snapshot %s: every entry checked again under Trac's lock "
				       "(a directory was met as a symlink or a file)", r->o->name);
			if (r->subset && locked && r->stats)
				r->stats->watched = false;
			r->subset = false;
			r->relist_all = true;
			r->retyped = false;
		}
		ts_err_code rc = snap_recheck_pass(r, locked, e);
		if (rc != TS_OK || !r->retyped)
			return rc;
	}
	return ts_err_set(e, TS_ERR_IO, "%s: directories keep changing into symlinks or files while "
	                  "the snapshot reads them; snapshot %s refused", r->env->root, r->o->name);
}
