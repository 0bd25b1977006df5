/* pg_dumphdr.c - pg_dump's output streamed into the snapshot, its header
 * fixed (pg_int.h).
 *
 * The dump is of the Trac schema only, so that it loads with `psql -U USER
 * -d DATABASE -f FILE` into an empty database: pg_dump writes `CREATE SCHEMA
 * public;` for an explicitly selected public schema, which every new
 * database already has, so that statement (and the default comment on it)
 * is turned into a comment.  Only the header is looked at: data that
 * happens to read the same stays.
 */
#include "db/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* write(2) all of buf. */
int pg_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Lines of pg_dump's header that would fail in an empty database, where
 * the public schema exists already. */
static const char *pg_header_drop(const char *line, size_t len)
{
	static const char *const drop[] = {
		"CREATE SCHEMA public;",
		"COMMENT ON SCHEMA public IS 'standard public schema';",
	};
	for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
		if (len == strlen(drop[i]) && !memcmp(line, drop[i], len))
			return drop[i];
	return NULL;
}

/* Write the header (the first n bytes, whole lines) of a dump of the public
 * schema, with its CREATE SCHEMA public and default comment turned into SQL
 * comments. */
static int pg_write_header(int fd, const char *buf, size_t n)
{
	const char *p = buf, *end = buf + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *hit = pg_header_drop(p, len);
		if (hit) {
			static const char pre[] = "-- (tracsnap: every database has the public schema) ";
			if (pg_write_all(fd, pre, sizeof pre - 1) < 0)
				return -1;
		}
		if (pg_write_all(fd, p, len + (nl ? 1 : 0)) < 0)
			return -1;
		p += len + (nl ? 1 : 0);
	}
	return 0;
}

/* Does the header end before offset n of buf?  It ends with the first line
 * that creates anything but the schema (pg_dump writes the schema's entries
 * first) or copies data. */
static bool pg_header_done(const char *buf, size_t n, size_t *hlen)
{
	const char *p = buf, *end = buf + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len;
		if (!nl)
			return false;
		len = (size_t)(nl - p);
		if ((len >= 7 && !memcmp(p, "CREATE ", 7) && !pg_header_drop(p, len)) ||
		    (len >= 5 && !memcmp(p, "COPY ", 5)) ||
		    (len >= 6 && !memcmp(p, "ALTER ", 6))) {
			*hlen = (size_t)(p - buf);
			return true;
		}
		p = nl + 1;
	}
	return false;
}

/* Copy pg_dump's output from the pipe into fd, fixing the header for the
 * public schema. */
ts_err_code pg_stream(ts_dbsnap *d, int pipefd, int fd, const char *rel, ts_err *e)
{
	bool fix = !strcmp(d->env->db.schema, "public");
	size_t cap = 1u << 17, n = 0, hlen;
	char *buf = malloc(cap);
	ts_err_code rc = TS_OK;
	bool eof = false;

	if (!buf)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	/* The header: collect whole, fix, write. */
	while (fix && !eof) {
		ssize_t r;
		if (n == cap) {
			char *nb = cap >= PG_HEADER_MAX ? NULL : realloc(buf, cap * 2);
			if (!nb)
				break;      /* no header end found: leave the rest as it is */
			buf = nb;
			cap *= 2;
		}
		r = read(pipefd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = ts_err_sys(e, errno, "%s: reading pg_dump's output", rel);
			goto out;
		}
		eof = r == 0;
		n += (size_t)r;
		if (pg_header_done(buf, n, &hlen)) {
			if (pg_write_header(fd, buf, hlen) < 0 || pg_write_all(fd, buf + hlen, n - hlen) < 0)
				goto werr;
			n = 0;
			break;
		}
	}
	if (n > 0) {
		/* Ended (or too long) before anything but the schema: fix all. */
		size_t whole = n;
		while (whole > 0 && buf[whole - 1] != '\n')
			whole--;
		if (pg_write_header(fd, buf, whole) < 0 || pg_write_all(fd, buf + whole, n - whole) < 0)
			goto werr;
	}
	while (!eof) {
		ssize_t r = read(pipefd, buf, cap);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = ts_err_sys(e, errno, "%s: reading pg_dump's output", rel);
			goto out;
		}
		if (r == 0)
			break;
		if (pg_write_all(fd, buf, (size_t)r) < 0)
			goto werr;
	}
	goto out;
werr:
	rc = ts_err_sys(e, errno, "%s: cannot write the dump", rel);
out:
	free(buf);
	return rc;
}
