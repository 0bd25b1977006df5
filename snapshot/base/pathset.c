/* pathset.c - a few paths, sorted and each once (see pathset.h). */
#include "base/pathset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where path is, or would go: the first index whose path is not below it. */
static size_t pathset_at(const ts_pathset *s, const char *path)
{
	size_t lo = 0, hi = s->n;

	if (s->n && strcmp(s->v[s->n - 1], path) < 0)
		return s->n;   /* in order: after the last */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->v[mid], path) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool ts_pathset_add(ts_pathset *s, const char *path)
{
	size_t at = pathset_at(s, path);
	char *copy;

	if (at < s->n && !strcmp(s->v[at], path))
		return true;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return false;
		s->v = v;
		s->cap = cap;
	}
	if (!(copy = strdup(path)))
		return false;
	memmove(s->v + at + 1, s->v + at, (s->n - at) * sizeof *s->v);
	s->v[at] = copy;
	s->n++;
	return true;
}

bool ts_pathset_add_dir_of(ts_pathset *s, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	return ts_pathset_add(s, dir);
}

bool ts_pathset_has(const ts_pathset *s, const char *path)
{
	size_t at = pathset_at(s, path);
	return at < s->n && !strcmp(s->v[at], path);
}

void ts_pathset_free(ts_pathset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}
