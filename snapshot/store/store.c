/* store.c - snapshot store layout, lock and leftovers (see store.h). */
#include "store/store.h"
#include "store/hold.h"
#include "base/trust.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "env/env.h"
#include "base/log.h"
#include "store/linkguard.h"
#include "store/linklog.h"

#define STORE_LOCK_FILE ".lock"
#define STORE_TMP_PREFIX ".tmp-"
#define STORE_DEL_PREFIX ".del-"

static int store_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

ts_err_code ts_store_open(const char *path, bool create, ts_store *s, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct stat st;

	memset(s, 0, sizeof *s);
	s->dirfd = s->lockfd = -1;
	if (create && store_mkdir_p(path) < 0) {
		rc = ts_err_sys(e, errno, "store %s: cannot create", path);
		goto out;
	}
	/* Only a store no other account could have arranged (trust.h). */
	rc = ts_trust_open_dir(path, &s->dirfd, e);
	if (rc != TS_OK)
		goto out;
	if (fstat(s->dirfd, &st) == 0 && (st.st_mode & 077))
		(void)fchmod(s->dirfd, st.st_mode & 0700); /* snapshots hold 0600 trac.ini */
	s->root = realpath(path, NULL);
	if (!s->root)
		rc = ts_err_sys(e, errno, "store %s: cannot resolve", path);
out:
	if (rc != TS_OK)
		ts_store_close(s);
	return rc;
}

void ts_store_close(ts_store *s)
{
	ts_store_unlock(s);
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->root);
	memset(s, 0, sizeof *s);
	s->dirfd = s->lockfd = -1;
}

bool ts_store_dup(const ts_store *s, ts_store *out)
{
	memset(out, 0, sizeof *out);
	out->lockfd = -1;
	out->root = strdup(s->root);
	out->dirfd = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0);
	if (out->root && out->dirfd >= 0)
		return true;
	ts_store_close(out);
	return false;
}

void ts_store_boot_id(char out[TS_STORE_BOOT_ID_MAX])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, TS_STORE_BOOT_ID_MAX - 1) : -1;
	if (fd >= 0)
		close(fd);
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

ts_store_seal_state ts_store_seal_state_of(ts_store *s, const char *name)
{
	char path[PATH_MAX], mark[TS_STORE_BOOT_ID_MAX], now[TS_STORE_BOOT_ID_MAX];
	ssize_t n;
	int fd;

	if ((size_t)snprintf(path, sizeof path, "%s/%s", name, TS_STORE_UNSEALED) >= sizeof path)
		return TS_STORE_SEALED;
	fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return TS_STORE_SEALED;
	n = read(fd, mark, sizeof mark - 1);
	close(fd);
	mark[n > 0 ? n : 0] = '\0';
	mark[strcspn(mark, "\n")] = '\0';
	ts_store_boot_id(now);
	return strcmp(mark, now) == 0 ? TS_STORE_UNSEALED_NOW : TS_STORE_UNSEALED_LOST;
}

