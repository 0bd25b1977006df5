/* stage.h - the next snapshot's tree, made ahead of time.
 *
 * An incremental snapshot shares most files with the newest one, and making
 * its directories and hard links (a system call per entry, each allocating
 * in the store's filesystem) was most of its time: 20-40 ms of 50-130 ms for
 * the 831 entries of a 2 GB environment.  So after each seal the daemon
 * stages a copy of the newest sealed snapshot's tree: STORE/.stage/tree holds
 * its directories (with their metadata) and hard links to its files and
 * symlinks, STORE/.stage/base says which snapshot it came from.  The next
 * ts_snap_take adopts it when it compares with that same snapshot, and then
 * finds and fixes only what changed (snap.c: no walk, no link, no mkdir for
 * what did not).  A stage is only ever a speed-up: without one, or with one
 * made from another snapshot, a snapshot is made exactly as before.
 *
 * The daemon also keeps the stage current (ts_stage_refresh): when files of
 * the environment change it brings the staged tree up to them, as a
 * snapshot's pre-copy would, gives the directories that changed their
 * metadata as a snapshot would, and records what the tree then holds in the
 * stage's own manifest, which the snapshot then reads instead of the base's
 * (one manifest read, not two); for SQLite it keeps a raw copy of the
 * database there too.  Copying new attachments, and the fresh page cache that costs,
 * is then done before anybody asks for a snapshot, and the snapshot mostly
 * checks (snap.c).  The price: the store holds copies of what changed since
 * the newest snapshot, and a file changed often is copied more than once
 * (refreshes are spaced, see fs/daemon/daemon_settle.c).
 *
 * All functions run with the store's writers' lock; see each.
 */
#ifndef TS_STAGE_H
#define TS_STAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <sys/stat.h>
#include "base/err.h"
#include "store/manifest.h"
#include "take/snap.h"
#include "store/store.h"

/* The name of the raw database copy in a snapshot's temporary directory
 * (snap.c), and in the stage. */
#define TS_STAGE_DB_PRECOPY "db.precopy"

/* Called for each directory of a staged tree (rel to the environment's
 * root, "." for it): the daemon watches them. */
typedef void (*ts_stage_dir_fn)(void *arg, const char *rel);

/* How to build. */
typedef struct ts_stage_build_opts {
	const int *stop;           /* non-zero (read atomically): give up, nothing left
	                            * behind, TS_OK: a snapshot wants the store */
	ts_stage_dir_fn dir_fn;    /* each directory of the staged tree, before it can be
	                            * adopted (NULL: none) */
	void *arg;
	/* A snapshot known to have been the environment env, but for the
	 * database (take/snap.h's stage_from; NULL name: none), by its name and
	 * its tree's identity; and whether nothing changed since (called with
	 * the stage's manifest written, below, before the stage can be
	 * adopted; false: the manifest goes again). */
	const ts_env *env;
	const char *env_name;
	dev_t env_dev;
	ino_t env_ino;
	bool (*env_still)(void *arg, const struct stat *manifest);
} ts_stage_build_opts;

/* What a build made. */
typedef struct ts_stage_build_out {
	bool built;                /* a stage, of the snapshot base */
	char base[NAME_MAX + 1];
	/* Made from env_name, it holds what that snapshot holds, directories'
	 * metadata included (nothing left out as damaged, no directory its
	 * owner cannot add to, no external database), and env_still said yes:
	 * it is the environment, as a refreshed stage is, and has a manifest of
	 * its own as a refresh writes it (the snapshot's entries but the
	 * database's, which leave the tree too).  Otherwise it has no manifest
	 * until a refresh writes one. */
	bool whole;
} ts_stage_build_out;

/* Stage the newest snapshot, unless it is not sealed yet (sealing kicks
 * again), or is staged already.  Takes the writers' lock without waiting:
 * when another writer holds it, nothing is done (TS_OK).  o and out may be
 * NULL; out is filled whatever the outcome (built false on failure). */
ts_err_code ts_stage_build(ts_store *s, const ts_stage_build_opts *o, ts_stage_build_out *out,
                           ts_err *e);

/* Is the stage (its base file) made from the snapshot name whose tree is
 * open on treefd, in this boot? */
bool ts_stage_of(ts_store *s, const char *name, int treefd);

/* Where the manifest of what the staged tree of the stage made from
 * base_name holds is, below the store (into buf): the stage's own once a
 * refresh wrote one, the base snapshot's before. */
void ts_stage_tree_manifest_rel(ts_store *s, const char *base_name, char *buf, size_t len);

/* For a writer holding the lock, with t just begun: if the stage was made
 * from the snapshot base_name whose tree is open on basefd, have read(arg,
 * dirfd, rel) read what the tree holds (the manifest rel below dirfd, as
 * ts_stage_tree_manifest_rel names it, one entry at a time: some 57 MB
 * held whole at 200,000 entries), then move the tree in as t's (t->treefd
 * then refers to it), and its database copy as t->dir/TS_STAGE_DB_PRECOPY,
 * and return true.  Otherwise (read false included) leave the stage as it
 * was and return false; the caller drops what read made.  Never fails: a
 * stage that cannot be adopted is only a speed-up lost. */
bool ts_stage_adopt(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd,
                    bool (*read)(void *arg, int dirfd, const char *rel), void *arg);

/* As ts_stage_adopt, for a stage that is the environment as it is now, the
 * database and the files only written to aside (ch->stage_clean,
 * take/snap.h, which calls written for those; ch may be NULL): its manifest
 * moves in too, as t's TS_MANIFEST_BASE (store/manifest.h), and is not
 * read.  False, everything as it was: not such a stage. */
bool ts_stage_adopt_as_is(ts_store *s, ts_store_tmp *t, const char *base_name, int basefd,
                          const ts_snap_changes *ch, void (*written)(void *fnarg, const char *rel),
                          void *fnarg);

/* What a refresh did. */
typedef struct ts_stage_refresh_out {
	bool busy;            /* another writer held the store: nothing done, try later */
	bool none;            /* no stage of the newest snapshot to refresh: build first */
	uint64_t bytes_copied;
} ts_stage_refresh_out;

/* The refresh calls dir_fn (above) for each directory of the refreshed
 * tree when all_dirs is set or it found new ones. */
/* Bring the stage up to env as it is now (see the top).  o->name is only
 * for messages; o->no_database leaves the database out; o->cancel stops it
 * (TS_ERR_CANCELLED, the stage left unadoptable for the next build to
 * replace).  Takes the writers' lock without waiting (out->busy when held).
 * On failure the stage is dropped: a snapshot is then made without it. */
ts_err_code ts_stage_refresh(ts_store *s, const ts_env *env, const ts_snap_opts *o, bool all_dirs,
                             ts_stage_dir_fn dir_fn, void *arg, ts_stage_refresh_out *out, ts_err *e);

#endif
