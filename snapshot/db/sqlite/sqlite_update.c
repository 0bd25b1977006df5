/* sqlite_update.c - bring the raw copy of an SQLite file up to the file,
 * writing only what differs (sqlite_int.h).
 *
 * The pass before Trac's lock reads the file and the copy, and rewrites the
 * blocks that differ; it also keeps a hash of each block as the copy then
 * holds it.  The pass under the lock then reads the file alone: a block
 * whose hash is the one kept is already in the copy, and only the others
 * are read from the copy and rewritten.  Reading the copy and comparing
 * were more than half of the work under the lock at 1,000,000 files (a
 * 147 MB database; doc/performance.md).
 *
 * The sums of a pass before the lock also outlive the handle that made them
 * (one set per process, sqlite_kept): the daemon's stage brings its copy up
 * to date long before a snapshot adopts that copy (take/stage.h), and the
 * snapshot's pass before the lock then reads the copy only where the file
 * no longer matches them, not everywhere.  A copy the kernel made (the
 * first pre-copy) gets its sums read from it (sqlite_sums_of).  They name
 * the copy by device, inode, size and mtime; only this process writes it
 * (in the store, made 0600 by root), and each pass that writes it takes
 * them or drops them.
 *
 * With the tap (sqlite_tap.c), a pass reads less still: when the sums
 * are the copy, and the tap knows every block written since the pass that
 * made them began, the blocks it does not name are not read at all.  At
 * 200,000 files the two passes over a 29 MB database were most of an
 * incremental snapshot's time (doc/performance.md).
 *
 * XXH3-128 with a seed drawn once per open database: a block that changed
 * and kept its hash is one chance in 2^128 unless someone can choose
 * contents for this seed, which no one sees.  Even then, only the owner of
 * the database could write such a block, and all it would do is keep that
 * owner's older block in that owner's snapshot.
 */
#include "db/sqlite/sqlite_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/log.h"
#include "base/pool.h"

/* Compared a block at a time (SQLITE_BLOCK, pread of the file and of the
 * copy): with 256 KiB, a 147 MB database took 28 ms on one core, with
 * 64 KiB 36-44 ms.  And a chunk of blocks per pool job: under Trac's lock
 * every core works, before it one, which leaves the others to Trac's
 * writers. */
#define SQLITE_CHUNK (16 * SQLITE_BLOCK)
/* What is written where a block differs: the usual page size, and the
 * block of the filesystems that have reflinks. */
#define SQLITE_GRAIN 4096

/* Write the SQLITE_GRAIN pieces of a (n bytes at off) that differ from b,
 * the copy's bytes there: on a filesystem with reflinks every piece
 * written gets a block of its own, so one page that changed costs one
 * block, not the whole SQLITE_BLOCK around it. */
static bool sqlite_write_diff(int out, const char *a, const char *b, size_t n, off_t off)
{
	for (size_t k = 0; k < n;) {
		size_t from = k;
		/* A run of pieces that differ: one write. */
		while (k < n && memcmp(a + k, b + k, n - k < SQLITE_GRAIN ? n - k : SQLITE_GRAIN))
			k += n - k < SQLITE_GRAIN ? n - k : SQLITE_GRAIN;
		if (k > from && pwrite(out, a + from, k - from, off + (off_t)from) != (ssize_t)(k - from))
			return false;
		if (k < n)
			k += n - k < SQLITE_GRAIN ? n - k : SQLITE_GRAIN;   /* the same: skipped */
	}
	return true;
}

/* The sums the last pass before a lock left, until a pass takes them or
 * one writes the copy they describe (the top says why). */
static pthread_mutex_t sqlite_kept_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite_sums sqlite_kept;
static struct timespec sqlite_kept_mtime;

/* Does the kept set describe the copy, as fstat'ed in cst? */
static bool sqlite_kept_is(const struct stat *cst)
{
	return sqlite_kept.h && sqlite_kept.dev == cst->st_dev && sqlite_kept.ino == cst->st_ino &&
	       sqlite_kept.size == cst->st_size && sqlite_kept_mtime.tv_sec == cst->st_mtim.tv_sec &&
	       sqlite_kept_mtime.tv_nsec == cst->st_mtim.tv_nsec;
}

/* Before a pass that writes the copy: its kept sums into s (true) when
 * they describe it, else dropped if they named it at all. */
static bool sqlite_kept_take(sqlite_sums *s, const struct stat *cst)
{
	bool took = false;

	pthread_mutex_lock(&sqlite_kept_mu);
	if (sqlite_kept_is(cst)) {
		sqlite_sums_drop(s);
		*s = sqlite_kept;
		memset(&sqlite_kept, 0, sizeof sqlite_kept);
		took = true;
	} else if (sqlite_kept.dev == cst->st_dev && sqlite_kept.ino == cst->st_ino) {
		sqlite_sums_drop(&sqlite_kept);
	}
	pthread_mutex_unlock(&sqlite_kept_mu);
	return took;
}

