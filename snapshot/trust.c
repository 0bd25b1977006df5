/* trust.c - open a directory only root (or the caller) could have arranged
 * (trust.h). */
#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* NULL when st may be on the path, else why not. */
static const char *trust_why_not(const struct stat *st, int last)
{
	uid_t me = geteuid();

	if (!S_ISDIR(st->st_mode))
		return "not a directory";
	if (last && st->st_uid != me)
		return "not owned by the user running tracsnap";
	if (st->st_uid != 0 && st->st_uid != me)
		return "owned by another user";
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) &&
	    (last || st->st_uid != 0 || !(st->st_mode & S_ISVTX)))
		return "writable by group or others";
	return NULL;
}

ts_err_code ts_trust_open_dir(const char *path, int *fdp, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *real = realpath(path, NULL);
	char *p = real;
	int fd = -1;

	if (!real) {
		rc = ts_err_sys(e, errno, "store %s: cannot resolve", path);
		goto out;
	}
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (fd >= 0) {
		/* fd is real's prefix up to p: "/" or "/a/b" */
		int len = p - real > 1 ? (int)(p - real) : 1;
		struct stat st;
		const char *why;
		char *end, save;
		int sub;

		while (*p == '/')
			p++;
		if (fstat(fd, &st) < 0) {
			rc = ts_err_sys(e, errno, "store %s: cannot stat %.*s", path, len, real);
			goto out;
		}
		if ((why = trust_why_not(&st, *p == '\0'))) {
			rc = ts_err_set(e, TS_ERR_PERM, "store %s: %.*s is %s", path, len, real, why);
			goto out;
		}
		if (*p == '\0')
			break;
		end = strchrnul(p, '/');
		save = *end;
		*end = '\0';
		sub = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			int err = errno;

			/* realpath left no symlink: one now is a change under us */
			if ((err == ELOOP || err == ENOTDIR) && fstatat(fd, p, &st, AT_SYMLINK_NOFOLLOW) == 0)
				rc = ts_err_set(e, TS_ERR_PERM, "store %s: %.*s is %s", path, (int)(end - real), real,
				                S_ISLNK(st.st_mode) ? "a symlink that appeared while checked"
				                                    : "not a directory");
			else
				rc = ts_err_sys(e, err, "store %s: cannot open %.*s", path, (int)(end - real), real);
			goto out;
		}
		*end = save;
		close(fd);
		fd = sub;
		p = end;
	}
	if (fd < 0)
		rc = ts_err_sys(e, errno, "store %s: cannot open /", path);
out:
	if (rc != TS_OK && fd >= 0) {
		close(fd);
		fd = -1;
	}
	*fdp = fd;
	free(real);
	return rc;
}
