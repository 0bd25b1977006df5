/* sqlite_tap.c - which blocks of an SQLite database were written since a
 * point, from the rollback journals SQLite writes before it writes the
 * file (sqlite_int.h).
 *
 * Why it can tell.  In rollback-journal mode SQLite writes the number and
 * the old content of every page a transaction changes to <db>-journal
 * before it writes that page to the database; only pages past the size
 * the database had when the transaction began (the journal header says
 * which) are written unjournaled.  In DELETE mode, SQLite's default and
 * Trac's, the journal is created for each write transaction and deleted
 * at its commit.  A thread watches the database's directory with inotify
 * and opens each journal as it is created, keeping it open past its
 * deletion; the pages the journals name, and every page past the smallest
 * size they recorded, are all a window's writes could have touched.
 *
 * When it cannot tell, a window is unknown (the caller reads every block,
 * as without a tap), and why is said.  What makes a window unknown:
 *   - a journal gone before it could be opened, or two creations found one
 *     file (the second open found a later journal): one went unread;
 *   - a journal deleted that none held, renamed, or not a regular file;
 *   - the database written while no journal was open (journal_mode=OFF or
 *     MEMORY, a write that bypasses SQLite), replaced or renamed;
 *   - a journal left in place at commit (journal_mode=PERSIST or TRUNCATE:
 *     it then holds no pages after the database was written), or one still
 *     there under Trac's lock, when no writer can have one open;
 *   - SQLite's change counter (database header bytes 24-27, moved by every
 *     commit) moved more times than journals were seen;
 *   - events lost (queue overflow), the directory no longer watched, WAL
 *     mode, a journal that does not parse or is too large to read.
 *
 * Root over a hostile tree: the journal is the owner's file.  It is opened
 * beneath the watched directory with O_NOFOLLOW and O_NONBLOCK, read only
 * if fstat says it is a regular file, and only so far (TAP_MAX_RECORDS);
 * what it says chooses which blocks of the owner's database are read again,
 * nothing else.  A forged journal, or a write that bypasses SQLite, can
 * only keep the owner's older pages in the owner's own snapshot, which a
 * raw write of the database during the copy could do anyway.
 */
#include "db/sqlite/sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* A journal of more records than this is not read (its transaction
 * rewrote much of the database: reading all of it costs no more). */
#define TAP_MAX_RECORDS 16384
/* Nor a database of more blocks than this (a 4 TiB file). */
#define TAP_MAX_BLOCKS ((size_t)1 << 24)
#define TAP_HDR 28   /* the journal header fields read */

static const unsigned char tap_magic[8] = { 0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7 };

/* A journal held open. */
typedef struct tap_jr {
	int fd;
	dev_t dev;
	ino_t ino;
	bool created;      /* opened on its creation (else found at the tap's start) */
	bool dbw;          /* the database was written since it was last read */
} tap_jr;

/* What a window saw so far. */
typedef struct tap_win {
	uint64_t id;
	const char *why;       /* NULL: known so far */
	unsigned char *bits;   /* blocks named by a journal */
	size_t nbits;          /* room in bits, in blocks */
	off_t tail;            /* every block from here on may have changed */
	uint32_t counter;      /* the database's change counter at the start */
	size_t journals;       /* open during the window */
	dev_t dev;             /* the database at the start */
	ino_t ino;
} tap_win;

struct sqlite_tap {
	pthread_mutex_t mu;    /* everything below; a leaf */
	char *path;            /* the database, as the caller names it */
	int dirfd;             /* its directory */
	char *leaf, *jleaf;    /* its name there, and its journal's */
	int ifd;               /* inotify on dirfd */
	int stopfd;            /* eventfd: the thread ends */
	pthread_t th;
	bool th_started;
	bool dead;             /* the watch is gone: every window unknown */
	tap_jr *jr;            /* held, not yet seen deleted */
	size_t njr, capjr;
	tap_win win;           /* the current window */
	uint64_t next_id;
	size_t refs;           /* sqlite_tap_get's not yet put */
};

