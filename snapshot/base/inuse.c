/* inuse.c - which processes use a path, from /proc (see inuse.h). */
#include "base/inuse.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool ts_inuse_path_below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (n == 0 || path[0] != '/')
		return false;
	if (n == 1 && prefix[0] == '/')
		return true;
	return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* readlinkat that says whether the link names prefix or below it.  A link
 * we may not read, or one that is no path (pipe:[123]), does not. */
static bool inuse_link_below(int dirfd, const char *name, const char *prefix)
{
	char link[PATH_MAX];
	ssize_t n = readlinkat(dirfd, name, link, sizeof link - 1);

	if (n <= 0)
		return false;
	link[n] = '\0';
	return ts_inuse_path_below(link, prefix);
}

/* Does any link in the directory sub of the process (fd, map_files) name
 * prefix or below it? */
static bool inuse_dir_below(int pidfd, const char *sub, const char *prefix)
{
	int fd = openat(pidfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	bool hit = false;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return false;   /* gone, or not ours to see */
	}
	while (!hit && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			hit = inuse_link_below(dirfd(d), de->d_name, prefix);
	closedir(d);
	return hit;
}

static bool inuse_pid_uses(int pidfd, const char *prefix)
{
	return inuse_link_below(pidfd, "cwd", prefix) || inuse_link_below(pidfd, "root", prefix) ||
	       inuse_dir_below(pidfd, "fd", prefix) || inuse_dir_below(pidfd, "map_files", prefix);
}

/* The command name, printable: it is the process's to choose, and ends up
 * in a log line and on a terminal. */
static void inuse_comm(int pidfd, char *out, size_t len)
{
	int fd = openat(pidfd, "comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, len - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0) {
		snprintf(out, len, "?");
		return;
	}
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	for (char *p = out; *p; p++)
		if (!isprint((unsigned char)*p) || *p == ',')
			*p = '?';
}

/* Append "pid N (comm)" to who, or ", ..." once it no longer fits. */
static void inuse_append(char *who, size_t len, size_t *off, bool *cut, int count,
                         const char *pid, const char *comm)
{
	char item[64];
	int w = snprintf(item, sizeof item, "%spid %s (%s)", count > 1 ? ", " : "", pid, comm);
	size_t need = w > 0 ? (size_t)w : 0;

	if (!len || *cut)
		return;
	/* Room for the item and a later ", ..." (6 bytes with the NUL). */
	if (*off + need + 6 <= len) {
		memcpy(who + *off, item, need + 1);
		*off += need;
		return;
	}
	*cut = true;
	if (*off + 6 <= len) {
		memcpy(who + *off, ", ...", 6);
		*off += 5;
	}
}

int ts_inuse_find(const char *prefix, char *who, size_t len)
{
	int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = procfd >= 0 ? fdopendir(procfd) : NULL;
	struct dirent *de;
	size_t off = 0;
	bool cut = false;
	int count = 0;

	if (len)
		who[0] = '\0';
	if (!d) {
		if (procfd >= 0)
			close(procfd);
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		char comm[32];
		int pidfd;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pidfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pidfd < 0)
			continue;   /* exited meanwhile */
		if (inuse_pid_uses(pidfd, prefix)) {
			inuse_comm(pidfd, comm, sizeof comm);
			count++;
			inuse_append(who, len, &off, &cut, count, de->d_name, comm);
		}
		close(pidfd);
	}
	closedir(d);
out:
	return count;
}
