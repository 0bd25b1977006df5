/* manifest_int.h - what manifest.c, manifest_write.c and manifest_read.c
 * share: the format's constants and the checks both directions make.
 * Private to snapshot/store.
 */
#ifndef TS_MANIFEST_INT_H
#define TS_MANIFEST_INT_H

#include <stdbool.h>
#include <time.h>

#include "store/manifest.h"

#define MANIFEST_MAGIC "tracsnap-manifest"
#define MANIFEST_VERSION "2"
#define MANIFEST_VERSION_BASE "3"   /* 2 with a base line (manifest.h) */
#define MANIFEST_FIELDS 12
#define MANIFEST_FIELDS_V1 10   /* version 1: no store_ino, store_ctime */

/* The shortest entry line a manifest can hold, LF included (version 1: 10
 * one-byte fields, two of them times of 11 bytes, 9 tabs). */
#define MANIFEST_MIN_LINE 40

/* Append an entry that takes ownership of path (freed on failure too);
 * NULL on out of memory. */
ts_manifest_entry *manifest_push(ts_manifest *m, char type, char *path);
/* Make room for n entries in all; false on out of memory. */
bool manifest_reserve(ts_manifest *m, size_t n);
/* Unescape text into *out: 0, -1 for a malformed text, -2 out of memory.
 * Besides unknown escapes, a byte that ts_manifest_escape() never leaves
 * raw (a control byte, DEL, space) is refused too. */
int manifest_unescape_to(const char *text, char **out);

/* A path inside the tree: "." for the root, else relative components that
 * are neither empty, "." nor "..".  Anything else could point outside on
 * restore. */
bool manifest_path_ok(const char *p);
/* tv_nsec in [0, 1e9). */
bool manifest_ts_ok(const struct timespec *t);
/* A boot id as /proc/sys/kernel/random/boot_id gives it (without the LF):
 * 1 to 64 bytes of [0-9a-f-]. */
bool manifest_boot_ok(const char *b);
/* A base's name: a plain file name of [A-Za-z0-9._-], not "." or "..". */
bool manifest_base_ok(const char *b);

#endif
