/* fs_main.c - check everything, then mount.
 *
 * Every problem that can be found before mounting is: the environment, its
 * database setting, the mount point, the store's place.  Each is one line on
 * stderr and nothing is mounted or created.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <grp.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "db/dbsnap.h"
#include "fs_int.h"
#include "base/log.h"
#include "base/parse.h"

typedef struct fs_cmdline {
	char *env;
	char *mnt;
	char *store;
	char *auto_fmts;
	char *lock_timeout_text;
	int lock_timeout;
	int no_database;
	int no_passthrough;
	char *manage_group;
	char *keep;
	int npos;
} fs_cmdline;

enum { FS_KEY_HELP, FS_KEY_VERSION };

#define FS_OPT(t, p) { t, offsetof(fs_cmdline, p), 1 }
static const struct fuse_opt fs_opt_spec[] = {
	FS_OPT("store=%s", store),
	FS_OPT("auto=%s", auto_fmts),
	FS_OPT("lock_timeout=%s", lock_timeout_text),
	FS_OPT("no_database", no_database),
	FS_OPT("no_passthrough", no_passthrough),
	FS_OPT("manage_group=%s", manage_group),
	FS_OPT("keep=%s", keep),
	FUSE_OPT_END
};

static int fs_opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	fs_cmdline *cl = data;
	(void)out;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	/* ENV first; the mount point goes on to libfuse. */
	if (cl->npos++ == 0) {
		cl->env = strdup(arg);
		return 0;
	}
	if (cl->npos == 2) {
		cl->mnt = strdup(arg);
		return 1;
	}
	fprintf(stderr, "tracsnap: unexpected argument '%s' (usage: tracsnap [-f] [-d] [-s] "
	        "[-o OPT[,OPT...]] ENV MOUNTPOINT)\n", arg);
	return -1;
}

static void fs_ctx_free(fs_ctx *c)
{
	fs_watch_stop(c);
	dmn_free(&c->d);
	free(c->mnt);
}

static bool fs_has_opt(const struct fuse_args *a, const char *opt)
{
	for (int i = 1; i < a->argc; i++)
		if (strstr(a->argv[i], opt))
			return true;
	return false;
}

static bool fs_wants_help(const struct fuse_args *a)
{
	for (int i = 1; i < a->argc; i++)
		if (!strcmp(a->argv[i], "-h") || !strcmp(a->argv[i], "--help") ||
		    !strcmp(a->argv[i], "-V") || !strcmp(a->argv[i], "--version"))
			return true;
	return false;
}

/* -h or -V among the mount's arguments: what libfuse says of its options. */
static int fs_help(const struct fuse_args *a)
{
	for (int i = 1; i < a->argc; i++)
		if (!strcmp(a->argv[i], "-V") || !strcmp(a->argv[i], "--version")) {
			printf("FUSE library version %s\n", fuse_pkgversion());
			fuse_lowlevel_version();
			return 0;
		}
	printf("\nFUSE options:\n");
	fuse_cmdline_help();
	fuse_lowlevel_help();
	return 0;
}

/* What libfuse logs while the options are tried (fs_check_fuse_opts): kept,
 * not printed, so that the one line said is ours and names the option. */
static char fs_fuse_said[512];

static void fs_fuse_capture(enum fuse_log_level level, const char *fmt, va_list ap)
{
	size_t n = strlen(fs_fuse_said);

	(void)level;
	if (n < sizeof fs_fuse_said - 1)
		vsnprintf(fs_fuse_said + n, sizeof fs_fuse_said - n, fmt, ap);
}

/* Would libfuse take these arguments?  Tried on a session that is made and
 * destroyed at once, never mounted, so that an option libfuse refuses
 * (a typo, one of its high-level library's) is said before anything is
 * created: "tracsnap: unknown mount option '-o bogus=1' (see 'tracsnap
 * help mount')".  0, or -1 with the line printed. */
