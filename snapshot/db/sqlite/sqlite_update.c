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

#include "base/pool.h"

/* Compared a block at a time (pread of the file and of the copy): with
 * 256 KiB, a 147 MB database took 28 ms on one core, with 64 KiB 36-44 ms.
 * And a chunk of blocks per pool job: under Trac's lock every core works,
 * before it one, which leaves the others to Trac's writers. */
#define SQLITE_BLOCK (256 * 1024)
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

/* What sqlite_update's pool jobs share. */
typedef struct sqlite_upd {
	int in, out;
	off_t size;
	const char *path, *rel;
	sqlite_sums *sums;
	bool trust;   /* the sums describe the copy: unchanged blocks need no read of it */
} sqlite_upd;

/* Is block k (n bytes read from the file) what the copy already holds,
 * by the sums of the pass before? */
static bool sqlite_block_kept(const sqlite_upd *u, size_t k, const char *a, size_t n)
{
	const sqlite_sums *s = u->sums;
	off_t at = (off_t)k * SQLITE_BLOCK;
	if (!u->trust || k >= s->n || (off_t)n != (s->size - at < SQLITE_BLOCK ? s->size - at : SQLITE_BLOCK))
		return false;
	return XXH128_isEqual(XXH3_128bits_withSeed(a, n, s->seed), s->h[k]);
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
		ssize_t n = pread(u->in, a, want, off);
		if (n <= 0)
			return ts_err_sys(e, n < 0 ? errno : EIO, "%s: read failed", u->path);
		if (sqlite_block_kept(u, k, a, (size_t)n))
			continue;
		/* Before the lock: what the copy holds once this block is done.
		 * (Under it there are none to take: the sums were either
		 * trusted or dropped, sqlite_update.) */
		if (!u->trust && u->sums->h)
			u->sums->h[k] = XXH3_128bits_withSeed(a, (size_t)n, u->sums->seed);
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
                          sqlite_sums *sums, ts_err *e)
{
	ts_err_code rc;
	struct stat st, cst;
	sqlite_upd u = { .in = in, .out = out, .path = path, .rel = rel, .sums = sums };

	if (fstat(in, &st) < 0)
		return ts_err_sys(e, errno, "%s: cannot stat", path);
	if (fstat(out, &cst) < 0)
		return ts_err_sys(e, errno, "%s: cannot stat", rel);
	u.size = st.st_size;
	/* Under the lock the sums stand for the copy only if it is the file
	 * they were taken of, untouched since (its size as they left it). */
	u.trust = locked && sums->h && sums->dev == cst.st_dev && sums->ino == cst.st_ino &&
	          sums->size == cst.st_size;
	if (locked && !u.trust) {
		sqlite_sums_drop(sums);   /* compared block by block, as with none */
	} else if (!locked) {
		size_t nb = (size_t)((u.size + SQLITE_BLOCK - 1) / SQLITE_BLOCK);
		free(sums->h);
		sums->h = nb ? calloc(nb, sizeof *sums->h) : NULL;
		sums->n = sums->h ? nb : 0;
	}
	size_t chunks = (size_t)((u.size + SQLITE_CHUNK - 1) / SQLITE_CHUNK);
	/* Before the lock, never more than the caller's thread. */
	rc = ts_pool_run(chunks, locked ? 2 : SIZE_MAX, 0, sqlite_update_chunk, &u, e);
	if (rc == TS_OK && ftruncate(out, st.st_size) < 0)
		rc = ts_err_sys(e, errno, "%s: cannot size the database copy", rel);
	if (locked || rc != TS_OK || !sums->h) {
		/* Used once, or not all taken: none kept. */
		sqlite_sums_drop(sums);
	} else {
		sums->size = st.st_size;
		sums->dev = cst.st_dev;
		sums->ino = cst.st_ino;
	}
	return rc;
}

void sqlite_sums_drop(sqlite_sums *s)
{
	free(s->h);
	s->h = NULL;
	s->n = 0;
	s->size = 0;
}
