/* manifest.h - the per-snapshot list of entries, like PostgreSQL's backup_manifest.
 *
 * File format (text, one entry per line, fields separated by one TAB):
 * (below, each space between fields stands for that TAB, in the header lines
 *  too: "tracsnap-manifest<TAB>1", "entries<TAB>3"; every line ends with LF)
 *
 *   tracsnap-manifest 2
 *   time <unix seconds>.<9-digit ns>          the snapshot instant T
 *   env <escaped absolute path of ENV>
 *   [external-db <escaped absolute path> <escaped relpath inside the tree>]
 *   [no-database]
 *   [unsealed <boot id>]
 *   [base <name>]
 *   entries <count>
 *   <type> <mode> <uid> <gid> <size> <mtime> <sha256> <src_ino> <src_ctime>
 *          <store_ino> <store_ctime> <path>         (one line)
 *   ...
 *   end
 *
 * type: 'd' directory, 'f' regular file, 'l' symlink.  mode: 4 octal digits
 * (permission bits incl. suid/sgid/sticky).  mtime and src_ctime:
 * "<sec>.<9-digit nsec>".  sha256: 64 lowercase hex digits of the content
 * (for 'l' of the link target), "-" for directories, and "-" for a regular
 * file whose hash is not computed yet ("pending"; allowed only in an unsealed
 * manifest, never for 'l').  src_ino/src_ctime
 * identify the environment file the entry was copied from (0 and 0.000000000
 * when unknown, e.g. the database); the engine uses them to share unchanged
 * files with the previous snapshot.  store_ino/store_ctime identify the
 * store's own copy of an 'f' entry as it was placed in the snapshot's tree
 * (an fstatat right after the copy or the hard link that put it there; 0
 * and 0.000000000 for other types and when unknown): before a stored copy
 * is shared into a new snapshot the engine compares it with them, so that a
 * copy damaged in the store is never shared (doc/contract.md section 5;
 * take/share_check.h).  path: relative to the snapshot root, "."
 * for the root itself, escaped (see ts_manifest_escape).  Entries are sorted
 * by path bytes (strcmp), parents before children.
 *
 * Header lines in brackets are optional; when present they appear once, in
 * the order shown.
 *
 * Sealing: a snapshot is "sealed" when every hash is computed and its data
 * has been made durable (fsync'd / syncfs'd); its manifest then has no
 * "unsealed" line and no pending entry.  A snapshot becomes visible before
 * that: its manifest carries "unsealed<TAB><boot id>", where <boot id> is the
 * content of /proc/sys/kernel/random/boot_id when the snapshot was taken (1
 * to 64 bytes of [0-9a-f-], written verbatim), and some 'f' entries may be
 * pending.  An unsealed snapshot whose boot id differs from the running
 * kernel's may have lost data in a crash and is discarded by the engine.
 * An unsealed manifest may have no pending entry (hashes done, not yet
 * durable); a manifest without the line never has one.  Manifests written
 * before sealing existed simply have no "unsealed" line.
 *
 * Base: an unsealed manifest may list only what differs from another
 * manifest, the file <name> in the same directory (a plain file name, never
 * a path; that file has no base of its own).  Its entries are then the
 * base's, each replaced by the entry of the same path listed here, plus the
 * listed entries the base lacks; the header is this file's, and <count>
 * counts the listed entries only.  A snapshot taken from a stage that
 * nothing changed since its refresh is written so (take/snap_fast.c): the
 * stage's manifest becomes "manifest.base" and the snapshot's lists the
 * database.  The reader merges the two, so that no caller sees a base;
 * sealing writes the whole manifest and removes the base (seal.c).
 *
 * Versions: the writer writes 2, or 3 for a manifest with a base line (the
 * only difference).  The reader also reads version 1, whose entries lack
 * the two store fields (10 fields, not 12): they read as 0 and
 * 0.000000000, the identity unknown.
 *
 * Ownership: a ts_manifest owns its entries and their path strings; release
 * with ts_manifest_free().
 */
#ifndef TS_MANIFEST_H
#define TS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include "base/err.h"

