/* daemon_journal.h - the inotify watch on the environment's directories,
 * shared by the stager and the snapshots.
 *
 * The stager (daemon_stage.c) adds the watches and reacts to the events
 * (it refreshes the stage once a change has settled).  A snapshot asks the
 * same watch what changed since a mark (ts_snap_changes, take/snap.h), so
 * that under Trac's lock it looks only at that (snapshot/take/
 * snap_changes.c).  One reader of the inotify descriptor at a time: the
 * journal drains it under its mutex, keeps the raw events for the stager
 * (dmn_journal_events), and while a snapshot records, their paths too.
 *
 * Paths: a watch follows its directory's inode, so a directory moved
 * within ENV would report events under its old path.  Once such a move is
 * seen, the watches below the old path are marked stale: their events
 * make a recording incomplete (the snapshot then looks at everything), and
 * their directories count as unwatched until watched again by path.
 *
 * Locking: mu is a leaf (daemon.h's lock order): nothing else is taken
 * while it is held; since()'s callback only flags the snapshot's items.
 *
 * Ownership: the journal owns its descriptors, paths and buffers;
 * dmn_journal_close frees them.  env is the daemon's, read-only.
 */
#ifndef TS_DAEMON_JOURNAL_H
#define TS_DAEMON_JOURNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "env/env.h"
#include "take/snap.h"

/* Inotify events the watch asks for: every change of an entry, writes
 * included (the stager ignores writes alone, a snapshot must not). */
#define DMN_JOURNAL_EVENTS \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_MODIFY)

/* Files only written to since a stage's mark that leave it clean, at most
 * (more: unclean); Trac writes its log, the rest it creates or removes. */
#define DMN_JOURNAL_STAGE_WRITTEN 16

typedef struct dmn_journal {
	pthread_mutex_t mu;
	const ts_env *env;
	int fd;                  /* inotify, non-blocking; -1: none */
	int wake;                /* eventfd: events drained by a snapshot wait for the stager */
	char **dirs;             /* by watch descriptor: the directory relative to ENV (NULL: none or stale) */
	uint64_t *since;         /* by watch descriptor: seq when it was watched by that path */
	size_t ndirs;
	bool full;               /* inotify's watch limit reached */
	uint64_t seq;            /* events drained so far, and watches added (dmn_journal_watch) */
	/* Drained, not yet handed to the stager: raw events. */
	char *pend;
	size_t npend, cappend;
	bool pend_lost;          /* some were dropped (too many): the stager counts a change */
	/* The stage (ts_snap_changes' stage_mark, stage_done, stage_clean):
	 * whether nothing but the database changed since the mark of the
	 * stage's last refresh, and which manifest that refresh wrote. */
	uint64_t stage_gen;      /* of the last stage_mark */
	bool stage_clean;        /* since it: no event but the database's, no watch lost or new */
	bool stage_done;         /* that refresh finished, and wrote stage_man */
	dev_t root_dev;          /* the directory watched as ".": a watch follows its inode, */
	ino_t root_ino;          /* and ENV's path may name another since (a restore) */
	char *stage_w[DMN_JOURNAL_STAGE_WRITTEN];   /* files only written to since (owned) */
	size_t nstage_w;
	dev_t stage_dev;
	ino_t stage_ino;
	struct timespec stage_ctime;
	/* The database file (ts_snap_changes' db_unchanged): the seq of the
	 * last event on it, and of the last event that may have been on it
	 * unseen (lost, or from a watch whose path is unknown). */
	char *db_dir;            /* its directory relative to ENV ("." at the top); NULL: none in ENV */
	int db_wd;               /* that directory's watch, -1: none */
	uint64_t db_seq;
	uint64_t blind_seq;
	/* A snapshot's recording (mark .. end). */
	bool recording;
	bool rec_lost;           /* an event could not be placed: the recording cannot tell */
	char **rec;
	size_t nrec, caprec;
} dmn_journal;

/* Open the watch (no directory watched yet).  0, or -1 with errno. */
int dmn_journal_open(dmn_journal *j, const ts_env *env);
void dmn_journal_close(dmn_journal *j);

/* Watch directory rel of ENV; its watch descriptor, or -1 (logged once when
 * the limit is reached). */
int dmn_journal_watch(dmn_journal *j, const char *rel);

/* The stager: the events drained since its last call, as raw inotify
 * events (whole ones) into buf; how many bytes.  *lost: some were dropped
 * since (count a change). */
size_t dmn_journal_events(dmn_journal *j, char *buf, size_t size, bool *lost);

/* The directory of watch descriptor wd, copied into out (size bytes);
 * false when unknown or stale. */
bool dmn_journal_dir(dmn_journal *j, int wd, char *out, size_t size);

/* The snapshots' view of the journal (take/snap.h). */
void dmn_journal_changes(dmn_journal *j, ts_snap_changes *out);

#endif