static uint32_t tap_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void tap_taint(sqlite_tap *t, const char *why)
{
	if (!t->win.why)
		t->win.why = why;
}

static void tap_mark(sqlite_tap *t, uint64_t block)
{
	if (block >= TAP_MAX_BLOCKS) {
		tap_taint(t, "a journal names a page past any database");
		return;
	}
	if (block >= t->win.nbits) {
		size_t n = t->win.nbits ? t->win.nbits : 1024;
		while (n <= block)
			n *= 2;
		unsigned char *b = realloc(t->win.bits, n / 8);
		if (!b) {
			tap_taint(t, "out of memory");
			return;
		}
		memset(b + t->win.nbits / 8, 0, (n - t->win.nbits) / 8);
		t->win.bits = b;
		t->win.nbits = n;
	}
	t->win.bits[block / 8] |= (unsigned char)(1u << (block % 8));
}

/* SQLite's record checksum: the header's initial value plus every 200th
 * byte of the page, from the end. */
static uint32_t tap_cksum(uint32_t init, const unsigned char *page, uint32_t psz)
{
	uint32_t c = init;
	for (int64_t i = (int64_t)psz - 200; i > 0; i -= 200)
		c += page[i];
	return c;
}

/* Read journal j into the window: every page it names, and the database's
 * size when its transaction began.  false when it holds no valid header
 * (nothing written yet, or left in place at commit). */
static bool tap_read(sqlite_tap *t, const tap_jr *j)
{
	struct stat st;
	unsigned char h[TAP_HDR], *page = NULL;
	uint32_t sector = 0, psz = 0;
	size_t seen = 0;
	bool any = false;

	if (fstat(j->fd, &st) < 0) {
		tap_taint(t, "a journal could not be read");
		return false;
	}
	for (off_t off = 0; off + TAP_HDR <= st.st_size;) {
		if (pread(j->fd, h, sizeof h, off) != (ssize_t)sizeof h) {
			tap_taint(t, "a journal could not be read");
			break;
		}
		if (memcmp(h, tap_magic, sizeof tap_magic))
			break;   /* the end (SQLite's own playback stops there too) */
		if (!any) {
			sector = tap_be32(h + 20);
			psz = tap_be32(h + 24);
			if (sector < 32 || sector > 65536 || (sector & (sector - 1)) || psz < 512 ||
			    psz > 65536 || (psz & (psz - 1)) || !(page = malloc(psz))) {
				tap_taint(t, "a journal that does not parse");
				break;
			}
			any = true;
		}
		uint32_t nrec = tap_be32(h + 8), init = tap_be32(h + 12);
		off_t orig = (off_t)tap_be32(h + 16) * psz;
		off_t rec = off + sector, recsz = (off_t)psz + 8;
		/* 0 (not synced yet) and all ones (never synced): the records run
		 * to the end of the file, and this is its last segment. */
		bool to_end = nrec == 0 || nrec == 0xffffffffu;
		off_t n = to_end ? (st.st_size - rec) / recsz : nrec;

		if (orig < t->win.tail)
			t->win.tail = orig;
		if (n < 0)
			n = 0;
		if ((size_t)n + seen > TAP_MAX_RECORDS) {
			tap_taint(t, "a journal too large to read");
			break;
		}
		seen += (size_t)n;
		for (off_t i = 0; i < n; i++) {
			unsigned char pg[4], ck[4];
			off_t at = rec + i * recsz;
			if (pread(j->fd, pg, 4, at) != 4) {
				tap_taint(t, "a journal cut short");
				break;
			}
			/* Records read to the end are told from anything else by
			 * their checksum; those a synced header counts are whole. */
			if (to_end && (pread(j->fd, page, psz, at + 4) != (ssize_t)psz ||
			               pread(j->fd, ck, 4, at + 4 + psz) != 4 ||
			               tap_be32(ck) != tap_cksum(init, page, psz))) {
				tap_taint(t, "a journal record that does not check");
				break;
			}
			uint32_t pgno = tap_be32(pg);
			if (pgno == 0) {
				tap_taint(t, "a journal that does not parse");
				break;
			}
			tap_mark(t, (uint64_t)(pgno - 1) * psz / SQLITE_BLOCK);
		}
		/* A record being written: its page number alone is enough. */
		off_t part = rec + n * recsz;
		if (to_end && part + 4 <= st.st_size) {
			unsigned char pg[4];
			if (pread(j->fd, pg, 4, part) == 4 && tap_be32(pg))
				tap_mark(t, (uint64_t)(tap_be32(pg) - 1) * psz / SQLITE_BLOCK);
		}
		if (to_end || t->win.why)
			break;
		/* The next segment starts at the next sector boundary. */
		off = (rec + n * recsz + sector - 1) / sector * sector;
	}
	free(page);
	return any;
}