static int fs_check_fuse_opts(const struct fuse_args *args)
{
	struct fuse_args probe = FUSE_ARGS_INIT(0, NULL);
	struct fuse_cmdline_opts o;
	struct fuse_session *se = NULL;
	int rc = -1;

	memset(&o, 0, sizeof o);
	for (int i = 0; i < args->argc; i++)
		if (fuse_opt_add_arg(&probe, args->argv[i]) != 0)
			goto out;
	fs_fuse_said[0] = '\0';
	fuse_set_log_func(fs_fuse_capture);
	if (fuse_parse_cmdline(&probe, &o) == 0)
		se = fuse_session_new(&probe, fs_lowlevel_ops(), sizeof(struct fuse_lowlevel_ops), NULL);
	fuse_set_log_func(NULL);
	if (se) {
		fuse_session_destroy(se);
		rc = 0;
		goto out;
	}
	/* libfuse: "fuse: unknown option(s): `-o bogus=1'" */
	char *q = strchr(fs_fuse_said, '`'), *end = q ? strchr(q + 1, '\'') : NULL;
	if (q && end)
		fprintf(stderr, "tracsnap: unknown mount option '%.*s' (see 'tracsnap help mount')\n",
		        (int)(end - q - 1), q + 1);
	else
		fprintf(stderr, "tracsnap: mount options refused: %.*s (see 'tracsnap help mount')\n",
		        (int)strcspn(fs_fuse_said, "\n"), fs_fuse_said[0] ? fs_fuse_said : "by libfuse");
out:
	free(o.mountpoint);
	fuse_opt_free_args(&probe);
	return rc;
}

/* Is path (absolute, resolved) the root of a mount?  Then what is mounted
 * there goes into what (fstype and source, from /proc/self/mountinfo, the
 * topmost entry): mounting over it would hide it, and a second tracsnap on
 * the same mount point stacks a daemon nobody sees. */
static bool fs_is_mounted(const char *path, char *what, size_t len)
{
	struct statx stx;
	char line[8192], found[PATH_MAX + 256] = "";
	FILE *f;

	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx) != 0 ||
	    !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
	    !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
		return false;
	f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof line, f)) {
		char mp[PATH_MAX], fstype[128], source[PATH_MAX], *dash;
		size_t o = 0;

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || !(dash = strstr(line, " - ")) ||
		    sscanf(dash + 3, "%127s %4095s", fstype, source) != 2)
			continue;
		for (size_t i = 0; mp[i]; i++, o++) {   /* mountinfo writes ' ' as \040 */
			if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '3' && mp[i + 2] && mp[i + 3]) {
				mp[o] = (char)((mp[i + 1] - '0') * 64 + (mp[i + 2] - '0') * 8 + (mp[i + 3] - '0'));
				i += 3;
			} else {
				mp[o] = mp[i];
			}
		}
		mp[o] = '\0';
		if (!strcmp(mp, path))
			snprintf(found, sizeof found, "%s of %s", fstype, source);
	}
	if (f)
		fclose(f);
	snprintf(what, len, "%s", found[0] ? found : "a mount");
	return true;
}

/* The first directory of path (absolute or relative to the working
 * directory) that does not exist yet, which ts_store_open would create, or
 * NULL when path exists (or on a failure: nothing is then undone). */
static char *fs_first_missing(const char *path)
{
	char *p = strdup(path), *top = NULL;

	while (p && *p && access(p, F_OK) != 0) {
		free(top);
		top = strdup(p);
		char *slash = strrchr(p, '/');
		if (!slash || slash == p)
			break;
		*slash = '\0';
	}
	free(p);
	return top;
}

/* A mount refused after its store was made leaves nothing behind: the
 * store's lock file (its only content then) and the directories made for
 * it, from the store up to top, each removed only if empty.  These are
 * root's own new directories on a path trust.h accepted, not the tree of
 * another account. */
