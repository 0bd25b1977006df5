/* fs_int.h - what the FUSE translator's files share (the top of fs/ only: it
 * includes fuse_lowlevel.h, so neither cli/ nor fs/daemon/ may include it).
 *
 * The translator speaks libfuse's low-level API: requests name inodes, not
 * paths.  fs_node.c keeps one node per entry the kernel holds (its lookup
 * count, its store inode, a directory's descriptor), so a request reaches
 * its file in one *at call from a descriptor at hand instead of walking a
 * path from the store.  fs_ops.c: the operation table, lookup, getattr,
 * files; fs_dir.c: directories; fs_manage.c: mkdir, rmdir, rename at the
 * mount root and the refusal of every other change; fs_xattr.c: xattrs.
 */
#ifndef TS_FS_INT_H
#define TS_FS_INT_H

#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs.h"

/* Snapshot contents never change: the kernel may keep names and
 * attributes for long.  The root changes; fs_watch.c tells the kernel. */
#define FS_CACHE_TIMEOUT 3600.0
/* st_ino of the mount root and `latest` (store inodes are never 1 or 2). */
#define FS_ROOT_INO 1
#define FS_LATEST_INO 2

/* One entry below the mount root as the kernel holds it: a snapshot (a
 * child of the root; its tree) or an entry inside one.  Its address is
 * the FUSE node id.  A node lives while the kernel holds it (nlookup) or
 * a child node names it as parent (kids); the kernel sends no request for
 * a node it has forgotten, so a request's node and its ancestors stay
 * valid for the whole request.  The root and `latest` are not nodes.
 *
 * Ownership: the node table (fs_nodes) allocates and frees nodes and owns
 * their descriptors; callers borrow them for one request. */
typedef struct fs_node {
	struct fs_node *parent;        /* NULL: a snapshot, a child of the root */
	struct fs_node *snap;          /* the snapshot it lies in (itself for one) */
	struct fs_node *next;          /* hash chain or stale list; under the table's mutex */
	uint64_t nlookup;              /* under the table's mutex */
	uint32_t kids;                 /* under the table's mutex */
	bool hashed;                   /* under the table's mutex: found by name */
	int fd;                        /* directories: O_PATH, -1 until needed (atomic) */
	mode_t type;                   /* S_IFMT bits; fixed */
	dev_t dev;                     /* the store's inode; fixed */
	ino_t ino;
	char *name;                    /* a snapshot's is renamed under the mutex */
	char name_buf[];
} fs_node;

/* The node table: every node the kernel holds, found by (parent, name). */
typedef struct fs_nodes {
	pthread_mutex_t mu;
	fs_node **buckets;             /* under mu */
	size_t nbuckets, n;            /* under mu */
	fs_node *stale;                /* under mu: nodes no longer found by name */
	/* Directory descriptors kept open (atomic), and how many may be: past
	 * that, a directory is opened again by name for each request. */
	long fds, fds_max;
} fs_nodes;

/* The metadata prefetcher (fs_prefetch.c): one thread, one walk at a time.
 * mu and cv guard start, stop and the thread's sleep; served, busy and
 * stop are also read without mu (atomics); done and base are the
 * thread's.  Ownership: the walk's descriptors are the thread's; start,
 * once handed over, too. */
typedef struct fs_prefetch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int start;                     /* under mu: a directory to walk from, -1: none */
	bool stop, busy;               /* under mu (read atomically outside) */
	uint64_t served;               /* atomic: entries listings sent with attributes */
	uint64_t base, done;           /* the thread's: served at the walk's start; entries stat'ed */
	pthread_t thread;
	bool running;                  /* set by start/stop only */
} fs_prefetch;

/* FUSE passthrough (fs_passthrough.c).  Set up by fs_pt_install before the
 * session runs; want and fd are read-only after.  replied is set once, by
 * the first reply's writer; state is decided at the first file open, under
 * mu, and read atomically after. */
typedef struct fs_pt {
	pthread_mutex_t mu;
	int state;                     /* atomic: unknown, on or off */
	bool want;                     /* not no_passthrough */
	bool replied;                  /* atomic: INIT's reply went by */
	int fd;                        /* the session's /dev/fuse descriptor */
} fs_pt;

/* What a request's inode is. */
typedef enum { FS_ROOT, FS_LATEST, FS_NODE } fs_kind;
#define FS_LATEST_NODEID ((fuse_ino_t)2)

/* The daemon behind a request. */
static inline fs_ctx *fs_req_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline fs_kind fs_kind_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? FS_ROOT : ino == FS_LATEST_NODEID ? FS_LATEST : FS_NODE;
}

static inline fs_node *fs_node_of(fuse_ino_t ino)
{
	return (fs_node *)(uintptr_t)ino;
}

static inline fuse_ino_t fs_nodeid(const fs_node *n)
{
	return (fuse_ino_t)(uintptr_t)n;
}

/* fs_passthrough.c */
/* Route libfuse's reads and replies through fs_passthrough.c, which asks for
 * passthrough in the INIT reply if want.  After fuse_session_mount, before
 * the loop.  0 or libfuse's -errno. */
