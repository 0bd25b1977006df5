/* mounts.c - the store's record of the mount points that show it (mounts.h).
 *
 * A record is "MNT\nSTART\n": the mount point and the recording process's
 * start time (field 22 of /proc/PID/stat, clock ticks since boot).  The
 * start time tells the daemon from a later process given the same pid, by
 * what it is rather than by its name (a daemon may run under valgrind, or
 * as a renamed binary). */
#include "store/mounts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/inuse.h"

#define MOUNTS_NEW ".new"
#define MOUNTS_MAX_MNT 64   /* live mount points of one store worth checking */

bool ts_mounts_start_time(long pid, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	int fd;
	ssize_t n;
	bool ok = false;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		goto out;
	buf[n] = '\0';
	/* The command, field 2, is in parentheses and may hold anything:
	 * count the fields after the last ')'.  Field 3 follows it. */
	p = strrchr(buf, ')');
	if (!p)
		goto out;
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p && sscanf(p + 1, "%llu", start) == 1)
		ok = true;
out:
	return ok;
}

/* ".mount-PID" (or ".mount-PID.new" when tmp): the pid, else -1. */
static long mounts_parse_name(const char *name, bool *tmp)
{
	size_t plen = strlen(TS_MOUNTS_PREFIX);
	char *end;
	long pid;

	if (strncmp(name, TS_MOUNTS_PREFIX, plen) || name[plen] < '1' || name[plen] > '9')
		return -1;
	errno = 0;
	pid = strtol(name + plen, &end, 10);
	if (errno || pid <= 0 || pid > INT_MAX)
		return -1;
	*tmp = !strcmp(end, MOUNTS_NEW);
	return *tmp || !*end ? pid : -1;
}

bool ts_mounts_pid_live(long pid, unsigned long long start)
{
	unsigned long long now;

	if (ts_mounts_start_time(pid, &now))
		return now == start;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Read record name: its mount point into mnt (PATH_MAX), its start time. */
static bool mounts_read(ts_store *s, const char *name, char *mnt, unsigned long long *start)
{
	char buf[PATH_MAX + 64], *nl;
	struct stat st;
	ssize_t n = -1;
	int fd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	nl = strchr(buf, '\n');
	if (!nl || buf[0] != '/' || (size_t)(nl - buf) >= PATH_MAX)
		return false;
	*nl = '\0';
	memcpy(mnt, buf, (size_t)(nl - buf) + 1);
	return sscanf(nl + 1, "%llu", start) == 1;
}

/* Visit the records; remove the stale ones (and temporaries of dead
 * writers) when clean.  fn gets each live mount point. */
static void mounts_each(ts_store *s, bool clean, void (*fn)(void *, const char *), void *arg)
{
	DIR *d = ts_beneath_list(s->dirfd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char mnt[PATH_MAX];
		unsigned long long start = 0;
		bool tmp = false, live;
		long pid = mounts_parse_name(de->d_name, &tmp);

		if (pid < 0)
			continue;
		if (tmp) {
			live = kill((pid_t)pid, 0) == 0 || errno == EPERM;
		} else if (!mounts_read(s, de->d_name, mnt, &start)) {
			live = kill((pid_t)pid, 0) == 0 || errno == EPERM;   /* being written? */
		} else {
			live = ts_mounts_pid_live(pid, start);
			if (live && fn)
				fn(arg, mnt);
		}
		if (!live && clean)
			(void)unlinkat(s->dirfd, de->d_name, 0);
	}
	closedir(d);
}

ts_err_code ts_mounts_record(ts_store *s, const char *mnt, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char name[64], tmp[80];
	unsigned long long start;
	long pid = (long)getpid();
	int fd = -1;
	FILE *f = NULL;

	mounts_each(s, true, NULL, NULL);
	snprintf(name, sizeof name, "%s%ld", TS_MOUNTS_PREFIX, pid);
	snprintf(tmp, sizeof tmp, "%s%s", name, MOUNTS_NEW);
	if (mnt[0] != '/' || strchr(mnt, '\n') || !ts_mounts_start_time(pid, &start)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "store %s: cannot record mount point %s", s->root, mnt);
		goto out;
	}
	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		rc = ts_err_sys(e, errno, "store %s: cannot write %s", s->root, tmp);
		goto out;
	}
	fd = -1;
	fprintf(f, "%s\n%llu\n", mnt, start);
	if (fflush(f) != 0 || ferror(f)) {
		rc = ts_err_sys(e, errno, "store %s: cannot write %s", s->root, tmp);
		goto out;
	}
	/* No fsync: a record that a crash loses has no daemon left to serve. */
	if (renameat(s->dirfd, tmp, s->dirfd, name) < 0)
		rc = ts_err_sys(e, errno, "store %s: cannot rename %s", s->root, tmp);
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc != TS_OK)
		(void)unlinkat(s->dirfd, tmp, 0);
	return rc;
}

void ts_mounts_unrecord(ts_store *s)
{
	char name[64];

	snprintf(name, sizeof name, "%s%ld", TS_MOUNTS_PREFIX, (long)getpid());
	(void)unlinkat(s->dirfd, name, 0);
}

typedef struct mounts_set {
	char *mnt[MOUNTS_MAX_MNT];
	size_t n;
} mounts_set;

static void mounts_add(void *arg, const char *mnt)
{
	mounts_set *set = arg;

	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->mnt[i], mnt))
			return;
	if (set->n < MOUNTS_MAX_MNT && (set->mnt[set->n] = strdup(mnt)) != NULL)
		set->n++;
}

int ts_mounts_users(ts_store *s, const char *name, const char *also_mnt, char *who, size_t len)
{
	mounts_set set = { .n = 0 };
	char prefix[PATH_MAX];
	size_t off = 0;
	int count = 0;

	if (len)
		who[0] = '\0';
	mounts_each(s, false, mounts_add, &set);
	if (also_mnt)
		mounts_add(&set, also_mnt);
	for (size_t i = 0; i < set.n; i++) {
		int n;
		if ((size_t)snprintf(prefix, sizeof prefix, "%s/%s", set.mnt[i], name) >= sizeof prefix)
			continue;
		n = ts_inuse_find(prefix, who ? who + off : NULL, len > off ? len - off : 0);
		/* Two mounts: "pid 1 (a)" then "pid 2 (b)" joined by ", ". */
		if (n > 0 && count > 0 && len > off + 2 && who[off]) {
			size_t w = strlen(who + off);
			if (off + w + 3 <= len) {
				memmove(who + off + 2, who + off, w + 1);
				memcpy(who + off, ", ", 2);
			}
		}
		count += n;
		if (len)
			off = strlen(who);
	}
	for (size_t i = 0; i < set.n; i++)
		free(set.mnt[i]);
	return count;
}
