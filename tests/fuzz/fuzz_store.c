/* fuzz_store.c - libFuzzer target for the store readers: a hostile store must
 * not crash (or hang, or lead out of the store) verify, list or restore.
 *
 * Each input describes a small store; it is built in STORE below a private
 * scratch directory (made once per process, on tmpfs when there is one; the
 * store is emptied and rebuilt for every input) and then read the way the
 * commands read it:
 *   list     ts_store_open, ts_store_list, ts_verify_summary_get and
 *            ts_store_seal_state_of of every snapshot listed;
 *   verify   for every top-level name of the store (and a few hostile names a
 *            user could type: "..", ".", "../outside", "latest"): ts_seal when
 *            the snapshot is unsealed of this boot (as cli_verify does), then
 *            ts_verify_snapshot;
 *   restore  its read-only pre-check of the snapshot side: ts_env_open and
 *            ts_env_check_supported on STORE/NAME/tree (ts_restore itself
 *            needs a live ENV and renames it, so it is not called).
 * Every problem report must be well formed (a path, a kind with a name, a
 * NUL-terminated phrase that fits).
 *
 * Input: lines; a line starting with '@' is an operation, paths are relative
 * to the store ("snap/tree/conf"), missing parent directories are made:
 *   @dir PATH [MODE]          a directory (MODE octal; owner rwx always kept)
 *   @file PATH [MODE]         a regular file; its content is every following
 *                             byte up to the next line that starts with '@'
 *   @link PATH TARGET         a symlink; TARGET "OUT" is an absolute path to a
 *                             bait file outside the store, "OUTDIR" to a bait
 *                             directory, "UP" a relative path up to the bait
 *                             file; any other target is kept only when it is
 *                             relative and has no ".." (it stays inside)
 *   @unsealed NAME            NAME/unsealed holding this boot's id
 *   @fifo PATH                a FIFO, only with TS_FUZZ_STORE_FIFO=1: a FIFO
 *                             manifest hangs ts_manifest_read (it opens the
 *                             file blocking), which would stop every run
 * Files, symlinks and FIFOs get mtime 1.000000000, so that a manifest can
 * match them.  Paths with "..", "." or empty components, absolute paths, and
 * paths through a symlink are skipped: the harness itself never follows a
 * symlink and never writes outside the scratch directory.
 *
 * Leaving the store: the scratch directory also holds OUTSIDE/ (a bait file
 * f, a bait directory d with a file g).  While the readers run, every open,
 * openat and fstatat of the engine is checked (this file defines them, over
 * glibc's; the real work is the system call): a descriptor that lands in
 * OUTSIDE, or a path whose directories lead there, is the engine following
 * a symlink out of the store.  OUTSIDE is also watched with inotify, for
 * what the hooks cannot see (glibc's own opens, e.g. opendir).  In list and
 * verify an escape aborts, so that libFuzzer shows the engine's stack,
 * unless TS_FUZZ_STORE_ESCAPE=warn (then the stack of each call site that
 * escapes is printed once, and the run goes on).  In the restore pre-check
 * escapes never abort: ts_env_open follows symlinks on purpose for a live
 * ENV (conf/trac.ini may be one); each call site is printed once and the
 * count at exit.
 * TS_FUZZ_STORE_DEBUG=1 prints what the readers found (to check a seed).
 *
 * fuzz-sources: snapshot/store/store.c snapshot/store/hold.c snapshot/store/verify.c snapshot/store/verify_inodes.c snapshot/store/linklog.c snapshot/store/linkguard.c snapshot/store/seal.c snapshot/store/seal_share.c snapshot/store/seal_dedupe.c snapshot/base/progress.c snapshot/store/manifest.c snapshot/store/manifest_read.c snapshot/store/manifest_write.c snapshot/store/manifest_stat.c snapshot/base/copy.c snapshot/env/env.c snapshot/env/dburi.c snapshot/base/log.c snapshot/base/pool.c snapshot/base/err.c snapshot/base/beneath.c snapshot/base/trust.c
 * fuzz-libs: -linih -lcrypto -lpthread
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#include <stdarg.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "env/env.h"
#include "store/seal.h"
#include "store/store.h"
#include "store/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 64
#define MAX_PATH_LEN 200
#define MAX_DEPTH 8

static char scratch[PATH_MAX];
static char store_path[PATH_MAX + 16];
static char outside_path[PATH_MAX + 16];
static int inofd = -1;
static bool allow_fifo, escape_warn, debug;
static unsigned long escapes_restore;

/* ------------------------------------------------------------ open hook */

