/* log.h - the engine's one logging entry point.
 *
 * The engine logs facts (a snapshot's figures, a skipped FIFO); errors travel
 * as ts_err to the caller, who decides whether to log them.  Front ends pick
 * the sink once at start: stderr (foreground, commands) or syslog (daemon).
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

#endif
