/* verify_repair.c - rewrite damaged store inodes in place from a copy whose
 * content hashes to the manifest's SHA-256 (verify.h: ts_verify_repair).
 *
 * Where the bytes come from (doc/contract.md section 6a): the live file is
 * reached from ENV's descriptor one component at a time (beneath.h), never
 * through a link, and read through the one descriptor whose stat showed
 * the inode and ctime the manifest recorded; another stored copy is reached
 * the same way from the store's descriptor.  Either is copied into an
 * unnamed file of root's in the store (O_TMPFILE, 0600: nothing to clean up
 * after a crash) and hashed as it is copied; the damaged inode is written
 * from that copy only when its hash is the manifest's, so what ENV's owner
 * does to the live file meanwhile can only make the repair refuse. */
#include "store/verify_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/copy.h"
#include "store/manifest_stat.h"

#define REPAIR_BUF (1u << 20)

/* A stored copy that may serve: its manifest gives the SHA-256 wanted. */
typedef struct repair_cand {
	unsigned char sha256[32];
	char *snap, *path;         /* owned */
} repair_cand;

typedef struct repair_ctx {
	ts_verify_run *r;
	ts_store *s;
	int envfd;
	ts_verify_repair_fn fn;
	ts_verify_problem_fn problem;
	void *arg;
	bool scanned;              /* cand holds every candidate */
	repair_cand *cand;         /* sorted by sha256 */
	size_t ncand;
	unsigned char *buf;        /* REPAIR_BUF bytes */
	size_t repaired, left;
} repair_ctx;

/* "NAME/tree/PATH" (or "NAME/tree" for "."): an entry below the store. */
static char *repair_rel(const char *snap, const char *path)
{
	char *p = NULL;

	if (asprintf(&p, "%s/tree%s%s", snap, strcmp(path, ".") ? "/" : "",
	             strcmp(path, ".") ? path : "") < 0)
		p = NULL;
	return p;
}

static int repair_cand_cmp(const void *a, const void *b)
{
	return memcmp(((const repair_cand *)a)->sha256, ((const repair_cand *)b)->sha256, 32);
}

static int repair_sha_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Collect, once, every regular file of every snapshot whose manifest gives
 * the SHA-256 of one of the damaged files that needs new content. */
static ts_err_code repair_scan(repair_ctx *c, ts_err *e)
{
	ts_err_code rc = TS_OK;
	ts_verify_run *r = c->r;
	unsigned char *want = NULL;
	size_t nwant = 0, capc = 0, nsnap = 0;
	ts_store_snap *v = NULL;

	c->scanned = true;
	want = malloc((r->ndmg ? r->ndmg : 1) * 32);
	if (!want)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->ndmg; i++)
		if (r->dmg[i].in_manifest && r->dmg[i].me.type == 'f' && !r->dmg[i].me.pending)
			memcpy(want + 32 * nwant++, r->dmg[i].me.sha256, 32);
	qsort(want, nwant, 32, repair_sha_cmp);
	rc = ts_store_list(c->s, &v, &nsnap, e);
	for (size_t i = 0; rc == TS_OK && i < nsnap; i++) {
		ts_manifest m;
		ts_err merr;
		char *mrel = NULL;

		ts_manifest_init(&m);
		if (asprintf(&mrel, "%s/manifest", v[i].name) < 0) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			break;
		}
		/* A snapshot whose manifest cannot be read offers nothing. */
		ts_err_clear(&merr);
		if (ts_manifest_read_at(c->s->dirfd, mrel, &m, &merr) == TS_OK) {
			for (size_t j = 0; rc == TS_OK && j < m.n; j++) {
				const ts_manifest_entry *me = &m.entries[j];
				repair_cand *k;
				if (me->type != 'f' || me->pending ||
				    !bsearch(me->sha256, want, nwant, 32, repair_sha_cmp))
					continue;
				if (c->ncand == capc) {
					size_t cap = capc ? capc * 2 : 16;
					repair_cand *nv = realloc(c->cand, cap * sizeof *nv);
					if (!nv) {
						rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
						break;
					}
					c->cand = nv;
					capc = cap;
				}
				k = &c->cand[c->ncand];
				memcpy(k->sha256, me->sha256, 32);
				k->snap = strdup(v[i].name);
				k->path = strdup(me->path);
				if (!k->snap || !k->path) {
					free(k->snap);
					free(k->path);
					rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
					break;
				}
				c->ncand++;
			}
		}
		ts_manifest_free(&m);
		free(mrel);
	}
	/* Stable enough: candidates of one hash keep no particular order. */
	if (c->ncand > 1)
		qsort(c->cand, c->ncand, sizeof *c->cand, repair_cand_cmp);
	ts_store_list_free(v, nsnap);
	free(want);
	return rc;
}

