/* events.h - the store's own short log of what went wrong, for `tracsnap status`.
 *
 * A refused mkdir answers only EINVAL or EBUSY, and the reason went to
 * syslog, lost on a machine without one.  So the daemon also appends every
 * warning, error and refusal it logs (base/log.h: LOG_NOTICE and more
 * severe) to STORE/.events, one line each:
 *
 *   2026-12-07T00:40:12+00:00 notice mkdir /.hidden refused: snapshot name ...
 *
 * (local time, ISO 8601; the level word is "error", "warning" or "notice";
 * the message as the log has it, one line, no control characters).  When
 * the file passes TS_EVENTS_MAX bytes it becomes STORE/.events.1 (replacing
 * the one before) and a new one starts: at most twice that is kept.  Both
 * are 0600, root's (or the store owner's), opened from the store's
 * descriptor without following a symlink.
 *
 * Concurrency: each line is one write(2) with O_APPEND, so lines from
 * several threads never interleave, and no lock is taken (ts_log calls this
 * from any thread, holding whatever it holds).  Two threads that pass the
 * limit at the same moment may rotate twice, losing the older half.
 *
 * Ownership: nothing is retained.
 */
#ifndef TS_EVENTS_H
#define TS_EVENTS_H

#include <stddef.h>

#define TS_EVENTS_FILE ".events"
#define TS_EVENTS_OLD ".events.1"
#define TS_EVENTS_MAX (64 * 1024)

/* Append one line for a message of level (syslog's) to the store open on
 * dirfd; never fails (an event that cannot be kept is only lost). */
void ts_events_append(int dirfd, int level, const char *msg);

/* The last max lines of the store's events, oldest first, each passed to fn
 * (without its newline); returns how many. */
size_t ts_events_tail(int dirfd, size_t max, void (*fn)(void *arg, const char *line), void *arg);

#endif
