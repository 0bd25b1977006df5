/* pathset.h - a few paths, sorted and each once: what a pass over a
 * manifest notes about a handful of its entries (the files a stage build
 * leaves out, the copies made afresh, their directories, the database's
 * entries), to look them up as the entries come by again in path order.
 *
 * Not for many: an add out of order moves the paths after it.  Paths
 * added in strcmp order (a manifest's) only append.
 *
 * Ownership: a ts_pathset owns its paths (copies); zero-initialise it
 * ({ 0 }) and release it with ts_pathset_free. */
#ifndef TS_PATHSET_H
#define TS_PATHSET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ts_pathset {
	char **v;                  /* sorted (strcmp), each once */
	size_t n, cap;
} ts_pathset;

/* Add a copy of path unless it is there; false: out of memory. */
bool ts_pathset_add(ts_pathset *s, const char *path);
/* Add the directory path is in ("." for a top-level one). */
bool ts_pathset_add_dir_of(ts_pathset *s, const char *path);
bool ts_pathset_has(const ts_pathset *s, const char *path);
void ts_pathset_free(ts_pathset *s);

#endif