/* Copy in (from its start) into tmp (emptied first), hashing what passes.
 * *size: the bytes copied. */
static ts_err_code repair_copy_hash(repair_ctx *c, int in, int tmp, unsigned char sha[32],
                                    uint64_t *size, ts_err *e)
{
	ts_err_code rc = TS_OK;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	*size = 0;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (ftruncate(tmp, 0) < 0 || lseek(tmp, 0, SEEK_SET) < 0) {
		rc = ts_err_sys(e, errno, "%s: cannot reset the repair copy", c->s->root);
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, c->buf, REPAIR_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ts_err_sys(e, errno, "read failed");
			goto out;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(md, c->buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(tmp, c->buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = ts_err_sys(e, errno, "%s: cannot write the repair copy", c->s->root);
				goto out;
			}
			off += w;
		}
		*size += (uint64_t)n;
	}
	EVP_DigestFinal_ex(md, sha, NULL);
out:
	EVP_MD_CTX_free(md);
	return rc;
}

/* Copy ENV/PATH into tmp when it is still the file the snapshot copied and
 * its bytes hash to the manifest's.  False with *why when it is not. */
static bool repair_from_env(repair_ctx *c, const verify_damage *d, int tmp, const char **why)
{
	const ts_manifest_entry *me = &d->me;
	unsigned char sha[32];
	uint64_t got = 0;
	struct stat st;
	bool ok = false;
	ts_err herr;
	int fd = -1;

	*why = "live file changed since the snapshot";
	if (c->envfd < 0 || me->src_ino == 0) {
		/* The database, or an entry made before sources were recorded. */
		*why = "the environment file it was copied from is not recorded";
		goto out;
	}
	/* O_NONBLOCK: a FIFO put in its place must not hang the repair; the
	 * fstat below refuses anything but the very regular file recorded. */
	fd = ts_beneath_open(c->envfd, me->path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
			*why = "live file gone since the snapshot";
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_ino != me->src_ino ||
	    st.st_ctim.tv_sec != me->src_ctime.tv_sec || st.st_ctim.tv_nsec != me->src_ctime.tv_nsec ||
	    (uint64_t)st.st_size != me->size)
		goto out;
	ts_err_clear(&herr);
	if (repair_copy_hash(c, fd, tmp, sha, &got, &herr) != TS_OK) {
		*why = "live file unreadable";
		goto out;
	}
	ok = got == me->size && !memcmp(sha, me->sha256, 32);
out:
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Copy into tmp another stored copy (not the damaged inode) whose manifest
 * gives the same SHA-256 and whose bytes hash to it now.  *from: the
 * candidate used. */
static bool repair_from_copy(repair_ctx *c, const verify_damage *d, int tmp,
                             const repair_cand **from)
{
	repair_cand key;
	const repair_cand *k;

	memcpy(key.sha256, d->me.sha256, 32);
	k = c->ncand ? bsearch(&key, c->cand, c->ncand, sizeof *c->cand, repair_cand_cmp) : NULL;
	if (!k)
		return false;
	while (k > c->cand && !memcmp(k[-1].sha256, key.sha256, 32))
		k--;
	for (; k < c->cand + c->ncand && !memcmp(k->sha256, key.sha256, 32); k++) {
		char *rel = repair_rel(k->snap, k->path);
		int fd = rel ? ts_beneath_open(c->s->dirfd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK |
		                               O_CLOEXEC, 0) : -1;
		unsigned char sha[32];
		uint64_t got = 0;
		struct stat st;
		bool ok = false;
		ts_err herr;

		free(rel);
		ts_err_clear(&herr);
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_dev != d->dev || st.st_ino != d->ino) && (uint64_t)st.st_size == d->me.size &&
		    repair_copy_hash(c, fd, tmp, sha, &got, &herr) == TS_OK)
			ok = got == d->me.size && !memcmp(sha, d->me.sha256, 32);
		if (fd >= 0)
			close(fd);
		if (ok) {
			*from = k;
			return true;
		}
	}
	return false;
}