/* Journal k of the held was read (deleted, or at a rotation); nothing
 * valid in it while the database was written since the last read means
 * its pages are not there any more. */
static void tap_read_one(sqlite_tap *t, size_t k)
{
	if (!tap_read(t, &t->jr[k]) && t->jr[k].dbw)
		tap_taint(t, "a journal kept at commit (journal_mode persist or truncate?)");
	t->jr[k].dbw = false;
}

static void tap_drop(sqlite_tap *t, size_t k)
{
	close(t->jr[k].fd);
	t->jr[k] = t->jr[--t->njr];
}

/* Open the journal by name, as it is now.  created: on its creation. */
static void tap_capture(sqlite_tap *t, bool created)
{
	struct stat st;
	int fd = openat(t->dirfd, t->jleaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		if (created || errno != ENOENT)
			tap_taint(t, "a journal gone before it could be read");
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		tap_taint(t, "a journal that is not a regular file");
		return;
	}
	for (size_t k = 0; k < t->njr; k++) {
		if (t->jr[k].dev != st.st_dev || t->jr[k].ino != st.st_ino)
			continue;
		close(fd);
		/* Found at the start, then its creation reported: one file. */
		if (created && !t->jr[k].created)
			t->jr[k].created = true;
		else
			tap_taint(t, "a journal gone before it could be read");
		return;
	}
	if (t->njr == t->capjr) {
		size_t ncap = t->capjr ? 2 * t->capjr : 4;
		tap_jr *nv = realloc(t->jr, ncap * sizeof *nv);
		if (!nv) {
			close(fd);
			tap_taint(t, "out of memory");
			return;
		}
		t->jr = nv;
		t->capjr = ncap;
	}
	t->jr[t->njr++] = (tap_jr){ .fd = fd, .dev = st.st_dev, .ino = st.st_ino, .created = created };
	t->win.journals++;
}

/* The journal's name was deleted: the oldest held one no longer linked is
 * the one, and is read now that its transaction is over. */
static void tap_deleted(sqlite_tap *t)
{
	for (size_t k = 0; k < t->njr; k++) {
		struct stat st;
		if (fstat(t->jr[k].fd, &st) == 0 && st.st_nlink == 0) {
			tap_read_one(t, k);
			tap_drop(t, k);
			return;
		}
	}
	tap_taint(t, "a journal deleted unread");
}

static void tap_event(sqlite_tap *t, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		tap_taint(t, "events lost");
		return;
	}
	if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
		t->dead = true;
		tap_taint(t, "the database's directory no longer watched");
		return;
	}
	if (!ev->len)
		return;
	if (!strcmp(ev->name, t->jleaf)) {
		if (ev->mask & IN_CREATE)
			tap_capture(t, true);
		else if (ev->mask & IN_DELETE)
			tap_deleted(t);
		else if (ev->mask & (IN_MOVED_FROM | IN_MOVED_TO))
			tap_taint(t, "a journal renamed");
	} else if (!strcmp(ev->name, t->leaf)) {
		if (ev->mask & IN_MODIFY) {
			if (!t->njr)
				tap_taint(t, "the database written while no journal was open");
			for (size_t k = 0; k < t->njr; k++)
				t->jr[k].dbw = true;
		} else if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) {
			tap_taint(t, "the database file replaced");
		}
	}
}

