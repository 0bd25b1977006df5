/* dburi.c - parse Trac's [trac] database value (see dburi.h).
 *
 * Trac's own parser (trac/db/api.py, _parse_db_str) is the reference: what it
 * accepts we accept with the same meaning; what it calls "Invalid format" we
 * refuse.  Where Trac would accept a value and then fail to connect (a raw '@'
 * inside the password) we take the friendlier reading.
 */
#include "base/hex.h"
#include "env/dburi.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DBURI_PG_EXPECTED "expected postgres://user[:password]@host[:port]/database"
#define DBURI_SQLITE_EXPECTED "expected sqlite:PATH"
#define DBURI_ANY_EXPECTED "expected sqlite:PATH or postgres://user[:password]@host[:port]/database"

/* Everything a failing parse needs to write its one line. */
typedef struct dburi_ctx {
	const char *text;
	const char *what;
	ts_err *e;
} dburi_ctx;

/* A malloc'd copy of the n bytes at s. */
static char *dburi_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* Percent-decode the n bytes at s into a new string.  Like Python's unquote(),
 * which Trac uses, a '%' not followed by two hex digits stays as it is.  "%00"
 * cannot live in a C string and would silently cut the value short, so it is
 * refused: *bad is set and NULL returned.  NULL without *bad: out of memory. */
static char *dburi_decode(const char *s, size_t n, bool *bad)
{
	char *out = malloc(n + 1);
	size_t i, o = 0;

	*bad = false;
	if (!out)
		goto out;
	for (i = 0; i < n; i++) {
		int hi = -1, lo = -1;

		if (s[i] == '%' && i + 2 < n) {
			hi = ts_hexval((unsigned char)s[i + 1]);
			lo = ts_hexval((unsigned char)s[i + 2]);
		}
		if (hi < 0 || lo < 0) {
			out[o++] = s[i];
			continue;
		}
		if (hi == 0 && lo == 0) {
			free(out);
			out = NULL;
			*bad = true;
			goto out;
		}
		out[o++] = (char)(hi * 16 + lo);
		i += 2;
	}
	out[o] = '\0';
out:
	return out;
}

static ts_err_code dburi_nomem(const dburi_ctx *c)
{
	return ts_err_set(c->e, TS_ERR_NOMEM, "%s: out of memory", c->what);
}

/* "<what>: invalid format '<value, password hidden>' (<why>)". */
static ts_err_code dburi_invalid(const dburi_ctx *c, const char *why)
{
	char *shown = ts_dburi_redact(c->text);
	ts_err_code rc = ts_err_set(c->e, TS_ERR_CONFIG, "%s: invalid format '%s' (%s)",
	                            c->what, shown ? shown : "(value hidden)", why);

	free(shown);
	return rc;
}

/* Decode n bytes at s into *dst (replacing an earlier value). */
static ts_err_code dburi_take(const dburi_ctx *c, char **dst, const char *s, size_t n)
{
	bool bad;
	char *v = dburi_decode(s, n, &bad);

	if (!v)
		return bad ? dburi_invalid(c, "'%00' is not allowed") : dburi_nomem(c);
	free(*dst);
	*dst = v;
	return TS_OK;
}

/* Call fn for each "key=value" of the query q (n bytes, without '?').  A
 * parameter without '=' has an empty value; empty parameters are skipped. */
typedef ts_err_code (*dburi_param_fn)(const dburi_ctx *c, ts_dburi *u,
                                      const char *key, size_t klen,
                                      const char *val, size_t vlen);

static ts_err_code dburi_each_param(const dburi_ctx *c, ts_dburi *u, const char *q,
                                    size_t n, dburi_param_fn fn)
{
	ts_err_code rc = TS_OK;
	const char *end = q + n;

	while (q < end && rc == TS_OK) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pend = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pend - q));

		if (pend > q) {
			if (eq)
				rc = fn(c, u, q, (size_t)(eq - q), eq + 1, (size_t)(pend - eq - 1));
			else
				rc = fn(c, u, q, (size_t)(pend - q), pend, 0);
		}
		q = pend + (amp ? 1 : 0);
	}
	return rc;
}

