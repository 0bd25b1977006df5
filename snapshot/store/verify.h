/* verify.h - re-check a stored snapshot against its manifest, and summarize it.
 *
 * ts_verify_snapshot walks STORE/NAME/tree and compares every entry with
 * STORE/NAME/manifest: an entry missing from the tree or not in the manifest,
 * a different type, mode, owner, size or mtime, and the content (every regular
 * file is re-read and hashed; a symlink's target is hashed).  Each difference
 * goes to a callback; the function fails only when it cannot do the check at
 * all (no store, unreadable or malformed manifest).
 *
 * Unsealed snapshots (seal.h): a regular file whose hash is still pending in
 * the manifest gets every check but the content one, which is not a problem
 * either; the count of such files is returned apart, so that the caller can
 * say what was not checked (or seal first: ts_seal).  A snapshot lost in a
 * restart (TS_STORE_UNSEALED_LOST) is TS_ERR_NOTFOUND, as ts_store_list hides
 * it.
 *
 * Readers need no store lock (see store.h): a snapshot removed meanwhile shows
 * as TS_ERR_NOTFOUND.
 *
 * Several snapshots in one run (ts_verify_run): a store inode shared by
 * several snapshots (hard links, doc/contract.md section 5) is read and
 * hashed once per run, its hash remembered (verify_inodes.h has the memory
 * it costs) and compared with each snapshot's manifest: damage to it shows
 * in every snapshot that shares it, and the run's cost is the unique data,
 * not data x snapshots.  Where readdir gives the inode number (ext2-4, XFS,
 * Btrfs, tmpfs), a name that leads to an inode met earlier in the run is not
 * stat'ed again either: the inode is taken as it was when first checked,
 * which is what keeps the cost of a snapshot whose files are all shared to
 * its directories.  A run made with keep_damage also keeps what it
 * found, path by path, for ts_verify_repair (verify_repair.c), which
 * rewrites damaged store inodes in place from a copy whose content hashes
 * to the manifest's SHA-256.
 *
 * Ownership: a ts_verify_run is the caller's (ts_verify_run_new,
 * ts_verify_run_free); the strings passed to the callbacks live only for
 * the call.
 */
#ifndef TS_VERIFY_H
#define TS_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "store/store.h"

typedef enum ts_verify_kind {
	TS_VERIFY_MISSING,     /* in the manifest, not in the tree */
	TS_VERIFY_EXTRA,       /* in the tree, not in the manifest */
	TS_VERIFY_TYPE,
	TS_VERIFY_MODE,
	TS_VERIFY_OWNER,       /* uid or gid */
	TS_VERIFY_SIZE,
	TS_VERIFY_MTIME,
	TS_VERIFY_CONTENT,     /* sha256 of a file's bytes */
	TS_VERIFY_TARGET,      /* sha256 of a symlink's target */
	TS_VERIFY_UNREADABLE,  /* could not be read to be checked */
} ts_verify_kind;

typedef struct ts_verify_problem {
	const char *path;      /* relative to the snapshot root, "." for it */
	ts_verify_kind kind;
	const char *what;      /* one phrase that starts with the kind's name:
	                        * "mode 0600, manifest says 0644" */
} ts_verify_problem;

typedef void (*ts_verify_problem_fn)(void *arg, const char *snap, const ts_verify_problem *p);

/* After each regular file: files and bytes checked so far (hashed, unless
 * pending), of the totals the manifest gives. */
typedef void (*ts_verify_progress_fn)(void *arg, const char *snap, size_t files_done,
                                      size_t files_total, uint64_t bytes_done,
                                      uint64_t bytes_total);

/* Verify snapshot name of s.  problem/progress may be NULL.  *nproblems (may
 * be NULL) gets the number of problems reported; *npending (may be NULL) the
 * number of regular files whose content was not checked because their hash
 * is pending (0 for a sealed snapshot).  TS_OK when the check ran, whatever
 * it found. */
ts_err_code ts_verify_snapshot(ts_store *s, const char *name, ts_verify_problem_fn problem,
                               ts_verify_progress_fn progress, void *arg,
                               size_t *nproblems, size_t *npending, ts_err *e);

/* One run over several snapshots: the inodes hashed so far and the totals. */
typedef struct ts_verify_run ts_verify_run;

