/* seal_share.c - at seal time, share with the previous snapshot what was
 * copied but did not change (seal_share.h). */
#include "store/seal_share.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "base/pool.h"
#include "store/linklog.h"
#include "store/manifest_stat.h"
#include "store/seal_dedupe.h"

void ts_seal_share_init(ts_seal_share *sh)
{
	memset(sh, 0, sizeof *sh);
	sh->prevfd = -1;
	sh->lock.dirfd = sh->lock.lockfd = -1;
}

static bool sh_same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Same content and the same metadata a hard link would show. */
static bool sh_same(const ts_manifest_entry *me, const ts_manifest_entry *pe)
{
	return !pe->pending && pe->store_ino && me->size == pe->size &&
	       !memcmp(me->sha256, pe->sha256, sizeof me->sha256) && me->mode == pe->mode &&
	       me->uid == pe->uid && me->gid == pe->gid && sh_same_time(&me->mtime, &pe->mtime);
}

/* The newest sealed snapshot before name, as the store lists them. */
static char *sh_prev_name(ts_store *s, const char *name)
{
	ts_store_snap *v = NULL;
	size_t n = 0, at;
	char *prev = NULL;

	if (ts_store_list(s, &v, &n, NULL) != TS_OK)
		return NULL;
	for (at = 0; at < n && strcmp(v[at].name, name); at++)
		;
	while (at < n && at-- > 0)
		if (v[at].sealed) {
			prev = strdup(v[at].name);
			break;
		}
	ts_store_list_free(v, n);
	return prev;
}

