/* text.c - names written where people and programs read them: a terminal
 * (cli_term_name) and JSON (cli_json_string).  A snapshot name is bytes the
 * administrator chose, or that came from a store made by hand: nothing in
 * it may move a terminal's cursor or break a parser.  The rules are in
 * cli.h. */
#include <stdbool.h>
#include <stdio.h>

#include "cli.h"

/* Length of the valid UTF-8 sequence at s (1..4), 0 when not valid. */
static size_t cli_utf8_len(const unsigned char *s)
{
	size_t len;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;   /* also stops at the terminating NUL */
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and beyond U+10FFFF are invalid. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A C1 control (U+0080-U+009F) is the 2-byte sequence C2 80..C2 9F. */
static bool cli_is_c1(const unsigned char *s, size_t len)
{
	return len == 2 && s[0] == 0xc2 && s[1] <= 0x9f;
}

void cli_json_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', f);
	while (*s) {
		size_t len = cli_utf8_len(s);
		if (*s == '"' || *s == '\\') {
			fprintf(f, "\\%c", *s);
		} else if (cli_is_c1(s, len)) {
			fprintf(f, "\\u%04x", s[1]);
		} else if (len == 0 || *s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s);
			len = 1;
		} else {
			fwrite(s, 1, len, f);
			s += len;
			continue;
		}
		s += len ? len : 1;
	}
	fputc('"', f);
}

void cli_term_name(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t len = cli_utf8_len(s);
		if (*s == '\\')
			fputs("\\\\", f);
		else if (cli_is_c1(s, len))
			fprintf(f, "\\u%04x", s[1]);
		else if (len == 0)
			fprintf(f, "\\x%02x", *s);
		else if (*s < 0x20 || *s == 0x7f)
			fprintf(f, "\\u%04x", *s);
		else
			fwrite(s, 1, len, f);
		s += len ? len : 1;
	}
}
