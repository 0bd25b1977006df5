/* progress.h - how long commands report how far they are.
 *
 * The engine counts; a front end decides whether and how to show it (the
 * commands draw one line on a terminal and nothing otherwise).  The sink may
 * be called often: it must be cheap and it is called from one thread only.
 */
#ifndef TS_PROGRESS_H
#define TS_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ts_progress {
	uint64_t files_done, files_total;
	uint64_t bytes_done, bytes_total;
} ts_progress;

typedef struct ts_progress_sink {
	void (*fn)(void *arg, const ts_progress *p);
	void *arg;
} ts_progress_sink;

/* Human size with binary units, e.g. "1.2 GiB" (progress.c). */
void ts_human_bytes(double b, char *buf, unsigned len);

static inline void ts_progress_report(const ts_progress_sink *s, const ts_progress *p)
{
	if (s && s->fn)
		s->fn(s->arg, p);
}

#endif
