/* name.h - which snapshot names are allowed (doc/contract.md section 2). */
#ifndef TS_NAME_H
#define TS_NAME_H

#include "base/err.h"

/* The one name reserved for the view's symlink to the newest snapshot. */
#define TS_NAME_LATEST "latest"

/* TS_OK, or TS_ERR_NAME with a message such as
 * "snapshot name 'x/y': contains '/'".  Refused: empty, "." and "..", a '/',
 * a leading '.', control characters (bytes < 0x20, 0x7f, and the C1 controls
 * U+0080-U+009F as UTF-8, C2 80..C2 9F), more than 255 bytes, and "latest".
 * Other bytes (UTF-8 or not) are allowed; the message prints refused names
 * with control bytes escaped as \xHH. */
ts_err_code ts_name_check(const char *name, ts_err *e);

#endif
