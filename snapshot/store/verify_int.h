/* verify_int.h - what verify.c (the check) and verify_repair.c (the repair)
 * share: the run and the damage it keeps.  Private to snapshot/store.
 *
 * Ownership: the run owns its inode table and its damage records; each
 * record owns its snap and path strings (freed by ts_verify_run_free).
 */
#ifndef TS_VERIFY_INT_H
#define TS_VERIFY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "store/manifest.h"
#include "store/verify.h"
#include "store/verify_inodes.h"

/* The kinds ts_verify_repair can do something about. */
#define VERIFY_BIT(k) (1u << (k))
#define VERIFY_REPAIRABLE (VERIFY_BIT(TS_VERIFY_MODE) | VERIFY_BIT(TS_VERIFY_OWNER) | \
                           VERIFY_BIT(TS_VERIFY_SIZE) | VERIFY_BIT(TS_VERIFY_MTIME) | \
                           VERIFY_BIT(TS_VERIFY_CONTENT))

/* One damaged entry of one snapshot: every problem reported for its path. */
typedef struct verify_damage {
	char *snap;               /* owned */
	ts_manifest_entry me;     /* a copy; me.path owned (the entry's path, or
	                           * the tree's path when not in the manifest) */
	bool in_manifest;         /* false: an extra entry (me holds only path) */
	bool have_stat;           /* the entry was found in the tree */
	dev_t dev;                /* its inode then (have_stat) */
	ino_t ino;
	unsigned kinds;           /* VERIFY_BIT of each kind reported */
	size_t nproblems;         /* lines reported for it */
	bool content_ok;          /* 'f': hashed, same size and SHA-256 as me */
} verify_damage;

struct ts_verify_run {
	ts_verify_inodes inodes;
	ts_verify_totals tot;
	bool keep_damage;
	verify_damage *dmg;       /* owned array, in the order reported */
	size_t ndmg, capdmg;
};

#endif