/* Give the open entry fd (or, for a symlink, pfd/leaf) the owner, mode and
 * mtime of me, as far as they differ from st. */
static ts_err_code repair_meta(int fd, int pfd, const char *leaf, const ts_manifest_entry *me,
                               const struct stat *st, bool content_written, ts_err *e)
{
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT }, me->mtime };
	bool link = me->type == 'l';

	if (st->st_uid != me->uid || st->st_gid != me->gid || content_written) {
		if ((link ? fchownat(pfd, leaf, me->uid, me->gid, AT_SYMLINK_NOFOLLOW)
		          : fchown(fd, me->uid, me->gid)) < 0)
			return ts_err_sys(e, errno, "cannot set the owner");
	}
	/* After chown, which clears set-id bits; a symlink has no mode. */
	if (!link && fchmod(fd, me->mode & 07777) < 0)
		return ts_err_sys(e, errno, "cannot set the mode");
	if ((link ? utimensat(pfd, leaf, times, AT_SYMLINK_NOFOLLOW) : futimens(fd, times)) < 0)
		return ts_err_sys(e, errno, "cannot set the mtime");
	return TS_OK;
}

/* Repair the inode of d (and so of every record sharing it).  Fills the
 * note; TS_OK also when it could not repair (note says why), an error
 * only for out of memory. */
