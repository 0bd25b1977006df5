/* restore_journal.c - what an interrupted restore left, settled by the next
 * restore of the same environment (restore_int.h; doc/contract.md
 * section 6).
 *
 * A restore killed during the copy leaves ENV.restore-tmp-<pid>; one killed
 * right after the exchange leaves the old tree under that name.  Names
 * alone cannot tell which (ENV's owner may rename in ENV's parent), so the
 * journal records the inodes: the copy's top and ENV's top before the
 * exchange.  It lives in a directory of root's, RESTORE_JOURNAL_DIR (0700,
 * files 0600, each written to a new file and renamed over the old one),
 * never beside ENV, whose parent ENV's owner may control.  One file per
 * ENV, named by its resolved path, and beside it NAME.lock, which the
 * restore holds (flock) from before it looks at the journal until the
 * journal is gone, and then removes: one restore of ENV at a time, and a
 * killed one's lock goes with it.  Restores by another account than root keep no journal
 * (they could not write there).
 *
 * A journal is written to .new-PID-START first; one a killed restore left
 * there goes with the next restore of any ENV (restore_journal_sweep).
 *
 * File: lines "tracsnap-restore 1", "pid PID STARTTIME", "env ESCAPED",
 * "tmp ESCAPED", "copy DEV INO", "old DEV INO", "load 0|1", "phase
 * copying|swapped".  STARTTIME (from /proc/PID/stat) tells the restorer
 * from a later process with its pid.
 */
#include "restore/restore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/beneath.h"
#include "base/trust.h"

#define RESTORE_JOURNAL_PARENT "/var/lib/tracsnap"
#define RESTORE_JOURNAL_DIR RESTORE_JOURNAL_PARENT "/restore"

typedef struct restore_jfile {
	long pid;
	unsigned long long start;
	char *env, *tmp;
	unsigned long long copy_dev, copy_ino, old_dev, old_ino;
	int load, phase;
	/* The external database's staging, or ext_dir NULL. */
	char *ext_dir, *ext_base, *ext_tmp;
	unsigned ext_uid;
	unsigned long long et_dev, et_ino, ec_dev, ec_ino;
} restore_jfile;

/* The start time of process pid (field 22 of /proc/PID/stat), 0 when it
 * does not exist. */
static unsigned long long restore_starttime(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* After ")": state is field 3, starttime field 22. */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		start = strtoull(p + 1, NULL, 10);
	return start;
}

/* The journal's file name for env (out: NAME_MAX + 1 bytes): the path with
 * bytes outside [A-Za-z0-9._-] ('/' and '%' among them) as %XX, or
 * "sha256-HEX" of the path when that is too long for a name. */
static void restore_journal_name(const char *env, char *out)
{
	char buf[3 * PATH_MAX + 1];
	size_t o = 0;
	unsigned char d[32];
	unsigned int dl;

	for (const unsigned char *p = (const unsigned char *)env; *p && o + 4 < sizeof buf; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '_' || *p == '-')
			buf[o++] = (char)*p;
		else
			o += (size_t)snprintf(buf + o, sizeof buf - o, "%%%02X", *p);
	}
	buf[o] = '\0';
	if (o > 0 && o <= NAME_MAX - 5) {   /* room for ".lock" */
		memcpy(out, buf, o + 1);
		return;
	}
	EVP_Digest(env, strlen(env), d, &dl, EVP_sha256(), NULL);
	o = (size_t)snprintf(out, NAME_MAX + 1, "sha256-");
	for (unsigned i = 0; i < 32; i++)
		o += (size_t)snprintf(out + o, NAME_MAX + 1 - o, "%02x", d[i]);
}

static void restore_jfile_free(restore_jfile *f)
{
	free(f->env);
	free(f->tmp);
	free(f->ext_dir);
	free(f->ext_base);
	free(f->ext_tmp);
}

/* Read and parse the journal name in dirfd: 1 read, 0 none (or not a
 * journal: it is then ignored and replaced), -1 error. */
