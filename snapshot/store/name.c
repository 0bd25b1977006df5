/* name.c - which snapshot names are allowed (see name.h). */
#include "store/name.h"

#include <stdio.h>
#include <string.h>

#define NAME_MAX_BYTES 255
/* How much of a refused name the message shows: enough to recognise it,
 * escaped bytes included, without flooding a log with a 100 kB argument. */
#define NAME_SHOW_MAX 300

/* Copy name into buf (size bytes) with control bytes as \xHH, so that a
 * refused name never breaks the one-line message or a terminal. */
static void name_show(const char *name, char *buf, size_t size)
{
	size_t o = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++) {
		if (o + 9 + 4 >= size) { /* room for "\xHH\xHH", "...", NUL */
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {   /* C1: both bytes */
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x\\x%02x", p[0], p[1]);
			p++;
		} else if (*p < 0x20 || *p == 0x7f)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
		else
			buf[o++] = (char)*p;
	}
	buf[o] = '\0';
}

ts_err_code ts_name_check(const char *name, ts_err *e)
{
	char shown[NAME_SHOW_MAX + 16];
	const char *why = NULL;
	const unsigned char *p;

	if (!name)
		name = "";
	if (name[0] == '\0') {
		why = "empty";
	} else if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		why = "'.' and '..' are not allowed";
	} else if (name[0] == '.') {
		/* The store keeps its own files (.lock, .tmp-*, .del-*) as dot
		 * names next to the snapshots. */
		why = "starts with '.'";
	} else if (strchr(name, '/')) {
		why = "contains '/'";
	} else if (strlen(name) > NAME_MAX_BYTES) {
		why = "longer than 255 bytes";
	} else if (strcmp(name, TS_NAME_LATEST) == 0) {
		why = "reserved for the link to the newest snapshot";
	} else {
		for (p = (const unsigned char *)name; *p; p++) {
			/* C0, DEL, and C1 (U+0080-U+009F, the UTF-8 bytes C2 80..C2 9F):
			 * terminals obey C1 too, and some readers break lines at it. */
			if (*p < 0x20 || *p == 0x7f || (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
				why = "contains a control character";
				break;
			}
		}
	}
	if (!why)
		return TS_OK;
	name_show(name, shown, sizeof(shown));
	return ts_err_set(e, TS_ERR_NAME, "snapshot name '%s': %s", shown, why);
}
