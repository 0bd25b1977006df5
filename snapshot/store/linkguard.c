/* linkguard.c - note shared copies changed by someone else before the
 * engine unlinks a tree (linkguard.h). */
#include "store/linkguard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "store/linklog.h"
#include "store/manifest.h"

/* The newest snapshot's manifest into m. */
static bool lg_newest(ts_store *s, ts_manifest *m)
{
	ts_store_snap *v = NULL;
	size_t n = 0;
	char path[PATH_MAX];
	bool ok = false;

	if (ts_store_list(s, &v, &n, NULL) == TS_OK && n > 0) {
		snprintf(path, sizeof path, "%s/manifest", v[n - 1].name);
		ok = ts_manifest_read_at(s->dirfd, path, m, NULL) == TS_OK;
	}
	ts_store_list_free(v, n);
	return ok;
}

/* The manifest that describes rel/tree, into m (initialised by the
 * reader); false when there is none. */
static bool lg_manifest(ts_store *s, const char *rel, ts_manifest *m)
{
	char path[PATH_MAX], name[NAME_MAX + 2];
	int storefd = s->dirfd;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/manifest", rel);
	if (ts_manifest_read_at(storefd, path, m, NULL) == TS_OK)
		return true;
	/* A stage not refreshed: its base file's first line names the
	 * snapshot it was made from (store.h). */
	snprintf(path, sizeof path, "%s/base", rel);
	fd = ts_beneath_open(storefd, path, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return lg_newest(s, m);   /* a half-built snapshot */
	n = read(fd, name, sizeof name - 1);
	close(fd);
	name[n > 0 ? n : 0] = '\0';
	name[strcspn(name, "\n")] = '\0';
	if (!name[0] || name[0] == '.' || strchr(name, '/'))
		return false;
	snprintf(path, sizeof path, "%s/manifest", name);
	return ts_manifest_read_at(storefd, path, m, NULL) == TS_OK;
}

static bool lg_same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

void ts_linkguard(ts_store *s, const char *rel)
{
	int storefd = s->dirfd;
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT;
	ts_manifest m;
	ts_linklog l;
	char path[PATH_MAX];
	int treefd;

	memset(&l, 0, sizeof l);
	ts_manifest_init(&m);
	snprintf(path, sizeof path, "%s/tree", rel);
	treefd = ts_beneath_open(storefd, path, O_RDONLY | O_DIRECTORY, 0);
	if (treefd < 0 || !lg_manifest(s, rel, &m))
		goto out;
	ts_linklog_read(storefd, &l);
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];
		const char *leaf;
		struct stat st;
		int pfd;

		if (me->type != 'f' || !me->store_ino)
			continue;
		pfd = ts_beneath_cache_parent(&c, treefd, me->path, &leaf);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		/* Only the same inode, still shared: what its record is about,
		 * and what the unlink would leave behind with a new ctime. */
		if (!S_ISREG(st.st_mode) || st.st_nlink < 2 || (uint64_t)st.st_ino != me->store_ino)
			continue;
		if (lg_same_time(&st.st_ctim, &me->store_ctime) || ts_linklog_explains(&l, (uint64_t)st.st_ino, &st.st_ctim) ||
		    ts_linklog_suspected(&l, me->store_ino, &me->store_ctime))
			continue;
		ts_linklog_suspect_now(storefd, me->store_ino);
	}
out:
	ts_beneath_cache_drop(&c);
	if (treefd >= 0)
		close(treefd);
	ts_linklog_free(&l);
	ts_manifest_free(&m);
}
