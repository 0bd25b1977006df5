/* snap_int.h - what the snapshot protocol's files share: snap.c (the
 * protocol: walk, pre-copy, lock, capture, manifest, commit), snap_list.c
 * (the sorted list of items, and what an item keeps of a stat), snap_put.c
 * (putting an entry into the tree: make, share or copy; directories'
 * metadata), snap_recheck.c (checking the tree against the environment by
 * stat) and snap_manifest.c (writing the manifest).  Also used by
 * stage_refresh.c.  Private to snapshot/take; see snap.h for the
 * interface.
 *
 * Ownership: a snap_list owns its items' rel strings; a snap_run is owned by
 * ts_snap_take, which releases everything in it in one place.
 */
#ifndef TS_SNAP_INT_H
#define TS_SNAP_INT_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "db/dbsnap.h"
#include "env/env.h"
#include "base/err.h"
#include "store/linklog.h"
#include "store/manifest.h"
#include "base/pathset.h"
#include "base/progress.h"
#include "base/racy.h"
#include "take/snap.h"
#include "store/store.h"

/* A file whose ctime is this close to the moment we copied it is "racy"
 * (base/racy.h) and copied again once the window has passed, or under the
 * lock. */

/* Fewer items than this are not worth threads (pool.h). */
#define SNAP_POOL_MIN 64

/* What an item keeps of its source's stat: the fields the protocol
 * compares and copies, named as struct stat's.  A take holds an item per
 * entry: a whole struct stat was 144 bytes of the item's 224.  A
 * directory's atime, which only snap_dir_meta uses, is kept in the item
 * (dir_atim), where a file keeps its copy's identity. */
typedef struct snap_stat {
	dev_t st_dev;
	ino_t st_ino;
	off_t st_size;
	struct timespec st_mtim, st_ctim;
	mode_t st_mode;
	uid_t st_uid;
	gid_t st_gid;
} snap_stat;

/* 112 bytes (168 before the content hash and a directory's atime moved
 * out of it; doc/performance.md): a take holds one per entry.  The bit
 * fields share a byte: each is written by the thread that owns the item
 * at the time (the walk's before the list has it, one pool job, or
 * snap_changes.c with no pool running), never by two at once. */
typedef struct snap_item {
	char *rel;                 /* "." for the root; a content hash may follow it (sha_room) */
	snap_stat st;              /* the source when it was copied */
	char type;                 /* 'd', 'f', 'l' */
	char check;                /* snap_recheck's verdict (SNAP_CHECK_*) */
	bool racy;                 /* copy again: it may have changed unseen */
	bool unhashed;             /* 'f': sha256 pending, computed by ts_seal */
	bool placed;               /* in the tree already (made or shared during the walk) */
	bool shared;               /* 'f': the previous snapshot's copy, not copied again */
	bool borrowed : 1;         /* rel is the run's (snap_paths), not the item's */
	bool sha_room : 1;         /* 32 bytes after rel's NUL hold the content hash... */
	bool has_sha : 1;          /* ...which is set (else it is zero: snap_item_sha) */
	bool look : 1;             /* the watcher saw it change: stat it under the lock */
	bool relist : 1;           /* 'd': an entry in it changed: list it under the lock */
	union {
		struct {           /* 'f': the copy in the tree as placed (manifest.h) */
			uint64_t store_ino;
			struct timespec store_ctime;
		};
		struct timespec dir_atim;   /* 'd': the source's atime (snap_item_stat_set) */
	};
} snap_item;
_Static_assert(sizeof(snap_item) == 112, "snap_item: see its size above");

/* The item's stat, from and to a struct stat (the fields not kept are
 * zero).  Set it once it->type is the stat's: a directory keeps its atime
 * where a file keeps its copy's identity. */
void snap_item_stat_set(snap_item *it, const struct stat *s);
void snap_item_stat_get(const snap_item *it, struct stat *d);
/* it's type became another: what the old one kept goes. */
void snap_item_retype(snap_item *it, char type);

