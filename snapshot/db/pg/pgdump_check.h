/* pgdump_check.h - refuse a plain-format dump that would make psql do more
 * than send SQL to the server.
 *
 * `tracsnap restore` feeds a snapshot's dump to psql as root.  psql acts on
 * backslash meta-commands wherever its lexer is outside a literal, a quoted
 * identifier or a comment: `\! cmd` runs a shell, `\o FILE` and `\w FILE`
 * write files, `\i FILE` reads one, and backticks in a meta-command's
 * arguments run commands too.  pg_dump itself writes only `\connect`,
 * `\restrict KEY` / `\unrestrict KEY` (since the 2025 minor releases) and the
 * `\.` that ends a COPY's data.
 *
 * The check follows psql's lexer (psqlscan.l) far enough to know where a
 * meta-command could start and where COPY data is, and refuses whatever it
 * cannot follow exactly rather than guess:
 *   - outside COPY data, a backslash is allowed only inside a quoted
 *     identifier, a comment or an E'...' literal (as its escape); anywhere
 *     else it must start `\connect`, `\restrict` or `\unrestrict`, whose
 *     arguments hold neither a backslash nor a backtick;
 *   - a backslash inside a plain '...' literal is refused (whether it escapes
 *     the next quote depends on standard_conforming_strings, which psql
 *     learns from the server: the two readings would end the literal at
 *     different places);
 *   - a '$' outside literals, identifiers and comments is refused (dollar
 *     quoting: pg_dump of a Trac database never writes one), and so is a
 *     psql variable reference (':name', ":'name'", ':"name"', ':{?name}');
 *   - a CREATE [OR REPLACE] FUNCTION/PROCEDURE (psql's first-letter test) with
 *     BEGIN or CASE is refused: psql versions differ in whether ';' inside
 *     BEGIN ATOMIC ends the statement;
 *   - a statement that starts with BEGIN, START, COMMIT, END, ROLLBACK,
 *     ABORT, SAVEPOINT, RELEASE or PREPARE is refused: the load is one
 *     transaction, which the dump must not end half-way;
 *   - COPY data starts on the line after `COPY ... FROM stdin;` (nothing but
 *     blanks after the ';') and ends at the line `\.`; inside it anything
 *     goes, as psql sends it to the server as data.  (Were the COPY to fail,
 *     psql runs with ON_ERROR_STOP and never reads those lines as commands.)
 * The dump is read from offset 0 to its end with pread; the caller then
 * gives psql the same descriptor.
 */
#ifndef TS_PGDUMP_CHECK_H
#define TS_PGDUMP_CHECK_H

#include "base/err.h"

/* TS_OK, or TS_ERR_CORRUPT "<desc>:<line>: <what> (refusing to load it ...)"
 * ; TS_ERR_IO when fd cannot be read. */
ts_err_code ts_pgdump_check(int fd, const char *desc, ts_err *e);

#endif
