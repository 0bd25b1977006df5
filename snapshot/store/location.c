/* location.c - where a store is: its default path, and where it may not be
 * (store.h: ts_store_default_path, ts_store_check_placement).  Paths only:
 * nothing here opens the store. */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env/env.h"

char *ts_store_default_path(const char *env_root)
{
	char base[PATH_MAX], *out = NULL, *flat = NULL;
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	size_t n = strlen(env_root);

	if (geteuid() == 0)
		snprintf(base, sizeof base, "/var/lib/tracsnap");
	else if (xdg && *xdg == '/')
		snprintf(base, sizeof base, "%s/tracsnap", xdg);
	else if (home && *home == '/')
		snprintf(base, sizeof base, "%s/.local/share/tracsnap", home);
	else
		return NULL;
	/* systemd-escape --path's rule: "/srv/trac/proj" -> "srv-trac-proj";
	 * every byte but [A-Za-z0-9:_.] (and a leading '.') becomes "\xHH", so
	 * that distinct paths never share a store.  "/" itself is "-". */
	flat = malloc(4 * n + 2);
	if (!flat)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)env_root[i];
		if (ch == '/') {
			if (j > 0 && i + 1 < n)
				flat[j++] = '-';
		} else if (isalnum(ch) || ch == ':' || ch == '_' || (ch == '.' && j > 0)) {
			flat[j++] = (char)ch;
		} else {
			j += (size_t)snprintf(flat + j, 5, "\\x%02x", ch);
		}
	}
	if (j == 0)
		flat[j++] = '-';
	flat[j] = '\0';
	if (asprintf(&out, "%s/%s", base, flat) < 0)
		out = NULL;
	free(flat);
	return out;
}

/* Absolute, symlink-free form of a path whose tail may not exist yet. */
static char *store_resolve(const char *path)
{
	char *r = realpath(path, NULL), *dup, *slash, *parent, *out = NULL;
	if (r || errno != ENOENT)
		return r;
	dup = strdup(path);
	if (!dup)
		return NULL;
	slash = strrchr(dup, '/');
	if (!slash) {
		parent = realpath(".", NULL);
		if (parent && asprintf(&out, "%s/%s", parent, dup) < 0)
			out = NULL;
	} else {
		const char *last = slash + 1;
		*slash = '\0';
		parent = (slash == dup) ? strdup("/") : store_resolve(dup);
		if (!parent) {
			out = NULL;
		} else if (!strcmp(last, "..")) {
			/* Lexically, as the kernel would once the path exists. */
			char *up = strrchr(parent, '/');
			out = strndup(parent, up && up != parent ? (size_t)(up - parent) : 1);
		} else if (!strcmp(last, ".") || !*last) {
			out = strdup(parent);
		} else if (asprintf(&out, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", last) < 0) {
			out = NULL;
		}
	}
	free(parent);
	free(dup);
	return out;
}

ts_err_code ts_store_check_placement(const char *store, const char *env_root,
                                     const char *mnt, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *s = store_resolve(store), *m = mnt ? store_resolve(mnt) : NULL;

	if (!s || (mnt && !m)) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "cannot resolve %s", !s ? store : mnt);
		goto out;
	}
	if (ts_path_is_under(s, env_root)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "store %s: inside the environment %s "
		                "(snapshots would copy themselves)", store, env_root);
		goto out;
	}
	if (ts_path_is_under(env_root, s)) {
		/* ENV would be listed as a snapshot, and pruned as one. */
		rc = ts_err_set(e, TS_ERR_USAGE, "store %s: contains the environment %s", store, env_root);
		goto out;
	}
	if (m && ts_path_is_under(s, m)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "store %s: below the mount point %s", store, mnt);
		goto out;
	}
	if (m && ts_path_is_under(m, env_root)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "mount point %s: inside the environment %s", mnt, env_root);
		goto out;
	}
	if (m && ts_path_is_under(env_root, m)) {
		rc = ts_err_set(e, TS_ERR_USAGE, "mount point %s: would hide the environment %s", mnt, env_root);
		goto out;
	}
out:
	free(s);
	free(m);
	return rc;
}