/* The item's content hash (zero when none is set).  The hash lives after
 * the path, in the same allocation, for the items that may get one
 * (symlinks, files that may be shared or come from a manifest): the first
 * snapshot's files never do, and a hash in every item cost 32 bytes each.
 * snap_item_set_sha gives an item without the room (a file the first
 * walk met that is a symlink now) a path of its own with room (false: out
 * of memory, nothing changed); the old path, the run's, stays valid for
 * the threads that may still compare it. */
const unsigned char *snap_item_sha(const snap_item *it);
bool snap_item_set_sha(snap_item *it, const unsigned char sha[32]);
void snap_item_clear_sha(snap_item *it);

/* The items' paths, copied into large blocks (snap_list.c): one malloc
 * per path cost 16 bytes more each, and the walk's threads each left
 * theirs in an arena of their own.  Released with the run that holds it;
 * the walk's callers hold snap_walk_ctx.mu. */
typedef struct snap_paths {
	char **blocks;
	size_t n;
	char *at;                  /* the free room of the last block */
	size_t left;
} snap_paths;

/* A copy of s that lives as long as p (NULL: out of memory), with room
 * bytes after its NUL. */
char *snap_paths_dup(snap_paths *p, const char *s, size_t room);
/* The room an item of this type made from rel needs after it: a content
 * hash for a symlink, and for a file when may_share. */
size_t snap_sha_room(char type, bool may_share);
void snap_paths_free(snap_paths *p);

typedef struct snap_list {
	snap_item *v;
	size_t n, cap;
	size_t gone;               /* items dropped (type 0) since the last compaction (atomic) */
} snap_list;

/* Everything one snapshot run holds; released in one place. */
typedef struct snap_run {
	const ts_env *env;
	const ts_snap_opts *o;
	ts_store *store;
	ts_store_tmp tmp;
	bool tmp_open;
	int envfd;
	int prevfd;                /* tree of the previous snapshot, or -1 */
	ts_manifest prev;          /* its manifest (may be empty); of a staged tree, its
	                            * directories' entries only, and its time */
	snap_paths paths;          /* the items' paths, when made from a staged manifest */
	ts_pathset db_gone;        /* the database's entries of that manifest: their copies
	                            * leave the tree (snap_items_remove_db) */
	char *prev_name;           /* its name, for messages (NULL: none) */
	ts_linklog links;          /* the engine's link batches (linklog.h), read once */
	struct timespec link_start;/* this take's own batch began (links_begun) */
	bool links_begun;
	/* A stage refresh's batch names the inodes its removals unlink
	 * (linklog.h: ts_linklog_note); NULL: the batch is a plain one. */
	ts_linklog_inos *noted;
	snap_list items;
	ts_snap_stats *stats;
	bool warn;                 /* log skipped special files (first walk only) */
	uint64_t dirty;            /* bytes copied so far (atomic) */
	uint64_t dirty_budget;     /* beyond it, copies bound their writeback */
	const char *db_dir;        /* directory ts_db_place made for the database copy */
	bool root;                 /* geteuid() == 0: owners in the store are checked */
	bool staged;               /* the tree began as the previous one's stage (stage.h);
	                            * prev is then what that tree held */
	bool fast;                 /* the stage taken as it is (snap_fast.c): items only the
	                            * files written to since, prev unread, the stage's
	                            * manifest is the tmp's base */
	bool fast_lost;            /* a written file could not be kept as an item */
	ts_linklog_inos fast_noted;/* a fast take's batch names the inodes it unlinks (snap_fast.c) */
	bool stage_refresh;        /* the tree is the stage's, refreshed (stage_refresh.c) */
	size_t dirs_added;         /* directories snap_recheck found new (the stager watches them) */
	int64_t listed_ns;         /* CLOCK_REALTIME when the walk that gave items began */
	bool retyped;              /* a directory met as a link or file on a path (beneath.h),
	                            * or changed between its stat and its listing (walk.h,
	                            * snap_relist_new_dir): the next recheck pass lists
	                            * every directory again */
	bool relist_all;           /* this recheck pass lists every directory again */
	/* The environment's watcher (ts_snap_changes, snap_changes.c): */
	bool changes_marked;       /* recording since changes_mark */
	uint64_t changes_mark;
	bool db_marked;            /* db_mark: the first mark, before the database's pre-copy */
	uint64_t db_mark;
	const char *changes_full;  /* why every entry is looked at under the lock (NULL: no reason) */
	bool subset;               /* the next recheck stats only the items flagged look */
	size_t *look_idx;          /* those items (subset) */
	uint64_t stage_remark;     /* under the lock, what the subset was flagged up to (0: none) */
	size_t nlook;
	/* Where the flags of a subset were set (snap_changes.c), so that it is
	 * found without a pass over every item (under the lock, at 1,000,000
	 * items, four such passes and the compaction's held Trac's writers some
	 * 30 ms: 66 ms then, 35 ms without): indices into items, in any order,
	 * repeated at will; cand_ok false when some flag was set unrecorded. */
	size_t *cand;
	size_t ncand, cand_cap;
	bool cand_ok;
} snap_run;

