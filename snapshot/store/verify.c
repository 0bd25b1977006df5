/* verify.c - re-check stored snapshots against their manifests (verify.h). */
#include "base/beneath.h"
#include "store/verify.h"

#include <dirent.h>   /* getdents64, struct dirent64 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/copy.h"
#include "store/manifest.h"
#include "store/manifest_stat.h"
#include "store/verify_int.h"

/* What the walk knows of each manifest entry. */
enum { VERIFY_UNSEEN, VERIFY_SEEN, VERIFY_LISTED };

typedef struct verify_ctx {
	ts_verify_run *run;
	const char *snap;
	ts_manifest m;
	unsigned char *state;          /* per manifest entry, VERIFY_* */
	ts_verify_problem_fn problem;
	ts_verify_progress_fn progress;
	void *arg;
	size_t nproblems;
	size_t npending;               /* 'f' entries whose hash is pending */
	size_t ndrift;                 /* entries with only TS_MDIFF_MTIME_SEC (verify_drift) */
	size_t files_done, files_total;
	uint64_t bytes_done, bytes_total;
	bool nomem;                    /* a damage record could not be kept */
	bool dino_is_ino;              /* readdir's d_ino is stat's st_ino on... */
	dev_t tree_dev;                /* ...the tree's filesystem */
	const ts_manifest_entry *last; /* the entry verify_entry found last */
	char *dents;                   /* owned: VERIFY_DENTS_BUF for getdents64 */
} verify_ctx;

#define VERIFY_DENTS_BUF 32768

/* Keep the problem for ts_verify_repair: one record per path, the problems
 * of one path being reported one after the other. */
static void verify_note(verify_ctx *v, const char *path, const ts_manifest_entry *me,
                        const struct stat *st, ts_verify_kind kind, bool problem)
{
	ts_verify_run *r = v->run;
	verify_damage *d = r->ndmg ? &r->dmg[r->ndmg - 1] : NULL;

	if (!r->keep_damage)
		return;
	if (!d || strcmp(d->snap, v->snap) || strcmp(d->me.path, path)) {
		if (r->ndmg == r->capdmg) {
			size_t cap = r->capdmg ? r->capdmg * 2 : 16;
			verify_damage *nv = realloc(r->dmg, cap * sizeof *nv);
			if (!nv) {
				v->nomem = true;
				return;
			}
			r->dmg = nv;
			r->capdmg = cap;
		}
		d = &r->dmg[r->ndmg];
		memset(d, 0, sizeof *d);
		if (me)
			d->me = *me;
		d->in_manifest = me != NULL;
		d->snap = strdup(v->snap);
		d->me.path = strdup(path);
		if (!d->snap || !d->me.path) {
			free(d->snap);
			free(d->me.path);
			v->nomem = true;
			return;
		}
		if (st) {
			d->have_stat = true;
			d->dev = st->st_dev;
			d->ino = st->st_ino;
		}
		r->ndmg++;
	}
	d->kinds |= VERIFY_BIT(kind);
	d->nproblems += problem;
}

/* The record verify_note keeps for path in this snapshot, if any. */
static verify_damage *verify_noted(verify_ctx *v, const char *path)
{
	ts_verify_run *r = v->run;
	verify_damage *d = r->ndmg ? &r->dmg[r->ndmg - 1] : NULL;

	return d && !strcmp(d->snap, v->snap) && !strcmp(d->me.path, path) ? d : NULL;
}

/* Report one problem of path (me: its manifest entry, st: its stat; NULL
 * when there is none). */
__attribute__((format(printf, 6, 7)))
static void verify_report(verify_ctx *v, const char *path, const ts_manifest_entry *me,
                          const struct stat *st, ts_verify_kind kind, const char *fmt, ...)
{
	char what[TS_ERR_MSG_MAX];
	ts_verify_problem p = { .path = path, .kind = kind, .what = what };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	v->nproblems++;
	verify_note(v, path, me, st, kind, true);
	if (v->problem)
		v->problem(v->arg, v->snap, &p);
}

