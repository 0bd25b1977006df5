/* seal.c - hash what is pending and make a snapshot durable (see seal.h). */
#include "store/seal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/progress.h"
#include "store/manifest.h"
#include "store/seal_share.h"

static double seal_ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A fault of the manifest's own ("manifest:LINE: ..."), named by its
 * snapshot: the daemon's log line says only that sealing failed. */
static ts_err_code seal_named(const char *name, ts_err_code rc, ts_err *e)
{
	if (rc != TS_OK && e && strncmp(e->msg, "snapshot ", 9)) {
		char msg[TS_ERR_MSG_MAX];
		snprintf(msg, sizeof msg, "%s", e->msg);
		int sys = e->sys_errno;
		ts_err_set(e, rc, "snapshot %s: %s", name, msg);
		e->sys_errno = sys;
	}
	return rc;
}

/* The seal goes through the snapshot's manifest one entry at a time
 * (manifest.h: ts_manifest_cursor) and writes the sealed one as it goes: the
 * whole manifest in memory, some 57 MB at 200,000 entries, made the
 * daemon's memory grow with the number of files.  The entries come in
 * chunks of SEAL_CHUNK, whose pending files are hashed on the pool's
 * threads (pool.h), each flushed to the disk as it goes: each thread keeps
 * two chunks of writeback in flight at most (copy.c), so that Trac's own
 * fsyncs never queue behind more than a few megabytes of ours. */
#define SEAL_CHUNK 1024

typedef struct seal_ctx {
	const char *name;
	int treefd;
	volatile sig_atomic_t *cancel;
	ts_manifest_cursor *c;
	ts_seal_share *sh;
	ts_manifest_entry chunk[SEAL_CHUNK];   /* paths owned */
	size_t n, at;
	uint64_t files, bytes;     /* atomic */
	ts_err_code rc;            /* the first failure, and why */
	ts_err err;
} seal_ctx;

static ts_err_code seal_one(void *arg, size_t i, ts_err *e)
{
	seal_ctx *c = arg;
	ts_manifest_entry *me = &c->chunk[i];
	uint64_t size = 0;
	ts_err_code rc;

	if (me->type != 'f' || !me->pending)
		return TS_OK;
	if (c->cancel && *c->cancel)
		return ts_err_set(e, TS_ERR_CANCELLED, "snapshot %s: sealing cancelled "
		                  "(tracsnap is stopping)", c->name);
	rc = ts_copy_hash_file(c->treefd, me->path, true, me->sha256, &size, e);
	if (rc == TS_ERR_NOTFOUND)
		return ts_err_set(e, TS_ERR_NOTFOUND, "%s", me->path);   /* ts_seal tells why */
	if (rc == TS_OK && size != me->size)
		return ts_err_set(e, TS_ERR_CORRUPT, "snapshot %s: %s: changed in the store before "
		                  "it was sealed (%llu bytes, %llu recorded)", c->name, me->path,
		                  (unsigned long long)size, (unsigned long long)me->size);
	if (rc == TS_OK) {
		__atomic_fetch_add(&c->files, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->bytes, size, __ATOMIC_RELAXED);
	}
	return rc;
}

static void seal_chunk_free(seal_ctx *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->chunk[i].path);
	c->n = c->at = 0;
}

/* The next chunk: read, its pending files hashed, then each of those
 * offered for sharing (seal_share.h), in path order. */
static ts_err_code seal_chunk(seal_ctx *c)
{
	const ts_manifest_entry *me;
	ts_err_code rc = TS_OK;
	bool pending = false;

	seal_chunk_free(c);
	while (c->n < SEAL_CHUNK && (rc = ts_manifest_cursor_next(c->c, &me, &c->err)) == TS_OK && me) {
		c->chunk[c->n] = *me;
		if (!(c->chunk[c->n].path = strdup(me->path)))
			return ts_err_set(&c->err, TS_ERR_NOMEM, "out of memory");
		pending |= me->type == 'f' && me->pending;
		c->n++;
	}
	if (rc == TS_OK && pending)
		rc = ts_pool_run(c->n, 1, TS_POOL_IDLE_IO | TS_POOL_IDLE_CPU, seal_one, c, &c->err);
	for (size_t i = 0; rc == TS_OK && i < c->n; i++) {
		ts_manifest_entry *e = &c->chunk[i];
		if (e->type == 'f' && e->pending) {
			e->pending = false;
			ts_seal_share_consider(c->sh, e);
		}
	}
	return rc;
}

