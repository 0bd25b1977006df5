/* cli.h - tracsnap's commands that do not mount (cron, scripts, restore). */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stdio.h>

#include "env/env.h"
#include "base/err.h"
#include "store/registry.h"
#include "store/store.h"

/* Each command takes argv after the command word's position (argv[0] is the
 * command name) and returns the process exit status. */
int cli_snapshot(int argc, char **argv);
int cli_list(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_prune(int argc, char **argv);
int cli_restore(int argc, char **argv);
int cli_help(int argc, char **argv);
int cli_hold(int argc, char **argv);
int cli_release(int argc, char **argv);
int cli_status(int argc, char **argv);

/* Write str as a JSON string literal: '"' and '\\' escaped; bytes below
 * 0x20, 0x7f, the C1 controls (U+0080-U+009F) and every byte that is not
 * part of valid UTF-8 as \u00XX; other valid UTF-8 as is (text.c). */
void cli_json_string(FILE *f, const char *str);

/* Write a name for a terminal: a backslash as "\\\\", control characters
 * (C0, DEL, C1) as \u00XX, bytes that are not valid UTF-8 as \xHH; valid
 * UTF-8 as is (text.c). */
void cli_term_name(FILE *f, const char *str);

/* Command-line problems: print "tracsnap: CMD: PROBLEM" (one line), then
 * the command's usage line (commands.h), and return EX_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* After getopt_long() returned '?' (the commands set opterr = 0 so that
 * getopt prints nothing itself): name the option that was refused. */
int cli_bad_option(const char *cmd, int argc, char **argv);

/* Check an argument count after the options: "missing ENV" or "unexpected
 * argument 'X'".  Returns 0 when min <= n <= max, else cli_usage_error(). */
int cli_check_args(const char *cmd, int argc, char **argv,
                   int min, int max, const char *missing);

/* --lock-timeout S of snapshot and prune (base/parse.h has the bounds):
 * 0 with *out set, or the message printed and EX_USAGE. */
int cli_parse_lock_timeout(const char *arg, int *out);

/* Print "tracsnap: <msg>" and return the sysexits status for e. */
int cli_fail(const ts_err *e);

/* What arg (ENV or a mount point) names: the environment of the running
 * mount it is the environment or mount point of (store/registry.h), else
 * arg itself, into *env_path; that mount's store into *store_path unless
 * it is set already (--store wins).  mount->pid is 0 when no mount was
 * found.  On failure (two mounts of ENV with different stores) prints and
 * returns the exit status; 0 on success. */
int cli_find_mount(const char *arg, const char **env_path, const char **store_path,
                   ts_registry_entry *mount);

/* Open ENV (checked and supported) and its store: --store, else the store
 * of a running mount of ENV, else the default (cli_find_mount); arg may be
 * ENV or a mount point.  create: make the store when missing.  found (may
 * be NULL) gets the running mount, as cli_find_mount gives it.  On failure
 * prints and returns the exit status; 0 on success. */
int cli_open_env_store(const char *arg, const char *store_path, bool create,
                       ts_env *env, ts_store *store, ts_registry_entry *found);

#endif