static int restore_jfile_read(int dirfd, const char *name, restore_jfile *f)
{
	char buf[3 * PATH_MAX + 512], *save = NULL, *line, word[16];
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), got = 0;

	memset(f, 0, sizeof *f);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *arg = strchr(line, ' ');
		if (!arg)
			continue;
		arg++;
		if (!strncmp(line, "pid ", 4))
			got |= (sscanf(arg, "%ld %llu", &f->pid, &f->start) == 2) << 0;
		else if (!strncmp(line, "env ", 4) && !f->env)
			got |= ((f->env = ts_manifest_unescape(arg)) != NULL) << 1;
		else if (!strncmp(line, "tmp ", 4) && !f->tmp)
			got |= ((f->tmp = ts_manifest_unescape(arg)) != NULL) << 2;
		else if (!strncmp(line, "copy ", 5))
			got |= (sscanf(arg, "%llu %llu", &f->copy_dev, &f->copy_ino) == 2) << 3;
		else if (!strncmp(line, "old ", 4))
			got |= (sscanf(arg, "%llu %llu", &f->old_dev, &f->old_ino) == 2) << 4;
		else if (!strncmp(line, "load ", 5))
			got |= (sscanf(arg, "%d", &f->load) == 1) << 5;
		else if (!strncmp(line, "ext ", 4) && !f->ext_dir && sscanf(arg, "%u", &f->ext_uid) == 1 &&
		         strchr(arg, ' '))
			f->ext_dir = ts_manifest_unescape(strchr(arg, ' ') + 1);
		else if (!strncmp(line, "extbase ", 8) && !f->ext_base)
			f->ext_base = ts_manifest_unescape(arg);
		else if (!strncmp(line, "exttmp ", 7) && !f->ext_tmp && strchr(arg, ' ') &&
		         sscanf(strchr(arg, ' ') + 1, "%llu %llu", &f->et_dev, &f->et_ino) == 2) {
			*strchr((char *)arg, ' ') = '\0';
			f->ext_tmp = ts_manifest_unescape(arg);
		} else if (!strncmp(line, "extcopy ", 8))
			(void)sscanf(arg, "%llu %llu", &f->ec_dev, &f->ec_ino);
		else if (!strncmp(line, "phase ", 6) && sscanf(arg, "%15s", word) == 1)
			got |= ((f->phase = !strcmp(word, "swapped") ? RESTORE_SWAPPED : RESTORE_COPYING)) ? 1 << 6 : 0;
	}
	if (f->ext_dir && (f->ext_dir[0] != '/' || !f->ext_base || !f->ext_tmp || strchr(f->ext_base, '/') ||
	                   strchr(f->ext_tmp, '/') || !*f->ext_base || !*f->ext_tmp)) {
		free(f->ext_dir);
		f->ext_dir = NULL;   /* not trusted with a path: left alone */
	}
	if (got != 0x7f || strchr(f->tmp, '/') || !*f->tmp) {
		restore_jfile_free(f);
		memset(f, 0, sizeof *f);
		return 0;
	}
	return 1;
}

static bool restore_same(const struct stat *st, unsigned long long dev, unsigned long long ino)
{
	return (unsigned long long)st->st_dev == dev && (unsigned long long)st->st_ino == ino;
}

