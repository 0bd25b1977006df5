/* progress.h - one progress line on a terminal for long commands, the same
 * for all of them (snapshot, restore, verify):
 * "snapshot NAME: 120/415 files, 1.2 GiB/2.0 GiB, 410.0 MiB/s, ETA 3 min 20 s"
 * (no ETA in the first 2 s or before 1% of the bytes, whose rate says
 * little).  Nothing at all is printed when stderr is not a terminal. */
#ifndef TS_CLI_PROGRESS_H
#define TS_CLI_PROGRESS_H

#include <stdbool.h>
#include <time.h>
#include "base/progress.h"

typedef struct cli_progress {
	const char *what;          /* borrowed: "snapshot NAME", "restore" */
	bool tty;
	bool shown;                /* a line is on the screen */
	struct timespec start, last;
} cli_progress;

/* Returns the sink to hand to the engine (fn NULL when not a terminal). */
ts_progress_sink cli_progress_start(cli_progress *p, const char *what);

/* Draw p now (subject to the redraw limit): for callers whose engine
 * reports progress another way (verify). */
void cli_progress_show(cli_progress *c, const ts_progress *p);

/* Clear the line, so the summary or an error starts on a clean line. */
void cli_progress_end(cli_progress *p);

#endif