static bool dburi_key_is(const char *key, size_t klen, const char *name)
{
	return strlen(name) == klen && memcmp(key, name, klen) == 0;
}

/* Seconds as SQLite's Python driver takes them: a whole or decimal number
 * ("30", "2.5"), rounded up so that a short wait never becomes no wait. */
static bool dburi_parse_timeout(const char *s, int *out)
{
	long long v = 0;
	bool frac = false;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > INT_MAX)
			return false;
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (*p != '0')
				frac = true;
	}
	if (*p != '\0')
		return false;
	if (frac) {
		if (v == INT_MAX)
			return false;
		v++;
	}
	*out = (int)v;
	return true;
}

static ts_err_code dburi_sqlite_param(const dburi_ctx *c, ts_dburi *u,
                                      const char *key, size_t klen,
                                      const char *val, size_t vlen)
{
	ts_err_code rc = TS_OK;
	char *v = NULL;

	if (dburi_key_is(key, klen, "timeout")) {
		rc = dburi_take(c, &v, val, vlen);
		if (rc != TS_OK)
			goto out;
		if (!dburi_parse_timeout(v, &u->timeout_s)) {
			char *shown = ts_dburi_redact(c->text);

			rc = ts_err_set(c->e, TS_ERR_CONFIG,
			                "%s: invalid timeout '%s' in '%s' (expected seconds)",
			                c->what, v, shown ? shown : "(value hidden)");
			free(shown);
		}
	} else if (dburi_key_is(key, klen, "journal_mode")) {
		rc = dburi_take(c, &u->journal_mode, val, vlen);
	}
	/* synchronous, cursor and anything else: Trac's business, not ours. */
out:
	free(v);
	return rc;
}

static ts_err_code dburi_parse_sqlite(const dburi_ctx *c, const char *rest, ts_dburi *u)
{
	ts_err_code rc = TS_OK;
	const char *q = strchr(rest, '?');
	size_t plen = q ? (size_t)(q - rest) : strlen(rest);

	u->kind = TS_DB_SQLITE;
	u->timeout_s = 10;
	if (plen == 0) {
		rc = dburi_invalid(c, DBURI_SQLITE_EXPECTED);
		goto out;
	}
	rc = dburi_take(c, &u->path, rest, plen);
	if (rc != TS_OK)
		goto out;
	if (q)
		rc = dburi_each_param(c, u, q + 1, strlen(q + 1), dburi_sqlite_param);
out:
	return rc;
}

static ts_err_code dburi_pg_param(const dburi_ctx *c, ts_dburi *u,
                                  const char *key, size_t klen,
                                  const char *val, size_t vlen)
{
	ts_err_code rc = TS_OK;
	char *v = NULL;

	if (dburi_key_is(key, klen, "schema")) {
		if (vlen == 0) {
			rc = dburi_invalid(c, "empty schema");
			goto out;
		}
		rc = dburi_take(c, &u->schema, val, vlen);
	} else if (dburi_key_is(key, klen, "host")) {
		rc = dburi_take(c, &v, val, vlen);
		if (rc != TS_OK)
			goto out;
		if (v[0] == '/') {
			free(u->socket_dir);
			u->socket_dir = v;
			v = NULL;
		} else if (v[0] != '\0' && !u->host) {
			/* libpq takes a host name here too; the authority wins. */
			u->host = v;
			v = NULL;
		}
	}
out:
	free(v);
	return rc;
}

/* Decimal 1..65535, nothing else. */
static bool dburi_parse_port(const char *s, size_t n, int *out)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*out = (int)v;
	return true;
}