static void fs_store_undo(ts_store *s, const char *store, const char *top)
{
	char *p;

	if (!top)
		return;
	if (s->dirfd >= 0)
		(void)unlinkat(s->dirfd, ".lock", 0);
	ts_store_close(s);
	p = strdup(store);
	while (p && rmdir(p) == 0 && strcmp(p, top) != 0) {
		char *slash = strrchr(p, '/');
		if (!slash || slash == p)
			break;
		*slash = '\0';
	}
	free(p);
}

/* How many directory descriptors the node table may keep (fs_node.c): half
 * of what the process may open, the soft limit raised to the hard one. */
static long fs_fds_budget(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (2ul << 20))
		return 1l << 20;
	return (long)(rl.rlim_cur / 2);
}

/* Mount and serve until unmounted, as libfuse's fuse_main does for the
 * high-level API, with the same statuses: 1 bad options, 2 no mount point,
 * 3 no session, 4 mount failed, 5 cannot detach, 6 no signal handlers,
 * 7 no loop configuration, 8 the loop ended with an error; 0 once unmounted
 * or stopped by SIGTERM, SIGINT or SIGHUP. */
static int fs_serve(struct fuse_args *args, fs_ctx *c)
{
	struct fuse_cmdline_opts o;
	struct fuse_loop_config *cfg = NULL;
	fs_nodes nodes;
	fs_prefetch prefetch;   /* its thread runs from init to destroy */
	fs_pt pt;
	bool pt_set = false;
	int res;

	memset(&o, 0, sizeof o);
	memset(&nodes, 0, sizeof nodes);
	memset(&prefetch, 0, sizeof prefetch);
	prefetch.start = -1;
	c->prefetch = &prefetch;
	if (fuse_parse_cmdline(args, &o) != 0)
		return 1;
	if (!o.mountpoint) {
		fprintf(stderr, "error: no mountpoint specified\n");
		res = 2;
		goto out;
	}
	if (fs_nodes_init(&nodes, fs_fds_budget()) != 0) {
		res = 3;
		goto out;
	}
	c->nodes = &nodes;
	c->se = fuse_session_new(args, fs_lowlevel_ops(), sizeof(struct fuse_lowlevel_ops), c);
	if (!c->se) {
		res = 3;
		goto out;
	}
	if (fuse_session_mount(c->se, o.mountpoint) != 0) {
		res = 4;
		goto out_destroy;
	}
	pt_set = true;
	if (fs_pt_install(c, &pt, !c->no_passthrough) != 0) {
		res = 3;
		goto out_unmount;
	}
	if (fuse_daemonize(o.foreground) != 0) {
		res = 5;
		goto out_unmount;
	}
	if (fuse_set_signal_handlers(c->se) != 0) {
		res = 6;
		goto out_unmount;
	}
	if (o.singlethread) {
		res = fuse_session_loop(c->se);
	} else {
		cfg = fuse_loop_cfg_create();
		if (!cfg) {
			res = 7;
			goto out_signals;
		}
		fuse_loop_cfg_set_clone_fd(cfg, (unsigned)o.clone_fd);
		fuse_loop_cfg_set_idle_threads(cfg, o.max_idle_threads);
		fuse_loop_cfg_set_max_threads(cfg, o.max_threads);
		res = fuse_session_loop_mt(c->se, cfg);
	}
	/* libfuse's handler records the stop signal as the loop's error: a
	 * stop asked for (kill, Ctrl-C, systemd) is a clean end. */
	if (res == SIGTERM || res == SIGINT || res == SIGHUP)
		res = 0;
	else if (res)
		res = 8;
out_signals:
	fuse_remove_signal_handlers(c->se);
out_unmount:
	fuse_session_unmount(c->se);
out_destroy:
	/* Runs fs_destroy if init ran: the threads stop before the nodes go. */
	fuse_session_destroy(c->se);
	c->se = NULL;
	if (pt_set)
		fs_pt_free(&pt);
	c->pt = NULL;
out:
	fs_prefetch_stop(&prefetch);
	c->prefetch = NULL;
	fs_nodes_free(&nodes);
	c->nodes = NULL;
	fuse_loop_cfg_destroy(cfg);
	free(o.mountpoint);
	return res;
}