/* What a walk collects into (ts_walk calls snap_walk_add from several
 * threads, hence mu). */
typedef struct snap_walk_ctx {
	snap_run *r;
	snap_list *l;
	bool place;                /* the pre-copy's walk: make directories, share files */
	pthread_mutex_t mu;
} snap_walk_ctx;

typedef struct snap_precopy_ctx {
	snap_run *r;
	const size_t *idx;         /* the pool's job i is items.v[idx[i]] (NULL: items.v[i]) */
	pthread_t caller;
	ts_progress done;          /* files_done/bytes_done are updated atomically */
} snap_precopy_ctx;

int64_t snap_ns(const struct timespec *t);
static inline bool snap_same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}
/* How close to a copy a ctime may be and still hide a change (above). */
int64_t snap_racy_ns(const struct timespec *ctim);
/* By rel (strcmp), for qsort and bsearch: parents sort before children. */
int snap_item_cmp(const void *a, const void *b);
/* Appends *it; the list owns it->rel from then on (unless borrowed), the
 * caller still on failure. */
ts_err_code snap_list_push(snap_list *l, const snap_item *it, ts_err *e);
/* Room for n items in all: one allocation instead of the doublings (false:
 * out of memory, nothing changed). */
bool snap_list_reserve(snap_list *l, size_t n);
/* Free it->rel unless it is borrowed. */
void snap_item_free_rel(snap_item *it);
/* Drop the items that went (type 0): a pass over them only when some did. */
void snap_list_compact(snap_list *l);
/* Item it of l went: type 0, counted for the next compaction (atomic, for
 * the pool's threads). */
void snap_list_drop(snap_list *l, snap_item *it);
/* ts_walk callback (walk.h) adding an environment entry to the walk's list,
 * leaving out what a snapshot never holds (special files, the database and
 * its journals). */
ts_err_code snap_walk_add(void *arg, const char *rel, const struct stat *st, ts_err *e);
/* ts_pool_run callback: put items.v[i] unless placed (arg: snap_precopy_ctx). */
ts_err_code snap_precopy_one(void *arg, size_t i, ts_err *e);

/* snap_list.c (and snap_item_cmp, snap_list_push, snap_list_compact above) */
void snap_list_free(snap_list *l);

/* snap_put.c */
/* Put one entry into the tree: make the directory, or copy.  TS_ERR_NOTFOUND
 * when the source vanished meanwhile. */
ts_err_code snap_put(snap_run *r, snap_item *it, ts_err *e);
/* From the pre-copy's walk (snap_walk_add), on its threads: make a
 * directory, or share a file unchanged since the previous snapshot; sets
 * it->placed.  Copies wait for the pool. */
ts_err_code snap_place(snap_run *r, snap_item *it, ts_err *e);
/* Is the stored copy of pe (an entry of the manifest the staged tree or the
 * previous snapshot came from), whose lstat is st (NULL: missing), fit to
 * be shared (take/share_check.h)?  Logs the one line when it is not.
 * dirfd/leaf: where it is. */
bool snap_stored_ok(const snap_run *r, const ts_manifest_entry *pe, const struct stat *st,
                    int dirfd, const char *leaf);
/* lstat of rel ("." for the tree itself) in the store tree, never through
 * a link; as fstatat. */
int snap_tree_stat(const snap_run *r, const char *rel, struct stat *st);
/* Give the tree's directories their metadata, once nothing more is added
 * to them (a staged directory that serves as is keeps its own). */
