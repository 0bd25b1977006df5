/* stage.c - the next snapshot's tree, made ahead of time (stage.h). */
#include "base/beneath.h"
#include "take/stage.h"
#include "take/stage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/manifest.h"

/* "NAME\nDEV:INO\nBOOT\nform 2\n" of a snapshot whose tree is open on
 * treefd: the name alone could be a later snapshot made under a reused
 * name; the boot id keeps a stage a crash may have damaged (nothing in it is
 * synced) from being adopted after the reboot.  The last line is the
 * stage's form: since form 2 a refresh gives changed directories their
 * metadata (stage_refresh.c), so a stage without it, left by an older
 * tracsnap in this boot, is built again rather than adopted. */
bool stage_id(const char *name, int treefd, char *buf, size_t len)
{
	struct stat st;
	char boot[TS_STORE_BOOT_ID_MAX];
	if (fstat(treefd, &st) < 0)
		return false;
	ts_store_boot_id(boot);
	int n = snprintf(buf, len, "%s\n%llu:%llu\n%s\nform 2\n", name, (unsigned long long)st.st_dev,
	                 (unsigned long long)st.st_ino, boot);
	return n > 0 && (size_t)n < len;
}

/* Is the stage (base file at dirfd/rel) made from the snapshot with id? */
bool stage_is(int dirfd, const char *rel, const char *id)
{
	char buf[STAGE_ID_MAX];
	int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(id) && !memcmp(buf, id, (size_t)n);
}

bool ts_stage_of(ts_store *s, const char *name, int treefd)
{
	char id[STAGE_ID_MAX];
	return stage_id(name, treefd, id, sizeof id) && stage_is(s->dirfd, TS_STORE_STAGE_BASE, id);
}

void ts_stage_tree_manifest_rel(ts_store *s, const char *base_name, char *buf, size_t len)
{
	if (faccessat(s->dirfd, TS_STORE_STAGE_MANIFEST, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		snprintf(buf, len, "%s", TS_STORE_STAGE_MANIFEST);
	else
		snprintf(buf, len, "%s/manifest", base_name);
}

/* Move the stage's tree in as t's, and its database copy; its manifest
 * and base file go.  False, nothing moved, when the tree cannot be. */
static bool stage_move(ts_store *s, ts_store_tmp *t)
{
	int nfd;

	/* Opened before the rename, which it follows: once the rename is done
	 * nothing can fail any more. */
	nfd = ts_beneath_open(s->dirfd, TS_STORE_STAGE_TREE, O_RDONLY | O_DIRECTORY, 0);
	if (nfd < 0)
		return false;
	/* Over t's tree, still empty. */
	if (renameat(s->dirfd, TS_STORE_STAGE_TREE, t->dirfd, "tree") < 0) {
		close(nfd);
		return false;
	}
	close(t->treefd);
	t->treefd = nfd;
	/* The database's copy may be missing; the pre-copy makes one then. */
	(void)renameat(s->dirfd, TS_STORE_STAGE_DB, t->dirfd, TS_STAGE_DB_PRECOPY);
	/* What is left: the manifest (unless taken) and the base file.
	 * (Failing, the next build drops them.) */
	(void)unlinkat(s->dirfd, TS_STORE_STAGE_MANIFEST, 0);
	if (unlinkat(s->dirfd, TS_STORE_STAGE_BASE, 0) == 0)
		(void)unlinkat(s->dirfd, TS_STORE_STAGE, AT_REMOVEDIR);
	return true;
}

bool ts_stage_adopt(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd,
                    bool (*read)(void *arg, int dirfd, const char *rel), void *arg)
{
	char rel[PATH_MAX];

	if (!ts_stage_of(s, base_name, basefd))
		return false;
	ts_stage_tree_manifest_rel(s, base_name, rel, sizeof rel);
	return read(arg, s->dirfd, rel) && stage_move(s, t);
}

bool ts_stage_adopt_as_is(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd,
                          const ts_snap_changes *ch, void (*written)(void *fnarg, const char *rel),
                          void *fnarg)
{
	struct stat mst;

	if (!ch || !ch->stage_clean || !ts_stage_of(s, base_name, basefd) ||
	    fstatat(s->dirfd, TS_STORE_STAGE_MANIFEST, &mst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(mst.st_mode) || !ch->stage_clean(ch->arg, &mst, written, fnarg))
		return false;
	/* The manifest first: what the tree holds must go with it. */
	if (renameat(s->dirfd, TS_STORE_STAGE_MANIFEST, t->dirfd, TS_MANIFEST_BASE) < 0)
		return false;
	if (stage_move(s, t))
		return true;
	if (renameat(t->dirfd, TS_MANIFEST_BASE, s->dirfd, TS_STORE_STAGE_MANIFEST) < 0)
		ts_store_stage_drop(s);   /* a stage without its manifest is none */
	return false;
}
