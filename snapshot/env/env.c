/* env.c - open and check a Trac environment directory (see env.h). */
#include "env/env.h"
#include "base/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_VERSION_TAG "Trac Environment Version 1"

/* State shared by the inih reader and handler while trac.ini is parsed. */
typedef struct env_ini {
	FILE *f;
	char *line;      /* the whole current line, as read (getline) */
	size_t line_cap;
	int read_errno;  /* errno of a failed read, else 0 */
	char *value;     /* [trac] database, NULL until found */
	bool nomem;
} env_ini;

static bool env_isspace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* inih reader.  inih cuts lines at its compiled-in INI_MAX_LINE (200 bytes)
 * and reads the rest as a new line: a long database path or URI would come
 * out silently truncated.  So each call reads one whole line with getline(),
 * keeps it for the handler and gives inih at most num-1 bytes of it, which is
 * always enough to find the section and the key. */
static char *env_ini_reader(char *str, int num, void *stream)
{
	env_ini *st = stream;
	ssize_t n;
	size_t give;

	errno = 0;
	n = getline(&st->line, &st->line_cap, st->f);
	if (n < 0) {
		if (ferror(st->f))
			st->read_errno = errno ? errno : EIO;
		if (errno == ENOMEM)
			st->nomem = true;
		return NULL;
	}
	if (num <= 1)
		return NULL;
	give = (size_t)n < (size_t)num - 1 ? (size_t)n : (size_t)num - 1;
	memcpy(str, st->line, give);
	str[give] = '\0';
	return str;
}

/* The value of the current line as Python's configparser sees it: after the
 * first '=' or ':', stripped.  Taken from the whole line rather than from
 * inih, which truncates long lines and cuts " ;..." as an inline comment
 * where configparser (and so Trac) keeps it. */
static char *env_ini_value(const char *line)
{
	const char *p = line + strcspn(line, "=:");
	const char *end;

	if (*p)
		p++;
	while (*p && env_isspace(*p))
		p++;
	end = p + strlen(p);
	while (end > p && env_isspace(end[-1]))
		end--;
	return strndup(p, (size_t)(end - p));
}

static int env_ini_handler(void *user, const char *section, const char *name,
                           const char *value)
{
	env_ini *st = user;

	(void)value;
	/* configparser: section names are case-sensitive, keys are not.  The
	 * first value wins: inih reports continuation lines under the same key,
	 * and configparser refuses a repeated key outright. */
	if (st->value || strcmp(section, "trac") != 0 || strcasecmp(name, "database") != 0)
		return 1;
	st->value = env_ini_value(st->line);
	if (!st->value) {
		st->nomem = true;
		return 0;
	}
	return 1;
}

/* Read [trac] database from conf/trac.ini below rootfd (named ini in
 * messages) into *value (NULL when absent). */
static ts_err_code env_read_ini(int rootfd, const char *ini, char **value, ts_err *e)
{
	ts_err_code rc = TS_OK;
	env_ini st = { 0 };
	struct stat sb;
	int fd;

	*value = NULL;
	/* O_NONBLOCK: a FIFO put there must not hang us; only a regular file
	 * is read.  Never through a symlink (beneath.h): the environment's
	 * owner must not make root read a file outside it. */
	fd = ts_beneath_open(rootfd, "conf/trac.ini", O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			rc = ts_err_set(e, TS_ERR_CONFIG, "%s: missing", ini);
		else if (errno == ELOOP)
			rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: a symlink (trac.ini is read "
			                "only inside the environment)", ini);
		else
			rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: %s", ini, strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) < 0) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: %s", ini, strerror(errno));
		goto out;
	}
	if (S_ISDIR(sb.st_mode)) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: %s", ini, strerror(EISDIR));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: not a regular file", ini);
		goto out;
	}
	st.f = fdopen(fd, "r");
	if (!st.f) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", ini);
		goto out;
	}
	fd = -1;
	/* inih's own complaints (a line without '=') are ignored, as the
	 * rest of trac.ini is Trac's business; only the database line counts. */
	(void)ini_parse_stream(env_ini_reader, &st, env_ini_handler, &st);
	if (st.nomem) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", ini);
		goto out;
	}
	if (st.read_errno) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: cannot read: %s", ini, strerror(st.read_errno));
		goto out;
	}
	*value = st.value;
	st.value = NULL;