static ts_err_code repair_inode(repair_ctx *c, const verify_damage *d, ts_verify_repair_note *n,
                                char *why, size_t whysize, ts_err *e)
{
	ts_err_code rc = TS_OK;
	const ts_manifest_entry *me = &d->me;
	char *rel = repair_rel(d->snap, me->path);
	const char *leaf = NULL, *live_why = NULL;
	const repair_cand *from = NULL;
	bool content = me->type == 'f' && !d->content_ok;
	int fd = -1, pfd = -1, tmp = -1;
	struct stat st;
	uint64_t copied = 0;
	ts_err werr;

	n->how = TS_VERIFY_NOT_REPAIRED;
	n->why = why;
	ts_err_clear(&werr);
	if (!rel) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (content && me->pending) {
		snprintf(why, whysize, "no hash in the manifest (not sealed)");
		goto out;
	}
	if (me->type == 'l') {
		pfd = ts_beneath_parent(c->s->dirfd, rel, &leaf);
		if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
			goto gone;
	} else {
		/* Written only when the content is rewritten: owner, mode and
		 * times are set through any descriptor. */
		int how = me->type == 'd' ? O_RDONLY | O_DIRECTORY :
		          (content ? O_WRONLY : O_RDONLY) | O_NOCTTY | O_NONBLOCK;
		fd = ts_beneath_open(c->s->dirfd, rel, how | O_CLOEXEC, 0);
		if (fd < 0 || fstat(fd, &st) < 0)
			goto gone;
	}
	if (st.st_dev != d->dev || st.st_ino != d->ino ||
	    ts_manifest_type_of(st.st_mode) != me->type) {
		snprintf(why, whysize, "changed since it was checked");
		goto out;
	}
	if (content) {
		tmp = openat(c->s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (tmp < 0) {
			snprintf(why, whysize, "cannot make a temporary file in the store: %s",
			         strerror(errno));
			goto out;
		}
		if (repair_from_env(c, d, tmp, &live_why)) {
			n->how = TS_VERIFY_REPAIRED_ENV;
		} else {
			if (!c->scanned && (rc = repair_scan(c, e)) != TS_OK)
				goto out;
			if (!repair_from_copy(c, d, tmp, &from)) {
				snprintf(why, whysize, "no good copy (%s)", live_why);
				goto out;
			}
			n->how = TS_VERIFY_REPAIRED_COPY;
			n->from_snap = from->snap;
			n->from_path = from->path;
		}
		/* In place: the same inode, so every snapshot linking it heals. */
		if (lseek(tmp, 0, SEEK_SET) < 0 ||
		    ts_copy_fd(tmp, fd, &copied, c->s->root, rel, &werr) != TS_OK ||
		    ftruncate(fd, (off_t)me->size) < 0) {
			n->how = TS_VERIFY_NOT_REPAIRED;
			snprintf(why, whysize, "cannot rewrite it: %.4000s",
			         werr.msg[0] ? werr.msg : strerror(errno));
			goto out;
		}
	} else {
		n->how = TS_VERIFY_REPAIRED_META;
	}
	ts_err_clear(&werr);
	if (repair_meta(fd, pfd, leaf, me, &st, content, &werr) == TS_OK && fd >= 0 && fsync(fd) < 0)
		ts_err_sys(&werr, errno, "cannot sync it");
	if (werr.code != TS_OK) {
		n->how = TS_VERIFY_NOT_REPAIRED;
		snprintf(why, whysize, "%s", werr.msg);
	}
	goto out;
gone:
	snprintf(why, whysize, "gone since it was checked (%s)", strerror(errno));
out:
	if (tmp >= 0)
		close(tmp);
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		ts_beneath_parent_close(c->s->dirfd, pfd);
	free(rel);
	return rc;
}

/* Check d's entry again after the repair; report what still differs.
 * Returns the number of problems found. */
static size_t repair_recheck(repair_ctx *c, const verify_damage *d)
{
	const ts_manifest_entry *me = &d->me;
	char *rel = repair_rel(d->snap, me->path);
	const char *leaf, *what = NULL;
	unsigned char sha[32];
	const unsigned char *known;
	uint64_t got = 0;
	struct stat st;
	unsigned diff;
	size_t found = 0;
	int pfd = rel ? ts_beneath_parent(c->s->dirfd, rel, &leaf) : -1;
	ts_err herr;

	if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		what = "still differs after the repair: gone";
		found = 1;
		goto out;
	}
	diff = ts_manifest_entry_diff(me, &st);
	if (diff) {
		what = diff & TS_MDIFF_TYPE ? "still differs after the repair: type" :
		       diff & TS_MDIFF_SIZE ? "still differs after the repair: size" :
		       diff & TS_MDIFF_MODE ? "still differs after the repair: mode" :
		       diff & TS_MDIFF_OWNER ? "still differs after the repair: owner" :
		       "still differs after the repair: mtime";
		found = 1;
		goto out;
	}
	if (me->type != 'f' || me->pending)
		goto out;
	/* Once per inode here too: the records that share it follow. */
	ts_err_clear(&herr);
	known = ts_verify_inodes_get(&c->r->inodes, &st);
	if (known) {
		memcpy(sha, known, 32);
		got = (uint64_t)st.st_size;
	} else if (ts_copy_hash_file(pfd, leaf, false, sha, &got, &herr) != TS_OK) {
		what = "still differs after the repair: unreadable";
		found = 1;
		goto out;
	} else {
		c->r->tot.files_read++;
		c->r->tot.bytes_read += got;
		if (got == (uint64_t)st.st_size)
			(void)ts_verify_inodes_put(&c->r->inodes, &st, sha, NULL);
	}
	if (got != me->size || memcmp(sha, me->sha256, 32)) {
		what = "still differs after the repair: content";
		found = 1;
	}
out:
	if (found && c->problem) {
		ts_verify_problem p = { .path = me->path, .kind = TS_VERIFY_CONTENT, .what = what };
		c->problem(c->arg, d->snap, &p);
	}
	if (pfd >= 0)
		ts_beneath_parent_close(c->s->dirfd, pfd);
	free(rel);
	return found;
}

/* Why an entry with these problems is not repaired. */
static const char *repair_why_not(const verify_damage *d)
{
	if (d->kinds & VERIFY_BIT(TS_VERIFY_MISSING))
		return "missing entries are not restored";
	if (d->kinds & VERIFY_BIT(TS_VERIFY_EXTRA) || !d->in_manifest)
		return "extra entries are not removed";
	if (d->kinds & VERIFY_BIT(TS_VERIFY_TYPE))
		return "an entry of another type is not replaced";
	if (d->kinds & VERIFY_BIT(TS_VERIFY_TARGET))
		return "symlink targets are not rewritten";
	return "it could not be read";
}

/* Records by inode (records sharing one are neighbours), in report order
 * within it. */
static int repair_order_cmp(const void *a, const void *b, void *run)
{
	const ts_verify_run *r = run;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	const verify_damage *x = &r->dmg[i], *y = &r->dmg[j];

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return i < j ? -1 : i > j;
}