/* Open name in parentfd as a directory, and only if it is dev:ino. */
static int restore_open_if(int parentfd, const char *name, unsigned long long dev, unsigned long long ino)
{
	struct stat st;
	int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0 && (fstat(fd, &st) < 0 || !restore_same(&st, dev, ino))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The external database's part of settling f: its staging directory
 * removed, and with rollback the live name given back the old file when
 * it holds the staged one.  Through its directory opened as restore opened
 * it (trust.h, the database file's owner). */
static void restore_settle_ext(const restore_jfile *f, bool rollback)
{
	int dfd = -1, tfd = -1, oldfd = -1;
	struct stat st;
	ts_err ignore;

	if (!f->ext_dir || ts_trust_open_path(f->ext_dir, (uid_t)f->ext_uid, "restore", &dfd, &ignore) != TS_OK)
		return;
	tfd = restore_open_if(dfd, f->ext_tmp, f->et_dev, f->et_ino);
	if (tfd >= 0 && rollback && fstatat(dfd, f->ext_base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    restore_same(&st, f->ec_dev, f->ec_ino)) {
		oldfd = openat(tfd, f->ext_base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (oldfd >= 0)
			(void)restore_exchange(dfd, f->ext_base, tfd, f->ext_base, oldfd, f->ext_dir, &ignore);
		else if (errno == ENOENT)   /* there was none: the staged one moved in */
			(void)renameat2(dfd, f->ext_base, tfd, f->ext_base, RENAME_NOREPLACE);
	}
	if (tfd >= 0)
		restore_remove_dir(dfd, f->ext_tmp, tfd);
	if (oldfd >= 0)
		close(oldfd);
	if (tfd >= 0)
		close(tfd);
	close(dfd);
}

/* Settle what f's restore left in parentfd (ENV's name envname). */
static void restore_settle(const restore_jfile *f, const char *env, int parentfd, const char *envname,
                           ts_restore_out *out)
{
	struct stat est;
	int copyfd, oldfd;
	bool env_is_copy = fstatat(parentfd, envname, &est, AT_SYMLINK_NOFOLLOW) == 0 &&
	                   restore_same(&est, f->copy_dev, f->copy_ino);
	ts_err ignore;

	if (env_is_copy && (f->phase == RESTORE_SWAPPED || !f->load)) {
		/* The exchange was made, and it was the whole restore: finish it. */
		oldfd = restore_open_if(parentfd, f->tmp, f->old_dev, f->old_ino);
		if (oldfd >= 0) {
			restore_remove_dir(parentfd, f->tmp, oldfd);
			close(oldfd);
		}
		restore_settle_ext(f, false);
		snprintf(out->recovered, sizeof out->recovered, "finished an interrupted restore of %s: removed "
		         "the previous tree (%s)", env, f->tmp);
		return;
	}
	if (env_is_copy) {
		/* Exchanged, but the database load may not have committed: the
		 * files go back to what matches the database as it was. */
		oldfd = restore_open_if(parentfd, f->tmp, f->old_dev, f->old_ino);
		copyfd = restore_open_if(parentfd, envname, f->copy_dev, f->copy_ino);
		if (oldfd >= 0 && copyfd >= 0 &&
		    restore_exchange(parentfd, envname, parentfd, f->tmp, oldfd, env, &ignore) == TS_OK)
			restore_remove_dir(parentfd, f->tmp, copyfd);
		if (oldfd >= 0)
			close(oldfd);
		if (copyfd >= 0)
			close(copyfd);
		restore_settle_ext(f, true);
		snprintf(out->recovered, sizeof out->recovered, "rolled back an interrupted restore of %s: "
		         "put the previous tree back (the restore had not finished), removed %s",
		         env, f->tmp);
		return;
	}
	copyfd = restore_open_if(parentfd, f->tmp, f->copy_dev, f->copy_ino);
	if (copyfd >= 0) {
		restore_remove_dir(parentfd, f->tmp, copyfd);
		close(copyfd);
	}
	restore_settle_ext(f, true);
	snprintf(out->recovered, sizeof out->recovered, "rolled back an interrupted restore of %s: removed %s",
	         env, f->tmp);
}

/* Lock lockname in j->dirfd (made when missing) into j->lockfd.  A lock
 * file is removed, while held, when its restore ends: one locked after that
 * is no longer at the name, and the name is tried again. */
static ts_err_code restore_journal_lock(restore_journal *j, const char *lockname, const char *env,
                                        ts_err *e)
{
	struct stat a, b;

	for (int tries = 0; tries < 8; tries++) {
		j->lockfd = openat(j->dirfd, lockname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (j->lockfd < 0)
			return ts_err_sys(e, errno, "%s/%s: cannot open", RESTORE_JOURNAL_DIR, lockname);
		if (flock(j->lockfd, LOCK_EX | LOCK_NB) < 0) {
			int err = errno;
			char pid[32] = "";
			ssize_t got;
			if (err != EWOULDBLOCK)
				return ts_err_sys(e, err, "%s/%s: cannot lock", RESTORE_JOURNAL_DIR, lockname);
			got = pread(j->lockfd, pid, sizeof pid - 1, 0);
			pid[got > 0 ? got : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			return ts_err_set(e, TS_ERR_BUSY, "%s: another restore of it is running (pid %s)", env,
			                  pid[0] ? pid : "?");
		}
		if (fstat(j->lockfd, &a) == 0 && fstatat(j->dirfd, lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			snprintf(j->lockname, sizeof j->lockname, "%s", lockname);
			return TS_OK;
		}
		close(j->lockfd);
		j->lockfd = -1;
	}
	return ts_err_set(e, TS_ERR_BUSY, "%s: another restore of it is starting", env);
}

/* A restore killed while it wrote its journal left .new-PID-START (the
 * new file, not yet renamed over the journal): remove those whose process
 * is gone.  A live restore's, of another ENV, stays. */
#define RESTORE_JOURNAL_NEW ".new-"

static void restore_journal_sweep(int dirfd)
{
	DIR *d = ts_beneath_list(dirfd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *p = de->d_name + strlen(RESTORE_JOURNAL_NEW);
		char *end;
		long pid;
		unsigned long long start = 0;

		if (strncmp(de->d_name, RESTORE_JOURNAL_NEW, strlen(RESTORE_JOURNAL_NEW)))
			continue;
		pid = strtol(p, &end, 10);
		if (end == p || pid <= 0)
			continue;
		if (*end == '-')
			start = strtoull(end + 1, &end, 10);
		if (*end)
			continue;
		unsigned long long now = restore_starttime(pid);
		if (now == 0 || (start && now != start))
			(void)unlinkat(dirfd, de->d_name, 0);
	}
	closedir(d);
}

ts_err_code restore_journal_open(restore_journal *j, const char *env, int parentfd,
                                 const char *envname, ts_restore_out *out, ts_err *e)
{
	char name[NAME_MAX + 1], lockname[NAME_MAX + 1], mypid[32], *real;
	restore_jfile f;
	ts_err_code rc = TS_OK;
	int r, n;

	memset(j, 0, sizeof *j);
	j->dirfd = j->lockfd = -1;
	if (geteuid() != 0)
		return TS_OK;
	if ((mkdir(RESTORE_JOURNAL_PARENT, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(RESTORE_JOURNAL_DIR, 0700) < 0 && errno != EEXIST))
		return ts_err_sys(e, errno, "%s: cannot create", RESTORE_JOURNAL_DIR);
	/* Resolved first, as the store's path is (trust.h): the
	 * administrator's own links (/var/lib -> /data/lib) are theirs. */
	real = realpath(RESTORE_JOURNAL_DIR, NULL);
	if (!real)
		return ts_err_sys(e, errno, "%s: cannot resolve", RESTORE_JOURNAL_DIR);
	rc = ts_trust_open_path(real, 0, "restore journal", &j->dirfd, e);
	free(real);
	if (rc != TS_OK)
		return rc;
	restore_journal_sweep(j->dirfd);
	restore_journal_name(env, name);
	snprintf(j->name, sizeof j->name, "%s", name);
	snprintf(j->env, sizeof j->env, "%s", env);
	/* One restore of ENV at a time: the lock is the kernel's, so a killed
	 * restorer's goes with it and its journal is then ours to settle.
	 * The lock file holds the holder's pid, for the message. */
	snprintf(lockname, sizeof lockname, "%.*s.lock", NAME_MAX - 5, name);
	rc = restore_journal_lock(j, lockname, env, e);
	if (rc != TS_OK)
		return rc;
	n = snprintf(mypid, sizeof mypid, "%ld\n", (long)getpid());
	if (ftruncate(j->lockfd, 0) < 0 || pwrite(j->lockfd, mypid, (size_t)n, 0) != n)
		return ts_err_sys(e, errno, "%s/%s: cannot write", RESTORE_JOURNAL_DIR, lockname);
	r = restore_jfile_read(j->dirfd, name, &f);
	if (r < 0)
		return ts_err_sys(e, errno, "%s/%s: cannot read", RESTORE_JOURNAL_DIR, name);
	if (r == 0 || strcmp(f.env, env))
		goto out;
	restore_settle(&f, env, parentfd, envname, out);
	(void)unlinkat(j->dirfd, name, 0);
out:
	if (r > 0)
		restore_jfile_free(&f);
	return rc;
}

ts_err_code restore_journal_write(restore_journal *j, int phase, const char *tmpname, int tmpfd,
                                  int envfd, bool load, ts_err *e)
{
	char tmp[64], *eenv = NULL, *etmp = NULL;
	struct stat cst, ost;
	ts_err_code rc = TS_OK;
	FILE *f = NULL;
	int fd = -1;

	if (j->dirfd < 0)
		return TS_OK;
	if (fstat(tmpfd, &cst) < 0 || fstat(envfd, &ost) < 0)
		return ts_err_sys(e, errno, "restore journal: cannot stat");
	eenv = ts_manifest_escape(j->env);
	etmp = ts_manifest_escape(tmpname);
	snprintf(tmp, sizeof tmp, RESTORE_JOURNAL_NEW "%ld-%llu", (long)getpid(), restore_starttime(getpid()));
	fd = openat(j->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (!eenv || !etmp || fd < 0 || !(f = fdopen(fd, "w"))) {
		rc = ts_err_sys(e, errno ? errno : ENOMEM, "%s: cannot write the journal", RESTORE_JOURNAL_DIR);
		goto out;
	}
	fd = -1;
	fprintf(f, "tracsnap-restore 1\npid %ld %llu\nenv %s\ntmp %s\ncopy %llu %llu\nold %llu %llu\n"
	        "load %d\nphase %s\n", (long)getpid(), restore_starttime(getpid()), eenv, etmp,
	        (unsigned long long)cst.st_dev, (unsigned long long)cst.st_ino,
	        (unsigned long long)ost.st_dev, (unsigned long long)ost.st_ino, load ? 1 : 0,
	        phase == RESTORE_SWAPPED ? "swapped" : "copying");
	if (j->ext_dir[0]) {
		char *d = ts_manifest_escape(j->ext_dir), *b = ts_manifest_escape(j->ext_base),
		     *t = ts_manifest_escape(j->ext_tmp);
		if (d && b && t)
			fprintf(f, "ext %u %s\nextbase %s\nexttmp %s %llu %llu\nextcopy %llu %llu\n",
			        (unsigned)j->ext_uid, d, b, t, (unsigned long long)j->ext_tmp_st.st_dev,
			        (unsigned long long)j->ext_tmp_st.st_ino, (unsigned long long)j->ext_copy_st.st_dev,
			        (unsigned long long)j->ext_copy_st.st_ino);
		free(d);
		free(b);
		free(t);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) < 0 || renameat(j->dirfd, tmp, j->dirfd, j->name) < 0 ||
	    fsync(j->dirfd) < 0)
		rc = ts_err_sys(e, errno, "%s: cannot write the journal", RESTORE_JOURNAL_DIR);
	else
		j->written = true;
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc != TS_OK)
		(void)unlinkat(j->dirfd, tmp, 0);
	free(eenv);
	free(etmp);
	return rc;
}

void restore_journal_set_ext(restore_journal *j, const char *dir, const char *base, const char *tmp,
                             int tmpfd, int filefd, uid_t uid)
{
	if (fstat(tmpfd, &j->ext_tmp_st) < 0 || fstat(filefd, &j->ext_copy_st) < 0)
		return;   /* not journaled: the next restore leaves it alone */
	snprintf(j->ext_dir, sizeof j->ext_dir, "%s", dir);
	snprintf(j->ext_base, sizeof j->ext_base, "%s", base);
	snprintf(j->ext_tmp, sizeof j->ext_tmp, "%s", tmp);
	j->ext_uid = uid;
}

void restore_journal_close(restore_journal *j)
{
	if (j->dirfd >= 0 && j->written) {
		(void)unlinkat(j->dirfd, j->name, 0);
		(void)fsync(j->dirfd);
	}
	if (j->lockfd >= 0 && j->lockname[0])
		(void)unlinkat(j->dirfd, j->lockname, 0);
	/* The lock last: the next restore must not find our journal. */
	if (j->lockfd >= 0)
		close(j->lockfd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	j->lockfd = j->dirfd = -1;
}