/* Every event queued so far, in order (under mu: whoever drains also
 * handles what it read before anyone else reads more). */
static void tap_drain(sqlite_tap *t)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t n = read(t->ifd, buf, sizeof buf);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0 || errno != EAGAIN)
				tap_taint(t, "events could not be read");
			return;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			tap_event(t, ev);
			p += sizeof *ev + ev->len;
		}
	}
}

/* The thread: opens each journal as soon as it is created. */
static void *tap_main(void *arg)
{
	sqlite_tap *t = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = t->ifd, .events = POLLIN }, { .fd = t->stopfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents) {
			pthread_mutex_lock(&t->mu);
			tap_drain(t);
			pthread_mutex_unlock(&t->mu);
		}
	}
	return NULL;
}

static void tap_free(sqlite_tap *t)
{
	if (!t)
		return;
	if (t->th_started) {
		uint64_t one = 1;
		/* An eventfd's counter takes a 1 unless it is near 2^64. */
		(void)!write(t->stopfd, &one, sizeof one);
		pthread_join(t->th, NULL);
	}
	for (size_t k = 0; k < t->njr; k++)
		close(t->jr[k].fd);
	if (t->ifd >= 0)
		close(t->ifd);
	if (t->stopfd >= 0)
		close(t->stopfd);
	if (t->dirfd >= 0)
		close(t->dirfd);
	pthread_mutex_destroy(&t->mu);
	free(t->jr);
	free(t->win.bits);
	free(t->path);
	free(t->leaf);
	free(t->jleaf);
	free(t);
}

/* A tap on the database at path (absolute), or NULL when none can be had
 * (the next pass reads every block, as without one). */
static sqlite_tap *tap_new(const char *path)
{
	sqlite_tap *t = calloc(1, sizeof *t);
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX], proc[64];

	if (!t || !slash || slash[1] == '\0' || (size_t)(slash - path) >= sizeof dir) {
		free(t);
		return NULL;
	}
	t->dirfd = t->ifd = t->stopfd = -1;
	pthread_mutex_init(&t->mu, NULL);
	snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	t->path = strdup(path);
	t->leaf = strdup(slash + 1);
	t->jleaf = malloc(strlen(slash + 1) + sizeof "-journal");
	if (!t->path || !t->leaf || !t->jleaf)
		goto fail;
	sprintf(t->jleaf, "%s-journal", t->leaf);
	/* By path, as SQLite opens the database: the tap checks at each
	 * rotation that the file it watches is the one read. */
	t->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	t->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	t->stopfd = eventfd(0, EFD_CLOEXEC);
	if (t->dirfd < 0 || t->ifd < 0 || t->stopfd < 0)
		goto fail;
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->dirfd);
	if (inotify_add_watch(t->ifd, proc, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
	                      IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK) < 0)
		goto fail;
	/* A transaction begun before the watch: its journal, found by name. */
	tap_capture(t, false);
	if (pthread_create(&t->th, NULL, tap_main, t) != 0)
		goto fail;
	t->th_started = true;
	return t;
fail:
	tap_free(t);
	return NULL;
}

/* The database's change counter and whether it is in rollback-journal
 * mode, from its header. */
static bool tap_counter(int in, uint32_t *counter)
{
	unsigned char h[28];
	if (pread(in, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, "SQLite format 3", 16) ||
	    h[18] != 1 || h[19] != 1)
		return false;
	*counter = tap_be32(h + 24);
	return true;
}