/* A group: order[start, start + len). */
typedef struct repair_span {
	size_t start, len;
} repair_span;

/* Groups by their first record's place in the report. */
static int repair_group_cmp(const void *a, const void *b, void *order)
{
	const size_t *o = order;
	size_t i = o[((const repair_span *)a)->start], j = o[((const repair_span *)b)->start];

	return i < j ? -1 : i > j;
}

static bool repair_same_inode(const verify_damage *x, const verify_damage *y)
{
	return x->have_stat && y->have_stat && x->dev == y->dev && x->ino == y->ino;
}

static bool repair_possible(const verify_damage *d)
{
	return d->in_manifest && d->have_stat && !(d->kinds & ~VERIFY_REPAIRABLE);
}

/* One group of records sharing an inode (one record when not shared). */
static ts_err_code repair_group(repair_ctx *c, const size_t *idx, size_t n, ts_err *e)
{
	const verify_damage *lead = &c->r->dmg[idx[0]];
	ts_verify_repair_note note = { .snap = lead->snap, .path = lead->me.path, .shared = n };
	char why[TS_ERR_MSG_MAX];
	ts_err_code rc = TS_OK;
	size_t found = 0;

	if (!repair_possible(lead)) {
		note.how = TS_VERIFY_NOT_REPAIRED;
		note.why = repair_why_not(lead);
	} else {
		rc = repair_inode(c, lead, &note, why, sizeof why, e);
		if (rc != TS_OK)
			return rc;
	}
	if (c->fn)
		c->fn(c->arg, &note);
	for (size_t k = 0; k < n; k++) {
		const verify_damage *d = &c->r->dmg[idx[k]];
		if (note.how == TS_VERIFY_NOT_REPAIRED) {
			c->left += d->nproblems;
			continue;
		}
		found = repair_recheck(c, d);
		if (found)
			c->left += found;
		else
			c->repaired += d->nproblems;
	}
	return rc;
}

ts_err_code ts_verify_repair(ts_verify_run *r, ts_store *s, int envfd, int lock_timeout_s,
                             ts_verify_repair_fn fn, ts_verify_problem_fn problem, void *arg,
                             size_t *nrepaired, size_t *nleft, ts_err *e)
{
	repair_ctx c = { .r = r, .s = s, .envfd = envfd, .fn = fn, .problem = problem, .arg = arg };
	ts_err_code rc = TS_OK;
	size_t *order = NULL, ngroups = 0;
	repair_span *groups = NULL;
	bool locked = false;

	if (!r->ndmg)
		goto out;
	order = malloc(r->ndmg * sizeof *order);
	groups = malloc(r->ndmg * sizeof *groups);
	c.buf = malloc(REPAIR_BUF);
	if (!order || !groups || !c.buf) {
		rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* No writer meanwhile: none shares a damaged inode into a new
	 * snapshot, or removes the copy a repair reads. */
	rc = ts_store_lock(s, lock_timeout_s, e);
	if (rc != TS_OK)
		goto out;
	locked = true;
	for (size_t i = 0; i < r->ndmg; i++)
		order[i] = i;
	qsort_r(order, r->ndmg, sizeof *order, repair_order_cmp, r);
	/* Groups of one inode each, repaired in the order they were reported. */
	for (size_t i = 0, j; i < r->ndmg; i = j) {
		const verify_damage *lead = &r->dmg[order[i]];
		for (j = i + 1; j < r->ndmg && repair_possible(lead) &&
		     repair_possible(&r->dmg[order[j]]) && repair_same_inode(lead, &r->dmg[order[j]]); j++)
			;
		groups[ngroups].start = i;
		groups[ngroups++].len = j - i;
	}
	qsort_r(groups, ngroups, sizeof *groups, repair_group_cmp, order);
	for (size_t g = 0; rc == TS_OK && g < ngroups; g++)
		rc = repair_group(&c, order + groups[g].start, groups[g].len, e);
out:
	if (locked)
		ts_store_unlock(s);
	for (size_t i = 0; i < c.ncand; i++) {
		free(c.cand[i].snap);
		free(c.cand[i].path);
	}
	free(c.cand);
	free(c.buf);
	free(groups);
	free(order);
	if (nrepaired)
		*nrepaired = c.repaired;
	if (nleft)
		*nleft = c.left;
	return rc;
}
