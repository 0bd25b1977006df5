/* progress.c - the terminal progress line (see progress.h). */
#include "cli_progress.h"

#include <stdio.h>
#include <unistd.h>

#define CLI_PROGRESS_EVERY_NS 100000000LL   /* redraw at most 10 times a second */
#define CLI_PROGRESS_ETA_AFTER_S 2.0

static double cli_secs(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* ", ETA 40 s", ", ETA 3 min 20 s", ", ETA 1 h 29 min". */
static void cli_eta(double secs, char *out, size_t len)
{
	unsigned long s = (unsigned long)(secs + 0.5);

	if (s < 60)
		snprintf(out, len, ", ETA %lu s", s);
	else if (s < 3600)
		snprintf(out, len, ", ETA %lu min %lu s", s / 60, s % 60);
	else
		snprintf(out, len, ", ETA %lu h %lu min", s / 3600, s % 3600 / 60);
}

static void cli_progress_draw(void *arg, const ts_progress *pr)
{
	cli_progress *p = arg;
	struct timespec now;
	char done[32], total[32], rate[32], eta[48] = "";
	double secs, bps;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (p->shown && cli_secs(&p->last, &now) * 1e9 < CLI_PROGRESS_EVERY_NS &&
	    pr->files_done < pr->files_total)
		return;
	p->last = now;
	secs = cli_secs(&p->start, &now);
	bps = secs > 0 ? (double)pr->bytes_done / secs : 0;
	ts_human_bytes((double)pr->bytes_done, done, sizeof done);
	ts_human_bytes((double)pr->bytes_total, total, sizeof total);
	ts_human_bytes(bps, rate, sizeof rate);
	/* The rate of the first moments says little (opening, the first
	 * directories): no estimate before 2 s and 1% of the bytes. */
	if (bps > 0 && pr->bytes_total > pr->bytes_done && secs >= CLI_PROGRESS_ETA_AFTER_S &&
	    pr->bytes_done * 100 >= pr->bytes_total)
		cli_eta((double)(pr->bytes_total - pr->bytes_done) / bps, eta, sizeof eta);
	fprintf(stderr, "\r\033[K%s: %llu/%llu files, %s/%s, %s/s%s", p->what,
	        (unsigned long long)pr->files_done, (unsigned long long)pr->files_total,
	        done, total, rate, eta);
	fflush(stderr);
	p->shown = true;
}

ts_progress_sink cli_progress_start(cli_progress *p, const char *what)
{
	ts_progress_sink s = { NULL, p };
	p->what = what;
	p->tty = isatty(STDERR_FILENO);
	p->shown = false;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	p->last = p->start;
	if (p->tty)
		s.fn = cli_progress_draw;
	return s;
}

void cli_progress_show(cli_progress *c, const ts_progress *p)
{
	if (c->tty)
		cli_progress_draw(c, p);
}

void cli_progress_end(cli_progress *p)
{
	if (p->shown) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->shown = false;
	}
}
