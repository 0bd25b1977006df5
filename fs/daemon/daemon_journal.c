/* daemon_journal.c - the inotify watch on ENV, for the stager and the
 * snapshots (daemon_journal.h). */
#include "daemon_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/log.h"
#include "db/dbsnap.h"

/* Raw events kept for the stager at most; beyond, dropped and counted as
 * one change (the stager only needs to know that something changed). */
#define JR_PEND_MAX (1024 * 1024)
/* Paths a recording keeps at most; beyond, it cannot tell. */
#define JR_REC_MAX 65536

int dmn_journal_open(dmn_journal *j, const ts_env *env)
{
	memset(j, 0, sizeof *j);
	pthread_mutex_init(&j->mu, NULL);
	j->env = env;
	j->db_wd = -1;
	if (env->db_rel) {
		const char *slash = strrchr(env->db_rel, '/');
		j->db_dir = slash ? strndup(env->db_rel, (size_t)(slash - env->db_rel)) : strdup(".");
	}
	j->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	j->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->fd < 0 || j->wake < 0) {
		int err = errno;
		dmn_journal_close(j);
		errno = err;
		return -1;
	}
	return 0;
}

static void jr_stage_forget(dmn_journal *j);

static void jr_rec_clear(dmn_journal *j)
{
	for (size_t i = 0; i < j->nrec; i++)
		free(j->rec[i]);
	free(j->rec);
	j->rec = NULL;
	j->nrec = j->caprec = 0;
}

void dmn_journal_close(dmn_journal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	if (j->wake >= 0)
		close(j->wake);
	j->fd = j->wake = -1;
	for (size_t i = 0; i < j->ndirs; i++)
		free(j->dirs[i]);
	free(j->dirs);
	free(j->since);
	j->dirs = NULL;
	j->since = NULL;
	j->ndirs = 0;
	free(j->pend);
	j->pend = NULL;
	j->npend = j->cappend = 0;
	jr_rec_clear(j);
	jr_stage_forget(j);
	free(j->db_dir);
	j->db_dir = NULL;
	pthread_mutex_destroy(&j->mu);
}

/* "dir/name" (or the one that is there) into out; false when too long. */
static bool jr_join(const char *dir, const char *name, char *out, size_t size)
{
	bool top = !strcmp(dir, ".");
	int n = !name || !*name ? snprintf(out, size, "%s", dir)
	                        : snprintf(out, size, "%s%s%s", top ? "" : dir, top ? "" : "/", name);
	return n > 0 && (size_t)n < size;
}

static void jr_record(dmn_journal *j, const char *rel)
{
	if (j->rec_lost)
		return;
	if (j->nrec == j->caprec) {
		size_t ncap = j->caprec ? j->caprec * 2 : 64;
		char **v = ncap <= JR_REC_MAX ? realloc(j->rec, ncap * sizeof *v) : NULL;
		if (!v) {
			j->rec_lost = true;
			return;
		}
		j->rec = v;
		j->caprec = ncap;
	}
	if (!(j->rec[j->nrec] = strdup(rel))) {
		j->rec_lost = true;
		return;
	}
	j->nrec++;
}

static void jr_stage_forget(dmn_journal *j)
{
	for (size_t i = 0; i < j->nstage_w; i++)
		free(j->stage_w[i]);
	j->nstage_w = 0;
}

/* An event on rel, not the database's: a file only written to is noted
 * (up to DMN_JOURNAL_STAGE_WRITTEN); anything else makes the stage
 * unclean. */
static void jr_stage_note(dmn_journal *j, const struct inotify_event *ev, const char *rel)
{
	if (!j->stage_clean)
		return;
	if ((ev->mask & IN_ISDIR) || !ev->len || (ev->mask & ~(uint32_t)(IN_MODIFY | IN_CLOSE_WRITE))) {
		j->stage_clean = false;
		return;
	}
	for (size_t i = 0; i < j->nstage_w; i++)
		if (!strcmp(j->stage_w[i], rel))
			return;
	if (j->nstage_w == DMN_JOURNAL_STAGE_WRITTEN || !(j->stage_w[j->nstage_w] = strdup(rel))) {
		j->stage_clean = false;
		return;
	}
	j->nstage_w++;
}

/* A directory moved away from rel: the watches at and below it report
 * under a path that is no longer theirs (daemon_journal.h). */
static void jr_stale(dmn_journal *j, const char *rel)
{
	size_t len = strlen(rel);
	for (size_t w = 0; w < j->ndirs; w++) {
		const char *d = j->dirs[w];
		if (d && !strncmp(d, rel, len) && (d[len] == '\0' || d[len] == '/')) {
			free(j->dirs[w]);
			j->dirs[w] = NULL;
		}
	}
}

