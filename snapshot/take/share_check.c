/* share_check.c - is a stored copy still the content its manifest sealed?
 * (share_check.h) */
#include "take/share_check.h"

#include <stdio.h>
#include <string.h>

#include "base/copy.h"
#include "base/log.h"
#include "store/manifest_stat.h"

static void sc_add(char *what, const char *word)
{
	size_t n = strlen(what);
	snprintf(what + n, TS_SHARE_WHAT_MAX - n, "%s%s", n ? ", " : "", word);
}

static bool sc_same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

bool ts_share_check(const ts_manifest_entry *me, const struct stat *st, const ts_linklog *links,
                    bool owners, int dirfd, const char *leaf, char *what)
{
	unsigned char sha[32];
	uint64_t size = 0;
	unsigned d;

	what[0] = '\0';
	if (!st) {
		sc_add(what, "missing");
		return false;
	}
	d = ts_manifest_entry_diff(me, st);
	if (d & TS_MDIFF_TYPE) {
		sc_add(what, "type");
		return false;   /* nothing else compares */
	}
	if (d & TS_MDIFF_SIZE)
		sc_add(what, "size");
	if (d & TS_MDIFF_MTIME)
		sc_add(what, "mtime");
	if (d & TS_MDIFF_MODE)
		sc_add(what, "mode");
	if (owners && (d & TS_MDIFF_OWNER))
		sc_add(what, "owner");
	if (what[0])
		return false;
	/* The identity as recorded, or moved by the engine's own links; not
	 * when a removal found it changed by someone else since the record
	 * was made (linklog.h: an unlink can hide that). */
	if (me->store_ino && (uint64_t)st->st_ino == me->store_ino &&
	    !ts_linklog_suspected(links, me->store_ino, &me->store_ctime) &&
	    (sc_same_time(&st->st_ctim, &me->store_ctime) || ts_linklog_explains(links, (uint64_t)st->st_ino, &st->st_ctim)))
		return true;
	/* Changed by someone else, another inode in its place (a store brought
	 * back by dump/restore has new inode numbers throughout), or unknown:
	 * only the content can tell. */
	if (me->pending) {
		sc_add(what, "changed before it was hashed");
		return false;
	}
	ts_err_code rc = ts_copy_hash_file(dirfd, leaf, false, sha, &size, NULL);
	/* Rare, and possibly on a walk's thread, which ends without freeing
	 * the copy buffer the hash took (copy.h): give it back now. */
	ts_copy_thread_done();
	if (rc != TS_OK) {
		sc_add(what, "unreadable");
		return false;
	}
	if (size != me->size || memcmp(sha, me->sha256, sizeof sha)) {
		sc_add(what, "content");
		return false;
	}
	return true;
}

void ts_share_log_damaged(const char *name, const char *path, const char *what)
{
	ts_log(LOG_WARNING, "%s/%s: stored copy damaged (%s), copied afresh from the environment",
	       name, path, what);
}
