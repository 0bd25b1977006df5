/* copy.h - copy one entry of the environment into a snapshot tree.
 *
 * Both sides are addressed by a directory fd and a relative path, so that a
 * path near PATH_MAX inside the environment still works.  Copies keep mode,
 * owner (when permitted), mtime and extended attributes; symlinks are copied as
 * links and never followed.  Regular files are cloned (FICLONE) when source and
 * destination share a filesystem that supports reflinks, else copied; the
 * SHA-256 of a file's content is computed afterwards (ts_copy_hash_file).
 */
#ifndef TS_COPY_H
#define TS_COPY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include "base/err.h"

typedef struct ts_copy_out {
	struct stat st;            /* the source as it was when the copy began */
	bool changed;              /* the source changed while it was copied */
	unsigned char sha256[32];  /* a symlink's target's; zero for a file */
	uint64_t bytes;            /* bytes of content copied */
	bool reflinked;
} ts_copy_out;

/* ts_copy_file flags. */
#define TS_COPY_BOUNDED 2u  /* keep at most two chunks or files of this thread in
                             * writeback (see copy.c): for copies next to a live
                             * database on the same filesystem */

/* Copy regular file rel from src_dirfd to dst_dirfd (which must not have it).
 * The kernel copies (copy_file_range, or a clone) and the caller hashes the
 * copy later with ts_copy_hash_file: out->sha256 is left zero for a file.
 * TS_ERR_NOTFOUND when the source vanished (the caller treats that as a
 * deletion; e->sys_errno ELOOP or ENOTDIR: it, or a directory on its way,
 * changed type, see beneath.h); TS_ERR_IO/NOSPC on failure, with the destination removed.
 * src_desc is the source path for messages (e.g. the environment root). */
ts_err_code ts_copy_file(int src_dirfd, int dst_dirfd, const char *rel, unsigned flags,
                         const char *src_desc, ts_copy_out *out, ts_err *e);
/* The same, the copy made at dst_rel below dst_dirfd instead of rel: for a
 * copy made beside its place and renamed over what is there. */
ts_err_code ts_copy_file_as(int src_dirfd, const char *rel, int dst_dirfd, const char *dst_rel,
                            unsigned flags, const char *src_desc, ts_copy_out *out, ts_err *e);

/* Copy the rest of open file in into out (in the kernel where it can, else
 * through a buffer), adding to *bytes; no metadata.  src_desc/rel name the
 * source in messages. */
ts_err_code ts_copy_fd(int in, int out, uint64_t *bytes, const char *src_desc, const char *rel,
                       ts_err *e);

/* Copy symlink rel (target, owner, mtime); sha256 is over the target. */
ts_err_code ts_copy_symlink(int src_dirfd, int dst_dirfd, const char *rel,
                            const char *src_desc, ts_copy_out *out, ts_err *e);

/* Give dst_dirfd/rel the owner, mode, mtime and xattrs recorded in st and
 * read from src_dirfd/rel.  Used for directories after their contents are in
 * place (adding entries would change their mtime). */
ts_err_code ts_copy_dir_meta(int src_dirfd, int dst_dirfd, const char *rel,
                             const struct stat *st, const char *src_desc, ts_err *e);

/* Hash the content of an already-written file.  flush: also write it back
 * as the hash goes, at most two chunks in flight, and wait for the whole of
 * it before returning. */
ts_err_code ts_copy_hash_file(int dirfd, const char *rel, bool flush, unsigned char sha256[32],
                              uint64_t *size, ts_err *e);

/* Remove rel below dirfd recursively (files, links, directories). Missing is
 * not an error, nor is a symlink or file where a directory on rel's way was
 * (rel is not there then; nothing beyond a link is removed).  rel is reached
 * beneath dirfd (beneath.h), but for an absolute path of the caller's own,
 * whose directory is taken as given. */
ts_err_code ts_copy_remove_tree(int dirfd, const char *rel, ts_err *e);

/* As ts_copy_remove_tree, and first calls fn(arg, inode) for each file or
 * link it is about to unlink that has other names (st_nlink > 1): those
 * whose ctime the unlink moves (store/linklog.h).  A stat per entry, which
 * plain removal spares. */
typedef void (*ts_copy_unlink_fn)(void *arg, uint64_t ino);
ts_err_code ts_copy_remove_tree_noting(int dirfd, const char *rel, ts_copy_unlink_fn fn, void *arg,
                                       ts_err *e);

/* Write fd's dirty pages to the disk a step at a time, two steps in
 * flight at most (copy.c), waiting until all are written: a large file written in one go
 * (a manifest of 200,000 entries is some 50 MB) is then never all in
 * flight at once, which Trac's fsyncs would queue behind. */
void ts_copy_flush_bounded(int fd);

/* Free the calling thread's copy buffer (worker threads call it before
 * they end; the buffer is made again on the next copy). */
void ts_copy_thread_done(void);

/* Same stat for the purposes of change detection: type, mode, owner, size,
 * inode, mtime and ctime to the nanosecond. */
bool ts_copy_same_stat(const struct stat *a, const struct stat *b);

#endif
