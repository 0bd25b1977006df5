/* sqlite_restore.c - the SQLite backend's part of restore (dbsnap.h,
 * ts_db_restore): where the snapshot holds the database and where it goes
 * back, and the journal mode the restored copy must have.  restore.c does
 * the copying and the renames. */
#include "db/sqlite/sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"

/* Lexically normalise an absolute path in place: no "", "." or ".."
 * components (".." above "/" stays at "/"). */
static void sqlite_normalise(char *path)
{
	char *out = path, *p = path;

	while (*p) {
		size_t n;
		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (!n)
			break;
		if (n == 1 && p[0] == '.') {
			/* skip */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (out > path && *--out != '/')
				;
		} else {
			*out++ = '/';
			memmove(out, p, n);
			out += n;
		}
		p += n;
	}
	if (out == path)
		*out++ = '/';
	*out = '\0';
}

/* Where an external database goes back: the path the snapshot's manifest
 * recorded (resolved when the snapshot was taken), else the path trac.ini
 * gives, taken lexically (a relative one below ENV), never resolved now: a
 * symbolic link on it is then refused by restore's checked walk (trust.h). */
static ts_err_code sqlite_external(ts_db_restore *r, ts_err *e)
{
	const ts_env *snap = r->snap;
	char *buf = r->external;
	size_t len = sizeof r->external;
	const char *base;
	int n;

	if (r->recorded && r->recorded[0] == '/')
		n = snprintf(buf, len, "%s", r->recorded);
	else
		n = snap->db.path[0] == '/' ? snprintf(buf, len, "%s", snap->db.path)
		                            : snprintf(buf, len, "%s/%s", r->live->root, snap->db.path);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return ts_err_set(e, TS_ERR_IO, "%s: path too long", snap->db.path);
	}
	sqlite_normalise(buf);
	base = strrchr(buf, '/') + 1;
	if (!*base || strcmp(base, strrchr(snap->db_abs, '/') + 1))
		return ts_err_set(e, TS_ERR_CORRUPT, "%s: the snapshot's external database is %s, its trac.ini "
		                  "says %s", snap->root, buf, snap->db_abs);
	return TS_OK;
}

/* The copy is the snapshot's file at the database's own place, or
 * TS_DBSNAP_EXTERNAL_DIR/<name> for an external database, which goes back
 * to its own directory, not into ENV. */
ts_err_code sqlite_restore_open(ts_db_restore *r, ts_err *e)
{
	const ts_env *snap = r->snap;
	char rel[PATH_MAX];
	ts_err_code rc;

	r->busy_file = r->live->db_abs;
	if (snap->db_rel)
		return ts_db_restore_has_copy(r, snap->db_rel, e);
	snprintf(rel, sizeof rel, "%s/%s", TS_DBSNAP_EXTERNAL_DIR, strrchr(snap->db_abs, '/') + 1);
	r->skip = TS_DBSNAP_EXTERNAL_DIR;
	rc = ts_db_restore_has_copy(r, rel, e);
	if (rc == TS_OK)
		rc = sqlite_external(r, e);
	if (rc != TS_OK)
		r->external[0] = '\0';
	return rc;
}

/* Is the SQLite database open on fd (closed here; -1: none) in WAL mode?
 * Header bytes 18 and 19 (file format read and write versions) are 2 in
 * WAL mode and 1 otherwise.  Callers open it without following a link and
 * without blocking on a FIFO. */
static bool sqlite_is_wal(int fd)
{
	unsigned char h[20];
	struct stat st;
	bool wal = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	           pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && h[18] == 2 && h[19] == 2;

	if (fd >= 0)
		close(fd);
	return wal;
}

#define SQLITE_PEEK (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/* Was the live database (where the restored one goes) in WAL mode? */
static bool sqlite_live_wal(const ts_db_restore *r, int envfd, int extdirfd)
{
	if (r->external[0])
		return sqlite_is_wal(ts_beneath_open(extdirfd, strrchr(r->external, '/') + 1, SQLITE_PEEK, 0));
	if (r->live->db_rel)
		return sqlite_is_wal(ts_beneath_open(envfd, r->live->db_rel, SQLITE_PEEK, 0));
	if (r->live->db_abs)
		return sqlite_is_wal(open(r->live->db_abs, SQLITE_PEEK | O_NOFOLLOW));
	return false;
}

/* A snapshot's database is in rollback-journal mode (doc/contract.md
 * section 3); give the copy the WAL mode the live database had, as Trac's
 * readers rely on.  On a database with no journal that is exactly what
 * `PRAGMA journal_mode=WAL` writes: header bytes 18 and 19 (file format
 * read and write versions) set from 1 to 2.  Done here on a descriptor
 * rather than through SQLite, whose open resolves a /proc/self/fd path back
 * into the path string (through ENV's parent, which another account may
 * own).  The file's times stay the snapshot's. */
ts_err_code sqlite_restore_fix(ts_db_restore *r, int envfd, int extdirfd, int dirfd, const char *rel,
                               const char *desc, ts_err *e)
{
	static const unsigned char magic[16] = "SQLite format 3";
	static const unsigned char two[2] = { 2, 2 };
	unsigned char h[20];
	struct stat st;
	ts_err_code rc = TS_OK;
	int fd;

	if (!sqlite_live_wal(r, envfd, extdirfd))
		return TS_OK;
	fd = ts_beneath_open(dirfd, rel, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = ts_err_sys(e, errno, "%s/%s: cannot open the restored database", desc, rel);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode) || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
	    memcmp(h, magic, sizeof magic) || h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2) {
		rc = ts_err_set(e, TS_ERR_DB, "%s/%s: cannot set journal_mode=WAL: not an SQLite database",
		                desc, rel);
	} else if (h[18] != 2 || h[19] != 2) {
		struct timespec t[2] = { st.st_atim, st.st_mtim };
		if (pwrite(fd, two, sizeof two, 18) != (ssize_t)sizeof two || fsync(fd) < 0 || futimens(fd, t) < 0)
			rc = ts_err_sys(e, errno, "%s/%s: cannot set journal_mode=WAL", desc, rel);
	}
	close(fd);
	return rc;
}
