/* events.c - the store's short log of what went wrong (events.h). */
#include "store/events.h"
#include "base/clock.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *events_word(int level)
{
	return level <= LOG_ERR ? "error" : level == LOG_WARNING ? "warning" : "notice";
}

void ts_events_append(int dirfd, int level, const char *msg)
{
	char when[40], line[4096];
	struct stat st;
	time_t now = time(NULL);
	int fd, n;

	ts_clock_iso(now, when, sizeof when);
	n = snprintf(line, sizeof line, "%s %s %s\n", when, events_word(level), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {   /* a very long message: cut, still one line */
		n = (int)sizeof line - 1;
		line[n - 1] = '\n';
	}
	fd = openat(dirfd, TS_EVENTS_FILE, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size + n > TS_EVENTS_MAX) {
		close(fd);
		(void)renameat(dirfd, TS_EVENTS_FILE, dirfd, TS_EVENTS_OLD);
		fd = openat(dirfd, TS_EVENTS_FILE, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	}
	if (fd >= 0) {
		(void)!write(fd, line, (size_t)n);
		close(fd);
	}
}

/* The whole of file name in the store, NUL-terminated; NULL when absent. */
static char *events_slurp(int dirfd, const char *name, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	*len = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= 4 * TS_EVENTS_MAX &&
	    (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		n = read(fd, buf, (size_t)st.st_size);
		*len = n > 0 ? (size_t)n : 0;
		buf[*len] = '\0';
	}
	close(fd);
	return buf;
}

size_t ts_events_tail(int dirfd, size_t max, void (*fn)(void *arg, const char *line), void *arg)
{
	size_t len[2], total = 0, skip, shown = 0;
	char *buf[2] = { events_slurp(dirfd, TS_EVENTS_OLD, &len[0]),
	                 events_slurp(dirfd, TS_EVENTS_FILE, &len[1]) };

	for (int f = 0; f < 2; f++)
		for (size_t i = 0; i < len[f]; i++)
			total += buf[f][i] == '\n';
	skip = total > max ? total - max : 0;
	for (int f = 0; f < 2; f++) {
		char *p = buf[f], *nl;
		while (p && (nl = strchr(p, '\n')) != NULL) {
			*nl = '\0';
			if (skip)
				skip--;
			else if (shown++ < max)
				fn(arg, p);
			p = nl + 1;
		}
	}
	free(buf[0]);
	free(buf[1]);
	return shown;
}
