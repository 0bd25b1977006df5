/* clock.h - the one clock that snapshot NAMES are made from, and the one
 * way times are written for people (ts_clock_iso).
 *
 * Every reading of the wall clock that decides a snapshot's name (the
 * daemon's first-access names and their period, the default name of
 * `tracsnap snapshot ENV`) goes through ts_clock_name_time(), so that tests
 * can move it: TRACSNAP_TEST_CLOCK_OFFSET (a signed whole number of seconds,
 * man/tracsnap.1, ENVIRONMENT) is added to time(NULL).  A mount test sets it
 * in the daemon's environment so that the daemon's clock reads, say,
 * HH:00:05 and no test has to avoid an hour boundary.
 *
 * The instant a snapshot records in the store is not a name: it stays the
 * real clock (snapshot/take/).
 */
#ifndef TS_CLOCK_H
#define TS_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define TS_CLOCK_OFFSET_ENV "TRACSNAP_TEST_CLOCK_OFFSET"

/* time(NULL) plus the offset.  The variable is read once, at the first
 * call (thread-safe); an invalid value is ignored with one warning line. */
time_t ts_clock_name_time(void);

/* Parse an offset: optional sign, decimal digits, nothing else, within
 * +-TS_CLOCK_OFFSET_MAX seconds.  False (out untouched) otherwise. */
#define TS_CLOCK_OFFSET_MAX (100LL * 366 * 86400)
bool ts_clock_offset_parse(const char *text, long long *out);

/* t as local time in ISO 8601 with the offset written +HH:MM, as most
 * parsers want it ("2026-12-07T00:40:12+01:00"): what list, status and the
 * store's events show.  len of at least 32 holds it. */
void ts_clock_iso(time_t t, char *out, size_t len);

#endif