/* While the readers run, phase names what they do; the harness's and
 * libFuzzer's own opens happen while it is NULL. */
static const char *volatile phase;

static void cleanup(void);

/* A fatal escape: remove the scratch directory (abort skips atexit), then
 * let libFuzzer report the stack and save the input. */
static void die(void)
{
	cleanup();
	abort();
}

static bool is_outside(const char *p)
{
	size_t n = strlen(outside_path);
	return outside_path[0] && !strncmp(p, outside_path, n) && (p[n] == '\0' || p[n] == '/');
}

/* An fd the engine just opened: where is it really?  When outside the store,
 * say where it was opened from (stack), and stop unless escapes only warn
 * (or it is the restore pre-check: see the header).  Each call site is
 * shown once. */
static void hook_check(int fd, const char *fn, int dirfd, const char *path, void *caller)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static void *seen[64];
	static size_t nseen;
	const char *ph = phase;
	char link[64], real[PATH_MAX];
	bool fatal, show = true;
	ssize_t n;

	if (fd < 0 || !ph)
		return;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, real, sizeof real - 1);
	if (n <= 0)
		return;
	real[n] = '\0';
	if (!is_outside(real))
		return;
	fatal = !escape_warn && strcmp(ph, "restore");
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < nseen; i++)
		show = show && seen[i] != caller;
	if (show && nseen < sizeof seen / sizeof *seen)
		seen[nseen++] = caller;
	pthread_mutex_unlock(&mu);
	if (!show && !fatal)
		return;
	fprintf(stderr, "fuzz_store: %s: the engine left the store: %s(%d, \"%s\") opened %s\n",
	        ph, fn, dirfd, path, real);
	if (fatal)
		die();   /* libFuzzer prints the stack */
	__sanitizer_print_stack_trace();
}

static int hook_open(const char *fn, int dirfd, const char *path, int flags, va_list ap,
                     void *caller)
{
	mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
	int fd = (int)syscall(SYS_openat, dirfd, path, flags | O_LARGEFILE, mode);
	int keep = errno;

	hook_check(fd, fn, dirfd, path, caller);
	errno = keep;
	return fd;
}

/* The engine's open and openat: with 64-bit off_t, glibc's headers name
 * them open64 and openat64, and so are these (ASan intercepts neither). */
