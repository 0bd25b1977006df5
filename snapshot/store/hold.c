/* hold.c - a snapshot held by the administrator (hold.h). */
#include "store/hold.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The snapshot's own directory, from the store's descriptor, never through a
 * symlink; -1 when it is not a snapshot. */
static int hold_snapdir(ts_store *s, const char *name)
{
	if (!ts_store_exists(s, name))
		return -1;
	return openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

bool ts_hold_is_held(ts_store *s, const char *name, struct timespec *since)
{
	int fd = hold_snapdir(s, name);
	struct stat st;
	bool held;

	if (fd < 0)
		return false;
	held = fstatat(fd, TS_STORE_HOLD, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
	close(fd);
	if (held && since)
		*since = st.st_mtim;
	return held;
}

ts_err_code ts_hold_set(ts_store *s, const char *name, bool on, bool *changed, ts_err *e)
{
	ts_err_code rc = TS_OK;
	int fd = hold_snapdir(s, name), mark;
	bool did = false;
	struct stat dir;

	if (fd < 0 || fstat(fd, &dir) < 0) {
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", name);
		goto out;
	}
	if (on) {
		mark = openat(fd, TS_STORE_HOLD, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (mark >= 0) {
			close(mark);
			did = true;
		} else if (errno != EEXIST) {
			rc = ts_err_sys(e, errno, "snapshot %s: cannot hold", name);
		}
	} else {
		if (unlinkat(fd, TS_STORE_HOLD, 0) == 0)
			did = true;
		else if (errno != ENOENT)
			rc = ts_err_sys(e, errno, "snapshot %s: cannot release", name);
	}
	if (did) {
		/* The directory's mtime is the snapshot's instant (store.h), as
		 * sealing keeps it. */
		struct timespec times[2] = { dir.st_atim, dir.st_mtim };
		(void)futimens(fd, times);
		(void)fsync(fd);   /* a hold that a crash forgets protects nothing */
	}
out:
	if (fd >= 0)
		close(fd);
	if (changed)
		*changed = did;
	return rc;
}
