/* restore_find.c - which snapshot restore was given, and what vouches for
 * it (restore_int.h; doc/contract.md section 6).
 *
 * Only a store can vouch for a snapshot: its manifest records every
 * entry's hash, whether the snapshot is sealed and which environment it is
 * of.  So the snapshot's store is found first, in ways ENV's owner cannot
 * forge:
 *   - STORE/NAME/tree: STORE must pass the store's own checks (trust.h: a
 *     directory of root's that no other account could have arranged), and
 *     STORE/NAME/tree opened from it must be the very directory given;
 *   - MNT/NAME: MNT must be a fuse.tracsnap mount of user_id=0 (root's;
 *     another account's FUSE mount always has its own user_id), matched by
 *     device to the directory opened, and its daemon answers the store's
 *     path in an extended attribute of its root (TS_MOUNT_STORE_XATTR);
 *   - a NAME (no '/'): in the store --store names, else, when no such
 *     file exists here, in ENV's default store.
 * Anything else (a `cp -a` copy of a snapshot, say) has no manifest, and
 * restore refuses it unless force.
 */
#include "restore/restore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "store/name.h"

/* Open store path (no creation) and read NAME's manifest from it. */
static ts_err_code restore_src_adopt(restore_src *s, const char *store, const char *name,
                                     bool must, ts_err *e)
{
	char rel[NAME_MAX + 16];
	struct stat st;
	ts_err ignore, *err = must ? e : &ignore;
	ts_err_code rc;

	if (name[0] == '.' || ts_name_check(name, err) != TS_OK)
		return must ? ts_err_set(e, TS_ERR_NAME, "snapshot name '%s' not allowed", name) : TS_ERR_NAME;
	rc = ts_store_open(store, false, &s->store, err);
	if (rc != TS_OK)
		return rc;
	s->have_store = true;
	snprintf(s->snapname, sizeof s->snapname, "%s", name);
	snprintf(rel, sizeof rel, "%s/tree", name);
	if (fstatat(s->store.dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
		rc = ts_err_set(err, TS_ERR_NOTFOUND, "%s: no snapshot %s", s->store.root, name);
		ts_store_close(&s->store);
		s->have_store = false;
		return rc;
	}
	snprintf(rel, sizeof rel, "%s/manifest", name);
	s->seal = ts_store_seal_state_of(&s->store, name);
	if (ts_manifest_read_at(s->store.dirfd, rel, &s->m, &ignore) == TS_OK)
		s->have_manifest = true;
	else
		snprintf(s->why, sizeof s->why, "its manifest cannot be read (%.4000s)", ignore.msg);
	return TS_OK;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void restore_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* Does /proc/self/mountinfo show dev as a fuse.tracsnap mount of root's on
 * mnt?  Line: ID PARENT MAJ:MIN ROOT MNT OPTS [TAGS...] - FSTYPE SOURCE
 * SUPEROPTS */
static bool restore_is_root_mount(dev_t dev, const char *mnt)
{
	char want[64], *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return false;
	snprintf(want, sizeof want, "%u:%u", major(dev), minor(dev));
	while (!found && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *save = NULL, *tok, *fstype, *opts, *field[5];
		int i;

		if (!sep)
			continue;
		*sep = '\0';
		for (i = 0, tok = strtok_r(line, " ", &save); tok && i < 5; tok = strtok_r(NULL, " ", &save))
			field[i++] = tok;
		if (i < 5 || strcmp(field[2], want))
			continue;
		restore_unescape(field[4]);
		if (strcmp(field[4], mnt))
			continue;
		fstype = strtok_r(sep + 3, " ", &save);
		(void)strtok_r(NULL, " ", &save);   /* source */
		opts = strtok_r(NULL, " \n", &save);
		if (!fstype || !opts || strcmp(fstype, "fuse.tracsnap"))
			continue;
		for (tok = strtok_r(opts, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			if (!strcmp(tok, "user_id=0"))
				found = true;
	}
	free(line);
	fclose(f);
	return found;
}

/* real (resolved) is MNT/NAME of a root's tracsnap mount: adopt its store. */
static void restore_src_by_mount(restore_src *s, const char *real)
{
	char parent[PATH_MAX], store[PATH_MAX];
	const char *slash = strrchr(real, '/');
	struct stat st;
	ssize_t n;
	int fd;

	if (!slash || slash == real)
		return;
	snprintf(parent, sizeof parent, "%.*s", (int)(slash - real), real);
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* The directory opened is on the device of a mount of root's on
	 * that very path: its daemon's answer is root's. */
	if (fstat(fd, &st) == 0 && restore_is_root_mount(st.st_dev, parent)) {
		n = fgetxattr(fd, TS_MOUNT_STORE_XATTR, store, sizeof store - 1);
		if (n > 0) {
			store[n] = '\0';
			(void)restore_src_adopt(s, store, slash + 1, false, NULL);
		}
	}
	close(fd);
}

/* real (resolved) is STORE/NAME/tree: adopt STORE if it is a store and
 * NAME/tree in it is this very directory. */
static void restore_src_by_tree(restore_src *s, const char *real)
{
	char store[PATH_MAX], name[NAME_MAX + 1], rel[NAME_MAX + 16];
	size_t len = strlen(real);
	const char *nm;
	struct stat given, mine;

	if (len < 6 || strcmp(real + len - 5, "/tree"))
		return;
	snprintf(store, sizeof store, "%.*s", (int)(len - 5), real);
	nm = strrchr(store, '/');
	if (!nm || nm == store || strlen(nm + 1) > NAME_MAX)
		return;
	snprintf(name, sizeof name, "%s", nm + 1);
	store[nm - store] = '\0';
	if (stat(real, &given) < 0 || restore_src_adopt(s, store, name, false, NULL) != TS_OK)
		return;
	snprintf(rel, sizeof rel, "%s/tree", name);
	if (fstatat(s->store.dirfd, rel, &mine, AT_SYMLINK_NOFOLLOW) < 0 || mine.st_dev != given.st_dev ||
	    mine.st_ino != given.st_ino) {
		ts_manifest_free(&s->m);
		ts_manifest_init(&s->m);
		s->have_manifest = false;
		ts_store_close(&s->store);
		s->have_store = false;
	}
}

ts_err_code restore_src_find(restore_src *s, const char *snapshot, const char *store_opt,
                             const char *env_root, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct stat st;
	char *def = NULL, *real = NULL;

	memset(s, 0, sizeof *s);
	ts_manifest_init(&s->m);
	s->seal = TS_STORE_SEALED;
	snprintf(s->path, sizeof s->path, "%s", snapshot);
	snprintf(s->name, sizeof s->name, "%s", snapshot);
	snprintf(s->why, sizeof s->why, "no manifest");
	if (!strchr(snapshot, '/') && (store_opt || (lstat(snapshot, &st) < 0 && errno == ENOENT))) {
		/* A NAME in a store. */
		const char *store = store_opt ? store_opt : (def = ts_store_default_path(env_root));
		if (!store) {
			rc = ts_err_set(e, TS_ERR_USAGE, "%s: no store given and no default (set --store)",
			                snapshot);
			goto out;
		}
		rc = restore_src_adopt(s, store, snapshot, true, e);
		if (rc == TS_OK)
			snprintf(s->path, sizeof s->path, "%s/%s/tree", s->store.root, s->snapname);
		goto out;
	}
	real = realpath(snapshot, NULL);
	if (!real)
		goto out;   /* ts_env_open says what is wrong with it */
	restore_src_by_tree(s, real);
	if (!s->have_store)
		restore_src_by_mount(s, real);
	if (s->have_store)
		snprintf(s->name, sizeof s->name, "%s", s->snapname);
out:
	free(def);
	free(real);
	return rc;
}

ts_err_code restore_src_check(const restore_src *s, const char *env_root, bool force, ts_err *e)
{
	if (force)
		return TS_OK;
	if (!s->have_manifest)
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: cannot check: %s; --force restores it unchecked",
		                  s->name, s->why);
	if (s->seal == TS_STORE_UNSEALED_LOST)
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: discarded (not sealed when the machine restarted: it "
		                  "may have lost data); use --force to restore it anyway", s->name);
	if (s->seal != TS_STORE_SEALED || !ts_manifest_sealed(&s->m))
		return ts_err_set(e, TS_ERR_BUSY, "%s: not sealed yet; wait for it or use --force", s->name);
	if (!s->m.env || strcmp(s->m.env, env_root))
		return ts_err_set(e, TS_ERR_USAGE, "%s is a snapshot of %s, not of %s; use --force to restore "
		                  "it anyway", s->name, s->m.env ? s->m.env : "(unknown)", env_root);
	return TS_OK;
}

int restore_src_open_tree(const restore_src *s)
{
	char rel[NAME_MAX + 16];

	if (!s->have_store)
		return open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(rel, sizeof rel, "%s/tree", s->snapname);
	return openat(s->store.dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

void restore_src_close(restore_src *s)
{
	ts_manifest_free(&s->m);
	if (s->have_store)
		ts_store_close(&s->store);
	s->have_store = false;
	s->have_manifest = false;
}
