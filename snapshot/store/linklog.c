/* linklog.c - the engine's log of its own hard-link changes (linklog.h). */
#include "store/linklog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINKLOG_TMP ".linklog.tmp"
/* Read at most this much, from the end: a file this long was not trimmed
 * (appends without the lock), and its oldest lines do not matter. */
#define LINKLOG_READ_MAX (1024 * 1024)
/* A ctime with nanoseconds: its filesystem's clock is fine, but take a
 * little slack all the same.  Without: truncated to whole seconds, or to
 * two (FAT). */
#define LINKLOG_SLACK_FINE_NS (10LL * 1000000LL)
#define LINKLOG_SLACK_COARSE_NS (2LL * 1000000000LL)
/* Inodes an "I" line names at most: a line stays one short write. */
#define LINKLOG_INOS_PER_LINE 64

static int64_t ll_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

void ts_linklog_begin(struct timespec *start)
{
	clock_gettime(CLOCK_REALTIME_COARSE, start);
}

/* Append one line (n bytes, its LF included).  One write of one line:
 * concurrent appends never interleave. */
static void ll_append(int storefd, const char *line, size_t n)
{
	int fd = openat(storefd, TS_LINKLOG_FILE, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	                0600);
	if (fd < 0)
		return;
	(void)!write(fd, line, n);
	close(fd);
}

void ts_linklog_end(int storefd, const struct timespec *start)
{
	struct timespec end;
	char line[96];
	int n;

	clock_gettime(CLOCK_REALTIME, &end);
	n = snprintf(line, sizeof line, "%lld.%09ld %lld.%09ld\n", (long long)start->tv_sec,
	             (long)start->tv_nsec, (long long)end.tv_sec, (long)end.tv_nsec);
	ll_append(storefd, line, (size_t)n);
}

void ts_linklog_note(ts_linklog_inos *b, uint64_t ino)
{
	if (b->all)
		return;
	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 16;
		uint64_t *nv = realloc(b->v, ncap * sizeof *nv);
		if (!nv) {
			b->all = true;   /* more is explained, never less */
			return;
		}
		b->v = nv;
		b->cap = ncap;
	}
	b->v[b->n++] = ino;
}

void ts_linklog_end_inos(int storefd, const struct timespec *start, ts_linklog_inos *b)
{
	struct timespec end;
	/* "I", two times and the inodes, each at most 21 bytes with its space */
	char line[64 + LINKLOG_INOS_PER_LINE * 21];

	clock_gettime(CLOCK_REALTIME, &end);
	if (b->all)
		ts_linklog_end(storefd, start);
	for (size_t i = 0; !b->all && i < b->n;) {
		int n = snprintf(line, sizeof line, "I %lld.%09ld %lld.%09ld", (long long)start->tv_sec,
		                 (long)start->tv_nsec, (long long)end.tv_sec, (long)end.tv_nsec);
		for (size_t k = 0; k < LINKLOG_INOS_PER_LINE && i < b->n; k++, i++)
			n += snprintf(line + n, sizeof line - (size_t)n, " %llu", (unsigned long long)b->v[i]);
		line[n++] = '\n';
		ll_append(storefd, line, (size_t)n);
	}
	free(b->v);
	memset(b, 0, sizeof *b);
}

void ts_linklog_suspect_now(int storefd, uint64_t ino)
{
	struct timespec now;
	char line[96];
	int n;

	clock_gettime(CLOCK_REALTIME, &now);
	n = snprintf(line, sizeof line, "S %llu %lld.%09ld\n", (unsigned long long)ino,
	             (long long)now.tv_sec, (long)now.tv_nsec);
	ll_append(storefd, line, (size_t)n);
}

/* "<sec>.<9 digits>" at *p (non-negative), advancing *p past it. */
static bool ll_time(const char **p, int64_t *out)
{
	const char *s = *p;
	int64_t sec = 0, nsec = 0;
	int digits = 0;

	while (*s >= '0' && *s <= '9' && digits < 12) {
		sec = sec * 10 + (*s++ - '0');
		digits++;
	}
	if (!digits || *s++ != '.')
		return false;
	for (int i = 0; i < 9; i++) {
		if (*s < '0' || *s > '9')
			return false;
		nsec = nsec * 10 + (*s++ - '0');
	}
	*out = sec * 1000000000LL + nsec;
	*p = s;
	return true;
}