int fs_pt_install(fs_ctx *c, fs_pt *pt, bool want);
void fs_pt_free(fs_pt *pt);
/* The backing id of an open of store file fd: >= 0 in passthrough mode (the
 * kernel holds its own reference: fd stays the caller's), -1 when the file
 * is read through fs_read (a small file, or a mount without passthrough),
 * -errno when the kernel refused this file. */
int fs_pt_backing(fs_pt *pt, int fd);
/* Answer an open (fi->fh set) in passthrough mode if backing >= 0, else
 * with the page cache kept.  Returns what libfuse's reply returned
 * (-ENOENT: the open was interrupted, and no release will come). */
int fs_pt_reply_open(fuse_req_t req, struct fuse_file_info *fi, int backing);
/* Forget a backing id from fs_pt_backing (nothing for -1). */
void fs_pt_drop(fs_pt *pt, int backing);

/* fs_node.c */
int fs_nodes_init(fs_nodes *t, long fds_max);
void fs_nodes_free(fs_nodes *t);
/* Open STORE/NAME/tree (O_PATH); -ENOENT when there is no such snapshot
 * (names starting with '.' are the store's own files and never shown). */
int fs_tree_fd(fs_ctx *c, const char *name);
/* The node for snapshot NAME whose tree tfd is open on (st: its fstat),
 * its lookup count raised by one; tfd is the node's from now on (closed
 * here when a node for that tree exists).  NULL: out of memory (tfd closed). */
fs_node *fs_node_snap(fs_nodes *t, const char *name, int tfd, const struct stat *st);
/* The node for NAME in directory parent, which st describes (fstatat of
 * NAME from parent's descriptor), its lookup count raised by one.  A
 * known node for another inode under that name is replaced.  NULL: out
 * of memory. */
fs_node *fs_node_child(fs_nodes *t, fs_node *parent, const char *name, const struct stat *st);
/* The kernel forgets n nlookup times. */
void fs_node_forget(fs_nodes *t, fs_node *n, uint64_t nlookup);
/* Snapshot NAME is gone or has a new name (rmdir, rename at the root):
 * later lookups of those names must not find its node. */
void fs_node_unhash_snap(fs_nodes *t, const char *name);
bool fs_node_rename_snap(fs_nodes *t, const char *from, const char *to);
/* The node id of snapshot NAME's node if there is one, else 0; the ids of
 * every snapshot node (malloc'd; -ENOMEM with none).  Ids only: the nodes
 * may be gone by the time they are used (fs_watch.c). */
fuse_ino_t fs_node_snap_id(fs_nodes *t, const char *name);
int fs_node_snap_ids(fs_nodes *t, fuse_ino_t **ids, size_t *count);
/* Snapshot node n's name now (it may be renamed). */
void fs_node_snap_name(fs_nodes *t, const fs_node *n, char *buf, size_t len);
/* A descriptor (O_PATH) on directory node n, or -errno.  *tmp says
 * whether the caller must close it (the budget of kept descriptors is
 * spent); otherwise it is n's and lives as long as n. */
int fs_node_dirfd(fs_nodes *t, fs_node *n, bool *tmp);
/* The directory that holds n (a descriptor as fs_node_dirfd's) and n's
 * name in it: a snapshot's is the tree itself, named ".". */
int fs_node_parentfd(fs_nodes *t, fs_node *n, bool *tmp, const char **leaf);
void fs_fd_done(int fd, bool tmp);

/* fs_ops.c: what the view shows of a snapshot's entry (st from the store). */
void fs_fix_stat(struct stat *st);
/* The newest snapshot's name (`latest`'s target); -errno. */
int fs_newest(fs_ctx *c, char *out, size_t len);
/* Count a handle opened below n's snapshot (daemon/daemon_handles.h). */
int fs_handle_open(fs_ctx *c, const fs_node *n);
void fs_handle_release(fs_ctx *c, dev_t dev, ino_t ino);
/* The largest read request, in bytes, that libfuse still splices. */
unsigned fs_splice_max_write(void);
/* Reply to a lookup of snapshot NAME at the root with its node (mkdir's
 * reply too); first_access: a missing auto name is taken (doc/contract.md
 * section 2). */
void fs_reply_snap(fuse_req_t req, fs_ctx *c, const char *name, bool first_access);

/* fs_dir.c */
void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi);
void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* fs_manage.c */
bool fs_may_manage(fuse_req_t req);
void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags);
void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* fs_xattr.c */
void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

/* fs_prefetch.c: start and stop the thread (from init and destroy); a
 * listing of directory dirfd starts (walk its subtree if no walk runs);
 * listings sent entries with attributes. */
void fs_prefetch_start(fs_prefetch *pf);
void fs_prefetch_stop(fs_prefetch *pf);
void fs_prefetch_listing(fs_prefetch *pf, int dirfd);
void fs_prefetch_served(fs_prefetch *pf, uint64_t entries);

/* fs_watch.c */
int fs_watch_start(fs_ctx *c);
void fs_watch_stop(fs_ctx *c);

/* The operation table (fs_ops.c). */
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);

#endif
