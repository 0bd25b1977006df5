/* journal.c - which environment files a snapshot never contains (see journal.h). */
#include "db/journal.h"

#include <string.h>

bool ts_journal_excluded(const char *relpath, const char *db_rel)
{
	/* Exact suffixes only: "trac.db.bak" or "trac.db-journal.old" are an
	 * administrator's files and belong in the snapshot. */
	static const char *const side[] = { "-journal", "-wal", "-shm", "-stmtjrnl" };
	const char *rest;
	size_t n, i;

	if (!relpath || !db_rel || !db_rel[0])
		return false;
	n = strlen(db_rel);
	if (strncmp(relpath, db_rel, n) != 0)
		return false;
	rest = relpath + n;
	if (rest[0] == '\0')
		return true;
	for (i = 0; i < sizeof(side) / sizeof(side[0]); i++)
		if (strcmp(rest, side[i]) == 0)
			return true;
	/* Super-journals: SQLite names them db + "-mj" + random hex digits. */
	return strncmp(rest, "-mj", 3) == 0;
}