static const char *verify_type_word(char t)
{
	return t == 'd' ? "a directory" : t == 'f' ? "a regular file" :
	       t == 'l' ? "a symlink" : "a special file";
}

/* An mtime that lost only its fraction of a second (TS_MDIFF_MTIME_SEC):
 * with nothing else wrong with the entry (no problem reported for it since
 * before), metadata drift, counted, not a problem, and kept for --repair
 * to set back; with something else wrong, reported with it. */
static void verify_drift(verify_ctx *v, const char *rel, const ts_manifest_entry *me,
                         const struct stat *st, size_t problems_before)
{
	if (v->nproblems > problems_before) {
		verify_report(v, rel, me, st, TS_VERIFY_MTIME, "mtime %lld.%09ld, manifest says %lld.%09ld",
		              (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		              (long long)me->mtime.tv_sec, me->mtime.tv_nsec);
		return;
	}
	v->ndrift++;
	verify_note(v, rel, me, st, TS_VERIFY_MTIME, false);
	verify_damage *d = verify_noted(v, rel);
	if (d && me->type == 'f' && !me->pending)
		d->content_ok = true;   /* hashed above: only the time is wrong */
}

static ts_err_code verify_dir(verify_ctx *v, int fd, const char *rel, dev_t dev, ts_err *e);

/* The SHA-256 of regular file dirfd/name (stat st): remembered from earlier
 * in the run when its inode was hashed already and has not changed since,
 * else read (and remembered when other links may lead to it again).
 * *size: the bytes hashed (st's size when remembered).  TS_ERR_IO (herr)
 * when unreadable; TS_ERR_NOMEM (e) when the table cannot grow. */
static ts_err_code verify_hash(verify_ctx *v, int dirfd, const char *name, const struct stat *st,
                               unsigned char sha[32], uint64_t *size, ts_err *herr, ts_err *e)
{
	ts_verify_run *r = v->run;
	const unsigned char *known = ts_verify_inodes_get(&r->inodes, st);
	ts_err_code rc;

	if (known) {
		memcpy(sha, known, 32);
		*size = (uint64_t)st->st_size;
		return TS_OK;
	}
	rc = ts_copy_hash_file(dirfd, name, false, sha, size, herr);
	if (rc != TS_OK)
		return rc;
	r->tot.files_read++;
	r->tot.bytes_read += *size;
	/* Remembered as st showed the inode before the read: if it changed
	 * meanwhile its ctime moved, and the next lookup reads it again. */
	if (st->st_nlink > 1 && *size == (uint64_t)st->st_size)
		return ts_verify_inodes_put(&r->inodes, st, sha, e);
	return TS_OK;
}

/* Compare one tree entry (dirfd/name, stat st) with the manifest. */
static ts_err_code verify_entry(verify_ctx *v, int dirfd, const char *name, const char *rel,
                                const struct stat *st, ts_err *e)
{
	/* The walk goes through names in about the manifest's order. */
	const ts_manifest_entry *me = ts_manifest_find_after(&v->m, v->last, rel);
	char t = ts_manifest_type_of(st->st_mode), hex[65];
	unsigned char sha[32];
	unsigned diff;
	ts_err herr;

	if (!me) {
		/* Only the top of an extra subtree: its contents say nothing more. */
		verify_report(v, rel, NULL, st, TS_VERIFY_EXTRA, "extra: %s not in the manifest",
		              verify_type_word(t));
		return TS_OK;
	}
	v->last = me;
	v->state[me - v->m.entries] = VERIFY_SEEN;
	diff = ts_manifest_entry_diff(me, st);
	size_t problems_before = v->nproblems;
	if (diff & TS_MDIFF_TYPE) {
		verify_report(v, rel, me, st, TS_VERIFY_TYPE, "type: %s, manifest says %s",
		              verify_type_word(t), verify_type_word(me->type));
		return TS_OK;
	}
	if (diff & TS_MDIFF_MODE)
		verify_report(v, rel, me, st, TS_VERIFY_MODE, "mode %04o, manifest says %04o",
		              (unsigned)(st->st_mode & 07777), (unsigned)me->mode);
	if (diff & TS_MDIFF_OWNER)
		verify_report(v, rel, me, st, TS_VERIFY_OWNER, "owner %lu:%lu, manifest says %lu:%lu",
		              (unsigned long)st->st_uid, (unsigned long)st->st_gid,
		              (unsigned long)me->uid, (unsigned long)me->gid);
	if (diff & TS_MDIFF_SIZE)
		verify_report(v, rel, me, st, TS_VERIFY_SIZE, "size %llu, manifest says %llu",
		              (unsigned long long)st->st_size, (unsigned long long)me->size);
	if (diff & TS_MDIFF_MTIME)
		verify_report(v, rel, me, st, TS_VERIFY_MTIME, "mtime %lld.%09ld, manifest says %lld.%09ld",
		              (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		              (long long)me->mtime.tv_sec, me->mtime.tv_nsec);

	if (t == 'f') {
		uint64_t got = 0;
		ts_err_code rc;
		ts_err_clear(&herr);
		if (me->pending) {
			/* Unsealed: no hash to compare the bytes with yet.  Everything
			 * else was checked above; the caller learns how many. */
			v->npending++;
		} else if ((rc = verify_hash(v, dirfd, name, st, sha, &got, &herr, e)) != TS_OK) {
			if (rc == TS_ERR_NOMEM)
				return rc;
			verify_report(v, rel, me, st, TS_VERIFY_UNREADABLE, "unreadable: %s", herr.msg);
		} else if (got == me->size && memcmp(sha, me->sha256, 32)) {
			/* A size difference is reported above; equal sizes with another
			 * digest means the bytes themselves changed. */
			ts_sha256_hex(sha, hex);
			verify_report(v, rel, me, st, TS_VERIFY_CONTENT, "content differs (sha256 %.16s...)",
			              hex);
		} else if (got == me->size) {
			/* Only the metadata differs (if anything): a repair need
			 * not look for another copy. */
			verify_damage *d = verify_noted(v, rel);
			if (d)
				d->content_ok = true;
		}
		if (diff & TS_MDIFF_MTIME_SEC)
			verify_drift(v, rel, me, st, problems_before);
		v->files_done++;
		v->bytes_done += me->size;
		if (v->progress)
			v->progress(v->arg, v->snap, v->files_done, v->files_total, v->bytes_done,
			            v->bytes_total);
	} else if (t == 'l') {
		char *target = malloc((size_t)st->st_size + 2);
		ssize_t n = target ? readlinkat(dirfd, name, target, (size_t)st->st_size + 1) : -1;
		if (!target)
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		if (n < 0) {
			verify_report(v, rel, me, st, TS_VERIFY_UNREADABLE,
			              "unreadable: cannot read the link: %s", strerror(errno));
		} else if (!EVP_Digest(target, (size_t)n, sha, NULL, EVP_sha256(), NULL)) {
			free(target);
			return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		} else if (memcmp(sha, me->sha256, 32)) {
			verify_report(v, rel, me, st, TS_VERIFY_TARGET, "symlink target differs");
		}
		free(target);
		if (diff & TS_MDIFF_MTIME_SEC)
			verify_drift(v, rel, me, st, problems_before);
	} else {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		ts_err_code rc;
		if (diff & TS_MDIFF_MTIME_SEC)
			verify_drift(v, rel, me, st, problems_before);
		if (fd < 0) {
			verify_report(v, rel, me, st, TS_VERIFY_UNREADABLE,
			              "unreadable: cannot open the directory: %s", strerror(errno));
			return TS_OK;
		}
		v->state[me - v->m.entries] = VERIFY_LISTED;
		rc = verify_dir(v, fd, rel, st->st_dev, e);
		close(fd);
		return rc;
	}
	return TS_OK;
}

/* One name of a directory, with what readdir said of it. */
typedef struct verify_dirent {
	char *name;              /* owned */
	ino_t ino;
	unsigned char type;      /* DT_* */
} verify_dirent;

static int verify_dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const verify_dirent *)a)->name, ((const verify_dirent *)b)->name);
}