ts_err_code ts_store_mark_unsealed(ts_store_tmp *t, ts_err *e)
{
	char id[TS_STORE_BOOT_ID_MAX + 1];
	ts_err_code rc = TS_OK;
	int fd = openat(t->dirfd, TS_STORE_UNSEALED, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	ts_store_boot_id(id);
	strcat(id, "\n");
	/* No fsync: where metadata is journaled in order (ext4 with a journal,
	 * XFS, btrfs) a rename that survives a crash brings the marker with it,
	 * empty at worst; an empty marker matches no boot id, and the snapshot
	 * counts as lost.  A filesystem without that ordering (ext4 without a
	 * journal) may keep the rename and lose the marker: doc/design.md. */
	if (fd < 0 || write(fd, id, strlen(id)) != (ssize_t)strlen(id))
		rc = ts_err_sys(e, errno, "%s/%s: cannot write", t->dir, TS_STORE_UNSEALED);
	if (fd >= 0)
		close(fd);
	return rc;
}

static ts_err_code store_remove(ts_store *s, const char *name, bool lost, ts_err *e);

/* Remove rel (a tree of the store) and log the batch (linklog.h): its
 * files may be hard links that snapshots share, whose ctime the unlinks
 * move; first note those someone else changed, which the batch would
 * otherwise hide (linkguard.h).  Nothing is logged when rel is not there. */
static ts_err_code store_remove_logged(ts_store *s, const char *rel, ts_err *e)
{
	struct timespec start;
	struct stat st;
	ts_err_code rc;

	if (fstatat(s->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return TS_OK;
	ts_linkguard(s, rel);
	ts_linklog_begin(&start);
	rc = ts_copy_remove_tree(s->dirfd, rel, e);
	ts_linklog_end(s->dirfd, &start);
	return rc;
}

/* A snapshot that was not yet durable when the machine went down may have
 * lost data: it never was (doc/contract.md section 5: a crash leaves no
 * snapshot or a complete one). */
static void store_remove_lost(ts_store *s, const char *name)
{
	ts_err e;
	ts_err_clear(&e);
	if (store_remove(s, name, true, &e) == TS_OK)
		ts_log(LOG_WARNING, "snapshot %s: discarded: the machine restarted before it was "
		       "durable (its data may be incomplete)", name);
	else
		ts_log(LOG_WARNING, "snapshot %s: not durable before a restart, and cannot be "
		       "discarded: %s", name, e.msg);
}

static void store_remove_leftovers(ts_store *s)
{
	DIR *d;
	struct dirent *de;
	int fd = dup(s->dirfd);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.') {
			if (ts_store_seal_state_of(s, de->d_name) == TS_STORE_UNSEALED_LOST)
				store_remove_lost(s, de->d_name);
			continue;
		}
		if (strncmp(de->d_name, STORE_TMP_PREFIX, strlen(STORE_TMP_PREFIX)) &&
		    strncmp(de->d_name, STORE_DEL_PREFIX, strlen(STORE_DEL_PREFIX)))
			continue;
		(void)store_remove_logged(s, de->d_name, NULL);
	}
	closedir(d);
}

bool ts_store_gone(const ts_store *s)
{
	struct stat held, now;
	if (fstat(s->dirfd, &held) < 0 || held.st_nlink == 0)
		return true;
	return stat(s->root, &now) < 0 || now.st_dev != held.st_dev || now.st_ino != held.st_ino;
}

ts_err_code ts_store_lock(ts_store *s, int timeout_s, ts_err *e)
{
	struct timespec start, now;
	char pidbuf[32];

	if (s->locked)
		return TS_OK;
	/* A store removed (or moved away) under a long-running daemon: writing
	 * into the unlinked directory would only lose the work. */
	if (ts_store_gone(s))
		return ts_err_set(e, TS_ERR_IO, "store %s: removed or moved away while in use "
		                  "(remount, or run tracsnap again, to use a store there)", s->root);
	if (s->lockfd < 0) {
		s->lockfd = openat(s->dirfd, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->lockfd < 0)
			return ts_err_sys(e, errno, "store %s: cannot open %s", s->root, STORE_LOCK_FILE);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return ts_err_sys(e, errno, "store %s: cannot lock", s->root);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000000000LL + (now.tv_nsec - start.tv_nsec) >=
		    (long long)timeout_s * 1000000000LL) {
			ssize_t n = pread(s->lockfd, pidbuf, sizeof pidbuf - 1, 0);
			pidbuf[n > 0 ? n : 0] = '\0';
			pidbuf[strcspn(pidbuf, "\n")] = '\0';
			return ts_err_set(e, TS_ERR_BUSY, "store %s: in use by another tracsnap "
			                  "(pid %s) for more than %d s", s->root,
			                  *pidbuf ? pidbuf : "?", timeout_s);
		}
		struct timespec nap = { 0, 50 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	s->locked = true;
	int len = snprintf(pidbuf, sizeof pidbuf, "%ld\n", (long)getpid());
	if (ftruncate(s->lockfd, 0) == 0)
		(void)!pwrite(s->lockfd, pidbuf, (size_t)len, 0);
	store_remove_leftovers(s);
	return TS_OK;
}

void ts_store_unlock(ts_store *s)
{
	if (!s->locked)
		return;
	(void)!ftruncate(s->lockfd, 0);
	flock(s->lockfd, LOCK_UN);
	s->locked = false;
}

static int store_snap_cmp(const void *a, const void *b)
{
	const ts_store_snap *x = a, *y = b;
	if (x->time.tv_sec != y->time.tv_sec)
		return x->time.tv_sec < y->time.tv_sec ? -1 : 1;
	if (x->time.tv_nsec != y->time.tv_nsec)
		return x->time.tv_nsec < y->time.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

ts_err_code ts_store_list(ts_store *s, ts_store_snap **out, size_t *n, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_store_snap *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	struct stat st;
	DIR *d = ts_beneath_list(s->dirfd);

	if (!d) {
		rc = ts_err_sys(e, errno, "store %s: cannot list", s->root);
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(s->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		ts_store_seal_state seal = ts_store_seal_state_of(s, de->d_name);
		if (seal == TS_STORE_UNSEALED_LOST)
			continue;   /* never was; removed by the next writer */
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			ts_store_snap *nv = realloc(v, ncap * sizeof *v);
			if (!nv) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				goto out;
			}
			v = nv;
			cap = ncap;
		}
		v[cnt].name = strdup(de->d_name);
		if (!v[cnt].name) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			goto out;
		}
		/* The instant is STORE/NAME's mtime, which sealing moves forward for
		 * a moment when it swaps the manifest and drops the marker; the
		 * manifest's mtime is the instant too and never moves.  The earlier
		 * of the two is right in both cases (and when someone dates the
		 * directory back by hand). */
		struct stat mst;
		char mpath[NAME_MAX + 16];
		snprintf(mpath, sizeof mpath, "%s/manifest", de->d_name);
		v[cnt].time = st.st_mtim;
		if (fstatat(s->dirfd, mpath, &mst, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (mst.st_mtim.tv_sec < st.st_mtim.tv_sec ||
		     (mst.st_mtim.tv_sec == st.st_mtim.tv_sec && mst.st_mtim.tv_nsec < st.st_mtim.tv_nsec)))
			v[cnt].time = mst.st_mtim;
		v[cnt].sealed = seal == TS_STORE_SEALED;
		cnt++;
	}
	if (cnt > 1)
		qsort(v, cnt, sizeof *v, store_snap_cmp);
out:
	if (d)
		closedir(d);
	if (rc != TS_OK) {
		ts_store_list_free(v, cnt);
		v = NULL;
		cnt = 0;
	}
	*out = v;
	*n = cnt;
	return rc;
}

void ts_store_list_free(ts_store_snap *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* A snapshot directory, lost in a restart or not. */
static bool store_dir_exists(ts_store *s, const char *name)
{
	struct stat st;
	return name[0] != '.' && !strchr(name, '/') &&
	       fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

bool ts_store_exists(ts_store *s, const char *name)
{
	return store_dir_exists(s, name) && ts_store_seal_state_of(s, name) != TS_STORE_UNSEALED_LOST;
}

/* A private name in the store for work in progress: the snapshot's own name
 * may be 255 bytes, so it cannot be part of it. */
static char *store_private_name(const char *prefix)
{
	static unsigned counter;
	char *out = NULL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (asprintf(&out, "%s%ld-%ld-%u", prefix, (long)getpid(), (long)ts.tv_nsec,
	             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED)) < 0)
		out = NULL;
	return out;
}

static ts_err_code store_begin_at(ts_store *s, const char *name, char *dir, ts_store_tmp *t,
                                  ts_err *e);

ts_err_code ts_store_begin(ts_store *s, const char *name, ts_store_tmp *t, ts_err *e)
{
	return store_begin_at(s, name, store_private_name(STORE_TMP_PREFIX), t, e);
}

ts_err_code ts_store_stage_begin(ts_store *s, ts_store_tmp *t, ts_err *e)
{
	(void)store_remove_logged(s, TS_STORE_STAGE_NEW, NULL);
	return store_begin_at(s, TS_STORE_STAGE, strdup(TS_STORE_STAGE_NEW), t, e);
}

/* Make dir (malloc'd, consumed; NULL when out of memory) with its tree/. */
static ts_err_code store_begin_at(ts_store *s, const char *name, char *dir, ts_store_tmp *t,
                                  ts_err *e)
{
	ts_err_code rc = TS_OK;

	memset(t, 0, sizeof *t);
	t->dirfd = t->treefd = -1;
	t->name = strdup(name);
	t->dir = dir;
	if (!t->name || !t->dir) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (mkdirat(s->dirfd, t->dir, 0700) < 0) {
		rc = ts_err_sys(e, errno, "store %s: cannot create %s", s->root, t->dir);
		goto out;
	}
	t->dirfd = openat(s->dirfd, t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd < 0 || mkdirat(t->dirfd, "tree", 0700) < 0 ||
	    (t->treefd = openat(t->dirfd, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		rc = ts_err_sys(e, errno, "store %s: cannot create %s/tree", s->root, t->dir);
out:
	if (rc != TS_OK)
		ts_store_abort(s, t);
	return rc;
}

static void store_tmp_free(ts_store_tmp *t)
{
	if (t->treefd >= 0)
		close(t->treefd);
	if (t->dirfd >= 0)
		close(t->dirfd);
	free(t->name);
	free(t->dir);
	memset(t, 0, sizeof *t);
	t->dirfd = t->treefd = -1;
}

ts_err_code ts_store_commit(ts_store *s, ts_store_tmp *t, const struct timespec *instant, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct timespec times[2] = { *instant, *instant };

	/* No fsync here: until ts_seal's syncfs the unsealed marker stands for
	 * durability, and a snapshot appears without waiting for the disk. */
	if (futimens(t->dirfd, times) < 0) {
		rc = ts_err_sys(e, errno, "store %s: cannot finish %s", s->root, t->dir);
		goto out;
	}
	if (renameat2(s->dirfd, t->dir, s->dirfd, t->name, RENAME_NOREPLACE) < 0) {
		rc = ts_err_sys(e, errno, "snapshot %s", t->name);
		goto out;
	}
out:
	if (rc != TS_OK)
		ts_store_abort(s, t);
	else
		store_tmp_free(t);
	return rc;
}

void ts_store_abort(ts_store *s, ts_store_tmp *t)
{
	if (t->dir)
		(void)store_remove_logged(s, t->dir, NULL);
	store_tmp_free(t);
}

static ts_err_code store_remove(ts_store *s, const char *name, bool lost, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *del = store_private_name(STORE_DEL_PREFIX);

	if (!del) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!(lost ? store_dir_exists(s, name) : ts_store_exists(s, name))) {
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", name);
		goto out;
	}
	/* Disappear atomically first, then take the time to delete. */
	if (renameat(s->dirfd, name, s->dirfd, del) < 0) {
		rc = ts_err_sys(e, errno, "snapshot %s: cannot delete", name);
		goto out;
	}
	(void)fsync(s->dirfd);
	/* The snapshot is gone once renamed.  A sealer still finishing it may
	 * add its new manifest while we empty the directory (ENOTEMPTY): try
	 * again, and failing that leave it to the next writer's cleanup. */
	for (int tries = 0; tries < 3; tries++) {
		ts_err re;
		ts_err_clear(&re);
		if (store_remove_logged(s, del, &re) == TS_OK)
			break;
		if (tries == 2)
			ts_log(LOG_WARNING, "snapshot %s: deleted, but its files could not all be "
			       "removed yet (%s); the next snapshot removes them", name, re.msg);
	}
out:
	free(del);
	return rc;
}

bool ts_store_stage_made_from(ts_store *s, const char *name)
{
	static const char *const base[] = { TS_STORE_STAGE_BASE, TS_STORE_STAGE_BUSY };
	char buf[NAME_MAX + 2];
	size_t len = strlen(name);
	for (size_t i = 0; i < 2; i++) {
		int fd = openat(s->dirfd, base[i], O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
		if (fd >= 0)
			close(fd);
		if (n > (ssize_t)len && !memcmp(buf, name, len) && buf[len] == '\n')
			return true;
	}
	return false;
}

void ts_store_stage_drop(ts_store *s)
{
	/* Out of sight first, so that a half-removed stage is never adopted;
	 * not as a .del-*, which are snapshots being deleted. */
	(void)store_remove_logged(s, TS_STORE_STAGE_OLD, NULL);
	if (renameat(s->dirfd, TS_STORE_STAGE, s->dirfd, TS_STORE_STAGE_OLD) == 0)
		(void)store_remove_logged(s, TS_STORE_STAGE_OLD, NULL);
}

ts_err_code ts_store_stage_commit(ts_store *s, ts_store_tmp *t, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_store_stage_drop(s);
	if (renameat(s->dirfd, t->dir, s->dirfd, TS_STORE_STAGE) < 0)
		rc = ts_err_sys(e, errno, "store %s: cannot rename %s to %s", s->root, t->dir,
		                TS_STORE_STAGE);
	if (rc != TS_OK)
		ts_store_abort(s, t);
	else
		store_tmp_free(t);
	return rc;
}

ts_err_code ts_store_remove(ts_store *s, const char *name, ts_err *e)
{
	if (ts_hold_is_held(s, name, NULL))
		return ts_err_set(e, TS_ERR_BUSY, "snapshot %s: held (tracsnap release %s first)", name,
		                  name);
	ts_err_code rc = store_remove(s, name, false, e);
	if (rc == TS_OK && ts_store_stage_made_from(s, name))
		ts_store_stage_drop(s);
	return rc;
}

ts_err_code ts_store_rename(ts_store *s, const char *from, const char *to, ts_err *e)
{
	if (!ts_store_exists(s, from))
		return ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", from);
	if (renameat2(s->dirfd, from, s->dirfd, to, RENAME_NOREPLACE) < 0) {
		if (errno == EEXIST)
			return ts_err_set(e, TS_ERR_EXISTS, "snapshot %s: exists already "
			                  "(snapshots are never overwritten)", to);
		return ts_err_sys(e, errno, "snapshot %s: cannot rename to %s", from, to);
	}
	(void)fsync(s->dirfd);
	return TS_OK;
}

void ts_store_activity_get(ts_store *s, ts_store_activity *a)
{
	DIR *d = ts_beneath_list(s->dirfd);
	struct dirent *de;
	char buf[NAME_MAX + 2];
	int fd;
	ssize_t n;

	memset(a, 0, sizeof *a);
	while (d && (de = readdir(d)) != NULL) {
		size_t plen = strlen(STORE_TMP_PREFIX);
		long pid;
		if (strncmp(de->d_name, STORE_TMP_PREFIX, plen))
			continue;
		pid = strtol(de->d_name + plen, NULL, 10);
		/* A dead writer's leftover is no snapshot being made. */
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
			a->making++;
			a->making_pid = pid;
		}
	}
	if (d)
		closedir(d);
	a->stage_busy = faccessat(s->dirfd, TS_STORE_STAGE_BUSY, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	fd = openat(s->dirfd, a->stage_busy ? TS_STORE_STAGE_BUSY : TS_STORE_STAGE_BASE,
	            O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n > 0) {
		buf[n] = '\0';
		size_t len = strcspn(buf, "\n");
		if (len < sizeof a->stage_base) {
			memcpy(a->stage_base, buf, len);
			a->stage_base[len] = '\0';
		}
	}
	a->stage_refreshed = faccessat(s->dirfd, TS_STORE_STAGE_MANIFEST, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}
