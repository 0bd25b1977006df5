/* tutil.h - helpers shared by the unit tests (tests/unit/test_*.c); test-only.
 *
 * Owner: the unit tests.  Nothing in snapshot/, fs/ or cli/ uses this, and it
 * uses nothing of theirs: it is plain libc, SQLite, OpenSSL and cmocka, so
 * every test binary can link it (the Makefile compiles tests/unit/tutil.c
 * once into $(O)/tests/tutil.o and links it into each test).
 *
 * Purpose: one copy of the scratch-file helpers the tests used to repeat:
 * formatting paths, making and removing temporary trees, writing and reading
 * files, and a minimal Trac-like SQLite database.  Helpers that need a test's
 * own fixture (its fx struct, an open ts_store or ts_env) stay in that test.
 *
 * Every helper fails the running cmocka test (assert_* / fail_msg) instead
 * of returning an error, so call them only from inside a test, setup or
 * teardown.  "_at" variants take a directory descriptor (or AT_FDCWD), the
 * others a path; no helper follows a final symbolic link unless it says so. */
#ifndef TS_TESTS_TUTIL_H
#define TS_TESTS_TUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <sqlite3.h>

/* snprintf into buf that fails the test instead of truncating. */
__attribute__((format(printf, 3, 4)))
void tu_fmt(char *buf, size_t size, const char *f, ...);

/* A new empty directory /tmp/tracsnap-test-TAG.XXXXXX; its resolved path
 * (realpath) goes into top, PATH_MAX bytes. */
void tu_tmpdir(const char *tag, char *top);

/* rm -rf path: below it, every directory and file is first made writable
 * (chmod 0700; symlinks are never followed), then removed.  Errors are
 * ignored: it is meant for teardown. */
void tu_rm_rf(const char *path);

/* Does path exist (lstat: a dangling symlink counts)? */
bool tu_exists(const char *path);
bool tu_exists_at(int dirfd, const char *rel);

/* Write len bytes of data to path (created or truncated), then give it mode
 * exactly, whatever the umask. */
void tu_put_bytes(const char *path, const void *data, size_t len, mode_t mode);
void tu_put_bytes_at(int dirfd, const char *rel, const void *data, size_t len, mode_t mode);

/* tu_put_bytes of the text to DIR/REL. */
void tu_put_in(const char *dir, const char *rel, const char *text, mode_t mode);

/* mkdir DIR/REL, then chmod it to mode exactly. */
void tu_mkdir_in(const char *dir, const char *rel, mode_t mode);

/* Write text to path with stdio (fopen "w"): a new file gets 0666 less the
 * umask, an existing one keeps its mode. */
void tu_put_file(const char *path, const char *text);

/* The whole content of the regular file path (not through a symlink),
 * malloc'd with a NUL after it; its length in *len unless len is NULL. */
void *tu_slurp(const char *path, size_t *len);
void *tu_slurp_at(int dirfd, const char *rel, size_t *len);

/* SHA-256 of the content of the file path. */
void tu_sha_file(const char *path, unsigned char out[32]);

/* len pseudo-random bytes (a fixed sequence for each seed), malloc'd. */
unsigned char *tu_pattern(size_t len, unsigned seed);

/* How many names in dir start with prefix. */
int tu_count_prefix(const char *dir, const char *prefix);

/* STORE/NAME/tree/REL, the place of an entry in a snapshot of a store;
 * rel "." is the tree itself. */
void tu_tree_path(const char *store, const char *name, const char *rel, char *buf, size_t size);

/* Run SQL q (any number of statements) on db. */
void tu_sql(sqlite3 *db, const char *q);

/* sqlite3_open_v2 with flags, and a 5 s busy timeout. */
sqlite3 *tu_db_open(const char *path, int flags);

/* A Trac-like database at path: table ticket with 3 tickets (1 'first',
 * 2 'second', 3 'third'); with attachments, also table attachment holding
 * ticket 1's big.bin (307217 bytes) and small.txt (6 bytes). */
void tu_make_db(const char *path, bool attachments);

/* Run fn(arg) in a child process as uid and gid 65534 (nobody, nogroup),
 * with no supplementary groups, for checks that root would pass by its
 * privileges alone (the tests run as root).  Not root: fn runs in the child
 * as the caller.  Returns fn's return value, the child's exit status
 * (keep it in 0..99); fails the test when the child could not drop its
 * privileges or did not exit.  fn runs outside cmocka: it must not
 * assert, only return (a failed assert in the child would run the rest of
 * the tests there). */
int tu_as_nobody(int (*fn)(void *arg), void *arg);

#endif