/* The stat of dirfd/name (readdir said: inode ino, type type), on
 * filesystem dev.  A regular file whose inode this run has met before (a
 * store inode shared with a snapshot checked earlier) is not stat'ed again:
 * the stat recorded then stands for it.  With one stat per name costing
 * more than anything else the check of such a snapshot does, that makes
 * the run's cost the unique inodes rather than the names (verify.h).  Only
 * where readdir's inode number is stat's (v->dino_is_ino), and not below a
 * filesystem mounted inside the tree, whose type was not looked at. */
static int verify_stat(verify_ctx *v, int dirfd, const verify_dirent *de, dev_t dev,
                       struct stat *st)
{
	if (v->dino_is_ino && dev == v->tree_dev && de->type == DT_REG &&
	    ts_verify_inodes_stat(&v->run->inodes, dev, de->ino, st))
		return 0;
	return fstatat(dirfd, de->name, st, AT_SYMLINK_NOFOLLOW);
}

/* Check every entry of the open directory fd (rel in the snapshot, on
 * filesystem dev), in name order so that reports come out the same on
 * every run. */
static ts_err_code verify_dir(verify_ctx *v, int fd, const char *rel, dev_t dev, ts_err *e)
{
	ts_err_code rc = TS_OK;
	verify_dirent *ents = NULL;
	char *child = NULL;
	size_t n = 0, cap = 0, childcap = 0;
	size_t plen = strcmp(rel, ".") ? strlen(rel) + 1 : 0;   /* "rel/" or "" */

	/* getdents64 into the run's buffer, not readdir: fdopendir's dup, fstat
	 * and fcntls are most of a directory's system calls. */
	for (;;) {
		ssize_t got = getdents64(fd, v->dents, VERIFY_DENTS_BUF);
		if (got < 0) {
			verify_report(v, rel, ts_manifest_find(&v->m, rel), NULL, TS_VERIFY_UNREADABLE,
			              "unreadable: cannot list the directory: %s", strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		for (ssize_t off = 0; off < got;) {
			const struct dirent64 *de = (const struct dirent64 *)(v->dents + off);
			off += de->d_reclen;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (n == cap) {
				verify_dirent *nv = realloc(ents, (cap = cap ? cap * 2 : 32) * sizeof *ents);
				if (!nv) {
					rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
					goto out;
				}
				ents = nv;
			}
			ents[n].ino = (ino_t)de->d_ino;
			ents[n].type = de->d_type;
			if (!(ents[n].name = strdup(de->d_name))) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				goto out;
			}
			n++;
		}
	}
	if (n > 1)   /* ents is NULL for an empty directory */
		qsort(ents, n, sizeof *ents, verify_dirent_cmp);
	for (size_t i = 0; i < n && rc == TS_OK; i++) {
		struct stat st;
		size_t need = plen + strlen(ents[i].name) + 1;
		/* One buffer for every child's path: verify_entry is done with
		 * it before the next. */
		if (need > childcap) {
			char *nc = realloc(child, need * 2);
			if (!nc) {
				rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
				break;
			}
			child = nc;
			childcap = need * 2;
		}
		if (plen) {
			memcpy(child, rel, plen - 1);
			child[plen - 1] = '/';
		}
		strcpy(child + plen, ents[i].name);
		if (verify_stat(v, fd, &ents[i], dev, &st) < 0) {
			/* Gone since readdir: the missing pass reports it. */
			if (errno != ENOENT)
				verify_report(v, child, ts_manifest_find(&v->m, child), NULL,
				              TS_VERIFY_UNREADABLE, "unreadable: cannot stat: %s",
				              strerror(errno));
			continue;
		}
		rc = verify_entry(v, fd, ents[i].name, child, &st, e);
	}
out:
	free(child);
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
	return rc;
}

/* Is path's parent directory one that the walk listed?  When it is not, the
 * parent itself was reported (missing, wrong type, unreadable). */
static bool verify_parent_listed(const verify_ctx *v, const char *path)
{
	const char *slash = strrchr(path, '/');
	const ts_manifest_entry *pe;
	char *parent;

	if (!strcmp(path, "."))
		return true;
	parent = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (!parent)
		return true;
	pe = ts_manifest_find(&v->m, parent);
	free(parent);
	return !pe || v->state[pe - v->m.entries] == VERIFY_LISTED;
}

/* Does readdir give stat's inode numbers on the filesystem of fd?  True of
 * the local filesystems a store is made on; not of overlayfs, whose d_ino
 * may be another layer's, nor of network filesystems. */
static bool verify_dino_is_ino(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return false;
	switch ((unsigned long)sf.f_type) {
	case EXT4_SUPER_MAGIC:   /* also ext2 and ext3 */
	case XFS_SUPER_MAGIC:
	case BTRFS_SUPER_MAGIC:
	case TMPFS_MAGIC:
		return true;
	default:
		return false;
	}
}

static char *verify_snap_path(ts_store *s, const char *name, const char *leaf)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s/%s", s->root, name, leaf) < 0 ? NULL : p;
}

