/* restore_copy.c - the snapshot's files into restore's temporary copy
 * (restore_int.h).
 *
 * The snapshot is listed with ts_walk (walk.h), as snap.c lists the
 * environment: listing is what the walk is for, on every core and beneath
 * the top (never through a symlink).  The copy itself then runs over the
 * sorted list on the calling thread: parents sort before their children,
 * so each directory is made before what it holds; progress reports come
 * from one thread (progress.h); and the directories' metadata is set after
 * everything is in place (adding entries would change their mtimes), which
 * a walk that calls back before descending cannot do.  The totals for the
 * progress line come from the same list, with no second pass.
 */
#include "restore/restore_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/copy.h"
#include "base/walk.h"

typedef struct restore_entry {
	char *rel;
	struct stat st;
} restore_entry;

typedef struct restore_list {
	const char *skip;
	restore_entry *v;
	size_t n, cap;
	pthread_mutex_t mu;
} restore_list;

/* ts_walk callback: directories, regular files and symlinks; a snapshot
 * holds nothing else (doc/contract.md section 3). */
static ts_err_code restore_list_add(void *arg, const char *rel, const struct stat *st, ts_err *e)
{
	restore_list *l = arg;
	ts_err_code rc = TS_OK;
	char *dup;

	if (l->skip && !strcmp(rel, l->skip))
		return TS_ERR_NOTFOUND;
	if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode))
		return TS_OK;
	dup = strdup(rel);
	pthread_mutex_lock(&l->mu);
	if (dup && l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		restore_entry *nv = realloc(l->v, ncap * sizeof *nv);
		if (nv) {
			l->v = nv;
			l->cap = ncap;
		}
	}
	if (!dup || l->n == l->cap) {
		free(dup);
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	} else {
		l->v[l->n].rel = dup;
		l->v[l->n].st = *st;
		l->n++;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static int restore_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const restore_entry *)a)->rel, ((const restore_entry *)b)->rel);
}

ts_err_code restore_copy_tree(int src, int dst, const char *desc, const char *skip,
                              restore_check *check, const ts_progress_sink *progress,
                              ts_restore_out *out, ts_err *e)
{
	restore_list l = { .skip = skip };
	ts_progress pr = { 0 };
	ts_err_code rc;

	pthread_mutex_init(&l.mu, NULL);
	rc = ts_walk(src, desc, restore_list_add, &l, NULL, NULL, NULL, e);
	if (rc != TS_OK)
		goto out;
	qsort(l.v, l.n, sizeof *l.v, restore_entry_cmp);
	for (size_t i = 0; i < l.n; i++) {
		if (S_ISREG(l.v[i].st.st_mode) || S_ISLNK(l.v[i].st.st_mode)) {
			pr.files_total++;
			pr.bytes_total += S_ISREG(l.v[i].st.st_mode) ? (uint64_t)l.v[i].st.st_size : 0;
		}
	}
	for (size_t i = 0; rc == TS_OK && i < l.n; i++) {
		const restore_entry *it = &l.v[i];
		ts_copy_out co;

		if (S_ISDIR(it->st.st_mode)) {
			if (mkdirat(dst, it->rel, 0700) < 0)
				rc = ts_err_sys(e, errno, "%s/%s: cannot create the directory copy", desc, it->rel);
			else
				rc = restore_check_entry(check, it->rel, &it->st, dst, it->rel, NULL, e);
			continue;
		}
		/* Checked as it lands (restore_check.c): the copy is what goes
		 * into ENV, its pages still in the cache. */
		if (S_ISREG(it->st.st_mode)) {
			rc = ts_copy_file(src, dst, it->rel, 0, desc, &co, e);
			if (rc == TS_OK) {
				out->files++;
				out->bytes += co.bytes;
				rc = restore_check_entry(check, it->rel, &co.st, dst, it->rel, NULL, e);
			}
		} else {
			rc = ts_copy_symlink(src, dst, it->rel, desc, &co, e);
			if (rc == TS_OK) {
				out->files++;
				rc = restore_check_entry(check, it->rel, &co.st, dst, it->rel, co.sha256, e);
			}
		}
		if (rc == TS_OK && progress) {
			pr.files_done = out->files;
			pr.bytes_done = out->bytes;
			ts_progress_report(progress, &pr);
		}
	}
	/* Deepest first, though any order would do: a directory's metadata
	 * does not change its parent's. */
	for (size_t i = l.n; rc == TS_OK && i-- > 0;)
		if (S_ISDIR(l.v[i].st.st_mode))
			rc = ts_copy_dir_meta(src, dst, l.v[i].rel, &l.v[i].st, desc, e);
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].rel);
	free(l.v);
	pthread_mutex_destroy(&l.mu);
	return rc;
}