/* After a pass before the lock that took all of them: a copy of s kept
 * for the copy, whose mtime is now cst's. */
static void sqlite_kept_put(const sqlite_sums *s, const struct stat *cst)
{
	XXH128_hash_t *h = malloc(s->n * sizeof *h);

	if (!h)
		return;   /* the next pass compares, as with none */
	memcpy(h, s->h, s->n * sizeof *h);
	pthread_mutex_lock(&sqlite_kept_mu);
	sqlite_sums_drop(&sqlite_kept);
	sqlite_kept = *s;
	sqlite_kept.h = h;
	sqlite_kept_mtime = cst->st_mtim;
	pthread_mutex_unlock(&sqlite_kept_mu);
}

/* What sqlite_update's pool jobs share. */
typedef struct sqlite_upd {
	int in, out;
	off_t size;
	const char *path, *rel;
	sqlite_sums *sums;
	bool locked;
	bool trust;   /* the sums describe the copy: unchanged blocks need no read of it */
	size_t trust_n;      /* the blocks they describe, and the copy's size then */
	off_t trust_size;
	const sqlite_tap_chg *chg;   /* trusted sums, and all the file's writes since their
	                              * pass began: only the blocks it names are read */
} sqlite_upd;

/* The bytes of block k the trusted sums describe. */
static size_t sqlite_trust_len(const sqlite_upd *u, size_t k)
{
	off_t at = (off_t)k * SQLITE_BLOCK;
	return u->trust_size - at < SQLITE_BLOCK ? (size_t)(u->trust_size - at) : SQLITE_BLOCK;
}

/* Is block k (n bytes read from the file, hashed to h) what the copy
 * already holds, by the sums of the pass before? */
static bool sqlite_block_kept(const sqlite_upd *u, size_t k, size_t n, XXH128_hash_t h)
{
	if (!u->trust || k >= u->trust_n || n != sqlite_trust_len(u, k))
		return false;
	return XXH128_isEqual(h, u->sums->h[k]);
}

/* Each thread's two block buffers, kept for the thread's life: a malloc
 * and free of them per chunk grew and trimmed the heap each time, and the
 * page faults that followed doubled the time of a pass over a 29 MB
 * database (doc/performance.md).  Freed when the thread ends. */
static pthread_key_t sqlite_buf_key;
static pthread_once_t sqlite_buf_once = PTHREAD_ONCE_INIT;

static void sqlite_buf_key_make(void)
{
	(void)pthread_key_create(&sqlite_buf_key, free);
}

