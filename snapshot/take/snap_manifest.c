/* snap_manifest.c - write a snapshot's manifest from its items and the
 * database copy (snap_int.h, manifest.h). */
#include "take/snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/dbsnap.h"
#include "store/manifest_stat.h"

ts_err_code snap_manifest(snap_run *r, const char *db_rel, bool take_paths, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_manifest m;

	ts_manifest_init(&m);
	m.time = r->stats->instant;
	m.no_database = r->o->no_database;
	m.env = strdup(r->env->root);
	char boot[TS_STORE_BOOT_ID_MAX];
	ts_store_boot_id(boot);
	m.unsealed_boot = strdup(boot);
	if (!m.env || !m.unsealed_boot)
		goto nomem;
	/* (A stage's manifest, written without the database: no db_rel.) */
	if (db_rel && ts_db_external(r->env) && !r->o->no_database) {
		m.external_db = strdup(ts_db_external(r->env));
		m.external_db_rel = strdup(db_rel);
		if (!m.external_db || !m.external_db_rel)
			goto nomem;
	}
	if (!ts_manifest_reserve(&m, r->items.n + 2))   /* and the database's copy, its directory */
		goto nomem;
	for (size_t k = 0; k < r->items.n; k++) {
		snap_item *it = &r->items.v[k];
		ts_manifest_entry *me;
		if (!it->type)
			continue;
		if (take_paths) {
			me = ts_manifest_add_owned(&m, it->type, it->rel);
			it->rel = NULL;   /* the manifest's now, even on failure */
		} else {
			me = ts_manifest_add(&m, it->type, it->rel);
		}
		if (!me)
			goto nomem;
		ts_manifest_entry_set_meta(me, &it->st);
		memcpy(me->sha256, it->sha256, 32);
		me->pending = it->type == 'f' && it->unhashed;
		/* Directories too: a stage's directory may serve as is (snap_dir_as_staged). */
		ts_manifest_entry_set_source(me, &it->st);
		if (it->type == 'f') {
			me->store_ino = it->store_ino;   /* the copy as placed (snap_put.c) */
			me->store_ctime = it->store_ctime;
			r->stats->files++;
		}
		if (it->type == 'f' && it->shared) {
			r->stats->files_shared++;
			r->stats->bytes_shared += (uint64_t)it->st.st_size;
		}
	}
	if (db_rel) {
		struct stat st;
		ts_manifest_entry *me;
		uint64_t size = 0;
		if (snap_tree_stat(r, db_rel, &st) < 0) {
			rc = ts_err_sys(e, errno, "%s: database copy missing", db_rel);
			goto out;
		}
		me = ts_manifest_add(&m, 'f', db_rel);
		if (!me)
			goto nomem;
		size = (uint64_t)st.st_size;
		me->pending = true;
		ts_manifest_entry_set_meta(me, &st);
		ts_manifest_entry_set_store(me, &st);
		r->stats->files++;
		r->stats->bytes_copied += size;
	}
	if (r->db_dir && db_rel) {
		/* The directory made for the database copy, as the tree has it,
		 * dated like the copy. */
		struct stat st;
		ts_manifest_entry *me;
		if (snap_tree_stat(r, db_rel, &st) == 0) {
			struct timespec t[2] = { st.st_mtim, st.st_mtim };
			(void)utimensat(r->tmp.treefd, r->db_dir, t, AT_SYMLINK_NOFOLLOW);
		}
		if (fstatat(r->tmp.treefd, r->db_dir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			me = ts_manifest_add(&m, 'd', r->db_dir);
			if (!me)
				goto nomem;
			ts_manifest_entry_set_meta(me, &st);
		}
	}
	ts_manifest_sort(&m);
	rc = ts_manifest_write_at(&m, r->tmp.dirfd, "manifest", e);
	/* The manifest's mtime is the snapshot instant: what lists snapshots in
	 * order (store.h), and unlike the directory's it never moves. */
	struct timespec times[2] = { m.time, m.time };
	if (rc == TS_OK && utimensat(r->tmp.dirfd, "manifest", times, AT_SYMLINK_NOFOLLOW) < 0)
		rc = ts_err_sys(e, errno, "%s/manifest: cannot set its time", r->tmp.dir);
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
out:
	ts_manifest_free(&m);
	return rc;
}