/* One event, as a path for a recording (and what it means for the paths
 * of the watches). */
static void jr_note(dmn_journal *j, const struct inotify_event *ev)
{
	char rel[PATH_MAX];
	const char *dir;

	if (ev->mask & IN_Q_OVERFLOW) {
		j->rec_lost = j->recording;
		j->stage_clean = false;
		j->blind_seq = j->seq;
		return;
	}
	if (ev->wd < 0 || (size_t)ev->wd >= j->ndirs) {
		j->stage_clean = false;   /* a watch of ours, surely; but whose? */
		j->blind_seq = j->seq;
		return;
	}
	if (ev->mask & IN_IGNORED) {   /* the directory went: so does its watch */
		free(j->dirs[ev->wd]);
		j->dirs[ev->wd] = NULL;
		j->stage_clean = false;
		if (ev->wd == j->db_wd)
			j->db_wd = -1;
		return;
	}
	dir = j->dirs[ev->wd];
	if (!dir || !jr_join(dir, ev->len ? ev->name : NULL, rel, sizeof rel)) {
		j->rec_lost = j->recording;   /* a stale watch: where, nobody knows */
		j->stage_clean = false;
		j->blind_seq = j->seq;
		return;
	}
	if (j->env->db_rel && !strcmp(rel, j->env->db_rel))
		j->db_seq = j->seq;
	if (!ts_db_excluded(j->env, rel)) {
		jr_stage_note(j, ev, rel);
		if (j->recording)
			jr_record(j, rel);
	}
	if ((ev->mask & IN_MOVED_FROM) && (ev->mask & IN_ISDIR))
		jr_stale(j, rel);
}

static void jr_pend(dmn_journal *j, const struct inotify_event *ev)
{
	size_t n = sizeof *ev + ev->len;

	if (j->npend + n > j->cappend) {
		size_t ncap = j->cappend ? j->cappend * 2 : 16384;
		while (ncap < j->npend + n)
			ncap *= 2;
		char *v = ncap <= JR_PEND_MAX ? realloc(j->pend, ncap) : NULL;
		if (!v) {
			j->pend_lost = true;
			return;
		}
		j->pend = v;
		j->cappend = ncap;
	}
	memcpy(j->pend + j->npend, ev, n);
	j->npend += n;
}

/* Read every queued event (mu held).  Once a write has returned, its event
 * is queued: what is drained here is every change made before. */
