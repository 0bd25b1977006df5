/* space.h - how much space removing some snapshots frees.
 *
 * Snapshots share unchanged files as hard links, so a snapshot's size says
 * little about what removing it gives back.  What it frees is the blocks of
 * every inode whose links are all inside what is removed: counted by
 * walking those snapshots (and the daemon's stage, when it was made from
 * one of them: it goes with it, store.h) and comparing, per inode, the
 * links seen there with st_nlink.  Directories and the manifests count
 * too.  The figure is allocated blocks (st_blocks), what df would show
 * coming back, not file sizes.
 *
 * Ownership: the caller owns names; nothing is retained.
 */
#ifndef TS_SPACE_H
#define TS_SPACE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "store/store.h"

/* The bytes removing the n snapshots names (together) would free, into
 * *bytes.  For a writer holding the store lock, so that nothing is linked
 * or removed meanwhile; without it the figure is an estimate. */
ts_err_code ts_space_freed(ts_store *s, const char *const *names, size_t n, uint64_t *bytes,
                           ts_err *e);

#endif
