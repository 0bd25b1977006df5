/* restore_swap.c - restore's one exchange, and the old tree's removal
 * (restore_int.h; doc/contract.md section 6).
 *
 * renameat2(RENAME_EXCHANGE) swaps two names atomically: ENV is at every
 * instant either the old tree or the restored one, and undoing is the same
 * call.  The directories are the ones restore checked (trust.h), but their
 * owner may rename in them, so what lands under ENV's name is compared by
 * inode with the copy restore made, and exchanged back when it is not.
 */
#include "restore/restore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/copy.h"

/* Is name in dirfd the inode open on fd? */
static bool restore_is(int dirfd, const char *name, int fd)
{
	struct stat a, b;

	return fstatat(dirfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && fstat(fd, &b) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

ts_err_code restore_exchange(int adir, const char *a, int bdir, const char *b, int want_a,
                             const char *desc, ts_err *e)
{
	/* The copy must still be the one made: checked before, to keep a
	 * stranger's tree out of ENV's name even for an instant, and after,
	 * for a rename in between. */
	if (!restore_is(bdir, b, want_a))
		return ts_err_set(e, TS_ERR_PERM, "%s: replaced during the restore; refusing", desc);
	if (renameat2(bdir, b, adir, a, RENAME_EXCHANGE) < 0)
		return ts_err_sys(e, errno, "%s: cannot exchange", desc);
	if (!restore_is(adir, a, want_a)) {
		(void)renameat2(bdir, b, adir, a, RENAME_EXCHANGE);
		return ts_err_set(e, TS_ERR_PERM, "%s: replaced during the restore; refusing", desc);
	}
	return TS_OK;
}

void restore_remove_dir(int dirfd, const char *name, int fd)
{
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	/* Only while the name holds it: an fd that has moved (to ENV's name,
	 * say, by its owner's rename) is not the tree to empty. */
	if (!d || !restore_is(dirfd, name, fd)) {
		if (d)
			closedir(d);
		else if (dfd >= 0)
			close(dfd);
		return;
	}
	/* Through the tree's own descriptor: whatever name it has now.  A
	 * directory read while it shrinks may skip names: read it again until
	 * a pass finds nothing. */
	for (int pass = 0, found = 1; found && pass < 4; pass++) {
		found = 0;
		rewinddir(d);
		while ((de = readdir(d)) != NULL) {
			ts_err ignore;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			found = 1;
			(void)ts_copy_remove_tree(fd, de->d_name, &ignore);
		}
	}
	closedir(d);
	if (restore_is(dirfd, name, fd))
		(void)unlinkat(dirfd, name, AT_REMOVEDIR);
}
