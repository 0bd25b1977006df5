/* tutil.c - helpers shared by the unit tests; see tutil.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "tutil.h"

void tu_fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, size, f, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < size);
}

void tu_tmpdir(const char *tag, char *top)
{
	char tmpl[PATH_MAX];

	tu_fmt(tmpl, sizeof(tmpl), "/tmp/tracsnap-test-%s.XXXXXX", tag);
	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, top));
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag != FTW_SL)
		chmod(path, 0700);
	return remove(path);
}

void tu_rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

bool tu_exists_at(int dirfd, const char *rel)
{
	struct stat st;

	return fstatat(dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool tu_exists(const char *path)
{
	return tu_exists_at(AT_FDCWD, path);
}

void tu_put_bytes_at(int dirfd, const char *rel, const void *data, size_t len, mode_t mode)
{
	int fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	const char *p = data;

	if (fd < 0)
		fail_msg("%s: %s", rel, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

void tu_put_bytes(const char *path, const void *data, size_t len, mode_t mode)
{
	tu_put_bytes_at(AT_FDCWD, path, data, len, mode);
}

void tu_put_in(const char *dir, const char *rel, const char *text, mode_t mode)
{
	char path[PATH_MAX * 2];

	tu_fmt(path, sizeof(path), "%s/%s", dir, rel);
	tu_put_bytes(path, text, strlen(text), mode);
}

void tu_mkdir_in(const char *dir, const char *rel, mode_t mode)
{
	char path[PATH_MAX * 2];

	tu_fmt(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chmod(path, mode), 0);
}

void tu_put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

void *tu_slurp_at(int dirfd, const char *rel, size_t *len)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_NOFOLLOW);
	struct stat st;
	unsigned char *buf;
	size_t got = 0;

	if (fd < 0)
		fail_msg("%s: %s", rel, strerror(errno));
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		assert_true(n > 0);
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	if (len)
		*len = got;
	return buf;
}

void *tu_slurp(const char *path, size_t *len)
{
	return tu_slurp_at(AT_FDCWD, path, len);
}

void tu_sha_file(const char *path, unsigned char out[32])
{
	size_t len;
	unsigned char *c = tu_slurp(path, &len);

	SHA256(c, len, out);
	free(c);
}

unsigned char *tu_pattern(size_t len, unsigned seed)
{
	unsigned char *b = malloc(len ? len : 1);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (unsigned char)(seed >> 16);
	}
	return b;
}

int tu_count_prefix(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

void tu_tree_path(const char *store, const char *name, const char *rel, char *buf, size_t size)
{
	if (!strcmp(rel, "."))
		tu_fmt(buf, size, "%s/%s/tree", store, name);
	else
		tu_fmt(buf, size, "%s/%s/tree/%s", store, name, rel);
}

void tu_sql(sqlite3 *db, const char *q)
{
	char *err = NULL;

	if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", err ? err : "?");
		sqlite3_free(err);
		fail_msg("%s: %s", q, msg);
	}
}

sqlite3 *tu_db_open(const char *path, int flags)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK)
		fail_msg("%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
	sqlite3_busy_timeout(db, 5000);
	return db;
}

void tu_make_db(const char *path, bool attachments)
{
	sqlite3 *db = tu_db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);

	if (attachments)
		tu_sql(db, "CREATE TABLE ticket(id integer primary key, summary text);"
		           "CREATE TABLE attachment(type text, id text, filename text, size integer,"
		           " time integer, description text, author text);"
		           "INSERT INTO ticket VALUES (1, 'first'), (2, 'second'), (3, 'third');"
		           "INSERT INTO attachment VALUES ('ticket', '1', 'big.bin', 307217, 1, 'd', 'alice'),"
		           " ('ticket', '1', 'small.txt', 6, 2, '', 'bob');");
	else
		tu_sql(db, "CREATE TABLE ticket(id integer primary key, summary text);"
		           "INSERT INTO ticket VALUES (1, 'first'), (2, 'second'), (3, 'third');");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int tu_as_nobody(int (*fn)(void *arg), void *arg)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		                       setresuid(65534, 65534, 65534) < 0))
			_exit(100);
		_exit(fn(arg));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status))
		fail_msg("tu_as_nobody: child did not exit (status %#x)", status);
	if (WEXITSTATUS(status) == 100)
		fail_msg("tu_as_nobody: could not become uid/gid 65534");
	return WEXITSTATUS(status);
}
