/* stage_int.h - what stage.c and stage_build.c share: the stage's identity
 * (STORE/.stage/base).  Private to snapshot/take. */
#ifndef TS_STAGE_INT_H
#define TS_STAGE_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

#define STAGE_ID_MAX (NAME_MAX + 64 + TS_STORE_BOOT_ID_MAX)

/* The identity of a stage made from snapshot name, whose tree is open on
 * treefd, into buf: false when it cannot be told. */
bool stage_id(const char *name, int treefd, char *buf, size_t len);
/* Is the stage whose base file is dirfd/rel made from the snapshot of id? */
bool stage_is(int dirfd, const char *rel, const char *id);

#endif