/* rest: what follows "postgres:". */
static ts_err_code dburi_parse_pg(const dburi_ctx *c, const char *rest, ts_dburi *u)
{
	ts_err_code rc = TS_OK;
	const char *auth, *at, *hp, *hpend, *colon = NULL, *db, *q;
	size_t alen, dblen;

	u->kind = TS_DB_POSTGRES;
	if (strncmp(rest, "//", 2) != 0) {
		rc = dburi_invalid(c, DBURI_PG_EXPECTED);
		goto out;
	}
	auth = rest + 2;
	alen = strcspn(auth, "/?");
	if (auth[alen] != '/') {
		rc = dburi_invalid(c, "no /database");
		goto out;
	}

	/* The last '@' ends the user part, so that a raw '@' in a password
	 * still works; host names never contain one. */
	at = memrchr(auth, '@', alen);
	if (at) {
		const char *pw = memchr(auth, ':', (size_t)(at - auth));
		const char *uend = pw ? pw : at;

		if (uend == auth) {
			rc = dburi_invalid(c, "empty user name before '@'");
			goto out;
		}
		rc = dburi_take(c, &u->user, auth, (size_t)(uend - auth));
		if (rc == TS_OK && pw)
			rc = dburi_take(c, &u->password, pw + 1, (size_t)(at - pw - 1));
		if (rc != TS_OK)
			goto out;
		hp = at + 1;
	} else {
		hp = auth;
	}
	hpend = auth + alen;

	if (hp < hpend && *hp == '[') {
		/* An IPv6 literal: [::1]:5432. */
		const char *rb = memchr(hp, ']', (size_t)(hpend - hp));

		if (!rb || rb == hp + 1 || (rb + 1 < hpend && rb[1] != ':')) {
			rc = dburi_invalid(c, "bad [IPv6] host");
			goto out;
		}
		u->host = dburi_strndup(hp + 1, (size_t)(rb - hp - 1));
		if (!u->host) {
			rc = dburi_nomem(c);
			goto out;
		}
		colon = rb + 1 < hpend ? rb + 1 : NULL;
	} else {
		const char *hend;

		colon = memchr(hp, ':', (size_t)(hpend - hp));
		hend = colon ? colon : hpend;
		/* An empty host is allowed: libpq's default or ?host=/dir. */
		if (hend > hp) {
			u->host = dburi_strndup(hp, (size_t)(hend - hp));
			if (!u->host) {
				rc = dburi_nomem(c);
				goto out;
			}
		}
	}
	if (colon && !dburi_parse_port(colon + 1, (size_t)(hpend - colon - 1), &u->port)) {
		rc = dburi_invalid(c, "port must be a number from 1 to 65535");
		goto out;
	}

	db = hpend + 1;
	q = strchr(db, '?');
	dblen = q ? (size_t)(q - db) : strlen(db);
	if (dblen == 0) {
		rc = dburi_invalid(c, "empty database name");
		goto out;
	}
	rc = dburi_take(c, &u->dbname, db, dblen);
	if (rc == TS_OK && q)
		rc = dburi_each_param(c, u, q + 1, strlen(q + 1), dburi_pg_param);
	if (rc == TS_OK && !u->schema) {
		u->schema = strdup("public");
		if (!u->schema)
			rc = dburi_nomem(c);
	}
out:
	return rc;
}