/* The base a snapshot's manifest may have (see Base above). */
#define TS_MANIFEST_BASE "manifest.base"

typedef struct ts_manifest_entry {
	char type;                 /* 'd', 'f', 'l' */
	mode_t mode;               /* permission bits only (07777) */
	uid_t uid;
	gid_t gid;
	uint64_t size;             /* bytes; symlink: target length; dir: 0 */
	struct timespec mtime;
	unsigned char sha256[32];  /* unused for 'd' and pending 'f' (zero when read) */
	bool pending;              /* 'f' only: sha256 not computed yet (unsealed manifests only) */
	uint64_t src_ino;
	struct timespec src_ctime;
	uint64_t store_ino;        /* 'f': the store copy's inode when placed (0: unknown) */
	struct timespec store_ctime; /* 'f': and its ctime then */
	char *path;                /* owned; unescaped bytes */
} ts_manifest_entry;

typedef struct ts_manifest {
	struct timespec time;      /* snapshot instant T */
	char *env;                 /* owned */
	char *external_db;         /* owned, NULL when the database is inside ENV */
	char *external_db_rel;     /* owned, where it lies inside the tree */
	bool no_database;
	char *unsealed_boot;       /* owned; NULL when sealed */
	char *base;                /* owned; written only: a read merges the base (NULL after it) */
	ts_manifest_entry *entries;/* owned array */
	size_t n, cap;
} ts_manifest;

void ts_manifest_init(ts_manifest *m);
void ts_manifest_free(ts_manifest *m);

/* True when the manifest describes a sealed snapshot: no unsealed_boot and
 * no pending entry. */
bool ts_manifest_sealed(const ts_manifest *m);

/* Append an entry, all fields but type and path zero (pending false); the
 * manifest copies path.  Returns the new entry (valid until the next add) or
 * NULL on out of memory. */
ts_manifest_entry *ts_manifest_add(ts_manifest *m, char type, const char *path);

/* Sort entries by path (strcmp); call before writing or looking up. */
void ts_manifest_sort(ts_manifest *m);

/* Binary search in a sorted manifest; NULL when absent. */
const ts_manifest_entry *ts_manifest_find(const ts_manifest *m, const char *path);
/* The same, trying first the few entries after hint (an entry of m, or
 * NULL): a caller going through paths in m's order finds each in a step,
 * where a search compared some 18 long paths. */
const ts_manifest_entry *ts_manifest_find_after(const ts_manifest *m, const ts_manifest_entry *hint,
                                                const char *path);

/* An entry against a struct stat (conversions, comparisons):
 * store/manifest_stat.h. */

/* Write to file (created 0600, written, fsync'd when sealed; not renamed:
 * the caller builds snapshots in a temporary directory and renames the whole
 * of it).
 * TS_ERR_CORRUPT, nothing written, for what the reader would refuse: e.g. a
 * bad unsealed_boot, a pending entry that is not 'f', or a pending entry
 * while unsealed_boot is NULL. */
ts_err_code ts_manifest_write(const ts_manifest *m, const char *file, ts_err *e);

/* Entry i of n for ts_manifest_write_each, asked for in order: a pointer
 * to one of the caller's, or to scratch once filled, valid until the next
 * call (a cursor's entry, say); NULL: there is none (the write fails, and
 * the caller says why). */
typedef const ts_manifest_entry *(*ts_manifest_entry_fn)(void *arg, size_t i, ts_manifest_entry *scratch);

/* Write head's fields (not its entries) and the n entries fn gives, as
 * ts_manifest_write would write a manifest holding them, without the
 * entries ever being held together: a take writes its items as they are.
 * Each entry is checked as it comes (TS_ERR_CORRUPT as ts_manifest_write);
 * on any failure the file is removed. */
ts_err_code ts_manifest_write_each(const ts_manifest *head, size_t n, ts_manifest_entry_fn fn, void *arg,
                                   const char *file, ts_err *e);

/* Read and validate; TS_ERR_CORRUPT "<file>:<line>: <what is wrong>" for a
 * malformed file, TS_ERR_NOTFOUND when it does not exist.  Pending entries
 * have pending set and sha256 zeroed.  Whether an unsealed snapshot is still
 * usable (same boot id) is for the caller to decide. */