typedef struct ts_verify_totals {
	size_t snapshots;      /* checked (ts_verify_run_snapshot returned TS_OK) */
	uint64_t files;        /* regular files checked (hashed or remembered) */
	uint64_t bytes;        /* their sizes as the manifests give them: the data
	                        * in the snapshots, shared copies counted in each */
	uint64_t bytes_read;   /* bytes actually read and hashed */
	uint64_t files_read;   /* files actually read and hashed */
	size_t problems;       /* reported */
	size_t pending;        /* regular files not checked for content (pending) */
	size_t drift;          /* entries whose only difference is an mtime kept to the
	                        * second (TS_MDIFF_MTIME_SEC, the content the same):
	                        * metadata drift, not a problem; repair sets it back */
} ts_verify_totals;

/* A new run; keep_damage: also keep every problem found, for
 * ts_verify_repair.  NULL on out of memory. */
ts_verify_run *ts_verify_run_new(bool keep_damage);
void ts_verify_run_free(ts_verify_run *r);

/* ts_verify_snapshot within run r: a regular file whose store inode r
 * hashed already (and whose stat has not changed since) is not read again.
 * Adds to r's totals. */
ts_err_code ts_verify_run_snapshot(ts_verify_run *r, ts_store *s, const char *name,
                                   ts_verify_problem_fn problem, ts_verify_progress_fn progress,
                                   void *arg, size_t *nproblems, size_t *npending, ts_err *e);

void ts_verify_run_totals(const ts_verify_run *r, ts_verify_totals *out);

/* What ts_verify_repair did about one damaged store entry: the inode of
 * NAME/PATH and of every other snapshot path that shares it (shared of
 * them in all, counting NAME/PATH). */
typedef enum ts_verify_repair_how {
	TS_VERIFY_REPAIRED_ENV,    /* content rewritten from the live file */
	TS_VERIFY_REPAIRED_COPY,   /* content rewritten from another stored copy */
	TS_VERIFY_REPAIRED_META,   /* content was right: mode, owner or mtime reset */
	TS_VERIFY_NOT_REPAIRED,    /* why says why */
} ts_verify_repair_how;

typedef struct ts_verify_repair_note {
	const char *snap, *path;
	size_t shared;
	ts_verify_repair_how how;
	const char *from_snap, *from_path;  /* TS_VERIFY_REPAIRED_COPY */
	const char *why;                    /* TS_VERIFY_NOT_REPAIRED: one phrase,
	                                     * "no good copy (live file changed
	                                     * since the snapshot)" */
} ts_verify_repair_note;

typedef void (*ts_verify_repair_fn)(void *arg, const ts_verify_repair_note *n);

/* Repair what run r (made with keep_damage) found, holding the store's
 * writers' lock (waited for up to lock_timeout_s seconds).  For a regular
 * file whose content, size or mtime differs from its manifest entry, a good
 * source is looked for: the live file envfd/PATH when it is still the one
 * the snapshot copied (the manifest's src_ino and src_ctime; envfd -1: no
 * environment), else another stored copy, in any snapshot of s, whose
 * manifest gives the same SHA-256; either is copied into an unnamed file of
 * root's in the store while hashed, and used only when that hash is the
 * manifest's.  The damaged inode is then rewritten in place (written,
 * truncated to size, fsync'd, mtime, owner and mode set from the manifest),
 * so every snapshot that links it is healed.  Wrong mode, owner or mtime
 * alone are set from the manifest.  Missing and extra entries, changed
 * types, symlink targets and unreadable entries are not repaired.  Every
 * repaired entry is checked again: what still differs goes to problem.
 * One note per damaged inode goes to fn.  *nrepaired: problems (as
 * reported by the run) now gone; *nleft: problems that remain.  Fails only
 * when it could not try at all (lock, out of memory). */
ts_err_code ts_verify_repair(ts_verify_run *r, ts_store *s, int envfd, int lock_timeout_s,
                             ts_verify_repair_fn fn, ts_verify_problem_fn problem, void *arg,
                             size_t *nrepaired, size_t *nleft, ts_err *e);

/* What `tracsnap list` shows of a snapshot, from its manifest (sealed or not:
 * it needs no hash). */
typedef struct ts_verify_summary {
	uint64_t size;          /* sum of the manifest's sizes (files and symlinks) */
	uint64_t files;         /* regular files */
	uint64_t shared_bytes;  /* bytes of regular files whose store inode has
	                         * other links (shared with another snapshot),
	                         * the daemon's stage's link not counted */
} ts_verify_summary;

ts_err_code ts_verify_summary_get(ts_store *s, const char *name, ts_verify_summary *out,
                                  ts_err *e);

#endif
