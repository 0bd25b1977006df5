/* snap_manifest.c - write a snapshot's manifest from its items and the
 * database copy (snap_int.h, manifest.h). */
#include "take/snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "db/dbsnap.h"
#include "store/manifest_stat.h"

/* What snap_manifest writes, in the manifest's order: the items (sorted
 * by path already, snap_list.c), and the extra entries (the database
 * copy, the directory made for it, and for a stage taken as it is the
 * directories that received something) merged in where they sort. */
typedef struct snap_mf {
	const snap_list *items;
	size_t k;                      /* the next item */
	ts_manifest_entry *extra;      /* owned array, sorted before the write */
	size_t nextra, capextra, x;    /* how many, room, the next one */
	char **owned;                  /* paths of extra entries the writer owns */
	size_t nowned;
} snap_mf;

static const ts_manifest_entry *snap_mf_next(void *arg, size_t i, ts_manifest_entry *me)
{
	snap_mf *c = arg;
	const snap_list *l = c->items;
	(void)i;

	while (c->k < l->n && !l->v[c->k].type)
		c->k++;   /* vanished */
	if (c->x < c->nextra && (c->k == l->n || strcmp(c->extra[c->x].path, l->v[c->k].rel) < 0))
		return &c->extra[c->x++];
	const snap_item *it = &l->v[c->k++];
	memset(me, 0, sizeof *me);
	me->type = it->type;
	me->path = it->rel;
	struct stat src;
	snap_item_stat_get(it, &src);
	ts_manifest_entry_set_meta(me, &src);
	memcpy(me->sha256, snap_item_sha(it), 32);
	me->pending = it->type == 'f' && it->unhashed;
	/* Directories too: a stage's directory may serve as is (snap_dir_as_staged). */
	ts_manifest_entry_set_source(me, &src);
	if (it->type == 'f') {
		me->store_ino = it->store_ino;   /* the copy as placed (snap_put.c) */
		me->store_ctime = it->store_ctime;
	}
	return me;
}

static int snap_mf_cmp(const void *a, const void *b)
{
	return strcmp(((const ts_manifest_entry *)a)->path, ((const ts_manifest_entry *)b)->path);
}

/* A new extra entry, zeroed, path borrowed (NULL: out of memory). */
static ts_manifest_entry *snap_mf_add(snap_mf *c, char type, const char *path)
{
	if (c->nextra == c->capextra) {
		size_t ncap = c->capextra ? 2 * c->capextra : 4;
		ts_manifest_entry *v = realloc(c->extra, ncap * sizeof *v);
		if (!v)
			return NULL;
		c->extra = v;
		c->capextra = ncap;
	}
	ts_manifest_entry *me = &c->extra[c->nextra++];
	memset(me, 0, sizeof *me);
	me->type = type;
	me->path = (char *)path;   /* not written through (manifest.h) */
	return me;
}

/* A stage taken as it was (snap_fast.c): the directory of rel, one of the
 * environment's, received rel (a copy, or the directory made for the
 * database), which moved its mtime.  It gets the environment's metadata as
 * it is now, as a snapshot's pass would give it, and its entry over the
 * stage's (once). */
static ts_err_code snap_mf_dir_now(snap_run *r, snap_mf *c, const char *rel, ts_err *e)
{
	const char *slash = strrchr(rel, '/');
	char *dir = slash ? strndup(rel, (size_t)(slash - rel)) : strdup(".");
	char **owned = dir ? realloc(c->owned, (c->nowned + 1) * sizeof *owned) : NULL;
	struct stat st;
	int rc;

	if (!owned) {
		free(dir);
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	}
	c->owned = owned;
	c->owned[c->nowned++] = dir;
	for (size_t i = 0; i < c->nextra; i++)
		if (c->extra[i].type == 'd' && !strcmp(c->extra[i].path, dir))
			return TS_OK;
	if (!strcmp(dir, ".")) {
		rc = fstat(r->envfd, &st);
	} else {
		const char *leaf;
		int pfd = ts_beneath_parent(r->envfd, dir, &leaf);
		rc = pfd < 0 ? -1 : fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW);
		ts_beneath_parent_close(r->envfd, pfd);
	}
	if (rc < 0 || !S_ISDIR(st.st_mode))
		return ts_err_sys(e, rc < 0 ? errno : ENOTDIR, "%s/%s: cannot stat", r->env->root, dir);
	ts_err_code erc = ts_copy_dir_meta(r->envfd, r->tmp.treefd, dir, &st, r->env->root, e);
	if (erc != TS_OK)
		return erc;
	ts_manifest_entry *me = snap_mf_add(c, 'd', dir);
	if (!me)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	ts_manifest_entry_set_meta(me, &st);
	ts_manifest_entry_set_source(me, &st);
	return TS_OK;
}

