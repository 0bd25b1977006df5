/* restore_int.h - what restore's files share: restore.c (the steps),
 * restore_find.c (which snapshot, and its manifest), restore_copy.c (the
 * snapshot's files into the temporary copy), restore_check.c (the copy
 * against the manifest), restore_keep.c (the pre-restore snapshot),
 * restore_swap.c (the exchange and the old tree's removal),
 * restore_journal.c (interrupted restores) and restore_record.c (the
 * restored state recorded as a snapshot).  Private to snapshot/restore/;
 * restore.h is the interface.
 *
 * Ownership: restore_src_find fills a caller-owned restore_src that
 * restore_src_close releases; restore_check_init likewise with
 * restore_check_free, restore_record_init with restore_record_free. */
#ifndef TS_RESTORE_INT_H
#define TS_RESTORE_INT_H

#include <limits.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/progress.h"
#include "env/env.h"
#include "restore/restore.h"
#include "store/manifest.h"
#include "store/store.h"

/* ---------------------------------------------------- restore_find.c */

/* The snapshot to restore and what vouches for it. */
typedef struct restore_src {
	char path[PATH_MAX];       /* the directory to open as an environment */
	char name[PATH_MAX];       /* as messages name it: NAME, or the path given */
	ts_store store;            /* the snapshot's store, when found */
	bool have_store;
	char snapname[NAME_MAX + 1];   /* NAME in that store */
	ts_manifest m;             /* its manifest, when read */
	bool have_manifest;
	ts_store_seal_state seal;
	char why[TS_ERR_MSG_MAX];  /* why there is no manifest */
} restore_src;

/* Find what snapshot (as ts_restore takes it, with --store or NULL) is:
 * fills s (always; restore_src_close then).  Fails only for a NAME that
 * does not exist or a store that cannot be opened when one was named. */
ts_err_code restore_src_find(restore_src *s, const char *snapshot, const char *store_opt,
                             const char *env_root, ts_err *e);

/* The refusals of doc/contract.md section 6 that force overrides: no
 * manifest, not sealed, discarded, another environment. */
ts_err_code restore_src_check(const restore_src *s, const char *env_root, bool force, ts_err *e);

/* The snapshot's tree, from its store when it has one (its own
 * descriptor, so that a store tree is read as root keeps it), else the
 * path: an O_DIRECTORY descriptor or -1 with errno. */
int restore_src_open_tree(const restore_src *s);

void restore_src_close(restore_src *s);

/* ---------------------------------------------------- restore_check.c */

/* The copy against the manifest: each entry as it is copied, then what the
 * manifest lists that the copy never met.  m NULL: nothing is checked. */
typedef struct restore_check {
	const ts_manifest *m;
	const char *name;          /* the snapshot, in messages */
	bool force;                /* count damage instead of refusing */
	unsigned char *seen;       /* per manifest entry */
	ts_restore_out *out;       /* damaged, ndamaged */
} restore_check;

ts_err_code restore_check_init(restore_check *c, const ts_manifest *m, const char *name, bool force,
                               ts_restore_out *out, ts_err *e);
void restore_check_free(restore_check *c);

/* Entry rel of the snapshot (its stat st), just copied to dst/dst_rel:
 * its type and size, and its content hashed from the copy (a file) or the
 * link target's hash (sha, for a symlink; NULL otherwise).  TS_OK, or
 * TS_ERR_CORRUPT "NAME/REL: damaged (WHAT); see tracsnap verify --repair"
 * (with force: counted in out instead). */
ts_err_code restore_check_entry(restore_check *c, const char *rel, const struct stat *st, int dst,
                                const char *dst_rel, const unsigned char *sha, ts_err *e);

/* After the copy: what the manifest lists and the copy never met, but for
 * what lies below skip (a top-level entry copied elsewhere, may be NULL). */
ts_err_code restore_check_missing(restore_check *c, const char *skip, ts_err *e);

/* ---------------------------------------------------- restore_copy.c */

/* Copy everything below the snapshot's top src into dst (a directory only
 * root can enter), but for the top-level entry skip (may be NULL): modes,
 * owners, mtimes, symlinks, xattrs; directories' metadata after their
 * contents, the top's left to the caller.  Each entry goes through check.
 * Counts into out, reports to progress (may be NULL) from the calling
 * thread.  desc names src in messages. */
ts_err_code restore_copy_tree(int src, int dst, const char *desc, const char *skip,
                              restore_check *check, const ts_progress_sink *progress,
                              ts_restore_out *out, ts_err *e);

/* ---------------------------------------------------- restore_keep.c */

/* Take and seal snapshot pre-restore-<time>[-N] of live into s's store
 * when the manifest says it is of live (else into store_opt, or live's
 * default store): its name and store into out->kept, kept_store. */
ts_err_code restore_keep(restore_src *s, const ts_env *live, const char *store_opt,
                         int lock_timeout_s, ts_restore_out *out, ts_err *e);