/* One line "<start> <end>" (without its LF). */
static bool ll_line(const char *s, int64_t *start, int64_t *end)
{
	return ll_time(&s, start) && *s++ == ' ' && ll_time(&s, end) && *s == '\0' && *start <= *end;
}

/* An inode number at *p, advancing *p past it. */
static bool ll_ino(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t ino = 0;
	int digits = 0;

	while (*s >= '0' && *s <= '9' && digits < 19) {
		ino = ino * 10 + (uint64_t)(*s++ - '0');
		digits++;
	}
	*out = ino;
	*p = s;
	return digits > 0;
}

/* One line "S <ino> <at>". */
static bool ll_sus_line(const char *s, ts_linklog_suspect *out)
{
	if (*s++ != 'S' || *s++ != ' ')
		return false;
	return ll_ino(&s, &out->ino) && *s++ == ' ' && ll_time(&s, &out->at) && *s == '\0';
}

/* One line "I <start> <end> <ino>...": its inodes appended to *v (n of
 * cap), only when the whole line is good.  False: not such a line, or no
 * memory for it (then it explains nothing: more hashing, never a wrong
 * share). */
static bool ll_touch_line(const char *s, ts_linklog_touch **v, size_t *n, size_t *cap)
{
	int64_t start, end;
	size_t from = *n;

	if (*s++ != 'I' || *s++ != ' ' || !ll_time(&s, &start) || *s++ != ' ' || !ll_time(&s, &end) ||
	    start > end)
		return false;
	do {
		uint64_t ino;
		if (*s++ != ' ' || !ll_ino(&s, &ino)) {
			*n = from;
			return false;
		}
		if (*n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 64;
			ts_linklog_touch *nv = realloc(*v, ncap * sizeof *nv);
			if (!nv) {
				*n = from;
				return false;
			}
			*v = nv;
			*cap = ncap;
		}
		(*v)[(*n)++] = (ts_linklog_touch){ .ino = ino, .start = start, .end = end };
	} while (*s != '\0');
	return true;
}

