/* registry.c - which environment is mounted where, with which store
 * (registry.h). */
#include "store/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/trust.h"
#include "store/mounts.h"

#define REG_MAGIC "tracsnap-mount 1"
#define REG_PREFIX "mount-"
#define REG_MAX (sizeof REG_MAGIC + 24 + 3 * PATH_MAX)

/* The run directory's path into buf; false when there is none. */
static bool reg_dir_path(char *buf, size_t len)
{
	const char *over = getenv("TRACSNAP_RUN_DIR"), *xdg = getenv("XDG_RUNTIME_DIR");

	if (over && *over)
		return (size_t)snprintf(buf, len, "%s", over) < len;
	if (geteuid() == 0)
		return (size_t)snprintf(buf, len, "/run/tracsnap") < len;
	return xdg && *xdg == '/' && (size_t)snprintf(buf, len, "%s/tracsnap", xdg) < len;
}

/* Open the run directory (trust.h), making it first when create. */
static ts_err_code reg_open(bool create, int *fd, ts_err *e)
{
	char path[PATH_MAX];

	*fd = -1;
	if (!reg_dir_path(path, sizeof path))
		return ts_err_set(e, TS_ERR_NOTFOUND, "no run directory (XDG_RUNTIME_DIR unset)");
	if (create && mkdir(path, 0755) < 0 && errno != EEXIST)
		return ts_err_sys(e, errno, "%s: cannot create", path);
	return ts_trust_open_path(path, geteuid(), "run directory", fd, e);
}

/* Read entry name of the directory dirfd into *out; false when it is not a
 * well-formed entry of the caller's or root's. */
static bool reg_read(int dirfd, const char *name, ts_registry_entry *out, unsigned long long *start)
{
	char *buf = malloc(REG_MAX + 1), *p, *end, *field[5];
	struct stat st;
	ssize_t n = -1;
	bool ok = false;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (buf && fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_uid == 0 || st.st_uid == geteuid()))
		n = read(fd, buf, REG_MAX);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		goto out;
	p = buf;
	end = buf + n;
	for (int i = 0; i < 5; i++) {
		char *nul = memchr(p, '\0', (size_t)(end - p));
		if (!nul)
			goto out;
		field[i] = p;
		p = nul + 1;
	}
	if (strcmp(field[0], REG_MAGIC) || sscanf(field[1], "%llu", start) != 1)
		goto out;
	for (int i = 2; i < 5; i++)
		if (field[i][0] != '/' || strlen(field[i]) >= PATH_MAX)
			goto out;
	strcpy(out->env, field[2]);
	strcpy(out->mnt, field[3]);
	strcpy(out->store, field[4]);
	ok = true;
out:
	free(buf);
	return ok;
}

/* "mount-PID": the pid, else -1 (a temporary "mount-PID.new" too, when tmp). */
static long reg_pid(const char *name, bool *tmp)
{
	char *endp;
	long pid;

	if (strncmp(name, REG_PREFIX, strlen(REG_PREFIX)))
		return -1;
	pid = strtol(name + strlen(REG_PREFIX), &endp, 10);
	*tmp = !strcmp(endp, ".new");
	return pid > 0 && (!*endp || *tmp) ? pid : -1;
}

ts_err_code ts_registry_add(const char *env, const char *mnt, const char *store, ts_err *e)
{
	ts_err_code rc;
	char name[64], tmp[80];
	unsigned long long start;
	long pid = (long)getpid();
	int dfd, fd = -1;
	DIR *d;
	struct dirent *de;

	rc = reg_open(true, &dfd, e);
	if (rc != TS_OK)
		return rc;
	/* Stale entries (and temporaries of dead writers) go first. */
	if ((d = ts_beneath_list(dfd)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			ts_registry_entry old;
			unsigned long long ostart;
			bool is_tmp;
			long opid = reg_pid(de->d_name, &is_tmp);
			bool live = opid > 0 && (is_tmp || !reg_read(dfd, de->d_name, &old, &ostart)
			                         ? kill((pid_t)opid, 0) == 0 || errno == EPERM
			                         : ts_mounts_pid_live(opid, ostart));
			if (opid > 0 && !live)
				(void)unlinkat(dfd, de->d_name, 0);
		}
		closedir(d);
	}
	snprintf(name, sizeof name, REG_PREFIX "%ld", pid);
	snprintf(tmp, sizeof tmp, "%s.new", name);
	if (!ts_mounts_start_time(pid, &start)) {
		rc = ts_err_set(e, TS_ERR_IO, "cannot read this process's start time");
		goto out;
	}
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = ts_err_sys(e, errno, "run directory: cannot write %s", tmp);
		goto out;
	}
	if (dprintf(fd, "%s%c%llu%c%s%c%s%c%s%c", REG_MAGIC, 0, start, 0, env, 0, mnt, 0, store, 0) < 0 ||
	    renameat(dfd, tmp, dfd, name) < 0) {
		rc = ts_err_sys(e, errno, "run directory: cannot write %s", name);
		(void)unlinkat(dfd, tmp, 0);
	}
out:
	if (fd >= 0)
		close(fd);
	close(dfd);
	return rc;
}

void ts_registry_remove(void)
{
	char name[64];
	int dfd;
	ts_err e;

	if (reg_open(false, &dfd, &e) != TS_OK)
		return;
	snprintf(name, sizeof name, REG_PREFIX "%ld", (long)getpid());
	(void)unlinkat(dfd, name, 0);
	close(dfd);
}

ts_err_code ts_registry_find(const char *path, ts_registry_entry *out, bool *found, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *real = realpath(path, NULL);
	ts_registry_entry *cur = malloc(sizeof *cur);
	int dfd = -1;
	DIR *d = NULL;
	struct dirent *de;
	ts_err ignored;

	*found = false;
	if (!real || !cur)
		goto out;   /* no such path: no mount of it either */
	if (reg_open(false, &dfd, &ignored) != TS_OK || !(d = ts_beneath_list(dfd)))
		goto out;   /* no run directory: nothing mounted (or not ours to trust) */
	while ((de = readdir(d)) != NULL) {
		unsigned long long start;
		bool is_tmp;
		long pid = reg_pid(de->d_name, &is_tmp);

		if (pid <= 0 || is_tmp || !reg_read(dfd, de->d_name, cur, &start) ||
		    !ts_mounts_pid_live(pid, start))
			continue;
		if (strcmp(cur->env, real) && strcmp(cur->mnt, real))
			continue;
		cur->pid = pid;
		if (*found && strcmp(out->store, cur->store)) {
			rc = ts_err_set(e, TS_ERR_USAGE, "%s is mounted with two stores (%s on %s, %s on %s): "
			                "give --store", real, out->store, out->mnt, cur->store, cur->mnt);
			goto out;
		}
		*out = *cur;
		*found = true;
	}
out:
	if (d)
		closedir(d);
	if (dfd >= 0)
		close(dfd);
	free(cur);
	free(real);
	return rc;
}