void ts_seal_share_begin(ts_seal_share *sh, ts_store *s, const char *name)
{
	const char *off = getenv(SEAL_SHARE_OFF_ENV);
	ts_manifest head;
	char path[PATH_MAX];

	if ((off && !strcmp(off, "1")) || !(sh->prev_name = sh_prev_name(s, name)))
		return;
	snprintf(path, sizeof path, "%s/tree", sh->prev_name);
	sh->prevfd = ts_beneath_open(s->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
	if (sh->prevfd < 0)
		return;
	snprintf(path, sizeof path, "%s/manifest", sh->prev_name);
	if (ts_manifest_cursor_open_at(s->dirfd, path, &head, &sh->pc, NULL) != TS_OK ||
	    ts_manifest_cursor_next(sh->pc, &sh->pe, NULL) != TS_OK)
		sh->pfailed = true;
	ts_manifest_free(&head);
}

static void sh_cand_free(ts_seal_share *sh)
{
	for (size_t k = 0; k < sh->n; k++)
		free(sh->v[k].cur.path);
	free(sh->v);
	sh->v = NULL;
	sh->n = sh->cap = 0;
}

void ts_seal_share_consider(ts_seal_share *sh, const ts_manifest_entry *me)
{
	const ts_manifest_entry *pe;
	int d = 1;
	bool same;

	if (!sh->pc || sh->pfailed || me->type != 'f')
		return;
	/* Both in path order: the previous one's entries before me's path go. */
	while (sh->pe && (d = strcmp(sh->pe->path, me->path)) < 0)
		if (ts_manifest_cursor_next(sh->pc, &sh->pe, NULL) != TS_OK) {
			sh->pfailed = true;
			return;
		}
	pe = sh->pe;
	/* (A copy shared from the previous snapshot while that one was not
	 * sealed yet is pending too: it is that copy already.) */
	if (!pe || d != 0 || pe->type != 'f' || (me->store_ino && me->store_ino == pe->store_ino))
		return;
	same = sh_same(me, pe);
	if (!same && (me->size < SEAL_SHARE_BLOCKS_MIN || pe->size < SEAL_SHARE_BLOCKS_MIN))
		return;
	/* Only what is kept of the previous manifest: the candidates,
	 * usually a handful, not its every entry. */
	if (sh->n == sh->cap) {
		size_t cap = sh->cap ? sh->cap * 2 : 8;
		ts_seal_share_cand *nv = realloc(sh->v, cap * sizeof *nv);
		if (!nv)
			return;   /* only a saving lost */
		sh->v = nv;
		sh->cap = cap;
	}
	ts_seal_share_cand *cd = &sh->v[sh->n];
	*cd = (ts_seal_share_cand){ .cur = *me, .prev = *pe, .same = same };
	cd->prev.path = NULL;
	if ((cd->cur.path = strdup(me->path)) != NULL)
		sh->n++;
}

void ts_seal_share_found(ts_seal_share *sh)
{
	/* The rest of it, checked as a whole read checks it. */
	while (sh->pc && !sh->pfailed && sh->pe)
		if (ts_manifest_cursor_next(sh->pc, &sh->pe, NULL) != TS_OK)
			sh->pfailed = true;
	ts_manifest_cursor_close(sh->pc);
	sh->pc = NULL;
	sh->pe = NULL;
	if (sh->pfailed)
		sh_cand_free(sh);
}

/* Blocks, one candidate on one of the pool's threads. */
typedef struct sh_blocks_ctx {
	ts_seal_share *sh;
	int treefd;
	bool same;
	volatile sig_atomic_t *cancel;
} sh_blocks_ctx;

static ts_err_code sh_blocks_one(void *arg, size_t k, ts_err *e)
{
	sh_blocks_ctx *c = arg;
	const ts_seal_share_cand *cd = &c->sh->v[k];
	const char *path = cd->cur.path;
	int oldfd = -1, newfd = -1;

	(void)e;
	if (cd->same != c->same || cd->done || (c->cancel && *c->cancel))
		return TS_OK;
	/* Both beneath their trees, never through a link (beneath.h). */
	oldfd = ts_beneath_open(c->sh->prevfd, path, O_RDONLY | O_NONBLOCK, 0);
	newfd = ts_beneath_open(c->treefd, path, O_RDONLY | O_NONBLOCK, 0);
	if (oldfd >= 0 && newfd >= 0)
		__atomic_fetch_add(&c->sh->bytes_blocks, ts_dedupe_blocks(oldfd, newfd, &c->sh->dedupe),
		                   __ATOMIC_RELAXED);
	if (oldfd >= 0)
		close(oldfd);
	if (newfd >= 0)
		close(newfd);
	return TS_OK;
}

void ts_seal_share_blocks(ts_seal_share *sh, int treefd, bool same, volatile sig_atomic_t *cancel)
{
	sh_blocks_ctx c = { .sh = sh, .treefd = treefd, .same = same, .cancel = cancel };
	size_t want = 0;

	for (size_t k = 0; k < sh->n; k++)
		want += sh->v[k].same == same && !sh->v[k].done;
	if (want == 0 || sh->dedupe == TS_DEDUPE_NO)
		return;
	(void)ts_pool_run(sh->n, 1, TS_POOL_IDLE_IO | TS_POOL_IDLE_CPU, sh_blocks_one, &c, NULL);
}

bool ts_seal_share_lock(ts_seal_share *sh, ts_store *s)
{
	bool want = false;

	for (size_t k = 0; k < sh->n && !want; k++)
		want = sh->v[k].proven;
	if (!want)
		return false;
	/* Its own descriptor on STORE/.lock: flock(2) excludes by open file
	 * description, and the daemon's writers hold theirs on s's. */
	sh->lock.root = strdup(s->root);
	sh->lock.dirfd = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0);
	if (!sh->lock.root || sh->lock.dirfd < 0)
		return false;
	sh->locked = ts_store_lock(&sh->lock, SEAL_SHARE_LOCK_WAIT_S, NULL) == TS_OK;
	return sh->locked;
}

/* Is the previous snapshot's copy, whose lstat is st, still the inode its
 * manifest entry pe recorded, with the recorded size, mtime, mode and (as
 * root) owner? */
static bool sh_prev_matches(const ts_manifest_entry *pe, const struct stat *st)
{
	return S_ISREG(st->st_mode) && (uint64_t)st->st_ino == pe->store_ino &&
	       ts_manifest_copy_matches(pe, st, geteuid() == 0);
}

/* Prove one candidate's previous copy, on one of the pool's threads (see
 * ts_seal_share_prove). */
typedef struct sh_prove_ctx {
	ts_seal_share *sh;
	volatile sig_atomic_t *cancel;
} sh_prove_ctx;