#define HOOK_OPEN(name)                                                                   \
	int name(const char *path, int flags, ...);                                       \
	int name(const char *path, int flags, ...)                                        \
	{                                                                                 \
		va_list ap;                                                               \
		int fd;                                                                   \
		va_start(ap, flags);                                                      \
		fd = hook_open(#name, AT_FDCWD, path, flags, ap, __builtin_return_address(0)); \
		va_end(ap);                                                               \
		return fd;                                                                \
	}
#define HOOK_OPENAT(name)                                                                 \
	int name(int dirfd, const char *path, int flags, ...);                            \
	int name(int dirfd, const char *path, int flags, ...)                             \
	{                                                                                 \
		va_list ap;                                                               \
		int fd;                                                                   \
		va_start(ap, flags);                                                      \
		fd = hook_open(#name, dirfd, path, flags, ap, __builtin_return_address(0)); \
		va_end(ap);                                                               \
		return fd;                                                                \
	}
HOOK_OPEN(open)
HOOK_OPENAT(openat)

/* fstatat (fstatat64) does not open, but a path with directories in it is
 * resolved through any symlink among them: check where that leads (and,
 * without AT_SYMLINK_NOFOLLOW, where the last one leads). */
int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int rc = (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
	int keep = errno;
	const char *slash = phase ? strrchr(path, '/') : NULL;

	if (phase && slash && slash != path && (size_t)(slash - path) < PATH_MAX) {
		char parent[PATH_MAX];
		int fd;
		memcpy(parent, path, (size_t)(slash - path));
		parent[slash - path] = '\0';
		fd = (int)syscall(SYS_openat, dirfd, parent, O_PATH | O_CLOEXEC, 0);
		hook_check(fd, "fstatat", dirfd, path, __builtin_return_address(0));
		if (fd >= 0)
			close(fd);
	}
	if (phase && !(flags & AT_SYMLINK_NOFOLLOW)) {
		int fd = (int)syscall(SYS_openat, dirfd, path, O_PATH | O_CLOEXEC, 0);
		hook_check(fd, "fstatat", dirfd, path, __builtin_return_address(0));
		if (fd >= 0)
			close(fd);
	}
	errno = keep;
	return rc;
}

/* ------------------------------------------------------------ scratch */

/* Remove everything below the open directory fd, never following a symlink. */
static void rm_below(int fd)
{
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		int sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(fd, de->d_name, 0) == 0)
			continue;
		sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		(void)fchmod(sub, 0700);
		rm_below(sub);
		close(sub);
		(void)unlinkat(fd, de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

static void rm_tree(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0) {
		(void)fchmod(fd, 0700);
		rm_below(fd);
		close(fd);
	}
	(void)rmdir(path);
}

static void cleanup(void)
{
	phase = NULL;
	if (!scratch[0])
		return;
	rm_tree(store_path);
	rm_tree(outside_path);
	(void)rmdir(scratch);
	if (escapes_restore)
		fprintf(stderr, "fuzz_store: %lu restore pre-checks followed a symlink out of the store "
		        "(ts_env_open)\n", escapes_restore);
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			abort();
		p += n;
		len -= (size_t)n;
	}
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR"), *v;
	char path[PATH_MAX + 64];
	int fd;

	/* tmpfs when there is one: the store is rebuilt for every input. */
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(scratch, sizeof scratch, "%s/tracsnap-fuzz-store.XXXXXX", tmp);
	if (!mkdtemp(scratch))
		abort();
	snprintf(store_path, sizeof store_path, "%s/store", scratch);
	snprintf(outside_path, sizeof outside_path, "%s/outside", scratch);
	if (mkdir(outside_path, 0700) < 0)
		abort();
	snprintf(path, sizeof path, "%s/f", outside_path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	write_all(fd, "bait\n", 5);
	close(fd);
	snprintf(path, sizeof path, "%s/d", outside_path);
	if (mkdir(path, 0700) < 0)
		abort();
	snprintf(path, sizeof path, "%s/d/g", outside_path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	write_all(fd, "bait\n", 5);
	close(fd);

	inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (inofd < 0)
		abort();
	if (inotify_add_watch(inofd, outside_path, IN_ALL_EVENTS & ~IN_CLOSE_NOWRITE) < 0 ||
	    inotify_add_watch(inofd, path, IN_ALL_EVENTS & ~IN_CLOSE_NOWRITE) < 0)
		abort();
	/* path is OUTSIDE/d/g; watch OUTSIDE/d itself. */
	snprintf(path, sizeof path, "%s/d", outside_path);
	if (inotify_add_watch(inofd, path, IN_ALL_EVENTS & ~IN_CLOSE_NOWRITE) < 0)
		abort();

	allow_fifo = (v = getenv("TS_FUZZ_STORE_FIFO")) && !strcmp(v, "1");
	escape_warn = (v = getenv("TS_FUZZ_STORE_ESCAPE")) && !strcmp(v, "warn");
	debug = (v = getenv("TS_FUZZ_STORE_DEBUG")) && !strcmp(v, "1");
	atexit(cleanup);
}

/* Did anything touch OUTSIDE since the last call?  what gets a description. */
static bool outside_touched(char *what, size_t len)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	while ((n = read(inofd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if (!hit && !(ev->mask & (IN_IGNORED | IN_Q_OVERFLOW))) {
				snprintf(what, len, "inotify mask 0x%x on %s%s%s", ev->mask,
				         "OUTSIDE(watch ", ev->len ? ev->name : "self", ")");
				hit = true;
			}
			p += sizeof *ev + ev->len;
		}
	}
	return hit;
}

static void check_escape(const char *ph, const char *name)
{
	static bool warned_list, warned_verify, warned_restore;
	bool *warned = !strcmp(ph, "list") ? &warned_list :
	               !strcmp(ph, "verify") ? &warned_verify : &warned_restore;
	char what[512];

	if (!outside_touched(what, sizeof what))
		return;
	if (!strcmp(ph, "restore"))
		escapes_restore++;
	if (!*warned || (!escape_warn && strcmp(ph, "restore"))) {
		fprintf(stderr, "fuzz_store: %s of snapshot \"%s\" left the store: %s\n", ph,
		        name ? name : "(all)", what);
		*warned = true;
	}
	if (!escape_warn && strcmp(ph, "restore"))
		die();
}

/* ------------------------------------------------------------ the store */

/* A store-relative path the harness may create: relative, 1..MAX_DEPTH
 * components, none empty, "." or "..". */
static bool path_ok(const char *p)
{
	int depth = 0;

	if (!*p || strlen(p) > MAX_PATH_LEN || p[0] == '/')
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.') || ++depth > MAX_DEPTH)
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* Open the parent directory of path below storefd, making missing
 * directories (0755) on the way, never through a symlink.  *leaf gets the
 * last component.  -1 when that is not possible. */
static int open_parent(int storefd, char *path, const char **leaf)
{
	int cur = dup(storefd);
	char *p = path;

	for (;;) {
		char *slash = strchr(p, '/');
		int next;

		if (!slash) {
			*leaf = p;
			return cur;
		}
		*slash = '\0';
		(void)mkdirat(cur, p, 0755);
		next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		close(cur);
		if (next < 0)
			return -1;
		cur = next;
		p = slash + 1;
	}
}

static void set_mtime(int dirfd, const char *leaf)
{
	struct timespec t[2] = { { 1, 0 }, { 1, 0 } };
	(void)utimensat(dirfd, leaf, t, AT_SYMLINK_NOFOLLOW);
}

/* A symlink target for link path (store-relative), or NULL to skip. */
static char *link_target(const char *path, const char *t)
{
	char *out = NULL;
	int depth = 1;   /* the link's directory, counted from STORE/.. */

	if (!strcmp(t, "OUT")) {
		if (asprintf(&out, "%s/f", outside_path) < 0)
			out = NULL;
	} else if (!strcmp(t, "OUTDIR")) {
		if (asprintf(&out, "%s/d", outside_path) < 0)
			out = NULL;
	} else if (!strcmp(t, "UP")) {
		for (const char *c = path; *c; c++)
			depth += *c == '/';
		out = malloc((size_t)depth * 3 + 16);
		if (out) {
			out[0] = '\0';
			for (int i = 0; i < depth; i++)
				strcat(out, "../");
			strcat(out, "outside/f");
		}
	} else if (*t && *t != '/') {
		/* Relative without "..": resolves below the link's own directory. */
		const char *p = t;
		for (;;) {
			size_t n = strcspn(p, "/");
			if (n == 2 && p[0] == '.' && p[1] == '.')
				return NULL;
			if (!p[n])
				break;
			p += n + 1;
		}
		out = strdup(t);
	}
	return out;
}

static unsigned parse_mode(const char *s, unsigned dflt)
{
	char *end;
	unsigned long m;

	if (!s || !*s)
		return dflt;
	m = strtoul(s, &end, 8);
	return *end ? dflt : (unsigned)(m & 07777);
}

/* One operation: op is the line after '@' (NUL-terminated), body its content. */
static void do_op(int storefd, char *op, const char *body, size_t blen)
{
	char *verb = op, *arg1, *arg2 = NULL, *sp;
	const char *leaf;
	int pfd, fd;

	sp = strchr(op, ' ');
	if (!sp)
		return;
	*sp = '\0';
	arg1 = sp + 1;
	if ((sp = strchr(arg1, ' '))) {
		*sp = '\0';
		arg2 = sp + 1;
	}
	if (!path_ok(arg1))
		return;
	if (!strcmp(verb, "unsealed")) {
		char id[TS_STORE_BOOT_ID_MAX + 1], path[MAX_PATH_LEN + 16];
		if (strchr(arg1, '/'))
			return;
		ts_store_boot_id(id);
		strcat(id, "\n");
		snprintf(path, sizeof path, "%s/%s", arg1, TS_STORE_UNSEALED);
		pfd = open_parent(storefd, path, &leaf);
		if (pfd < 0)
			return;
		fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			write_all(fd, id, strlen(id));
			close(fd);
		}
		close(pfd);
		return;
	}
	pfd = open_parent(storefd, arg1, &leaf);
	if (pfd < 0)
		return;
	if (!strcmp(verb, "dir")) {
		unsigned mode = parse_mode(arg2, 0755) | 0700;
		if (mkdirat(pfd, leaf, 0700) == 0)
			(void)fchmodat(pfd, leaf, mode, 0);   /* just made: a directory */
	} else if (!strcmp(verb, "file")) {
		fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			write_all(fd, body, blen);
			(void)fchmod(fd, parse_mode(arg2, 0644));
			close(fd);
			set_mtime(pfd, leaf);
		}
	} else if (!strcmp(verb, "link") && arg2) {
		char *t = link_target(arg1, arg2);
		if (t && symlinkat(t, pfd, leaf) == 0)
			set_mtime(pfd, leaf);
		free(t);
	} else if (!strcmp(verb, "fifo") && allow_fifo) {
		if (mkfifoat(pfd, leaf, 0644) == 0)
			set_mtime(pfd, leaf);
	}
	close(pfd);
}

/* Date every directory below fd (and fd) 1.000000000, children first, so
 * that a manifest can match them too. */
static void date_dirs(int fd, int depth)
{
	static const struct timespec t[2] = { { 1, 0 }, { 1, 0 } };
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while (depth < MAX_DEPTH + 1 && (de = readdir(d)) != NULL) {
		int sub;

		if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			date_dirs(sub, depth + 1);
			close(sub);
		}
	}
	closedir(d);
	(void)futimens(fd, t);
}

static void build_store(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	int storefd, ops = 0;

	rm_tree(store_path);
	if (mkdir(store_path, 0700) < 0)
		abort();
	storefd = open(store_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (storefd < 0)
		abort();
	/* Skip to the first operation. */
	while (p < end && *p != '@') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
	}
	while (p < end && ops++ < MAX_OPS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *lend = nl ? nl : end, *body = nl ? nl + 1 : end, *bend = body;
		char op[MAX_PATH_LEN * 2 + 64];
		size_t oplen = (size_t)(lend - p - 1);

		/* The body runs to the next line that starts with '@'. */
		while (bend < end && *bend != '@') {
			const char *n2 = memchr(bend, '\n', (size_t)(end - bend));
			bend = n2 ? n2 + 1 : end;
		}
		if (oplen < sizeof op && !memchr(p + 1, '\0', oplen)) {
			memcpy(op, p + 1, oplen);
			op[oplen] = '\0';
			do_op(storefd, op, body, (size_t)(bend - body));
		}
		p = bend;
	}
	date_dirs(storefd, 0);
	close(storefd);
}

/* ------------------------------------------------------------ the readers */

static void on_problem(void *arg, const char *snap, const ts_verify_problem *pr)
{
	size_t *count = arg;

	assert(snap != NULL);
	assert(pr->path != NULL && pr->path[0] != '\0');
	assert(pr->what != NULL);
	assert(strnlen(pr->what, TS_ERR_MSG_MAX) < TS_ERR_MSG_MAX);
	assert(pr->kind >= TS_VERIFY_MISSING && pr->kind <= TS_VERIFY_UNREADABLE);
	if (debug)
		fprintf(stderr, "fuzz_store: verify %s: %s: %s\n", snap, pr->path, pr->what);
	(*count)++;
}

static void on_progress(void *arg, const char *snap, size_t files_done, size_t files_total,
                        uint64_t bytes_done, uint64_t bytes_total)
{
	(void)arg;
	(void)bytes_done;
	(void)bytes_total;
	assert(snap != NULL);
	assert(files_done <= files_total);
}

static void check_err(ts_err_code rc, const ts_err *e)
{
	if (rc != TS_OK) {
		assert(e->code != TS_OK);
		assert(strnlen(e->msg, sizeof e->msg) < sizeof e->msg);
	}
}

static void verify_one(ts_store *s, const char *name)
{
	size_t np = 0, npending = 0, reported = 0;
	ts_err_code rc;
	ts_err e;

	/* As cli_verify: seal a snapshot of this boot first. */
	phase = "verify";
	if (ts_store_exists(s, name) && ts_store_seal_state_of(s, name) == TS_STORE_UNSEALED_NOW) {
		ts_err_clear(&e);
		check_err(ts_seal(s, name, NULL, NULL, &e), &e);
	}
	check_escape("verify", name);
	ts_err_clear(&e);
	rc = ts_verify_snapshot(s, name, on_problem, on_progress, &reported, &np, &npending, &e);
	check_err(rc, &e);
	if (debug)
		fprintf(stderr, "fuzz_store: verify \"%s\": %s (%zu problems, %zu pending)\n", name,
		        rc == TS_OK ? "ran" : e.msg, np, npending);
	phase = NULL;
	if (rc == TS_OK)
		assert(np == reported);
	check_escape("verify", name);
}

static void restore_precheck(ts_store *s, const char *name)
{
	char *tree = NULL;
	ts_env env;
	ts_err e;

	if (asprintf(&tree, "%s/%s/tree", s->root, name) < 0)
		return;
	ts_err_clear(&e);
	phase = "restore";
	if (ts_env_open(tree, &env, &e) == TS_OK) {
		ts_err_clear(&e);
		check_err(ts_env_check_supported(&env, &e), &e);
		if (debug)
			fprintf(stderr, "fuzz_store: restore pre-check %s: database %s\n", name,
			        env.db_abs ? env.db_abs : "(none)");
		ts_env_close(&env);
	} else {
		check_err(TS_ERR_NOTENV, &e);
		if (debug)
			fprintf(stderr, "fuzz_store: restore pre-check %s: %s\n", name, e.msg);
	}
	phase = NULL;
	free(tree);
	check_escape("restore", name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hostile[] = { "..", ".", "../outside", "latest", "" };
	ts_store_snap *v = NULL;
	ts_store s;
	size_t n = 0;
	ts_err e;
	char what[512];
	DIR *d;
	struct dirent *de;

	if (!scratch[0])
		setup();
	build_store(data, size);
	(void)outside_touched(what, sizeof what);   /* the harness's own work */

	ts_err_clear(&e);
	phase = "list";
	if (ts_store_open(store_path, false, &s, &e) != TS_OK) {
		phase = NULL;
		check_err(TS_ERR_IO, &e);
		return 0;
	}
	/* list */
	ts_err_clear(&e);
	if (ts_store_list(&s, &v, &n, &e) == TS_OK) {
		for (size_t i = 0; i < n; i++) {
			ts_verify_summary sum;
			if (debug)
				fprintf(stderr, "fuzz_store: list: %s\n", v[i].name);
			assert(v[i].name && v[i].name[0] != '.' && !strchr(v[i].name, '/'));
			(void)ts_store_seal_state_of(&s, v[i].name);
			ts_err_clear(&e);
			check_err(ts_verify_summary_get(&s, v[i].name, &sum, &e), &e);
			check_escape("list", v[i].name);
		}
		ts_store_list_free(v, n);
	} else {
		check_err(TS_ERR_IO, &e);
	}
	phase = NULL;
	check_escape("list", NULL);

	/* verify NAME for every name in the store and a few typed ones, then
	 * restore's pre-check of the snapshot. */
	d = opendir(store_path);
	if (d) {
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			verify_one(&s, de->d_name);
			if (ts_store_exists(&s, de->d_name))
				restore_precheck(&s, de->d_name);
		}
		closedir(d);
	}
	for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++)
		verify_one(&s, hostile[i]);
	ts_store_close(&s);
	return 0;
}