static int ll_touch_cmp(const void *a, const void *b)
{
	const ts_linklog_touch *x = a, *y = b;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int ll_sus_cmp(const void *a, const void *b)
{
	const ts_linklog_suspect *x = a, *y = b;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

typedef struct ll_pair {
	int64_t start, end;
} ll_pair;

static int ll_cmp(const void *a, const void *b)
{
	const ll_pair *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Read the file's text (its last LINKLOG_READ_MAX bytes at most) into a
 * NUL-terminated buffer; NULL when missing or unreadable. */
static char *ll_slurp(int storefd, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	off_t from = 0;
	size_t want, got = 0;
	int fd = openat(storefd, TS_LINKLOG_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		goto out;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto out;
	if (st.st_size > LINKLOG_READ_MAX)
		from = st.st_size - LINKLOG_READ_MAX;
	want = (size_t)(st.st_size - from);
	buf = malloc(want + 1);
	if (!buf)
		goto out;
	while (got < want) {
		ssize_t k = pread(fd, buf + got, want - got, from + (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	*len = got;
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

/* Keep the last TS_LINKLOG_KEEP lines (from, within text): a copy, then a
 * rename over the file. */
static void ll_trim(int storefd, const char *from, size_t len)
{
	int fd = openat(storefd, LINKLOG_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	                0600);
	bool ok = fd >= 0;
	size_t off = 0;

	while (ok && off < len) {
		ssize_t k = write(fd, from + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		ok = k > 0;
		off += ok ? (size_t)k : 0;
	}
	if (fd >= 0)
		close(fd);
	if (!ok || renameat(storefd, LINKLOG_TMP, storefd, TS_LINKLOG_FILE) < 0)
		(void)unlinkat(storefd, LINKLOG_TMP, 0);
}

void ts_linklog_read(int storefd, ts_linklog *l)
{
	size_t len = 0, n = 0, cap = 0, lines = 0, nsus = 0, capsus = 0, ntouch = 0, captouch = 0;
	char *text = ll_slurp(storefd, &len);
	ll_pair *v = NULL;
	ts_linklog_suspect *sus = NULL;
	ts_linklog_touch *touch = NULL;
	bool lost = false;
	char *p, *nl;

	memset(l, 0, sizeof *l);
	if (!text)
		return;
	/* Only whole lines: a read from the middle skips its first, a line
	 * being appended has no LF yet. */
	p = text;
	if (len == LINKLOG_READ_MAX && (nl = strchr(p, '\n')))
		p = nl + 1;
	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		int64_t s, e;
		ts_linklog_suspect one;
		*nl = '\0';
		lines++;
		if (ll_sus_line(p, &one)) {
			if (nsus == capsus) {
				size_t ncap = capsus ? capsus * 2 : 16;
				ts_linklog_suspect *nv = realloc(sus, ncap * sizeof *nv);
				if (!nv) {
					/* Without it a suspect copy could pass by its
					 * ctime: count every interval as lost. */
					lost = true;
					continue;
				}
				sus = nv;
				capsus = ncap;
			}
			sus[nsus++] = one;
			continue;
		}
		if (ll_touch_line(p, &touch, &ntouch, &captouch))
			continue;
		if (!ll_line(p, &s, &e))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			ll_pair *nv = realloc(v, ncap * sizeof *nv);
			if (!nv) {
				lost = true;   /* no intervals: more hashing, never a wrong share */
				continue;
			}
			v = nv;
			cap = ncap;
		}
		v[n].start = s;
		v[n].end = e;
		n++;
	}
	if (lines > TS_LINKLOG_TRIM_AT) {
		/* The text of the last TS_LINKLOG_KEEP lines, LFs put back. */
		size_t skip = lines - TS_LINKLOG_KEEP, seen = 0, at = 0;
		for (size_t i = 0; i < len && seen < skip; i++)
			if (text[i] == '\0' && ++seen == skip)
				at = i + 1;
		for (size_t i = at; i < len; i++)
			if (text[i] == '\0')
				text[i] = '\n';
		ll_trim(storefd, text + at, (size_t)(p - text) - at);
	}
	free(text);
	if (nsus) {
		qsort(sus, nsus, sizeof *sus, ll_sus_cmp);
		l->sus = sus;
		l->nsus = nsus;
		sus = NULL;
	}
	if (lost)
		goto out;   /* no intervals: more hashing, never a wrong share */
	if (ntouch) {
		qsort(touch, ntouch, sizeof *touch, ll_touch_cmp);
		l->touch = touch;
		l->ntouch = ntouch;
		touch = NULL;
	}
	if (n == 0)
		goto out;
	qsort(v, n, sizeof *v, ll_cmp);
	l->start = malloc(n * sizeof *l->start);
	l->maxend = malloc(n * sizeof *l->maxend);
	if (!l->start || !l->maxend) {
		free(l->start);
		free(l->maxend);
		l->start = l->maxend = NULL;
		goto out;   /* no intervals: more hashing, never a wrong share */
	}
	for (size_t i = 0; i < n; i++) {
		l->start[i] = v[i].start;
		l->maxend[i] = i && l->maxend[i - 1] > v[i].end ? l->maxend[i - 1] : v[i].end;
	}
	l->n = n;
out:
	free(v);
	free(sus);
	free(touch);
}

/* Does an "I" line naming ino cover t (slack as below)? */
static bool ll_touch_explains(const ts_linklog *l, uint64_t ino, int64_t t, int64_t slack)
{
	size_t lo = 0, hi = l->ntouch;

	/* The first line of ino (sorted by ino, then start); few follow. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->touch[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < l->ntouch && l->touch[lo].ino == ino && l->touch[lo].start <= t + slack; lo++)
		if (l->touch[lo].end >= t)
			return true;
	return false;
}

bool ts_linklog_explains(const ts_linklog *l, uint64_t ino, const struct timespec *ctime)
{
	int64_t t = ll_ns(ctime);
	int64_t slack = ctime->tv_nsec ? LINKLOG_SLACK_FINE_NS : LINKLOG_SLACK_COARSE_NS;
	size_t lo = 0, hi = l->n;

	if (ll_touch_explains(l, ino, t, slack))
		return true;

	/* The intervals that start by t + slack; does the latest end among
	 * them reach t? */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->start[mid] <= t + slack)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && l->maxend[lo - 1] >= t;
}

bool ts_linklog_suspected(const ts_linklog *l, uint64_t ino, const struct timespec *since)
{
	size_t lo = 0, hi = l->nsus;

	/* The last line of ino (sorted by ino, then at): is it after since? */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->sus[mid].ino <= ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && l->sus[lo - 1].ino == ino && l->sus[lo - 1].at > ll_ns(since);
}

void ts_linklog_free(ts_linklog *l)
{
	free(l->start);
	free(l->maxend);
	free(l->sus);
	free(l->touch);
	memset(l, 0, sizeof *l);
}