static ts_err_code sh_prove_one(void *arg, size_t k, ts_err *e)
{
	sh_prove_ctx *c = arg;
	ts_seal_share_cand *cd = &c->sh->v[k];
	const char *path = cd->cur.path, *leaf;
	unsigned char sha[32];
	uint64_t size = 0;
	struct stat before, after;
	int pfd;

	(void)e;
	if (!cd->same || (c->cancel && *c->cancel))
		return TS_OK;
	pfd = ts_beneath_parent(c->sh->prevfd, path, &leaf);
	if (pfd < 0)
		return TS_OK;
	if (fstatat(pfd, leaf, &before, AT_SYMLINK_NOFOLLOW) < 0 || !sh_prev_matches(&cd->prev, &before))
		goto out;
	if (sh_same_time(&before.st_ctim, &cd->prev.store_ctime)) {
		cd->proven = true;
		cd->proof_ctime = before.st_ctim;
		goto out;
	}
	/* Changed since it was placed, by the engine's links or by someone
	 * else: only its content can tell (as share_check.h's last resort).
	 * A change while it is read moves the ctime. */
	if (ts_copy_hash_file(pfd, leaf, false, sha, &size, NULL) == TS_OK &&
	    fstatat(pfd, leaf, &after, AT_SYMLINK_NOFOLLOW) == 0 && after.st_ino == before.st_ino &&
	    sh_same_time(&after.st_ctim, &before.st_ctim) && size == cd->prev.size &&
	    !memcmp(sha, cd->prev.sha256, sizeof sha)) {
		cd->proven = true;
		cd->proof_ctime = before.st_ctim;
	}
out:
	ts_beneath_parent_close(c->sh->prevfd, pfd);
	return TS_OK;
}

void ts_seal_share_prove(ts_seal_share *sh, volatile sig_atomic_t *cancel)
{
	sh_prove_ctx c = { .sh = sh, .cancel = cancel };
	size_t want = 0;

	for (size_t k = 0; k < sh->n; k++)
		want += sh->v[k].same;
	if (want)
		(void)ts_pool_run(sh->n, 1, TS_POOL_IDLE_IO | TS_POOL_IDLE_CPU, sh_prove_one, &c, NULL);
}

/* Do the two open files have the same extended attributes (POSIX ACLs
 * included)?  A hard link would show the old one's. */
static bool sh_same_xattrs(int a, int b)
{
	char *na = NULL, *nb = NULL, *va = NULL, *vb = NULL;
	ssize_t la = flistxattr(a, NULL, 0), lb = flistxattr(b, NULL, 0);
	bool same = false;

	if (la < 0 || lb < 0 || la != lb)
		goto out;
	if (la == 0)
		return true;
	na = malloc((size_t)la);
	nb = malloc((size_t)lb);
	if (!na || !nb || flistxattr(a, na, (size_t)la) != la || flistxattr(b, nb, (size_t)lb) != lb)
		goto out;
	/* Names are unique and both lists are as long: b has every name of a
	 * with the same value, or they differ. */
	for (ssize_t off = 0; off < la; off += (ssize_t)strlen(na + off) + 1) {
		ssize_t sa = fgetxattr(a, na + off, NULL, 0), sb = fgetxattr(b, na + off, NULL, 0);
		if (sa < 0 || sa != sb)
			goto out;
		free(va);
		free(vb);
		va = malloc((size_t)sa + 1);
		vb = malloc((size_t)sb + 1);
		if (!va || !vb || fgetxattr(a, na + off, va, (size_t)sa) != sa ||
		    fgetxattr(b, na + off, vb, (size_t)sb) != sb || memcmp(va, vb, (size_t)sa))
			goto out;
	}
	same = true;
out:
	free(na);
	free(nb);
	free(va);
	free(vb);
	return same;
}