int fs_main(int argc, char **argv, ts_err_code *code)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts fo;
	fs_cmdline cl = { .lock_timeout = TS_LOCK_TIMEOUT_DEFAULT };
	fs_ctx c;
	ts_err e;
	ts_dbsnap *db = NULL;
	struct stat st;
	char *store = NULL, *mnt_abs = NULL;
	int status = FS_MAIN_FAILED;   /* TS_ERR_USAGE unless fail_msg says */
	ts_err_code fail = TS_ERR_USAGE;
	char *store_top = NULL;   /* the first directory of the store's path this mount made */

	memset(&c, 0, sizeof c);
	dmn_init(&c.d);
	c.watch_fd = c.watch_stop = -1;
	/* Every FUSE worker thread would get its own malloc arena that keeps
	 * what a large snapshot freed; two arenas bound the daemon's size. */
	mallopt(M_ARENA_MAX, 2);
	/* libfuse allocates a request-sized buffer (up to 1 MiB) per read; above
	 * glibc's default threshold each would be a fresh mmap with 256 page
	 * faults.  Serve them from the heap instead. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	memset(&fo, 0, sizeof fo);
	ts_err_clear(&e);
	ts_log_init(TS_LOG_STDERR, LOG_INFO);
	/* The test clock is read now, so that a bad value is said on stderr
	 * rather than in syslog after the daemon has detached. */
	(void)ts_clock_name_time();

	if (fuse_opt_parse(&args, &cl, fs_opt_spec, fs_opt_proc) < 0)
		goto out;
	if (fs_wants_help(&args)) {
		status = fs_help(&args);
		goto out;
	}
	if (!cl.env || !cl.mnt) {
		fprintf(stderr, "tracsnap: missing %s (usage: tracsnap [-f] [-d] [-s] [-o OPT[,OPT...]] "
		        "ENV MOUNTPOINT; tracsnap --help)\n", !cl.env ? "ENV" : "MOUNTPOINT");
		goto out;
	}
	if (cl.lock_timeout_text &&
	    ts_parse_lock_timeout(cl.lock_timeout_text, &cl.lock_timeout, &e) != TS_OK) {
		fprintf(stderr, "tracsnap: lock_timeout=%s: %s\n", cl.lock_timeout_text, e.msg);
		goto out;
	}
	c.d.lock_timeout_s = cl.lock_timeout;
	c.d.no_database = cl.no_database;
	c.no_passthrough = cl.no_passthrough;
	c.d.who.owner = getuid();
	c.d.who.owner_gid = getgid();
	if (dmn_auto_parse(&c.d.autos, cl.auto_fmts ? cl.auto_fmts : DMN_AUTO_DEFAULT, &e) != TS_OK)
		goto fail_msg;
	if (cl.manage_group) {
		struct group *g = getgrnam(cl.manage_group);
		char *end;
		unsigned long gid = strtoul(cl.manage_group, &end, 10);
		if (g) {
			c.d.who.group = g->gr_gid;
		} else if (*cl.manage_group && !*end) {
			c.d.who.group = (gid_t)gid;
		} else {
			fprintf(stderr, "tracsnap: manage_group=%s: no such group\n", cl.manage_group);
			goto out;
		}
		c.d.who.has_group = true;
	}
	if (cl.keep) {
		if (ts_prune_policy_parse(cl.keep, &c.d.keep, &e) != TS_OK)
			goto fail_msg;
		c.d.has_keep = true;
	}

	if (ts_env_open(cl.env, &c.d.env, &e) != TS_OK || ts_env_check_supported(&c.d.env, &e) != TS_OK) {
		goto fail_msg;
	}
	if (stat(cl.mnt, &st) < 0 || !S_ISDIR(st.st_mode)) {
		ts_err_set(&e, TS_ERR_USAGE, "mount point %s: %s", cl.mnt,
		           errno == ENOENT ? "no such directory" : "not a directory");
		goto fail_msg;
	}
	if (fs_check_fuse_opts(&args) != 0)
		goto out;
	/* Learn -f/-d/-s/-h without consuming them: fs_serve parses again. */
	{
		struct fuse_args probe = FUSE_ARGS_INIT(0, NULL);
		for (int i = 0; i < args.argc; i++)
			fuse_opt_add_arg(&probe, args.argv[i]);
		if (fuse_parse_cmdline(&probe, &fo) != 0) {
			fuse_opt_free_args(&probe);
			goto out;
		}
		fuse_opt_free_args(&probe);
	}
	c.foreground = fo.foreground;
	mnt_abs = realpath(cl.mnt, NULL);
	{
		char what[PATH_MAX + 256];
		if (mnt_abs && fs_is_mounted(mnt_abs, what, sizeof what)) {
			ts_err_set(&e, TS_ERR_USAGE, "mount point %s: already has a mount (%s); unmount "
			           "it first", mnt_abs, what);
			goto fail_msg;
		}
	}
	c.mnt = mnt_abs;
	c.d.mnt = c.mnt;   /* what rmdir and keep= check for readers (daemon_prune.c) */
	mnt_abs = NULL;
	store = cl.store ? strdup(cl.store) : ts_store_default_path(c.d.env.root);
	if (!store || !c.mnt) {
		ts_err_set(&e, TS_ERR_NOMEM, "out of memory");
		goto fail_msg;
	}
	if (ts_store_check_placement(store, c.d.env.root, c.mnt, &e) != TS_OK)
		goto fail_msg;
	/* The database must at least be there; it is opened for real at each snapshot. */
	if (!c.d.no_database) {
		if (ts_dbsnap_open(&c.d.env, c.d.lock_timeout_s, &db, &e) != TS_OK) {
			goto fail_msg;
		}
		ts_dbsnap_close(db);
	}
	store_top = fs_first_missing(store);
	if (ts_store_open(store, true, &c.d.store, &e) != TS_OK) {
		status = FS_MAIN_NO_STORE;
		goto fail_msg;
	}
	/* Leftovers of a writer that died (kill -9, a crash) go now, when no
	 * other writer holds the store; otherwise that writer removes them. */
	{
		ts_err le;
		ts_err_clear(&le);
		if (ts_store_lock(&c.d.store, 0, &le) == TS_OK)
			ts_store_unlock(&c.d.store);
	}

	/* What every tracsnap mount needs: the kernel enforces the snapshot's
	 * modes; the source and type show in /proc/mounts. */
	/* libfuse 3.14.0 warns about its own default for this unless it is given
	 * (fixed upstream in 3.14.1): give it, so the log shows only our lines. */
	if (!fs_has_opt(&args, "max_idle_threads="))
		fuse_opt_add_arg(&args, "-omax_idle_threads=64");
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-osubtype=tracsnap");
	{
		char *fsname = NULL;
		if (fuse_opt_add_opt_escaped(&fsname, c.d.env.root) == 0) {
			char *o = NULL;
			if (asprintf(&o, "-ofsname=%s", fsname) >= 0) {
				fuse_opt_add_arg(&args, o);
				free(o);
			}
		}
		free(fsname);
	}
	status = fs_serve(&args, &c);
	if (status != 0 && status != 8) {   /* nothing was mounted; libfuse said why */
		fprintf(stderr, "tracsnap: mount point %s: not mounted (status %d; the line above says "
		        "why)\n", c.mnt, status);
		fs_store_undo(&c.d.store, store, store_top);
	}
	goto out;

fail_msg:
	fprintf(stderr, "tracsnap: %s\n", e.msg);
	fail = e.code;
out:
	*code = status == FS_MAIN_FAILED ? fail : TS_OK;
	free(store);
	free(store_top);
	free(mnt_abs);
	free(cl.env);
	free(cl.mnt);
	free(cl.store);
	free(cl.auto_fmts);
	free(cl.lock_timeout_text);
	free(cl.manage_group);
	free(cl.keep);
	free(fo.mountpoint);
	fuse_opt_free_args(&args);
	fs_ctx_free(&c);
	return status;
}
