/* trust.c - open a directory only root (or a named account) could have
 * arranged (trust.h). */
#include "base/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* NULL when st may be on the path, else why not (into buf). */
static const char *trust_why_not(const struct stat *st, uid_t owner, char *buf, size_t len)
{
	if (!S_ISDIR(st->st_mode))
		return "not a directory";
	if (st->st_uid != 0 && st->st_uid != owner) {
		snprintf(buf, len, "owned by uid %lu, neither root nor uid %lu", (unsigned long)st->st_uid,
		         (unsigned long)owner);
		return buf;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && (st->st_uid != 0 || !(st->st_mode & S_ISVTX))) {
		snprintf(buf, len, "writable by group or others (mode %04o)", (unsigned)(st->st_mode & 07777));
		return buf;
	}
	return NULL;
}

ts_err_code ts_trust_open_path(const char *path, uid_t owner, const char *ctx, int *fdp, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char done[PATH_MAX], why[96];
	const char *p = path, *bad;
	size_t dlen = 0;
	struct stat st;
	int fd = -1;

	if (path[0] != '/') {
		rc = ts_err_set(e, TS_ERR_USAGE, "%s: %s: not an absolute path", ctx, path);
		goto out;
	}
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	strcpy(done, "/");
	for (;;) {
		size_t n;
		int sub;

		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = ts_err_sys(e, errno, "%s: %s: cannot open", ctx, done);
			goto out;
		}
		if ((bad = trust_why_not(&st, owner, why, sizeof why))) {
			rc = ts_err_set(e, TS_ERR_PERM, "%s: %s is %s", ctx, done, bad);
			goto out;
		}
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, "/");
		if (n > NAME_MAX || dlen + 1 + n >= sizeof done) {
			rc = ts_err_set(e, TS_ERR_USAGE, "%s: %s: path too long", ctx, path);
			goto out;
		}
		done[dlen++] = '/';
		memcpy(done + dlen, p, n);
		dlen += n;
		done[dlen] = '\0';
		p += n;
		if (!strcmp(done + dlen - n, ".") || !strcmp(done + dlen - n, "..")) {
			rc = ts_err_set(e, TS_ERR_USAGE, "%s: %s: '.' or '..' in the path", ctx, path);
			goto out;
		}
		sub = openat(fd, done + dlen - n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0 && (errno == ELOOP || errno == ENOTDIR) &&
		    fstatat(fd, done + dlen - n, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			rc = ts_err_set(e, TS_ERR_PERM, "%s: %s is %s", ctx, done,
			                S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory");
			goto out;
		}
		close(fd);
		fd = sub;
	}
out:
	if (rc != TS_OK && fd >= 0) {
		close(fd);
		fd = -1;
	}
	*fdp = fd;
	return rc;
}

ts_err_code ts_trust_open_dir(const char *path, int *fdp, ts_err *e)
{
	ts_err_code rc;
	char *real = realpath(path, NULL), ctx[PATH_MAX + 8];
	struct stat st;

	*fdp = -1;
	if (!real)
		return ts_err_sys(e, errno, "store %s: cannot resolve", path);
	snprintf(ctx, sizeof ctx, "store %s", path);
	rc = ts_trust_open_path(real, geteuid(), ctx, fdp, e);
	if (rc == TS_OK && fstat(*fdp, &st) == 0 &&
	    (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
		rc = ts_err_set(e, TS_ERR_PERM, "%s: %s is %s", ctx, real,
		                st.st_uid != geteuid() ? "not owned by the user running tracsnap"
		                                       : "writable by group or others");
		close(*fdp);
		*fdp = -1;
	}
	free(real);
	return rc;
}