ts_verify_run *ts_verify_run_new(bool keep_damage)
{
	ts_verify_run *r = calloc(1, sizeof *r);

	if (r)
		r->keep_damage = keep_damage;
	return r;
}

void ts_verify_run_free(ts_verify_run *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ndmg; i++) {
		free(r->dmg[i].snap);
		free(r->dmg[i].me.path);
	}
	free(r->dmg);
	ts_verify_inodes_free(&r->inodes);
	free(r);
}

void ts_verify_run_totals(const ts_verify_run *r, ts_verify_totals *out)
{
	*out = r->tot;
}

ts_err_code ts_verify_snapshot(ts_store *s, const char *name, ts_verify_problem_fn problem,
                               ts_verify_progress_fn progress, void *arg,
                               size_t *nproblems, size_t *npending, ts_err *e)
{
	ts_verify_run *r = ts_verify_run_new(false);
	ts_err_code rc;

	if (!r) {
		if (nproblems)
			*nproblems = 0;
		if (npending)
			*npending = 0;
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	}
	rc = ts_verify_run_snapshot(r, s, name, problem, progress, arg, nproblems, npending, e);
	ts_verify_run_free(r);
	return rc;
}

ts_err_code ts_verify_run_snapshot(ts_verify_run *r, ts_store *s, const char *name,
                                   ts_verify_problem_fn problem, ts_verify_progress_fn progress,
                                   void *arg, size_t *nproblems, size_t *npending, ts_err *e)
{
	ts_err_code rc = TS_OK;
	verify_ctx v = { .run = r, .snap = name, .problem = problem, .progress = progress,
	                 .arg = arg };
	char *mpath = NULL, *tpath = NULL;
	int treefd = -1;
	struct stat st;

	ts_manifest_init(&v.m);
	/* (A snapshot lost in a restart does not exist: see store.h.) */
	if (!ts_store_exists(s, name)) {
		rc = ts_err_set(e, TS_ERR_NOTFOUND, "snapshot %s: no such snapshot", name);
		goto out;
	}
	mpath = verify_snap_path(s, name, "manifest");
	tpath = verify_snap_path(s, name, "tree");
	if (!mpath || !tpath) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = ts_manifest_read(mpath, &v.m, e);
	if (rc != TS_OK)
		goto out;
	ts_manifest_sort(&v.m);
	v.state = calloc(v.m.n ? v.m.n : 1, 1);
	v.dents = malloc(VERIFY_DENTS_BUF);
	if (!v.state || !v.dents) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < v.m.n; i++)
		if (v.m.entries[i].type == 'f') {
			v.files_total++;
			v.bytes_total += v.m.entries[i].size;
		}
	treefd = open(tpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (treefd < 0 || fstat(treefd, &st) < 0) {
		if (errno == ENOENT) {
			verify_report(&v, ".", ts_manifest_find(&v.m, "."), NULL, TS_VERIFY_MISSING,
			              "missing: the snapshot has no tree");
			goto out;
		}
		rc = ts_err_sys(e, errno, "%s", tpath);
		goto out;
	}
	v.dino_is_ino = verify_dino_is_ino(treefd);
	v.tree_dev = st.st_dev;
	/* The root is checked like any directory; verify_entry re-opens it by
	 * name relative to the snapshot directory. */
	{
		char *snapdir = verify_snap_path(s, name, ".");
		int sfd = snapdir ? open(snapdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		free(snapdir);
		if (sfd < 0) {
			rc = ts_err_sys(e, errno, "snapshot %s: cannot open", name);
			goto out;
		}
		rc = verify_entry(&v, sfd, "tree", ".", &st, e);
		close(sfd);
		if (rc != TS_OK)
			goto out;
	}
	for (size_t i = 0; i < v.m.n; i++) {
		const ts_manifest_entry *me = &v.m.entries[i];
		if (v.state[i] != VERIFY_UNSEEN || !verify_parent_listed(&v, me->path))
			continue;
		verify_report(&v, me->path, me, NULL, TS_VERIFY_MISSING,
		              "missing: %s in the manifest is not in the tree",
		              verify_type_word(me->type));
	}
out:
	if (rc == TS_OK && v.nomem)
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	if (rc == TS_OK)
		r->tot.snapshots++;
	r->tot.files += v.files_done;
	r->tot.bytes += v.bytes_done;
	r->tot.problems += v.nproblems;
	r->tot.pending += v.npending;
	r->tot.drift += v.ndrift;
	if (nproblems)
		*nproblems = v.nproblems;
	if (npending)
		*npending = v.npending;
	if (treefd >= 0)
		close(treefd);
	free(v.state);
	free(v.dents);
	ts_manifest_free(&v.m);
	free(mpath);
	free(tpath);
	return rc;
}

ts_err_code ts_verify_summary_get(ts_store *s, const char *name, ts_verify_summary *out,
                                  ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_manifest m;
	char *mpath = verify_snap_path(s, name, "manifest");
	char *tpath = verify_snap_path(s, name, "tree");
	int treefd = -1, stagefd = -1;

	memset(out, 0, sizeof *out);
	ts_manifest_init(&m);
	if (!mpath || !tpath) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = ts_manifest_read(mpath, &m, e);
	if (rc != TS_OK)
		goto out;
	/* Without the tree the sharing is unknown: report none rather than fail. */
	treefd = open(tpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* The daemon's stage links the files of the snapshot it was made from
	 * (stage.h): a link there is the daemon's work ahead, not a snapshot
	 * sharing the file, so it does not count. */
	stagefd = ts_beneath_open(s->dirfd, TS_STORE_STAGE_TREE, O_RDONLY | O_DIRECTORY, 0);
	ts_beneath_cache c = TS_BENEATH_CACHE_INIT, sc = TS_BENEATH_CACHE_INIT;
	for (size_t i = 0; i < m.n; i++) {
		const ts_manifest_entry *me = &m.entries[i];
		struct stat st, sst;
		out->size += me->size;
		if (me->type != 'f')
			continue;
		out->files++;
		/* By its directory beneath the tree, never through a link. */
		const char *leaf, *sleaf;
		int pfd = treefd < 0 ? -1 : ts_beneath_cache_parent(&c, treefd, me->path, &leaf);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		nlink_t others = st.st_nlink - 1;
		int spfd = others && stagefd >= 0 ? ts_beneath_cache_parent(&sc, stagefd, me->path, &sleaf) : -1;
		if (spfd >= 0 && fstatat(spfd, sleaf, &sst, AT_SYMLINK_NOFOLLOW) == 0 &&
		    sst.st_ino == st.st_ino && sst.st_dev == st.st_dev)
			others--;
		if (others > 0)
			out->shared_bytes += me->size;
	}
	ts_beneath_cache_drop(&c);
	ts_beneath_cache_drop(&sc);
out:
	if (treefd >= 0)
		close(treefd);
	if (stagefd >= 0)
		close(stagefd);
	ts_manifest_free(&m);
	free(mpath);
	free(tpath);
	return rc;
}