/* ---------------------------------------------------- restore_record.c */

/* The restored state as a snapshot of the snapshot's store: its manifest,
 * made before the exchange, and whether one is to be made at all. */
typedef struct restore_record {
	bool want;                 /* prepared: restore_record_make may run */
	char why[TS_ERR_MSG_MAX];  /* why no record is made (want false) */
	ts_manifest m;             /* the snapshot's entries, each with the
	                            * source identity of the copy's file */
} restore_record;

void restore_record_init(restore_record *r);
void restore_record_free(restore_record *r);

/* Before the exchange, while the copy (copyfd, the top of what becomes
 * ENV, env_root) is a directory only root can enter and complete: when s
 * (the snapshot restored, as environment snap) was vouched for entry by
 * entry (in a store, sealed, of env_root, nothing damaged in out), r->m
 * becomes its manifest with each entry's source identity taken from the
 * copy (one lstat each, beneath copyfd; none for what lies below skip
 * and for the database; a ctime within the racy window waited out first,
 * at most 2 s) and r->want is set; otherwise r->why says why not.  Fails
 * only for lack of memory. */
ts_err_code restore_record_prepare(restore_record *r, const restore_src *s, const ts_env *snap,
                                   const char *env_root, int copyfd, const char *skip,
                                   const ts_restore_out *out, ts_err *e);

/* After the restore succeeded: the sealed snapshot restored-<time>[-N] in
 * s's store, of r->m, its files hard links to the snapshot's copies (the
 * tree open on snapfd), each checked first (take/share_check.h); its name
 * into out->recorded.  On failure nothing of it is left in the store:
 * TS_ERR_CORRUPT "NAME/PATH: stored copy damaged (WHAT)", TS_ERR_BUSY (the
 * store's lock, within lock_timeout_s; 0: the default), TS_ERR_IO,
 * TS_ERR_NOSPC... */
ts_err_code restore_record_make(restore_record *r, restore_src *s, int snapfd, int lock_timeout_s,
                                ts_restore_out *out, ts_err *e);

/* ---------------------------------------------------- restore_swap.c */

/* Exchange name a in directory adir with name b in bdir (undone by the
 * same call), b being the inode open on want_a before and a after:
 * TS_ERR_PERM (nothing exchanged) when something else was put there. */
ts_err_code restore_exchange(int adir, const char *a, int bdir, const char *b, int want_a,
                             const char *desc, ts_err *e);

/* Remove the directory tree open on fd, which is name in dirfd: nothing
 * unless name holds it, then its contents through fd, then name if it is
 * still that directory.  Never fails (what cannot be removed stays). */
void restore_remove_dir(int dirfd, const char *name, int fd);

/* ---------------------------------------------------- restore_journal.c */

/* The journal of a restore of one ENV (by its resolved path), kept in a
 * directory of root's independent of ENV's parent. */
typedef struct restore_journal {
	char name[NAME_MAX + 1];   /* the journal file, in dirfd */
	char env[PATH_MAX];        /* ENV, resolved */
	int dirfd;                 /* its directory, -1 when none */
	int lockfd;                /* lockname, held (flock) while restore runs */
	char lockname[NAME_MAX + 1];
	bool written;
	/* An external database staged in its own directory (when ext_dir[0]). */
	char ext_dir[PATH_MAX], ext_base[NAME_MAX + 1], ext_tmp[NAME_MAX + 1];
	uid_t ext_uid;
	struct stat ext_tmp_st, ext_copy_st;
} restore_journal;

enum { RESTORE_COPYING = 1, RESTORE_SWAPPED = 2 };

/* Open the journal directory, lock ENV's journal and settle what an
 * interrupted restore of env left (parentfd: ENV's parent, checked;
 * envname: ENV's name there): TS_ERR_BUSY "<ENV>: another restore of it
 * is running (pid N)" when another restore holds the lock.  What was done
 * goes to out->recovered.  restore_journal_close in any case. */
ts_err_code restore_journal_open(restore_journal *j, const char *env, int parentfd,
                                 const char *envname, ts_restore_out *out, ts_err *e);
/* Record phase for the copy tmpname (open on tmpfd) beside ENV (envfd);
 * load: a database load follows the exchange (the files alone are not the
 * restore until RESTORE_SWAPPED is written). */
ts_err_code restore_journal_write(restore_journal *j, int phase, const char *tmpname, int tmpfd,
                                  int envfd, bool load, ts_err *e);
/* Record the external database's staging: directory dir (opened with
 * owner uid), the database's name base there, the staging directory tmp
 * (open on tmpfd) and the staged file (open on filefd); the next
 * restore_journal_write writes it. */
void restore_journal_set_ext(restore_journal *j, const char *dir, const char *base, const char *tmp,
                             int tmpfd, int filefd, uid_t uid);
/* Remove the journal: the restore is over, one way or the other. */
void restore_journal_close(restore_journal *j);

#endif
