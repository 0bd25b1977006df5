/* daemon_auto.h - first-access names: which names the auto= formats give
 * at a time, and the per-period limit on users who may not manage.
 *
 * A lookup of a missing name at the mount root makes a snapshot under that
 * name if one of the strftime formats of auto= gives it for the current
 * time (man/tracsnap.1, auto=).  Pure functions of the time given, so that
 * tests choose it; the daemon passes ts_clock_name_time() (base/clock.h).
 *
 * Ownership: fmts are malloc'd by dmn_auto_parse and freed by
 * dmn_auto_free.
 */
#ifndef TS_DAEMON_AUTO_H
#define TS_DAEMON_AUTO_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "base/err.h"

#define DMN_MAX_AUTO 8
#define DMN_AUTO_DEFAULT "%Y-%m-%d:%Y-%m-%dT%H"

typedef struct dmn_auto {
	char *fmts[DMN_MAX_AUTO];      /* set before threads start, read-only after */
	int n;
	/* Under the daemon's snap_mu: per format, the last name (period) a
	 * snapshot was made under; a user who may not manage snapshots cannot
	 * make that period's again, even after it was deleted or pruned. */
	char made[DMN_MAX_AUTO][NAME_MAX + 1];
} dmn_auto;

/* Split spec ("FMT[:FMT...]") into a's formats.  TS_ERR_USAGE ("at most 8
 * formats") or TS_ERR_NOMEM; a is left for dmn_auto_free either way. */
ts_err_code dmn_auto_parse(dmn_auto *a, const char *spec, ts_err *e);
void dmn_auto_free(dmn_auto *a);

/* Which formats give name at now (local time): bit i for format i. */
unsigned dmn_auto_mask(const dmn_auto *a, const char *name, time_t now);

/* The names the formats give at now, into buf; ptrs[k] points at each.
 * Returns how many (formats that give "" are left out). */
size_t dmn_auto_names(const dmn_auto *a, time_t now, char buf[][NAME_MAX + 1],
                      const char **ptrs);

/* Was a snapshot already made in this period under name by one of the
 * formats in mask? */
bool dmn_auto_spent(const dmn_auto *a, const char *name, unsigned mask);

/* A snapshot was made under name: remember it for the formats in mask. */
void dmn_auto_record(dmn_auto *a, const char *name, unsigned mask);

#endif