ts_err_code ts_dburi_parse(const char *text, const char *what, ts_dburi *out, ts_err *e)
{
	ts_err_code rc = TS_OK;
	dburi_ctx c = { text ? text : "", what ? what : "database", e };
	const char *colon;
	size_t slen;
	char scheme[32];

	memset(out, 0, sizeof(*out));
	colon = strchr(c.text, ':');
	if (!colon) {
		rc = dburi_invalid(&c, DBURI_ANY_EXPECTED);
		goto fail;
	}
	slen = (size_t)(colon - c.text);
	if (slen == 6 && memcmp(c.text, "sqlite", 6) == 0) {
		rc = dburi_parse_sqlite(&c, colon + 1, out);
	} else if ((slen == 8 && memcmp(c.text, "postgres", 8) == 0) ||
	           (slen == 10 && memcmp(c.text, "postgresql", 10) == 0)) {
		rc = dburi_parse_pg(&c, colon + 1, out);
	} else if (slen == 5 && memcmp(c.text, "mysql", 5) == 0) {
		/* Recognised only to be refused clearly later on. */
		out->kind = TS_DB_MYSQL;
	} else {
		/* The scheme is what precedes the first ':', so it never holds a
		 * password; cut it short all the same, it is only for the eye. */
		snprintf(scheme, sizeof(scheme), "%.*s", (int)(slen < 31 ? slen : 31), c.text);
		rc = ts_err_set(e, TS_ERR_CONFIG,
		                "%s: unsupported database scheme '%s' "
		                "(tracsnap supports sqlite: and postgres://)", c.what, scheme);
	}
	if (rc != TS_OK)
		goto fail;
	return TS_OK;
fail:
	ts_dburi_free(out);
	return rc;
}

void ts_dburi_free(ts_dburi *u)
{
	if (!u)
		return;
	free(u->path);
	free(u->journal_mode);
	free(u->user);
	if (u->password) {
		/* Do not leave the secret lying in freed heap memory. */
		explicit_bzero(u->password, strlen(u->password));
		free(u->password);
	}
	free(u->host);
	free(u->socket_dir);
	free(u->dbname);
	free(u->schema);
	memset(u, 0, sizeof(*u));
}

/* Append n bytes to the buffer at *o. */
static void dburi_put(char **o, const char *s, size_t n)
{
	memcpy(*o, s, n);
	*o += n;
}

/* Copy the query q (n bytes, without '?') with the values of password
 * parameters (libpq and MySQL both take one there) replaced by "***". */
static void dburi_put_query(char **o, const char *q, size_t n)
{
	const char *end = q + n;

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pend = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pend - q));

		if (eq && (size_t)(eq - q) == 8 && strncasecmp(q, "password", 8) == 0) {
			dburi_put(o, q, (size_t)(eq - q) + 1);
			dburi_put(o, "***", 3);
		} else {
			dburi_put(o, q, (size_t)(pend - q));
		}
		if (amp)
			dburi_put(o, "&", 1);
		q = pend + (amp ? 1 : 0);
	}
}

char *ts_dburi_redact(const char *text)
{
	const char *colon, *start, *at, *pw, *rest, *q;
	size_t len, amps = 0, i;
	char *out, *o;

	if (!text)
		return NULL;
	len = strlen(text);
	for (i = 0; i < len; i++)
		amps += text[i] == '&';
	/* Each replacement adds at most 3 bytes: one in the user part, one per
	 * query parameter. */
	out = malloc(len + 3 * (amps + 2) + 1);
	if (!out)
		return NULL;
	o = out;

	colon = strchr(text, ':');
	if (!colon || (colon - text == 6 && memcmp(text, "sqlite", 6) == 0)) {
		/* No user part anywhere: SQLite paths hold no secrets. */
		dburi_put(&o, text, len);
		goto out;
	}
	start = colon + 1;
	if (strncmp(start, "//", 2) == 0)
		start += 2;
	/* Hide generously rather than leak: everything from the first ':' to
	 * the last '@' goes, even when a raw '/', '?' or '@' in the password
	 * would confuse a real parse. */
	at = strrchr(start, '@');
	pw = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
	if (pw) {
		dburi_put(&o, text, (size_t)(pw + 1 - text));
		dburi_put(&o, "***", 3);
		rest = at;
	} else {
		rest = text;
	}
	/* Password parameters after the user part; without one, the query
	 * starts at the first '?' (a later '@' may sit inside the query). */
	q = strchr(pw ? at : start, '?');
	if (q) {
		dburi_put(&o, rest, (size_t)(q + 1 - rest));
		dburi_put_query(&o, q + 1, strlen(q + 1));
	} else {
		dburi_put(&o, rest, strlen(rest));
	}
out:
	*o = '\0';
	return out;
}