static char *sqlite_buf(void)
{
	char *buf;

	(void)pthread_once(&sqlite_buf_once, sqlite_buf_key_make);
	buf = pthread_getspecific(sqlite_buf_key);
	if (!buf && (buf = malloc(2 * (size_t)SQLITE_BLOCK)) && pthread_setspecific(sqlite_buf_key, buf)) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

/* Chunk i of the file (SQLITE_CHUNK bytes), on a pool thread. */
static ts_err_code sqlite_update_chunk(void *arg, size_t i, ts_err *e)
{
	const sqlite_upd *u = arg;
	char *a = sqlite_buf(), *b = a + SQLITE_BLOCK;
	off_t end = (off_t)(i + 1) * SQLITE_CHUNK < u->size ? (off_t)(i + 1) * SQLITE_CHUNK : u->size;

	if (!a)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (off_t off = (off_t)i * SQLITE_CHUNK; off < end; off += SQLITE_BLOCK) {
		size_t k = (size_t)(off / SQLITE_BLOCK);
		size_t want = end - off < SQLITE_BLOCK ? (size_t)(end - off) : SQLITE_BLOCK;
		/* Unwritten since the sums' pass read it: the copy holds it
		 * (and the sums, copied, still describe it). */
		if (u->chg && k < u->trust_n && want == sqlite_trust_len(u, k) &&
		    !sqlite_tap_changed(u->chg, off))
			continue;
		ssize_t n = pread(u->in, a, want, off);
		if (n <= 0)
			return ts_err_sys(e, n < 0 ? errno : EIO, "%s: read failed", u->path);
		/* Under the lock without sums to trust, nothing to hash. */
		XXH128_hash_t h = { 0, 0 };
		if (u->sums->h)
			h = XXH3_128bits_withSeed(a, (size_t)n, u->sums->seed);
		if (sqlite_block_kept(u, k, (size_t)n, h))
			continue;
		/* Before the lock: what the copy holds once this block is done. */
		if (!u->locked && u->sums->h)
			u->sums->h[k] = h;
		ssize_t m = pread(u->out, b, (size_t)n, off);
		if (m == n && !memcmp(a, b, (size_t)n))
			continue;
		if (m == n ? !sqlite_write_diff(u->out, a, b, (size_t)n, off)
		           : pwrite(u->out, a, (size_t)n, off) != n)
			return ts_err_sys(e, errno, "%s: cannot write the database copy", u->rel);
	}
	return TS_OK;
}

ts_err_code sqlite_update(int in, int out, const char *path, const char *rel, bool locked,
                          sqlite_sums *sums, sqlite_tap *tap, ts_err *e)
{
	ts_err_code rc;
	struct stat st, cst;
	sqlite_upd u = { .in = in, .out = out, .path = path, .rel = rel, .sums = sums, .locked = locked };
	sqlite_tap_chg chg = { 0 };

	/* The tap's window ends before this pass reads anything, and the
	 * next, which the sums this pass leaves name, begins. */
	if (tap)
		sqlite_tap_rotate(tap, in, locked, &chg);
	if (fstat(in, &st) < 0) {
		sqlite_tap_chg_free(&chg);
		return ts_err_sys(e, errno, "%s: cannot stat", path);
	}
	if (fstat(out, &cst) < 0) {
		sqlite_tap_chg_free(&chg);
		return ts_err_sys(e, errno, "%s: cannot stat", rel);
	}
	u.size = st.st_size;
	/* Sums kept from an earlier pass that describe this copy replace the
	 * handle's (if it has any, they are the same): before the lock, as
	 * under it, the copy is then read only where the file differs. */
	(void)sqlite_kept_take(sums, &cst);
	/* The sums stand for the copy only if it is the file they were taken
	 * of, untouched since (its size as they left it). */
	u.trust = sums->h && sums->dev == cst.st_dev && sums->ino == cst.st_ino && sums->size == cst.st_size;
	u.trust_n = u.trust ? sums->n : 0;
	u.trust_size = sums->size;
	if (u.trust && chg.known && sums->win && chg.ended == sums->win)
		u.chg = &chg;
	else if (tap && locked)
		ts_log(LOG_INFO, "%s: read whole under Trac's lock (%s)", path,
		       !u.trust ? "no sums of its copy" : !chg.known ? chg.why : "its copy is of another pass");
	if (locked && !u.trust) {
		sqlite_sums_drop(sums);   /* compared block by block, as with none */
	} else if (!locked) {
		/* New sums of every block as this pass leaves the copy; those
		 * trusted are read (and kept where the block did not change). */
		size_t nb = (size_t)((u.size + SQLITE_BLOCK - 1) / SQLITE_BLOCK);
		XXH128_hash_t *h = nb ? calloc(nb, sizeof *h) : NULL;
		if (h && u.trust)
			memcpy(h, sums->h, (nb < sums->n ? nb : sums->n) * sizeof *h);
		free(sums->h);
		sums->h = h;
		sums->n = h ? nb : 0;
		u.trust = u.trust && h;
	}
	size_t chunks = (size_t)((u.size + SQLITE_CHUNK - 1) / SQLITE_CHUNK);
	/* Before the lock, never more than the caller's thread; nor under
	 * it for the few blocks a tap names. */
	rc = ts_pool_run(chunks, locked && !u.chg ? 2 : SIZE_MAX, 0, sqlite_update_chunk, &u, e);
	sqlite_tap_chg_free(&chg);
	if (rc == TS_OK && ftruncate(out, st.st_size) < 0)
		rc = ts_err_sys(e, errno, "%s: cannot size the database copy", rel);
	if (locked || rc != TS_OK || !sums->h) {
		/* Used once, or not all taken: none kept. */
		sqlite_sums_drop(sums);
	} else {
		sums->size = st.st_size;
		sums->dev = cst.st_dev;
		sums->ino = cst.st_ino;
		sums->win = chg.started;
		if (fstat(out, &cst) == 0)
			sqlite_kept_put(sums, &cst);
	}
	return rc;
}

ts_err_code sqlite_sums_of(int out, const char *rel, uint64_t win, sqlite_sums *sums, ts_err *e)
{
	struct stat cst;
	char *a = sqlite_buf();

	sqlite_sums_drop(sums);
	if (!a)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (fstat(out, &cst) < 0)
		return ts_err_sys(e, errno, "%s: cannot stat", rel);
	size_t nb = (size_t)((cst.st_size + SQLITE_BLOCK - 1) / SQLITE_BLOCK);
	if (nb && !(sums->h = calloc(nb, sizeof *sums->h)))
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (size_t k = 0; k < nb; k++) {
		off_t off = (off_t)k * SQLITE_BLOCK;
		size_t want = cst.st_size - off < SQLITE_BLOCK ? (size_t)(cst.st_size - off) : SQLITE_BLOCK;
		if (pread(out, a, want, off) != (ssize_t)want) {
			sqlite_sums_drop(sums);
			return ts_err_sys(e, errno ? errno : EIO, "%s: read failed", rel);
		}
		sums->h[k] = XXH3_128bits_withSeed(a, want, sums->seed);
	}
	sums->n = nb;
	sums->size = cst.st_size;
	sums->dev = cst.st_dev;
	sums->ino = cst.st_ino;
	sums->win = win;
	sqlite_kept_put(sums, &cst);
	return TS_OK;
}

void sqlite_sums_drop(sqlite_sums *s)
{
	free(s->h);
	s->h = NULL;
	s->n = 0;
	s->size = 0;
	s->win = 0;
}