void sqlite_tap_rotate(sqlite_tap *t, int in, bool locked, sqlite_tap_chg *out)
{
	struct stat st = { 0 }, lst;
	uint32_t counter = 0;
	const char *why = NULL;

	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&t->mu);
	tap_drain(t);
	if (fstat(in, &st) < 0 || fstatat(t->dirfd, t->leaf, &lst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    st.st_dev != lst.st_dev || st.st_ino != lst.st_ino) {
		why = "the database read is not the file watched";
		/* The path now leads elsewhere (ENV restored, the database
		 * renamed): the next sqlite_tap_get watches it afresh. */
		t->dead = true;
	} else if (!tap_counter(in, &counter))
		why = "the database is not in rollback-journal mode";
	/* The window ends: the held journals as they are now (still open:
	 * a transaction goes on, whose pages so far are there). */
	for (size_t k = 0; k < t->njr; k++) {
		if (locked)
			tap_taint(t, "a journal still there under Trac's lock");
		tap_read_one(t, k);
	}
	if (!t->win.why && (uint32_t)(counter - t->win.counter) > t->win.journals)
		tap_taint(t, "the database committed more often than journals were seen");
	if (!t->win.why && (t->win.dev != st.st_dev || t->win.ino != st.st_ino))
		tap_taint(t, "the database file replaced");
	if (why)
		tap_taint(t, why);
	out->ended = t->win.id;
	out->known = t->win.id && !t->win.why;
	out->why = t->win.id ? t->win.why : "no window before";
	out->tail = t->win.tail;
	out->bits = t->win.bits;
	out->nbits = t->win.nbits;
	/* The next begins: the journals still open belong to it too. */
	memset(&t->win, 0, sizeof t->win);
	t->win.id = ++t->next_id;
	t->win.counter = counter;
	t->win.tail = why ? 0 : st.st_size;
	t->win.dev = st.st_dev;
	t->win.ino = st.st_ino;
	t->win.journals = t->njr;
	t->win.why = t->dead ? "the database's directory no longer watched" : why;
	for (size_t k = 0; k < t->njr; k++)
		t->jr[k].dbw = false;
	out->started = t->win.id;
	pthread_mutex_unlock(&t->mu);
}

bool sqlite_tap_changed(const sqlite_tap_chg *c, off_t off)
{
	size_t k = (size_t)(off / SQLITE_BLOCK);
	/* The block that holds the tail, too. */
	return off + SQLITE_BLOCK > c->tail || (k < c->nbits && (c->bits[k / 8] >> (k % 8) & 1));
}

void sqlite_tap_chg_free(sqlite_tap_chg *c)
{
	free(c->bits);
	c->bits = NULL;
	c->nbits = 0;
}

/* The process's tap: one database at a time (sqlite_int.h). */
static pthread_mutex_t tap_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite_tap *tap_cur;
static bool tap_keep;

/* Is t's watch gone (its mutex guards dead)? */
static bool tap_dead(sqlite_tap *t)
{
	pthread_mutex_lock(&t->mu);
	bool dead = t->dead;
	pthread_mutex_unlock(&t->mu);
	return dead;
}

sqlite_tap *sqlite_tap_get(const char *path)
{
	sqlite_tap *t;

	/* tap_reg_mu, then a tap's mu: nothing under a tap's mu takes it. */
	pthread_mutex_lock(&tap_reg_mu);
	if (tap_cur && (strcmp(tap_cur->path, path) || tap_dead(tap_cur))) {
		if (!tap_cur->refs)
			tap_free(tap_cur);
		tap_cur = NULL;   /* else its last put frees it */
	}
	if (!tap_cur)
		tap_cur = tap_new(path);
	t = tap_cur;
	if (t)
		t->refs++;
	pthread_mutex_unlock(&tap_reg_mu);
	return t;
}

void sqlite_tap_put(sqlite_tap *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&tap_reg_mu);
	if (--t->refs == 0 && (t != tap_cur || !tap_keep)) {
		if (t == tap_cur)
			tap_cur = NULL;
		tap_free(t);
	}
	pthread_mutex_unlock(&tap_reg_mu);
}

void ts_db_tap_keep(bool keep)
{
	pthread_mutex_lock(&tap_reg_mu);
	tap_keep = keep;
	if (!keep && tap_cur && !tap_cur->refs) {
		tap_free(tap_cur);
		tap_cur = NULL;
	}
	pthread_mutex_unlock(&tap_reg_mu);
}
