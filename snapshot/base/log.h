/* log.h - the engine's one logging entry point.
 *
 * The engine logs facts (a snapshot's figures, a skipped FIFO); errors travel
 * as ts_err to the caller, who decides whether to log them.  Front ends pick
 * the sink once at start: stderr (foreground, commands) or syslog (daemon;
 * the journal where systemd-journald owns /dev/log).  Levels: LOG_ERR a
 * failure, LOG_WARNING something done less well, LOG_NOTICE a request
 * refused (the user's answer, with its reason), LOG_INFO what was done.
 */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */

typedef enum ts_log_sink { TS_LOG_STDERR, TS_LOG_SYSLOG } ts_log_sink;

/* Choose the sink and the most verbose level printed (default: stderr, LOG_INFO). */
void ts_log_init(ts_log_sink sink, int max_level);

/* One line, prefixed "tracsnap: " on stderr (warnings "tracsnap: warning: ");
 * line ends in the message become spaces and other control characters '?'. */
void ts_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Also hand every message of level LOG_NOTICE or more severe (errors,
 * warnings, refusals) to fn, as formatted (no prefix, one line), from the
 * thread that logs it; fn NULL: none.  The daemon keeps them in its store
 * (store/events.h); the engine never sets it. */
typedef void (*ts_log_tap_fn)(void *arg, int level, const char *msg);
void ts_log_set_tap(ts_log_tap_fn fn, void *arg);

#endif
