/* snapfx.h - the fixture of the snapshot tests (test_snap.c, test_stage.c,
 * test_snap_race.c); test-only.
 *
 * Purpose: one copy of what these tests share: a small Trac environment and
 * an open store to take snapshots into (sfx_setup, sfx_teardown), taking a
 * snapshot as `tracsnap snapshot` does (sfx_take: taken, then sealed), the
 * checks of a snapshot against the environment (its tree, its manifest, its
 * database copy, the store left clean), and the stage's helpers that the
 * daemon's calls are made through (stage.h).  Helpers that only one test
 * file needs stay in that file.
 *
 * The environment (sfx_setup): TOP/env holds VERSION, README, conf/trac.ini
 * (0600, database = sqlite:db/trac.db), db/trac.db (tu_make_db: 3 tickets
 * 'first', 'second', 'third', 2 attachments) with fake SQLite side files
 * (-stmtjrnl, -mj01) and an ordinary db/trac.db.bak, ticket 1's attachments
 * big.bin (BIG_LEN bytes) and small.txt ("small\n"), htdocs/a.txt
 * ("hello\n"), htdocs/site.css (with a user.mime_type xattr), a dangling
 * htdocs/dangling, log/ (0750), plugins/secret.egg (0600, owner 1234:5678)
 * and plugins/suid.sh (04755), an empty templates/, a read-only ro/f in a
 * 0555 ro/, and symlinks link-a (to htdocs/a.txt) and abs-link (to
 * /etc/passwd).  TOP/store is the store, created empty.
 *
 * Ownership: sfx_setup allocates the fx, opens x->e and x->s, and hands the
 * fx to the test as cmocka's state; sfx_teardown closes them (x->e only while
 * x->env_open: a test that closes the environment to reopen it clears that
 * flag first), removes TOP and frees the fx.  The manifest sfx_check_manifest
 * reads is the caller's, to release with ts_manifest_free().
 *
 * Like tutil.h's, every helper fails the running cmocka test instead of
 * returning an error: call them only from inside a test, never from another
 * thread. */
#ifndef TS_TESTS_SNAPFX_H
#define TS_TESTS_SNAPFX_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "env/env.h"
#include "store/manifest.h"
#include "store/store.h"
#include "take/snap.h"
#include "take/stage.h"

#define TBUF (PATH_MAX * 2)
#define BIG_LEN (300 * 1024 + 17)

typedef struct fx {
	char top[PATH_MAX];   /* realpath'd */
	char env[TBUF];       /* TOP/env */
	char store[TBUF];     /* TOP/store */
	ts_env e;
	ts_store s;
	bool env_open;
} fx;

/* cmocka setup and teardown: the environment and the store above. */
int sfx_setup(void **state);
int sfx_teardown(void **state);

/* Open the environment x->env into x->e (x->env_open set). */
void sfx_env_open(fx *x);

/* Take snapshot name (without the database when no_database, waiting up to
 * timeout_s for Trac's write lock), then seal it as `tracsnap snapshot`
 * does; the error code, e filled on failure.  stats as ts_snap_take's. */
ts_err_code sfx_take(fx *x, const char *name, bool no_database, int timeout_s,
                     ts_snap_stats *stats, ts_err *e);

/* sfx_take with the database and a 5 s lock timeout; fails the test unless
 * it worked. */
void sfx_take_ok(fx *x, const char *name, ts_snap_stats *stats);

/* Nothing half-done in the store, and its lock is free. */
void sfx_store_clean_and_unlocked(fx *x);

/* How many snapshots the store lists. */
size_t sfx_n_snapshots(fx *x);

/* The tree of snapshot name equals the environment (as it is now): same
 * entries, types, content, link targets, mode, owner, mtime; special files
 * and the database's side files left out; the database itself checked
 * elsewhere (sfx_check_db). */
void sfx_compare_tree(fx *x, const char *name);

/* Read the manifest of snapshot name into m; one entry per tree entry, each
 * matching what the tree holds (type, mode, owner, size, mtime, SHA-256);
 * its time and file count those of stats unless stats is NULL. */
void sfx_check_manifest(fx *x, const char *name, const ts_snap_stats *stats, ts_manifest *m);

/* The first column of the first row of query q on db: a number, or a
 * string into out (size bytes). */
long sfx_query_long(sqlite3 *db, const char *q);
void sfx_query_text(sqlite3 *db, const char *q, char *out, size_t size);

/* The copy of the database at rel inside snapshot name: a rollback-journal
 * database, with no side files, holding want_tickets tickets whose summaries
 * concatenate (by id) to summaries. */
void sfx_check_db(fx *x, const char *name, const char *rel, long want_tickets,
                  const char *summaries);

/* lstat of rel in the tree of snapshot name. */
void sfx_snap_file(fx *x, const char *name, const char *rel, struct stat *st);

/* rel in the tree of snapshot name holds exactly the text want. */
void sfx_snap_text_is(fx *x, const char *name, const char *rel, const char *want);

/* Does rel exist in the tree of snapshot name? */
bool sfx_snap_has(fx *x, const char *name, const char *rel);

/* Build the stage as the daemon does after a seal (ts_stage_build), stop as
 * its stop flag; the store is unlocked afterwards. */
void sfx_stage_ok(fx *x, const int *stop);

/* Is there a stage made from snapshot name?  Is there a stage at all? */
bool sfx_stage_from(fx *x, const char *name);
bool sfx_stage_exists(fx *x);

/* The daemon's refresh of the stage (ts_stage_refresh, all_dirs and cancel
 * as its own); *dirs counts the directories it reported.  The store is
 * unlocked afterwards. */
ts_err_code sfx_refresh(fx *x, bool all_dirs, size_t *dirs, ts_stage_refresh_out *out,
                        volatile sig_atomic_t *cancel);

/* Capture what the engine logs (base/log.h: stderr) from sfx_log_start
 * until sfx_log_take, which restores stderr, echoes the text there and
 * returns it (malloc'd: the caller frees it).  Not nested. */
void sfx_log_start(void);
char *sfx_log_take(void);

/* How many times needle occurs in text. */
size_t sfx_count(const char *text, const char *needle);

#endif
