/* walk.c - list a directory tree on one thread per core (see walk.h). */
#include "base/walk.h"

#include "base/beneath.h"

#include <dirent.h>   /* getdents64, struct dirent64 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WALK_MAX_THREADS 4

/* A directory to list: its path (owned) and the inode its stat gave (0 for
 * the root, which is not checked). */
struct walk_todo {
	char *rel;
	dev_t dev;
	ino_t ino;
};

typedef struct walk_state {
	int rootfd;
	const char *desc;
	ts_walk_fn fn;
	void *arg;
	volatile sig_atomic_t *cancel;
	const char *cancel_msg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct walk_todo *todo;    /* directories to list, a stack */
	size_t n, cap;
	int busy;                  /* threads listing a directory */
	bool retyped;              /* a directory was not the one stat'ed (under mu) */
	ts_err_code rc;            /* first failure */
	ts_err err;
} walk_state;

/* Under mu. */
static void walk_fail(walk_state *w, ts_err_code rc, const ts_err *e)
{
	if (w->rc == TS_OK) {
		if (e)
			w->err = *e;
		__atomic_store_n(&w->rc, rc, __ATOMIC_RELAXED);   /* read unlocked in walk_dir */
	}
	pthread_cond_broadcast(&w->cv);
}

/* st: the directory's stat, NULL for the root. */
static ts_err_code walk_push(walk_state *w, const char *rel, const struct stat *st, ts_err *e)
{
	char *dup = strdup(rel);
	ts_err_code rc = TS_OK;

	pthread_mutex_lock(&w->mu);
	if (dup && w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 64;
		struct walk_todo *nv = realloc(w->todo, ncap * sizeof *nv);
		if (nv) {
			w->todo = nv;
			w->cap = ncap;
		}
	}
	if (!dup || w->n == w->cap) {
		free(dup);
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	} else {
		w->todo[w->n++] = (struct walk_todo){ .rel = dup, .dev = st ? st->st_dev : 0,
		                                      .ino = st ? st->st_ino : 0 };
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

/* Read by getdents64 into this buffer, not readdir: fdopendir costs an fstat
 * and two fcntls per directory, a third of a walk's system calls. */
#define WALK_DENTS_BUF 32768

/* One entry of the directory open as fd; rel is the directory. */
static ts_err_code walk_entry(walk_state *w, int fd, const char *rel, const char *name, ts_err *e)
{
	char child[PATH_MAX];
	struct stat st;
	ts_err_code rc;

	if ((size_t)(strcmp(rel, ".") ? snprintf(child, sizeof child, "%s/%s", rel, name)
	                               : snprintf(child, sizeof child, "%s", name)) >= sizeof child)
		return ts_err_set(e, TS_ERR_IO, "%s/%s/%s: path too long", w->desc, rel, name);
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return TS_OK;   /* vanished meanwhile */
		return ts_err_sys(e, errno, "%s/%s: cannot stat", w->desc, child);
	}
	rc = w->fn(w->arg, child, &st, e);
	if (rc == TS_ERR_NOTFOUND)
		return TS_OK;
	if (rc == TS_OK && S_ISDIR(st.st_mode))
		rc = walk_push(w, child, &st, e);
	return rc;
}

static void walk_set_retyped(walk_state *w)
{
	pthread_mutex_lock(&w->mu);
	w->retyped = true;
	pthread_mutex_unlock(&w->mu);
}

/* List one directory: every entry to fn, subdirectories onto the stack. */
static ts_err_code walk_dir(walk_state *w, const struct walk_todo *t, ts_err *e)
{
	ts_err_code rc = TS_OK;
	const char *rel = t->rel;
	char *buf = malloc(WALK_DENTS_BUF);
	int fd = buf ? ts_beneath_open(w->rootfd, rel, O_RDONLY | O_DIRECTORY, 0) : -1;
	struct stat now;

	if (!buf)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (fd < 0) {
		free(buf);
		/* Gone, or replaced by a link or a file (or an ancestor so
		 * replaced), since fn was given its stat: left out, and said so
		 * (walk.h). */
		if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) {
			walk_set_retyped(w);
			return TS_OK;
		}
		return ts_err_sys(e, errno, "%s/%s: cannot read directory", w->desc, rel);
	}
	if (t->ino && (fstat(fd, &now) < 0 || now.st_ino != t->ino || now.st_dev != t->dev)) {
		/* Another directory moved in since that stat: not the one fn
		 * was told of, left out too. */
		walk_set_retyped(w);
		goto done;
	}
	for (;;) {
		ssize_t n = getdents64(fd, buf, WALK_DENTS_BUF);
		if (n <= 0) {
			if (n < 0)
				rc = ts_err_sys(e, errno, "%s/%s: cannot read directory", w->desc, rel);
			break;
		}
		for (ssize_t off = 0; off < n;) {
			const struct dirent64 *de = (const struct dirent64 *)(buf + off);
			off += de->d_reclen;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (__atomic_load_n(&w->rc, __ATOMIC_RELAXED) != TS_OK)
				goto done;   /* another thread failed: the walk is over */
			if (w->cancel && *w->cancel)
				rc = ts_err_set(e, TS_ERR_CANCELLED, "%s",
				                w->cancel_msg ? w->cancel_msg : "cancelled");
			else
				rc = walk_entry(w, fd, rel, de->d_name, e);
			if (rc != TS_OK)
				goto done;
		}
	}
done:
	close(fd);
	free(buf);
	return rc;
}