ts_err_code ts_manifest_read(const char *file, ts_manifest *m, ts_err *e);

/* ts_manifest_read, ts_manifest_write and ts_manifest_write_each of rel
 * below directory dirfd,
 * by its /proc/self/fd path (ts_beneath_procpath).  rel may have several
 * components ("NAME/manifest" below the store): the store is root's and
 * checked to be (trust.h), nothing there is another account's to turn into
 * a link. */
ts_err_code ts_manifest_read_at(int dirfd, const char *rel, ts_manifest *m, ts_err *e);

ts_err_code ts_manifest_write_at(const ts_manifest *m, int dirfd, const char *rel, ts_err *e);
ts_err_code ts_manifest_write_each_at(const ts_manifest *head, size_t n, ts_manifest_entry_fn fn, void *arg,
                                      int dirfd, const char *rel, ts_err *e);

/* Reading a manifest one entry at a time, in its (sorted) order, never
 * holding its entries together: a stage build goes through 200,000 entries
 * several times in the memory of one (some 57 MB for them all).  The file
 * is checked as it is read, as ts_manifest_read checks it: a fault found at
 * entry k comes after k entries were given, so a caller undoes what it
 * made of them.  A manifest with a base is merged with it as it is read
 * (see Base above): the caller never sees the base.
 * Ownership: the cursor owns its entries; each one given is valid until the
 * next call on the cursor.  Close it whatever happened. */
typedef struct ts_manifest_cursor ts_manifest_cursor;

/* Open rel below dirfd (as ts_manifest_read_at reads it): *head is
 * initialised and gets the header's fields, no entries (base NULL: merged);
 * the caller frees it.  *c is NULL on failure. */
ts_err_code ts_manifest_cursor_open_at(int dirfd, const char *rel, ts_manifest *head,
                                       ts_manifest_cursor **c, ts_err *e);
/* The next entry into *ent; NULL after the last, once the end of the file
 * is checked.  After a failure, every later call fails. */
ts_err_code ts_manifest_cursor_next(ts_manifest_cursor *c, const ts_manifest_entry **ent, ts_err *e);
/* NULL is fine. */
void ts_manifest_cursor_close(ts_manifest_cursor *c);

/* An entry of a manifest being rewritten (ts_manifest_rewrite_at): the
 * entry to write in me's place (me itself, or scratch once filled from
 * it), or NULL to leave it out. */
typedef const ts_manifest_entry *(*ts_manifest_map_fn)(void *arg, const ts_manifest_entry *me,
                                                       ts_manifest_entry *scratch);

/* Write rel below dirfd (as ts_manifest_write_each_at: head's fields, n
 * entries) from the manifest src_rel below src_dirfd, read one entry at a
 * time (a cursor), each entry passed through fn: a manifest rewritten with
 * a few entries changed or left out, without its entries ever held
 * together.  The source must give exactly n entries that fn keeps: fewer,
 * more, or a fault in it fails the write (its own error, not the
 * writer's), and no file is left. */
ts_err_code ts_manifest_rewrite_at(int src_dirfd, const char *src_rel, const ts_manifest *head, size_t n,
                                   ts_manifest_map_fn fn, void *arg, int dirfd, const char *rel, ts_err *e);

/* Escape bytes for a manifest field: '\\' -> "\\\\", TAB -> "\\t",
 * LF -> "\\n", CR -> "\\r", other bytes < 0x20, 0x7f and space -> "\\xHH";
 * all other bytes (UTF-8 or not) verbatim.  Returns malloc'd string or NULL. */
char *ts_manifest_escape(const char *raw);

/* Inverse of ts_manifest_escape; NULL on a malformed escape or out of memory. */
char *ts_manifest_unescape(const char *text);

/* Hex helpers for SHA-256 digests. */
void ts_sha256_hex(const unsigned char d[32], char out[65]);
bool ts_sha256_unhex(const char *hex, unsigned char d[32]);

#endif