ts_err_code snap_dir_meta(snap_run *r, ts_err *e);

/* snap_manifest.c */
/* Write r's items (and the database copy at db_rel, if any) as the manifest
 * in r->tmp.dirfd, dated r->stats->instant, straight from the items: no
 * second copy of them is made (it was the take's memory peak). */
ts_err_code snap_manifest(snap_run *r, const char *db_rel, ts_err *e);

/* snap_fast.c: a snapshot from a stage nothing changed since (r->fast).
 * When one of these finds the stage is not the environment after all, it
 * sets r->fast false and r->prev to the stage's manifest: the caller goes
 * on as from any stage. */
/* ts_stage_adopt_as_is's written callback (arg: r): the items. */
void snap_fast_written(void *arg, const char *rel);
/* Before the lock: copy the files written to since the refresh. */
ts_err_code snap_fast_precopy(snap_run *r, ts_err *e);
/* Under Trac's lock: the database captured at db_rel, and the written
 * files copied again that changed since, if the stage is still the
 * environment; the lock released either way. */
ts_err_code snap_fast_locked(snap_run *r, ts_dbsnap *db, const char *db_rel, ts_err *e);

/* snap_changes.c: the watcher's changes (ts_snap_changes) */
/* Start recording, before the last full pass ahead of the lock. */
void snap_changes_mark(snap_run *r);
/* Under the lock, before capture: tell db whether its file is unchanged
 * since the mark before its pre-copy (ts_snap_changes' db_unchanged). */
void snap_changes_db(snap_run *r, ts_dbsnap *db);
/* The catch-up pass before the lock, narrowed as the recheck under it is
 * (a full pass when the watcher cannot tell); recording starts anew. */
ts_err_code snap_changes_catchup(snap_run *r, ts_err *e);
/* After that pass, before the lock: note the directories not watched all
 * along (their entries are looked at under the lock). */
ts_err_code snap_changes_prepare(snap_run *r, ts_err *e);
/* Under the lock: flag what changed since the mark (r->subset), or leave
 * r->subset false and log why every entry is looked at. */
ts_err_code snap_changes_flag(snap_run *r, ts_err *e);
/* Under the lock, once the tree is the environment but for the database:
 * the stage mark a stage built from this snapshot goes with
 * (r->stats->stage_mark; ts_snap_changes' stage_from).  After the subset
 * recheck (snap_changes_flag's remark), or from_stage: a stage taken as it
 * was and still clean (snap_fast.c). */
void snap_changes_stage(snap_run *r, bool from_stage);
/* Stop recording; free what the flags took. */
void snap_changes_end(snap_run *r);

/* snap_recheck.c */
/* Remove rel from the tree, noting what it unlinks when the batch names
 * its inodes (snap_run.noted).  From one thread only (linklog.h). */
ts_err_code snap_remove(snap_run *r, const char *rel, ts_err *e);
/* A staged tree's items: the entries of the manifest mrel below dirfd that
 * describes the tree (the previous snapshot's, or the stage's own once
 * refreshed), read one at a time, never held: the paths go to r->paths,
 * the directories' entries to r->prev (snap_dir_as_staged), the database's
 * to r->db_gone.  over (NULL: none; sorted): items that replace the
 * manifest's at their paths, as copied (an abandoned fast take's,
 * snap_fast.c).  On failure the caller frees what was made. */
ts_err_code snap_items_from_stage(snap_run *r, int dirfd, const char *mrel, const snap_list *over, ts_err *e);
/* Once the tree is the run's: the database's copies in it go. */
ts_err_code snap_items_remove_db(snap_run *r, ts_err *e);
/* A staged tree's files, adopted (snap_items_from_stage, nothing rechecked
 * yet): each checked as it would be before sharing (snap_stored_ok), its
 * identity recorded; a damaged one is marked to be copied again by the
 * next snap_recheck. */
ts_err_code snap_check_staged(snap_run *r, ts_err *e);
/* Bring the tree to the environment as it is now (see snap_recheck.c);
 * locked: under Trac's lock (copies at normal I/O priority). */
ts_err_code snap_recheck(snap_run *r, bool locked, ts_err *e);
#endif
