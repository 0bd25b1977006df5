/* journal.h - which files of the environment a snapshot never contains. */
#ifndef TS_JOURNAL_H
#define TS_JOURNAL_H

#include <stdbool.h>

/* True when relpath (relative to the environment root, no leading "./") is
 * the database file db_rel itself or one of its SQLite side files:
 * db_rel + "-journal", "-wal", "-shm", "-stmtjrnl", or "-mj" followed by
 * anything (super-journals).  The database itself is captured through SQLite,
 * never copied as a file.  db_rel NULL (external or non-SQLite database)
 * excludes nothing. */
bool ts_journal_excluded(const char *relpath, const char *db_rel);

#endif