out:
	if (st.value) {
		explicit_bzero(st.value, strlen(st.value));
		free(st.value);
	}
	if (st.line) {
		/* The line buffer last held whatever came last, maybe a password. */
		explicit_bzero(st.line, st.line_cap);
		free(st.line);
	}
	if (st.f)
		fclose(st.f);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Check the first line of VERSION below rootfd (root: for messages). */
static ts_err_code env_check_version(int rootfd, const char *root, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char buf[128];
	ssize_t n = 0;
	size_t len;
	int fd = -1;

	fd = ts_beneath_open(rootfd, "VERSION", O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment (VERSION missing)", root);
		else if (errno == ELOOP)
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment (VERSION is a symlink)",
			                root);
		else
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment (VERSION: %s)",
			                root, strerror(errno));
		goto out;
	}
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment (VERSION: %s)",
		                root, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	/* Trac compares the first line with trailing white space removed. */
	len = strcspn(buf, "\n");
	while (len > 0 && env_isspace(buf[len - 1]))
		len--;
	if (len != strlen(ENV_VERSION_TAG) || memcmp(buf, ENV_VERSION_TAG, len) != 0)
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a Trac environment "
		                "(VERSION does not start with '" ENV_VERSION_TAG "')", root);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Join dir and rel ("/" + rel when dir is "/"); malloc'd or NULL. */
static char *env_join(const char *dir, const char *rel)
{
	char *p = NULL;

	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", rel) < 0)
		p = NULL;
	return p;
}

/* Resolve "." and ".." and repeated '/' in the absolute path p, in place,
 * without touching the filesystem ("/.." stays "/"). */
static void env_normalise(char *p)
{
	char *src = p, *dst = p;

	/* dst always ends without a trailing '/' except for the root. */
	*dst++ = '/';
	while (*src) {
		char *comp;
		size_t n;

		while (*src == '/')
			src++;
		comp = src;
		while (*src && *src != '/')
			src++;
		n = (size_t)(src - comp);
		if (n == 0 || (n == 1 && comp[0] == '.'))
			continue;
		if (n == 2 && comp[0] == '.' && comp[1] == '.') {
			while (dst > p + 1 && dst[-1] != '/')
				dst--;
			if (dst > p + 1)
				dst--; /* the '/' before the dropped component */
			continue;
		}
		if (dst > p + 1)
			*dst++ = '/';
		memmove(dst, comp, n);
		dst += n;
	}
	*dst = '\0';
}

/* db_abs and db_rel of a SQLite environment. */
static ts_err_code env_sqlite_paths(ts_env *env, ts_err *e)
{
	ts_err_code rc = TS_OK;
	char *abs = NULL, *dir = NULL, *real = NULL, *slash;
	size_t rootlen;

	abs = env->db.path[0] == '/' ? strdup(env->db.path) : env_join(env->root, env->db.path);
	if (!abs)
		goto nomem;
	env_normalise(abs);

	/* A symlinked db/ directory takes the journals with it: compare where
	 * the file really is.  The file itself may not exist yet. */
	slash = strrchr(abs, '/');
	if (slash && slash[1] != '\0') {
		dir = strndup(abs, slash == abs ? 1 : (size_t)(slash - abs));
		if (!dir)
			goto nomem;
		real = realpath(dir, NULL);
		if (real) {
			char *joined = env_join(real, slash + 1);

			if (!joined)
				goto nomem;
			free(abs);
			abs = joined;
		} else if (errno == ENOMEM) {
			goto nomem;
		}
	}
	env->db_abs = abs;
	abs = NULL;

	rootlen = strcmp(env->root, "/") == 0 ? 0 : strlen(env->root);
	if (ts_path_is_under(env->db_abs, env->root) && env->db_abs[rootlen] == '/' &&
	    env->db_abs[rootlen + 1] != '\0') {
		env->db_rel = strdup(env->db_abs + rootlen + 1);
		if (!env->db_rel)
			goto nomem;
	}
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", env->root);
out:
	free(abs);
	free(dir);
	free(real);
	return rc;
}

