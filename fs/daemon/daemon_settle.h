/* daemon_settle.h - when the stager refreshes the stage after changes in
 * the environment (daemon_stage.c watches them).
 *
 * When is a change settled?  No event for DMN_SETTLE_QUIET_MS, and every
 * file created since the last refresh closed again (an attachment is
 * created, written, closed: copied once, complete), or
 * DMN_SETTLE_MAX_WAIT_MS after the first event whatever goes on.
 *
 * Refreshes are spaced: DMN_SETTLE_GAP_X times as long apart as the last
 * one took, at least DMN_SETTLE_GAP_MS, so that files changed often (or an
 * environment being filled) cost a bounded share of one core and disk.  A
 * refresh that found the store busy is tried again DMN_SETTLE_BUSY_MS
 * later.
 *
 * Pure functions of the times given (ms on a monotonic clock), so that
 * tests choose them.  The state is the stager thread's own.
 */
#ifndef TS_DAEMON_SETTLE_H
#define TS_DAEMON_SETTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longer than the racy window of a nanosecond-stamped file
 * (take/snap_int.h): a copy made sooner would count as racy and be made
 * again. */
#define DMN_SETTLE_QUIET_MS 30
#define DMN_SETTLE_MAX_WAIT_MS 2000
#define DMN_SETTLE_GAP_MS 100
#define DMN_SETTLE_GAP_X 10
#define DMN_SETTLE_BUSY_MS 1000

typedef struct dmn_settle {
	bool dirty;                    /* the environment changed since the last refresh */
	int64_t first, last;           /* the first and last event since the last refresh */
	int64_t next_ok;               /* no refresh before */
} dmn_settle;

/* A change at now. */
void dmn_settle_event(dmn_settle *s, int64_t now);

/* After the stage was built anew: bring it up to the environment as soon
 * as the spacing allows. */
void dmn_settle_rebuilt(dmn_settle *s);

/* After the stage was built as the environment is (take/stage.h: whole):
 * no refresh is wanted until the next change, whatever was pending (the
 * snapshot it was built from saw it). */
void dmn_settle_built_clean(dmn_settle *s);

/* When the next refresh is due, or -1: none is wanted.  nopen: files
 * created since the last refresh and not closed yet. */
int64_t dmn_settle_due(const dmn_settle *s, size_t nopen);

/* A refresh ended at now after took ms: clean, and spaced. */
void dmn_settle_refreshed(dmn_settle *s, int64_t now, int64_t took);

/* A refresh found the store busy at now (another writer): again later. */
void dmn_settle_busy(dmn_settle *s, int64_t now);

#endif
