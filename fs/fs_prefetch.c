/* fs_prefetch.c - read a snapshot's metadata from the store ahead of a
 * reader that lists it (fs_int.h).
 *
 * A cold `find` through the mount is a chain: the kernel asks for a
 * listing, the daemon stats every entry in the store (reading inode tables
 * from disk), replies, the kernel makes its inodes, find asks for the next
 * directory.  Each side waits for the other, so the store's cold reads and
 * the kernel's work add up, and one core idles.  This thread walks the
 * subtree of a directory whose listing starts, in the order `find` and `tar`
 * visit it (all of a directory's entries, then its subdirectories in
 * listing order), and stats every entry: the daemon's own stats then find
 * the store's inodes in memory.  It stays at most FS_PF_LEAD entries ahead
 * of what listings have sent, and gives up once nothing was listed for
 * FS_PF_IDLE_MS (the reader is done, or reads elsewhere): what a reader
 * that stops costs is that many stats.  Only speed depends on it.
 *
 * It reads the store only, as root, from descriptors: each directory is
 * opened by one name from its parent's descriptor with O_NOFOLLOW, entries
 * are stat'ed with AT_SYMLINK_NOFOLLOW; nothing is written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"

#define FS_PF_LEAD 2048          /* entries stat'ed ahead of the listings sent */
#define FS_PF_IDLE_MS 1000       /* no listing for this long: stop the walk */
#define FS_PF_DEPTH 64           /* deeper directories are left to the reader */
#define FS_PF_SUBDIRS 65536      /* subdirectories remembered per directory */

static int64_t fs_pf_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The walk's position against the listings: wait while it is too far
 * ahead.  false: stop walking (asked to, or the listings stopped). */
static bool fs_pf_may_go(fs_prefetch *pf)
{
	uint64_t served = __atomic_load_n(&pf->served, __ATOMIC_RELAXED);
	int64_t since = fs_pf_now_ms();

	while (pf->done > served - pf->base + FS_PF_LEAD) {
		struct timespec nap = { 0, 2 * 1000 * 1000 };
		uint64_t now_served;
		if (__atomic_load_n(&pf->stop, __ATOMIC_RELAXED))
			return false;
		nanosleep(&nap, NULL);
		now_served = __atomic_load_n(&pf->served, __ATOMIC_RELAXED);
		if (now_served != served) {
			served = now_served;
			since = fs_pf_now_ms();
		} else if (fs_pf_now_ms() - since > FS_PF_IDLE_MS) {
			return false;
		}
	}
	return !__atomic_load_n(&pf->stop, __ATOMIC_RELAXED);
}

/* Walk directory fd (ours to close): stat its entries unless the reader's
 * own listing does (the walk's start), then its subdirectories in order.
 * false: the walk is over. */
static bool fs_pf_dir(fs_prefetch *pf, int fd, int depth, bool stat_entries)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	char **subs = NULL;
	size_t nsub = 0, cap = 0;
	bool go = true;

	if (!d) {
		close(fd);
		return true;
	}
	while (go && (de = readdir(d)) != NULL) {
		struct stat st;
		bool isdir = de->d_type == DT_DIR;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (stat_entries) {
			if (!(go = fs_pf_may_go(pf)))
				break;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    de->d_type == DT_UNKNOWN)
				isdir = S_ISDIR(st.st_mode);
			pf->done++;
		}
		if (!isdir || depth + 1 >= FS_PF_DEPTH || nsub >= FS_PF_SUBDIRS)
			continue;
		if (nsub == cap) {
			char **n = realloc(subs, (cap = cap ? cap * 2 : 16) * sizeof *subs);
			if (!n)
				break;
			subs = n;
		}
		if ((subs[nsub] = strdup(de->d_name)) != NULL)
			nsub++;
	}
	for (size_t i = 0; i < nsub; i++) {
		if (go) {
			int sfd = openat(dirfd(d), subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sfd >= 0)
				go = fs_pf_dir(pf, sfd, depth + 1, true);
		}
		free(subs[i]);
	}
	free(subs);
	closedir(d);
	return go;
}

static void *fs_pf_main(void *arg)
{
	fs_prefetch *pf = arg;

	pthread_mutex_lock(&pf->mu);
	for (;;) {
		int fd;
		while (!pf->stop && pf->start < 0)
			pthread_cond_wait(&pf->cv, &pf->mu);
		if (pf->stop)
			break;
		fd = pf->start;
		pf->start = -1;
		pf->base = __atomic_load_n(&pf->served, __ATOMIC_RELAXED);
		pf->done = 0;
		pthread_mutex_unlock(&pf->mu);
		(void)fs_pf_dir(pf, fd, 0, false);
		pthread_mutex_lock(&pf->mu);
		__atomic_store_n(&pf->busy, false, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pf->mu);
	return NULL;
}

void fs_prefetch_start(fs_prefetch *pf)
{
	memset(pf, 0, sizeof *pf);
	pf->start = -1;
	pthread_mutex_init(&pf->mu, NULL);
	pthread_cond_init(&pf->cv, NULL);
	pf->running = pthread_create(&pf->thread, NULL, fs_pf_main, pf) == 0;
}

void fs_prefetch_stop(fs_prefetch *pf)
{
	if (!pf->running)
		return;
	pthread_mutex_lock(&pf->mu);
	__atomic_store_n(&pf->stop, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&pf->cv);
	pthread_mutex_unlock(&pf->mu);
	pthread_join(pf->thread, NULL);
	pf->running = false;
	if (pf->start >= 0)
		close(pf->start);
	pthread_cond_destroy(&pf->cv);
	pthread_mutex_destroy(&pf->mu);
}

void fs_prefetch_listing(fs_prefetch *pf, int dirfd)
{
	int fd;

	if (!pf->running || __atomic_load_n(&pf->busy, __ATOMIC_RELAXED))
		return;
	/* A description of its own: the walk must not move the listing's
	 * position. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	pthread_mutex_lock(&pf->mu);
	if (pf->busy || pf->stop) {
		close(fd);
	} else {
		__atomic_store_n(&pf->busy, true, __ATOMIC_RELAXED);
		pf->start = fd;
		pthread_cond_signal(&pf->cv);
	}
	pthread_mutex_unlock(&pf->mu);
}

void fs_prefetch_served(fs_prefetch *pf, uint64_t entries)
{
	__atomic_add_fetch(&pf->served, entries, __ATOMIC_RELAXED);
}
