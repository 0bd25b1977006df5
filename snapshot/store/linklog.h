/* linklog.h - the engine's log of its own hard-link changes in the store.
 *
 * A manifest records each stored copy's identity as it was placed (inode
 * and ctime, manifest.h), and before a copy is shared into a new snapshot
 * the engine checks it (take/share_check.h): a ctime that moved means the
 * inode changed.  But link(2) and unlink(2) move the ctime too, and the
 * engine itself adds and removes hard links all the time: sharing into a
 * new snapshot, building the stage, removing a snapshot, a stage or a
 * leftover .tmp-*.  Each such batch of its own appends one line to
 * STORE/.linklog:
 *
 *   <start sec>.<9-digit nsec> <end sec>.<9-digit nsec>
 *
 * start taken just before the first link or unlink, end just after the
 * last.  A ctime that moved, but to a moment inside one of these intervals,
 * is explained by the engine's own work (ts_linklog_explains).
 *
 * A batch that touches few inodes names them, and explains only theirs:
 *
 *   I <start> <end> <inode> [<inode>...]
 *
 * (at most LINKLOG_INOS_PER_LINE a line, as many lines as needed).  The
 * daemon's stage refreshes run every few tens of milliseconds while Trac
 * writes, and last as long as their copies; an interval explaining every
 * inode would hide a change made to any copy in that time.  A refresh
 * unlinks only what changed, so it notes those inodes as it goes
 * (ts_linklog_note) and logs nothing when it unlinked nothing.  A take,
 * a stage build and a removal link or unlink whole trees, and log the
 * plain line: naming every inode would cost a line per file.  A ctime
 * outside every interval is not, and the copy is hashed once before it is
 * shared.  So losing lines (a crash before the append, no fsync, a trim
 * racing an append) only costs hashing, never a wrong share: the file is
 * appended without fsync.
 *
 * Clocks: ctime comes from the kernel's coarse clock, which lags
 * CLOCK_REALTIME by up to a tick; start is therefore read from
 * CLOCK_REALTIME_COARSE and end from CLOCK_REALTIME, so that every ctime
 * set in between lies inside.  A ctime with no nanoseconds comes from a
 * filesystem with whole-second (or two-second) timestamps, truncated:
 * ts_linklog_explains allows for that.
 *
 * One engine batch can still hide a change made by someone else before
 * it: an unlink moves the ctime of a copy that was rewritten with its mtime
 * put back to a moment inside the batch.  So before the engine removes a
 * tree of the store, linkguard.h looks at the copies it is about to unlink
 * that other names share, and for each whose ctime moved with no
 * explanation appends
 *
 *   S <inode> <sec>.<9-digit nsec>
 *
 * (the moment it was found).  A record of that inode older than that
 * moment proves nothing by its ctime any more (ts_linklog_suspected): the
 * copy is hashed before it is shared.
 *
 * Bounded: ts_linklog_read keeps the last TS_LINKLOG_KEEP lines once there
 * are more than TS_LINKLOG_TRIM_AT (a copy and a rename).  Only intervals
 * since the newest snapshot's links matter: every take links every file it
 * shares, which moves its ctime anew.
 *
 * Trust: STORE is root's and checked to be (base/trust.h); the file is
 * opened beneath the store's descriptor, never through a link
 * (O_NOFOLLOW), and read as data, each line checked.
 *
 * Ownership: a ts_linklog owns its arrays; release with ts_linklog_free.
 * Appending needs no lock (one write(2) of one line, O_APPEND); reading
 * trims, so it is for a writer holding the store's lock (store.h).
 */
#ifndef TS_LINKLOG_H
#define TS_LINKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TS_LINKLOG_FILE ".linklog"
#define TS_LINKLOG_TRIM_AT 4096
#define TS_LINKLOG_KEEP 2048

typedef struct ts_linklog_suspect {
	uint64_t ino;
	int64_t at;        /* ns: when the unexplained change was found */
} ts_linklog_suspect;

typedef struct ts_linklog_touch {
	uint64_t ino;
	int64_t start, end;   /* ns: an "I" line's interval */
} ts_linklog_touch;

typedef struct ts_linklog {
	int64_t *start;    /* ns, sorted ascending */
	int64_t *maxend;   /* maxend[i]: the latest end among intervals 0..i */
	size_t n;
	ts_linklog_suspect *sus;   /* sorted by ino, then at */
	size_t nsus;
	ts_linklog_touch *touch;   /* sorted by ino, then start */
	size_t ntouch;
} ts_linklog;

/* The inodes one batch touched (an "I" batch), noted as it goes.  Not
 * thread-safe: one thread notes.  Ownership: the caller's struct, zeroed
 * to begin; ts_linklog_end_inos frees what it holds. */
typedef struct ts_linklog_inos {
	uint64_t *v;
	size_t n, cap;
	bool all;          /* a note was lost (no memory): explain every inode */
} ts_linklog_inos;

/* The start of a batch of links or unlinks, into *start. */
void ts_linklog_begin(struct timespec *start);

/* The batch begun at *start is done: append its line to STORE/.linklog
 * (storefd: the store's directory).  Never fails: a line lost only costs
 * hashing (above). */
void ts_linklog_end(int storefd, const struct timespec *start);

/* Note that the batch b is about to touch inode ino. */
void ts_linklog_note(ts_linklog_inos *b, uint64_t ino);

/* The batch begun at *start, which touched the inodes noted in b, is
 * done: append its "I" lines (nothing when it touched none; the plain line
 * when a note was lost), then free b's list.  Never fails, as
 * ts_linklog_end. */
void ts_linklog_end_inos(int storefd, const struct timespec *start, ts_linklog_inos *b);

/* Note that inode ino was found changed by someone else, now (an "S"
 * line).  Never fails, as ts_linklog_end. */
void ts_linklog_suspect_now(int storefd, uint64_t ino);

/* Read STORE/.linklog into l (which it initialises; empty when the file is
 * missing or unreadable; bad lines are skipped), trimming the file when it
 * has grown past TS_LINKLOG_TRIM_AT lines.  For a writer holding the lock. */
void ts_linklog_read(int storefd, ts_linklog *l);

/* Does the ctime of inode ino lie inside an interval of l: a plain one,
 * or one of a batch that named ino? */
bool ts_linklog_explains(const ts_linklog *l, uint64_t ino, const struct timespec *ctime);

/* Was inode ino found changed by someone else after the moment since (a
 * record's ctime)?  Then that record's ctime proves nothing. */
bool ts_linklog_suspected(const ts_linklog *l, uint64_t ino, const struct timespec *since);

void ts_linklog_free(ts_linklog *l);

#endif