/* The entry of the database copy at db_rel, and of the directory made for
 * it (r->db_dir), dated like the copy, into c->extra. */
static ts_err_code snap_mf_database(snap_run *r, const char *db_rel, snap_mf *c, ts_err *e)
{
	struct stat st;
	ts_manifest_entry *me;

	if (snap_tree_stat(r, db_rel, &st) < 0)
		return ts_err_sys(e, errno, "%s: database copy missing", db_rel);
	if (!(me = snap_mf_add(c, 'f', db_rel)))
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	me->pending = true;
	ts_manifest_entry_set_meta(me, &st);
	ts_manifest_entry_set_store(me, &st);
	r->stats->files++;
	r->stats->bytes_copied += (uint64_t)st.st_size;
	if (r->db_dir) {
		struct timespec t[2] = { st.st_mtim, st.st_mtim };
		(void)utimensat(r->tmp.treefd, r->db_dir, t, AT_SYMLINK_NOFOLLOW);
		if (fstatat(r->tmp.treefd, r->db_dir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!(me = snap_mf_add(c, 'd', r->db_dir)))
				return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			ts_manifest_entry_set_meta(me, &st);
		}
	}
	return r->fast ? snap_mf_dir_now(r, c, r->db_dir ? r->db_dir : db_rel, e) : TS_OK;
}

ts_err_code snap_manifest(snap_run *r, const char *db_rel, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_manifest head;
	snap_mf c;
	size_t n = 0;
	char boot[TS_STORE_BOOT_ID_MAX];

	memset(&c, 0, sizeof c);
	c.items = &r->items;
	ts_manifest_init(&head);
	head.time = r->stats->instant;
	head.no_database = r->o->no_database;
	head.env = r->env->root;   /* borrowed, as below: head is never freed */
	ts_store_boot_id(boot);
	head.unsealed_boot = boot;
	/* A stage taken as it was lists only what differs (snap_fast.c). */
	if (r->fast)
		head.base = TS_MANIFEST_BASE;
	/* (A stage's manifest, written without the database: no db_rel.) */
	if (db_rel && ts_db_external(r->env) && !r->o->no_database) {
		head.external_db = (char *)ts_db_external(r->env);
		head.external_db_rel = (char *)db_rel;
	}
	for (size_t k = 0; k < r->items.n; k++) {
		const snap_item *it = &r->items.v[k];
		if (!it->type)
			continue;
		n++;
		if (it->type == 'f')
			r->stats->files++;
		if (it->type == 'f' && it->shared) {
			r->stats->files_shared++;
			r->stats->bytes_shared += (uint64_t)it->st.st_size;
		}
	}
	if (db_rel)
		rc = snap_mf_database(r, db_rel, &c, e);
	/* The files copied again into a stage taken as it is (snap_fast.c). */
	for (size_t k = 0; rc == TS_OK && r->fast && k < r->items.n; k++)
		rc = snap_mf_dir_now(r, &c, r->items.v[k].rel, e);
	qsort(c.extra, c.nextra, sizeof *c.extra, snap_mf_cmp);
	if (rc == TS_OK)
		rc = ts_manifest_write_each_at(&head, n + c.nextra, snap_mf_next, &c, r->tmp.dirfd, "manifest", e);
	/* The manifest's mtime is the snapshot instant: what lists snapshots in
	 * order (store.h), and unlike the directory's it never moves. */
	struct timespec times[2] = { head.time, head.time };
	if (rc == TS_OK && utimensat(r->tmp.dirfd, "manifest", times, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "%s/manifest: cannot set its time", r->tmp.dir);
	for (size_t i = 0; i < c.nowned; i++)
		free(c.owned[i]);
	free(c.owned);
	free(c.extra);
	return rc;
}