static bool jr_drain(dmn_journal *j)
{
	char buf[64 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	bool got = false;

	for (;;) {
		ssize_t n = read(j->fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			j->seq++;
			jr_note(j, ev);
			jr_pend(j, ev);
			got = true;
			p += sizeof *ev + ev->len;
		}
	}
	return got;
}

/* Drained on a snapshot's behalf: the stager, blocked in poll on the
 * now empty inotify descriptor, is told there is something for it. */
static void jr_drain_for_snapshot(dmn_journal *j)
{
	uint64_t one = 1;
	if (jr_drain(j))
		(void)!write(j->wake, &one, sizeof one);
}

int dmn_journal_watch(dmn_journal *j, const char *rel)
{
	struct stat st;
	char proc[64];
	int wd = -1, envfd = -1, fd = -1;

	pthread_mutex_lock(&j->mu);
	if (j->full) {
		j->stage_clean = false;
		goto out;
	}
	/* By descriptor, beneath ENV, one component at a time: a path string
	 * would follow a symlink the environment's owner put on the way. */
	envfd = open(j->env->root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	fd = envfd < 0 ? -1 : ts_beneath_open(envfd, rel, O_PATH | O_DIRECTORY, 0);
	if (fd < 0) {
		j->stage_clean = false;
		goto out;
	}
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	wd = inotify_add_watch(j->fd, proc, DMN_JOURNAL_EVENTS | IN_ONLYDIR);
	if (wd < 0) {
		j->stage_clean = false;   /* a directory nobody watches */
		if (errno == ENOSPC) {
			j->full = true;
			ts_log(LOG_INFO, "%s: too many directories to watch (fs.inotify.max_user_watches); "
			       "changes below some are staged only with the next change elsewhere, and "
			       "snapshots check every entry under Trac's lock", j->env->root);
		}
		goto out;
	}
	if ((size_t)wd >= j->ndirs) {
		size_t n = (size_t)wd * 2 + 16;
		char **v = realloc(j->dirs, n * sizeof *v);
		uint64_t *s = v ? realloc(j->since, n * sizeof *s) : NULL;
		if (v)
			j->dirs = v;
		if (!v || !s) {
			j->stage_clean = false;
			goto out;   /* its events have no path: recordings cannot tell */
		}
		j->since = s;
		memset(j->dirs + j->ndirs, 0, (n - j->ndirs) * sizeof *j->dirs);
		memset(j->since + j->ndirs, 0, (n - j->ndirs) * sizeof *j->since);
		j->ndirs = n;
	}
	/* Events queued before this are drained first: they belong to the
	 * directory's old path, if it had one. */
	jr_drain_for_snapshot(j);
	/* Watched again by the same path: nothing was missed.  A directory
	 * newly watched may have changed unseen before (the stage's pass may
	 * not have seen that). */
	if (j->dirs[wd] && !strcmp(j->dirs[wd], rel))
		goto out;
	j->stage_clean = false;
	if (!strcmp(rel, ".") && fstat(fd, &st) == 0) {
		j->root_dev = st.st_dev;
		j->root_ino = st.st_ino;
	}
	free(j->dirs[wd]);
	j->dirs[wd] = strdup(rel);
	/* A seq of its own: a mark taken before this is lower than since even
	 * with no event in between (what came before the watch is unseen),
	 * and every event from here on has a higher seq. */
	j->since[wd] = ++j->seq;
	if (j->db_dir && !strcmp(rel, j->db_dir))
		j->db_wd = wd;
out:
	if (fd >= 0)
		close(fd);
	if (envfd >= 0)
		close(envfd);
	pthread_mutex_unlock(&j->mu);
	return wd;
}

size_t dmn_journal_events(dmn_journal *j, char *buf, size_t size, bool *lost)
{
	size_t used = 0;
	uint64_t v;

	pthread_mutex_lock(&j->mu);
	(void)!read(j->wake, &v, sizeof v);
	jr_drain(j);
	while (used < j->npend) {
		const struct inotify_event *ev = (const struct inotify_event *)(j->pend + used);
		size_t n = sizeof *ev + ev->len;
		if (used + n > size)
			break;
		used += n;
	}
	memcpy(buf, j->pend, used);
	memmove(j->pend, j->pend + used, j->npend - used);
	j->npend -= used;
	if (j->npend)   /* more than fits: call again */
		(void)!write(j->wake, &(uint64_t){ 1 }, sizeof(uint64_t));
	*lost = j->pend_lost;
	j->pend_lost = false;
	pthread_mutex_unlock(&j->mu);
	return used;
}

bool dmn_journal_dir(dmn_journal *j, int wd, char *out, size_t size)
{
	bool ok = false;

	pthread_mutex_lock(&j->mu);
	if (wd >= 0 && (size_t)wd < j->ndirs && j->dirs[wd] && strlen(j->dirs[wd]) < size) {
		strcpy(out, j->dirs[wd]);
		ok = true;
	}
	pthread_mutex_unlock(&j->mu);
	return ok;
}

/* ---- ts_snap_changes ---- */

static uint64_t jr_mark(void *arg)
{
	dmn_journal *j = arg;
	uint64_t m;

	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	jr_rec_clear(j);
	j->recording = true;
	j->rec_lost = false;
	m = j->seq;
	pthread_mutex_unlock(&j->mu);
	return m;
}

static const dmn_journal *jr_sort_j;   /* qsort's context, under mu */

static int jr_wd_cmp(const void *a, const void *b)
{
	return strcmp(jr_sort_j->dirs[*(const size_t *)a], jr_sort_j->dirs[*(const size_t *)b]);
}

static void jr_unwatched(void *arg, uint64_t mark, const char *const *dirs, size_t n, bool *out)
{
	dmn_journal *j = arg;
	size_t *w = NULL, nw = 0;

	pthread_mutex_lock(&j->mu);
	w = malloc((j->ndirs ? j->ndirs : 1) * sizeof *w);
	for (size_t i = 0; w && i < j->ndirs; i++)
		if (j->dirs[i] && j->since[i] <= mark)
			w[nw++] = i;
	jr_sort_j = j;
	if (w)
		qsort(w, nw, sizeof *w, jr_wd_cmp);
	for (size_t i = 0; i < n; i++) {
		size_t lo = 0, hi = nw;
		bool found = false;
		while (w && lo < hi && !found) {
			size_t mid = lo + (hi - lo) / 2;
			int c = strcmp(dirs[i], j->dirs[w[mid]]);
			if (c == 0)
				found = true;
			else if (c < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
		out[i] = !found;
	}
	free(w);
	pthread_mutex_unlock(&j->mu);
}

static bool jr_since(void *arg, uint64_t mark, void (*fn)(void *fnarg, const char *rel), void *fnarg,
                     const char **why, uint64_t *remark)
{
	dmn_journal *j = arg;
	bool ok;

	(void)mark;   /* recorded since the mark (jr_mark) */
	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	ok = j->recording && !j->rec_lost;
	if (!ok)
		*why = "changes were lost: the event queue overflowed or a directory moved";
	for (size_t i = 0; ok && i < j->nrec; i++)
		fn(fnarg, j->rec[i]);
	if (remark) {   /* under the same mutex: nothing drained in between */
		jr_rec_clear(j);
		j->recording = true;
		j->rec_lost = false;
		*remark = j->seq;
	}
	pthread_mutex_unlock(&j->mu);
	return ok;
}

static uint64_t jr_stage_mark(void *arg)
{
	dmn_journal *j = arg;
	uint64_t gen;

	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	gen = ++j->stage_gen;
	j->stage_clean = true;
	j->stage_done = false;
	jr_stage_forget(j);
	pthread_mutex_unlock(&j->mu);
	return gen;
}

static void jr_stage_done(void *arg, uint64_t gen, const struct stat *manifest)
{
	dmn_journal *j = arg;

	pthread_mutex_lock(&j->mu);
	if (gen == j->stage_gen) {
		j->stage_done = true;
		j->stage_dev = manifest->st_dev;
		j->stage_ino = manifest->st_ino;
		j->stage_ctime = manifest->st_ctim;
	}
	pthread_mutex_unlock(&j->mu);
}

/* Is ENV's path still the directory watched as "."?  The watches follow
 * the directories they were put on: ENV renamed away and another put at
 * its path (a restore does that) makes no event in them. */
static bool jr_root_same(const dmn_journal *j)
{
	int fd = open(j->env->root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	bool same = fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == j->root_dev && st.st_ino == j->root_ino;

	if (fd >= 0)
		close(fd);
	return same;
}

static bool jr_stage_clean(void *arg, const struct stat *manifest,
                           void (*written)(void *fnarg, const char *rel), void *fnarg)
{
	dmn_journal *j = arg;
	bool clean;

	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	clean = j->stage_clean && j->stage_done && !j->full;
	if (clean && manifest)
		clean = j->stage_dev == manifest->st_dev && j->stage_ino == manifest->st_ino &&
		        j->stage_ctime.tv_sec == manifest->st_ctim.tv_sec &&
		        j->stage_ctime.tv_nsec == manifest->st_ctim.tv_nsec;
	if (clean)
		clean = jr_root_same(j);
	for (size_t i = 0; clean && written && i < j->nstage_w; i++)
		written(fnarg, j->stage_w[i]);
	pthread_mutex_unlock(&j->mu);
	return clean;
}

static bool jr_db_unchanged(void *arg, uint64_t mark)
{
	dmn_journal *j = arg;
	bool quiet;

	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	quiet = j->db_wd >= 0 && j->dirs[j->db_wd] && !strcmp(j->dirs[j->db_wd], j->db_dir) &&
	        j->since[j->db_wd] <= mark && j->db_seq <= mark && j->blind_seq <= mark && jr_root_same(j);
	pthread_mutex_unlock(&j->mu);
	return quiet;
}

static uint64_t jr_stage_from(void *arg, uint64_t remark)
{
	dmn_journal *j = arg;
	uint64_t gen = 0;

	pthread_mutex_lock(&j->mu);
	jr_drain_for_snapshot(j);
	if (j->full || !jr_root_same(j)) {
		/* no mark: what a watch cannot see may have changed */
	} else if (remark) {
		/* Any event since, the database's too (the lock is held, so
		 * there is hardly ever one): the take may not have seen it. */
		if (j->recording && !j->rec_lost && j->seq == remark) {
			gen = ++j->stage_gen;
			j->stage_clean = true;
			j->stage_done = false;
			jr_stage_forget(j);
		}
	} else if (j->stage_clean && j->stage_done) {
		gen = j->stage_gen;   /* the files written to since stay listed */
	}
	pthread_mutex_unlock(&j->mu);
	return gen;
}

static void jr_end(void *arg)
{
	dmn_journal *j = arg;

	pthread_mutex_lock(&j->mu);
	j->recording = false;
	j->rec_lost = false;
	jr_rec_clear(j);
	pthread_mutex_unlock(&j->mu);
}

void dmn_journal_changes(dmn_journal *j, ts_snap_changes *out)
{
	out->arg = j;
	out->mark = jr_mark;
	out->unwatched = jr_unwatched;
	out->since = jr_since;
	out->end = jr_end;
	out->stage_mark = jr_stage_mark;
	out->stage_done = jr_stage_done;
	out->stage_clean = jr_stage_clean;
	out->db_unchanged = jr_db_unchanged;
	out->stage_from = jr_stage_from;
}