/* The calling walk thread's caches (ts_walk_cache), on its stack. */
static __thread ts_beneath_cache *walk_caches;

ts_beneath_cache *ts_walk_cache(int i)
{
	return &walk_caches[i];
}

static void *walk_worker(void *arg)
{
	walk_state *w = arg;
	ts_err e;
	ts_beneath_cache caches[TS_WALK_CACHES];

	for (int i = 0; i < TS_WALK_CACHES; i++)
		caches[i] = (ts_beneath_cache)TS_BENEATH_CACHE_INIT;
	walk_caches = caches;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->rc == TS_OK && w->n == 0 && w->busy > 0)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->rc != TS_OK || w->n == 0)
			break;   /* failed, or nothing left and nobody to add more */
		struct walk_todo t = w->todo[--w->n];
		w->busy++;
		pthread_mutex_unlock(&w->mu);

		ts_err_clear(&e);
		ts_err_code rc = walk_dir(w, &t, &e);
		free(t.rel);

		pthread_mutex_lock(&w->mu);
		w->busy--;
		if (rc != TS_OK)
			walk_fail(w, rc, &e);
		else if (w->n == 0 && w->busy == 0)
			pthread_cond_broadcast(&w->cv);   /* done: wake the idle ones */
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < TS_WALK_CACHES; i++)
		ts_beneath_cache_drop(&caches[i]);
	walk_caches = NULL;
	return NULL;
}

ts_err_code ts_walk(int rootfd, const char *desc, ts_walk_fn fn, void *arg,
                    volatile sig_atomic_t *cancel, const char *cancel_msg, bool *retyped,
                    ts_err *e)
{
	walk_state w = { .rootfd = rootfd, .desc = desc, .fn = fn, .arg = arg,
	                 .cancel = cancel, .cancel_msg = cancel_msg };
	pthread_t th[WALK_MAX_THREADS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nth = ncpu < 1 ? 1 : ncpu > WALK_MAX_THREADS ? WALK_MAX_THREADS : (int)ncpu, started = 0;

	ts_err_clear(&w.err);
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	if (walk_push(&w, ".", NULL, &w.err) != TS_OK)
		w.rc = TS_ERR_NOMEM;
	for (int t = 1; w.rc == TS_OK && t < nth; t++)
		if (pthread_create(&th[started], NULL, walk_worker, &w) == 0)
			started++;
	walk_worker(&w);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	for (size_t i = 0; i < w.n; i++)
		free(w.todo[i].rel);
	free(w.todo);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	if (w.rc != TS_OK && e)
		*e = w.err;
	if (retyped && w.retyped)
		*retyped = true;
	return w.rc;
}
