/* restore_busy.c - which processes use an environment or a database file
 * (restore.h, ts_restore_users): restore refuses to replace files that a
 * running Trac has open.  Read from /proc; a process we may not look at
 * does not count. */
#include "restore/restore.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/env.h"

/* link is db itself or one of its journals (db-wal, db-shm, db-journal). */
static bool ts_restore_is_db(const char *link, const char *db)
{
	size_t n = db ? strlen(db) : 0;

	return n && !strncmp(link, db, n) && (link[n] == '\0' || link[n] == '-');
}

/* Does process pid have such a file open? */
static bool ts_restore_pid_uses(const char *pid, const char *root, const char *db)
{
	char dir[300], path[600], link[PATH_MAX];
	bool hit = false;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
	d = opendir(dir);
	if (!d)
		return false;   /* gone, or not ours to see */
	while (!hit && (de = readdir(d)) != NULL) {
		struct stat st;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof link - 1);
		if (n <= 0 || link[0] != '/')
			continue;       /* pipes, sockets, anon inodes */
		link[n] = '\0';
		if (!ts_path_is_under(link, root) && !ts_restore_is_db(link, db))
			continue;
		/* An open directory survives the renames harmlessly. */
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		hit = true;
	}
	closedir(d);
	return hit;
}

/* Is pid a tracsnap of root's, this very executable: a daemon serving ENV,
 * whose stager copies ENV's changed files into its store?  Those only ever
 * read ENV, so a restore swapping ENV under them loses nothing, and
 * refusing because of them would make a restore fail whenever Trac's last
 * writes are being staged.  Another account running the same binary is no
 * exception (its process dir is not root's). */
static bool ts_restore_is_own_daemon(const char *pid, const struct stat *self_exe)
{
	char path[300];
	struct stat st, exe;

	snprintf(path, sizeof path, "/proc/%s", pid);
	if (stat(path, &st) < 0 || st.st_uid != 0)
		return false;
	snprintf(path, sizeof path, "/proc/%s/exe", pid);
	return stat(path, &exe) == 0 && exe.st_dev == self_exe->st_dev &&
	       exe.st_ino == self_exe->st_ino;
}

int ts_restore_users(const char *root, const char *db, char *who, size_t len)
{
	struct stat self_exe;
	bool have_self = stat("/proc/self/exe", &self_exe) == 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	char self[32];
	size_t off = 0;
	int count = 0;

	if (len)
		who[0] = '\0';
	if (!d)
		return 0;
	snprintf(self, sizeof self, "%ld", (long)getpid());
	while ((de = readdir(d)) != NULL) {
		char comm[64] = "?", path[300];
		FILE *f;
		int w;

		if (!isdigit((unsigned char)de->d_name[0]) || !strcmp(de->d_name, self))
			continue;
		if (!ts_restore_pid_uses(de->d_name, root, db) ||
		    (have_self && ts_restore_is_own_daemon(de->d_name, &self_exe)))
			continue;
		snprintf(path, sizeof path, "/proc/%s/comm", de->d_name);
		if ((f = fopen(path, "re")) != NULL) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		count++;
		if (off < len) {
			w = snprintf(who + off, len - off, "%spid %s (%s)", count > 1 ? ", " : "",
			             de->d_name, comm);
			if (w > 0)
				off += (size_t)w;
		}
	}
	closedir(d);
	return count;
}
