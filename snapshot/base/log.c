/* log.c - the engine's logging sink (see log.h). */
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set once at start but read from every thread: atomics keep that defined. */
static _Atomic int log_sink = TS_LOG_STDERR;
static _Atomic int log_max_level = LOG_INFO;
/* The tap: set while the daemon serves (log.h), read by every thread. */
static _Atomic(ts_log_tap_fn) log_tap;
static void *_Atomic log_tap_arg;

void ts_log_set_tap(ts_log_tap_fn fn, void *arg)
{
	atomic_store(&log_tap, NULL);   /* never a new fn with the old arg */
	atomic_store(&log_tap_arg, arg);
	atomic_store(&log_tap, fn);
}

void ts_log_init(ts_log_sink sink, int max_level)
{
	if (sink == TS_LOG_SYSLOG)
		openlog("tracsnap", LOG_PID, LOG_DAEMON);
	atomic_store(&log_max_level, max_level);
	atomic_store(&log_sink, (int)sink);
}

/* Write all of buf with as few write(2) calls as the kernel allows: lines
 * from concurrent threads must not interleave, which one write of a whole line
 * to stderr guarantees for any reasonable length. */
static void log_write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report to */
		}
		buf += n;
		len -= (size_t)n;
	}
}

void ts_log(int level, const char *fmt, ...)
{
	int saved = errno;
	char stackbuf[2048];
	char *line = stackbuf, *heap = NULL;
	const char *prefix;
	size_t plen, mlen, i;
	va_list ap;
	int n;

	if (level > atomic_load(&log_max_level))
		goto out;
	prefix = level == LOG_WARNING ? "tracsnap: warning: " : "tracsnap: ";
	plen = strlen(prefix);

	va_start(ap, fmt);
	n = vsnprintf(stackbuf + plen, sizeof(stackbuf) - plen - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto out;
	mlen = (size_t)n;
	if (mlen >= sizeof(stackbuf) - plen - 1) {
		/* Too long for the stack buffer: format again into one that fits
		 * (a path near PATH_MAX plus a sentence). */
		heap = malloc(plen + mlen + 2);
		if (heap) {
			line = heap;
			va_start(ap, fmt);
			vsnprintf(line + plen, mlen + 1, fmt, ap);
			va_end(ap);
		} else {
			mlen = sizeof(stackbuf) - plen - 2; /* keep what fitted */
		}
	}
	memcpy(line, prefix, plen);
	/* One message, one line, and nothing a terminal or a log reader would
	 * obey: names in messages are the users' bytes.  Line ends become
	 * spaces; other controls (C0, DEL, and C1, U+0080-U+009F in UTF-8,
	 * which some readers take for line ends) '?', as ls(1) shows them. */
	for (i = plen; i < plen + mlen; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\n' || c == '\r' || c == '\t')
			line[i] = ' ';
		else if (c < 0x20 || c == 0x7f)
			line[i] = '?';
		else if (c == 0xc2 && i + 1 < plen + mlen && (unsigned char)line[i + 1] >= 0x80 &&
		         (unsigned char)line[i + 1] <= 0x9f)
			line[i] = line[i + 1] = '?';
	}

	ts_log_tap_fn tap = level <= LOG_NOTICE ? atomic_load(&log_tap) : NULL;
	if (tap) {
		char keep = line[plen + mlen];
		line[plen + mlen] = '\0';
		tap(atomic_load(&log_tap_arg), level, line + plen);
		line[plen + mlen] = keep;
	}
	if (atomic_load(&log_sink) == TS_LOG_SYSLOG) {
		line[plen + mlen] = '\0';
		syslog(level, "%s", line + plen);
	} else {
		line[plen + mlen] = '\n';
		log_write_all(line, plen + mlen + 1);
	}
out:
	free(heap);
	errno = saved;
}