static bool sh_same_xattrs_at(int pfd, const char *pleaf, int tfd, const char *tleaf)
{
	int a = openat(pfd, pleaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int b = openat(tfd, tleaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	bool same = a >= 0 && b >= 0 && sh_same_xattrs(a, b);

	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return same;
}

/* What the linking pass needs. */
typedef struct sh_link_ctx {
	ts_seal_share *sh;
	int dirfd, treefd;
	ts_beneath_cache pc, tc;
	struct timespec start;
	ts_linklog_inos inos;
	char tmp[64];
} sh_link_ctx;

/* Replace the copy of candidate cd by a hard link to the previous copy.
 * False: left as it is. */
static bool sh_link_one(sh_link_ctx *c, ts_seal_share_cand *cd)
{
	ts_manifest_entry *me = &cd->cur;
	const char *pleaf, *tleaf;
	struct stat ps, ts, ds, ls;
	int pfd, tfd, dfd;
	bool done = false;

	/* The previous copy as it was proven (ts_seal_share_prove): any change
	 * since moves its ctime. */
	pfd = ts_beneath_cache_parent(&c->pc, c->sh->prevfd, me->path, &pleaf);
	if (pfd < 0 || fstatat(pfd, pleaf, &ps, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !sh_prev_matches(&cd->prev, &ps) || !sh_same_time(&ps.st_ctim, &cd->proof_ctime))
		return false;
	/* The copy is still the one hashed (nothing but the engine writes a
	 * snapshot's tree), and another inode than the previous one. */
	tfd = ts_beneath_cache_parent(&c->tc, c->treefd, me->path, &tleaf);
	if (tfd < 0 || fstatat(tfd, tleaf, &ts, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(ts.st_mode) ||
	    (me->store_ino && (uint64_t)ts.st_ino != me->store_ino) ||
	    !ts_manifest_copy_matches(me, &ts, geteuid() == 0) ||
	    (ts.st_dev == ps.st_dev && ts.st_ino == ps.st_ino) ||
	    !sh_same_xattrs_at(pfd, pleaf, tfd, tleaf))
		return false;
	/* The directory's times, put back after the rename moves them (they
	 * are the snapshot's, and verify compares them). */
	dfd = openat(tfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &ds) < 0)
		goto out;
	ts_linklog_note(&c->inos, (uint64_t)ps.st_ino);
	ts_linklog_note(&c->inos, (uint64_t)ts.st_ino);   /* other names of it: a take's */
	if (linkat(pfd, pleaf, c->dirfd, c->tmp, 0) < 0)
		goto out;
	if (renameat(c->dirfd, c->tmp, tfd, tleaf) < 0) {
		(void)unlinkat(c->dirfd, c->tmp, 0);
		goto out;
	}
	struct timespec times[2] = { ds.st_atim, ds.st_mtim };
	(void)futimens(dfd, times);
	/* The identity as placed (manifest.h), for the next share's check. */
	if (fstatat(tfd, tleaf, &ls, AT_SYMLINK_NOFOLLOW) == 0) {
		ts_manifest_entry_set_store(me, &ls);
		done = ls.st_ino == ps.st_ino;
	}
out:
	if (dfd >= 0)
		close(dfd);
	return done;
}

void ts_seal_share_files(ts_seal_share *sh, ts_store *s, const char *name, int dirfd, int treefd)
{
	sh_link_ctx c = { .sh = sh, .dirfd = dirfd, .treefd = treefd,
	                  .pc = TS_BENEATH_CACHE_INIT, .tc = TS_BENEATH_CACHE_INIT };
	struct stat held, now;

	if (!sh->locked)
		return;
	/* Still this snapshot, still not sealed (a writer may have deleted or
	 * renamed it while this one waited for the lock). */
	if (fstat(dirfd, &held) < 0 || fstatat(s->dirfd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 ||
	    held.st_dev != now.st_dev || held.st_ino != now.st_ino ||
	    faccessat(dirfd, TS_STORE_UNSEALED, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	snprintf(c.tmp, sizeof c.tmp, SEAL_SHARE_TMP_PREFIX "%ld-%ld", (long)getpid(),
	         (long)syscall(SYS_gettid));
	ts_linklog_begin(&c.start);
	for (size_t k = 0; k < sh->n; k++) {
		ts_seal_share_cand *cd = &sh->v[k];
		if (!cd->proven || !sh_link_one(&c, cd))
			continue;
		cd->done = true;
		sh->files_linked++;
		sh->bytes_linked += cd->cur.size;
	}
	/* Done with links before anyone can read this manifest (linklog.h). */
	ts_linklog_end_inos(s->dirfd, &c.start, &c.inos);
	ts_beneath_cache_drop(&c.pc);
	ts_beneath_cache_drop(&c.tc);
	if (sh->files_linked)
		(void)syncfs(dirfd);
}

void ts_seal_share_unlock(ts_seal_share *sh)
{
	ts_store_unlock(&sh->lock);
	sh->locked = false;
}

void ts_seal_share_end(ts_seal_share *sh)
{
	ts_store_close(&sh->lock);   /* unlocks */
	if (sh->prevfd >= 0)
		close(sh->prevfd);
	free(sh->prev_name);
	ts_manifest_cursor_close(sh->pc);
	sh_cand_free(sh);
	ts_seal_share_init(sh);
}
