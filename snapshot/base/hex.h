/* hex.h - one hex digit's value, shared by the parsers (dburi's %XX, the
 * manifest's \xHH and digests). */
#ifndef TS_HEX_H
#define TS_HEX_H

/* 0..15, or -1 when c is not a hex digit. */
static inline int ts_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