ts_err_code ts_env_open(const char *path, ts_env *env, ts_err *e)
{
	ts_err_code rc = TS_OK;
	struct stat sb;
	char *what = NULL;
	int rootfd = -1;

	memset(env, 0, sizeof(*env));
	if (stat(path, &sb) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: no such directory", path);
		else
			rc = ts_err_set(e, TS_ERR_NOTENV, "%s: cannot access: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(sb.st_mode)) {
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: not a directory", path);
		goto fail;
	}
	env->root = realpath(path, NULL);
	if (!env->root) {
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: cannot resolve: %s", path, strerror(errno));
		goto fail;
	}
	rootfd = open(env->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		rc = ts_err_set(e, TS_ERR_NOTENV, "%s: cannot open: %s", path, strerror(errno));
		goto fail;
	}
	rc = env_check_version(rootfd, env->root, e);
	if (rc != TS_OK)
		goto fail;

	env->ini_path = env_join(env->root, "conf/trac.ini");
	if (!env->ini_path)
		goto nomem;
	rc = env_read_ini(rootfd, env->ini_path, &env->db_text, e);
	if (rc != TS_OK)
		goto fail;
	if (!env->db_text) {
		rc = ts_err_set(e, TS_ERR_CONFIG, "%s: no [trac] database setting", env->ini_path);
		goto fail;
	}
	if (asprintf(&what, "%s: [trac] database", env->ini_path) < 0) {
		what = NULL;
		goto nomem;
	}
	rc = ts_dburi_parse(env->db_text, what, &env->db, e);
	if (rc != TS_OK)
		goto fail;
	if (env->db.kind == TS_DB_SQLITE) {
		rc = env_sqlite_paths(env, e);
		if (rc != TS_OK)
			goto fail;
	}
	goto out;
nomem:
	rc = ts_err_set(e, TS_ERR_NOMEM, "%s: out of memory", path);
fail:
	ts_env_close(env);
out:
	if (rootfd >= 0)
		close(rootfd);
	free(what);
	return rc;
}

ts_err_code ts_env_check_supported(const ts_env *env, ts_err *e)
{
	switch (env->db.kind) {
	case TS_DB_SQLITE:
	case TS_DB_POSTGRES:
		return TS_OK;
	case TS_DB_MYSQL:
		return ts_err_set(e, TS_ERR_UNSUPPORTED,
		                  "%s: [trac] database: MySQL is not supported "
		                  "(tracsnap supports SQLite and PostgreSQL)", env->ini_path);
	}
	return ts_err_set(e, TS_ERR_UNSUPPORTED, "%s: [trac] database: unknown database kind",
	                  env->ini_path);
}

void ts_env_close(ts_env *env)
{
	if (!env)
		return;
	free(env->root);
	free(env->ini_path);
	if (env->db_text) {
		explicit_bzero(env->db_text, strlen(env->db_text));
		free(env->db_text);
	}
	ts_dburi_free(&env->db);
	free(env->db_abs);
	free(env->db_rel);
	memset(env, 0, sizeof(*env));
}

bool ts_path_is_under(const char *path, const char *dir)
{
	size_t n;

	if (!path || !dir || dir[0] == '\0')
		return false;
	n = strlen(dir);
	/* Tolerate "dir/" for "dir"; "/" itself contains every absolute path. */
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1 && dir[0] == '/')
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}