/* ts_manifest_entry_fn of the sealed manifest's write. */
static const ts_manifest_entry *seal_next(void *arg, size_t k, ts_manifest_entry *scratch)
{
	seal_ctx *c = arg;

	(void)k;
	(void)scratch;
	if (c->at == c->n && (c->rc = seal_chunk(c)) == TS_OK && c->n == 0)
		c->rc = ts_err_set(&c->err, TS_ERR_CORRUPT, "snapshot %s: fewer entries in its manifest than "
		                   "it counted", c->name);
	return c->rc == TS_OK ? &c->chunk[c->at++] : NULL;
}

/* A sealer killed while it wrote its new manifest left "manifest.seal-PID-TID",
 * or between a link and its rename a SEAL_SHARE_TMP_PREFIX one
 * (seal_share.h): remove those of processes that are gone (a live one may
 * be sealing too). */
#define SEAL_TMP_PREFIX "manifest.seal-"

static bool seal_stale_name(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	long pid;

	if (strncmp(name, prefix, n))
		return false;
	pid = strtol(name + n, NULL, 10);
	return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static void seal_remove_stale(int dirfd)
{
	DIR *d = ts_beneath_list(dirfd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL)
		if (seal_stale_name(de->d_name, SEAL_TMP_PREFIX) ||
		    seal_stale_name(de->d_name, SEAL_SHARE_TMP_PREFIX))
			(void)unlinkat(dirfd, de->d_name, 0);
	closedir(d);
}

/* The sealed manifest's temporary name in the snapshot's directory. */
static void seal_tmp_name(char *buf, size_t len)
{
	snprintf(buf, len, SEAL_TMP_PREFIX "%ld-%ld", (long)getpid(), (long)syscall(SYS_gettid));
}

/* Write the sealed manifest (head's fields, no unsealed line: fsync'd) as
 * tmp, the entries from fn.  It has the snapshot instant as its mtime
 * before it takes the old one's place (store.h: that is what orders
 * snapshots). */
static ts_err_code seal_write(const char *name, int dirfd, const ts_manifest *head, size_t n,
                              ts_manifest_entry_fn fn, void *arg, const char *tmp, ts_err *e)
{
	struct timespec times[2] = { head->time, head->time };
	ts_err_code rc;

	seal_remove_stale(dirfd);
	rc = ts_manifest_write_each_at(head, n, fn, arg, dirfd, tmp, e);
	if (rc == TS_OK && utimensat(dirfd, tmp, times, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "snapshot %s: cannot set the manifest's time", name);
	if (rc != TS_OK)
		(void)unlinkat(dirfd, tmp, 0);
	return rc;
}

/* Put the sealed manifest written as tmp in the unsealed one's place. */
static ts_err_code seal_put_manifest(const char *name, int dirfd, const char *tmp, ts_err *e)
{
	ts_err_code rc = TS_OK;

	if (renameat(dirfd, tmp, dirfd, "manifest") < 0) {
		rc = ts_err_sys(e, errno, "snapshot %s: cannot replace the manifest", name);
		(void)unlinkat(dirfd, tmp, 0);
	}
	/* The whole list is in the manifest now: a base it had (manifest.h)
	 * is of no use. */
	if (rc == TS_OK && unlinkat(dirfd, TS_MANIFEST_BASE, 0) < 0 && errno != ENOENT)
		rc = ts_err_sys(e, errno, "snapshot %s: cannot remove %s", name, TS_MANIFEST_BASE);
	return rc;
}

/* ts_manifest_map_fn of the sealed manifest written again with the
 * identity of the copies the share linked (ts_seal_share_files): the
 * candidates are in the same (path) order. */
typedef struct seal_relink_ctx {
	const ts_seal_share *sh;
	size_t k;
} seal_relink_ctx;

static const ts_manifest_entry *seal_relink_map(void *arg, const ts_manifest_entry *me,
                                                ts_manifest_entry *scratch)
{
	seal_relink_ctx *r = arg;

	while (r->k < r->sh->n && strcmp(r->sh->v[r->k].cur.path, me->path) < 0)
		r->k++;
	if (r->k < r->sh->n && r->sh->v[r->k].done && !strcmp(r->sh->v[r->k].cur.path, me->path)) {
		*scratch = *me;
		scratch->store_ino = r->sh->v[r->k].cur.store_ino;
		scratch->store_ctime = r->sh->v[r->k].cur.store_ctime;
		return scratch;
	}
	return me;
}

static ts_err_code seal_relink(const char *name, int dirfd, const ts_manifest *head, size_t n,
                               const ts_seal_share *sh, ts_err *e)
{
	struct timespec times[2] = { head->time, head->time };
	seal_relink_ctx r = { .sh = sh };
	char tmp[64];
	ts_err_code rc;

	seal_tmp_name(tmp, sizeof tmp);
	seal_remove_stale(dirfd);
	rc = seal_named(name, ts_manifest_rewrite_at(dirfd, "manifest", head, n, seal_relink_map, &r, dirfd, tmp,
	                                             e), e);
	if (rc == TS_OK && utimensat(dirfd, tmp, times, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = ts_err_sys(e, errno, "snapshot %s: cannot set the manifest's time", name);
		(void)unlinkat(dirfd, tmp, 0);
	}
	return rc == TS_OK ? seal_put_manifest(name, dirfd, tmp, e) : rc;
}

/* Drop the marker: the snapshot is sealed.  The directory's mtime, which
 * the swap and the removal move, is set back for people. */
static ts_err_code seal_finish(const char *name, int dirfd, const ts_manifest *head, ts_err *e)
{
	struct timespec times[2] = { head->time, head->time };

	if (unlinkat(dirfd, TS_STORE_UNSEALED, 0) < 0 && errno != ENOENT)
		return ts_err_sys(e, errno, "snapshot %s: cannot remove %s", name, TS_STORE_UNSEALED);
	if (futimens(dirfd, times) < 0 || fsync(dirfd) < 0)
		return ts_err_sys(e, errno, "snapshot %s: cannot finish sealing", name);
	return TS_OK;
}

/* Is the snapshot open on dirfd still in the store under its name?  (A file
 * missing from a snapshot that is still there is damage, not a deletion.) */
static bool seal_still_there(ts_store *s, const char *name, int dirfd)
{
	struct stat held, now;
	return fstat(dirfd, &held) == 0 && fstatat(s->dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	       held.st_dev == now.st_dev && held.st_ino == now.st_ino;
}

/* The entries of the manifest on dirfd, and how many of them are pending. */
static ts_err_code seal_count(int dirfd, size_t *n, size_t *np, ts_err *e)
{
	ts_manifest head;
	ts_manifest_cursor *c;
	const ts_manifest_entry *me;
	ts_err_code rc = ts_manifest_cursor_open_at(dirfd, "manifest", &head, &c, e);

	*n = *np = 0;
	while (rc == TS_OK && (rc = ts_manifest_cursor_next(c, &me, e)) == TS_OK && me) {
		(*n)++;
		*np += me->type == 'f' && me->pending;
	}
	ts_manifest_cursor_close(c);
	ts_manifest_free(&head);
	return rc;
}

/* ts_seal; share: give back what the snapshot need not have copied
 * (seal_share.h), a saving only, skipped when the daemon stops. */
static ts_err_code seal_snapshot(ts_store *s, const char *name, volatile sig_atomic_t *cancel, bool share,
                                 ts_seal_stats *stats, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_seal_stats st = { 0 };
	ts_manifest head;
	ts_seal_share sh;
	seal_ctx *c = NULL;
	size_t n = 0, np = 0;
	int dirfd = -1, treefd = -1, markfd = -1;
	struct timespec t0;
	char tmp[64];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ts_manifest_init(&head);
	ts_seal_share_init(&sh);
	/* Only a snapshot's own name (never ".", "..", or a .tmp- one being
	 * made), and never one lost in a restart: its data may be incomplete,
	 * and sealing would vouch for it. */
	if (!ts_store_exists(s, name)) {
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", name);
		goto out;
	}
	dirfd = openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dirfd < 0) {
		rc = (errno == ENOENT || errno == ENOTDIR)
		     ? ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", name)
		     : ts_err_sys(e, errno, "snapshot %s: cannot open", name);
		goto out;
	}
	/* One sealer at a time (seal.h): the daemon's and tracsnap verify's
	 * both wrote their manifest, and the later one could put back copies
	 * that the earlier had replaced by links. */
	markfd = openat(dirfd, TS_STORE_UNSEALED, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (markfd < 0)
		goto out;   /* sealed already */
	while (flock(markfd, LOCK_EX) < 0)
		if (errno != EINTR) {
			rc = ts_err_sys(e, errno, "snapshot %s: cannot lock %s", name, TS_STORE_UNSEALED);
			goto out;
		}
	if (faccessat(dirfd, TS_STORE_UNSEALED, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		goto out;   /* sealed by the one this one waited for */
	/* Counted first: the sealed manifest's header says how many entries
	 * follow, and the entries are written as they are hashed. */
	rc = seal_named(name, seal_count(dirfd, &n, &np, e), e);
	if (rc != TS_OK)
		goto out;
	treefd = openat(dirfd, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (treefd < 0) {
		rc = errno == ENOENT ? ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: gone while it was "
		                                  "sealed", name)
		                     : ts_err_sys(e, errno, "snapshot %s: cannot open its tree", name);
		goto out;
	}
	/* What is pending was copied (or shared from a copy not sealed yet):
	 * what sealing may find unchanged (seal_share.h). */
	if (share && np)
		ts_seal_share_begin(&sh, s, name);
	if (!(c = calloc(1, sizeof *c))) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	*c = (seal_ctx){ .name = name, .treefd = treefd, .cancel = cancel, .sh = &sh };
	ts_err_clear(&c->err);
	rc = seal_named(name, ts_manifest_cursor_open_at(dirfd, "manifest", &head, &c->c, e), e);
	if (rc != TS_OK)
		goto out;
	/* The sealed manifest is written as the entries are hashed: it takes
	 * the unsealed one's place before the sync, so that the unsealed one
	 * (some 50 MB at 200,000 entries) is dropped unwritten instead of
	 * flushed by syncfs, which Trac's commits queued behind.  The marker
	 * still stands: a crash discards the snapshot whatever its manifest
	 * says. */
	free(head.unsealed_boot);
	head.unsealed_boot = NULL;
	seal_tmp_name(tmp, sizeof tmp);
	rc = seal_write(name, dirfd, &head, n, seal_next, c, tmp, e);
	if (rc != TS_OK && c->rc != TS_OK) {
		rc = c->rc;   /* the hashing's (or the manifest's) fault, not the write's */
		if (e)
			*e = c->err;
		seal_named(name, rc, e);
	}
	const ts_manifest_entry *more = NULL;
	if (rc == TS_OK && (rc = seal_named(name, ts_manifest_cursor_next(c->c, &more, e), e)) == TS_OK && more)
		rc = ts_err_set(e, TS_ERR_CORRUPT, "snapshot %s: more entries in its manifest than it "
		                "counted", name);
	st.files_hashed = c->files;
	st.bytes_hashed = c->bytes;
	if (rc != TS_OK)
		(void)unlinkat(dirfd, tmp, 0);
	if (rc == TS_ERR_NOTFOUND) {
		char what[TS_ERR_MSG_MAX];
		snprintf(what, sizeof what, "%s", e ? e->msg : "?");
		if (seal_still_there(s, name, dirfd))
			rc = ts_err_set(e, TS_ERR_CORRUPT, "snapshot %s: %s: missing from the store "
			                "before it was sealed", name, what);
		else
			rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: gone while it was sealed", name);
	}
	if (rc != TS_OK)
		goto out;
	/* What the previous sealed snapshot holds already (seal_share.h):
	 * copies that changed in part share their unchanged blocks, before
	 * the sync, which makes that durable too; the previous copies of
	 * identical ones are proven, without the lock. */
	ts_seal_share_found(&sh);
	ts_seal_share_blocks(&sh, treefd, false, cancel);
	ts_seal_share_prove(&sh, cancel);
	rc = seal_put_manifest(name, dirfd, tmp, e);
	if (rc != TS_OK)
		goto out;
	/* What seal_one flushed is on the disk; this catches the rest (links,
	 * directories, files hashed while they were copied). */
	if (syncfs(dirfd) < 0) {
		rc = ts_err_sys(e, errno, "store %s: sync failed", s->root);
		goto out;
	}
	/* Copies identical to the previous snapshot's become hard links to
	 * them: under the writers' lock, with the manifest that records them. */
	if (ts_seal_share_lock(&sh, s))
		ts_seal_share_files(&sh, s, name, dirfd, treefd);
	/* Links made: the manifest records them (ts_seal_share_files synced
	 * them first). */
	if (sh.files_linked)
		rc = seal_relink(name, dirfd, &head, n, &sh, e);
	if (rc == TS_OK)
		rc = seal_finish(name, dirfd, &head, e);
	ts_seal_share_unlock(&sh);
	/* (Identical copies that could not be linked share their blocks.) */
	if (rc == TS_OK)
		ts_seal_share_blocks(&sh, treefd, true, cancel);
	st.files_linked = sh.files_linked;
	st.bytes_linked = sh.bytes_linked;
	st.bytes_blocks = sh.bytes_blocks;
out:
	if (c) {
		seal_chunk_free(c);
		ts_manifest_cursor_close(c->c);
		free(c);
	}
	ts_seal_share_end(&sh);
	if (treefd >= 0)
		close(treefd);
	if (markfd >= 0)
		close(markfd);   /* the next sealer's turn */
	if (dirfd >= 0)
		close(dirfd);
	ts_manifest_free(&head);
	st.ms = seal_ms_since(&t0);
	if (stats)
		*stats = st;
	return rc;
}

ts_err_code ts_seal(ts_store *s, const char *name, volatile sig_atomic_t *cancel,
                    ts_seal_stats *stats, ts_err *e)
{
	return seal_snapshot(s, name, cancel, true, stats, e);
}

ts_err_code ts_seal_all(ts_store *s, volatile sig_atomic_t *cancel, bool share, unsigned *sealed,
                        ts_err *e)
{
	ts_err_code rc, first = TS_OK;
	ts_store_snap *v = NULL;
	size_t n = 0;
	ts_err one;

	if (sealed)
		*sealed = 0;
	rc = ts_store_list(s, &v, &n, e);
	if (rc != TS_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		ts_seal_stats st;
		if (v[i].sealed)
			continue;
		ts_err_clear(&one);
		rc = seal_snapshot(s, v[i].name, cancel, share, &st, &one);
		if (rc == TS_OK) {
			char shared[160] = "", b1[32], b2[32];
			if (sealed)
				(*sealed)++;
			if (st.files_linked || st.bytes_blocks) {
				ts_human_bytes((double)st.bytes_linked, b1, sizeof b1);
				ts_human_bytes((double)st.bytes_blocks, b2, sizeof b2);
				snprintf(shared, sizeof shared, ", %llu unchanged (%s) and %s of blocks "
				         "shared with the previous snapshot",
				         (unsigned long long)st.files_linked, b1, b2);
			}
			ts_log(LOG_INFO, "snapshot %s: sealed: %llu files hashed%s, durable, %.0f ms",
			       v[i].name, (unsigned long long)st.files_hashed, shared, st.ms);
		} else if (rc != TS_ERR_NOTFOUND && first == TS_OK) {
			first = rc;
			if (e)
				*e = one;
		}
		if (rc == TS_ERR_CANCELLED)
			break;
	}
	ts_store_list_free(v, n);
	return first;
}
