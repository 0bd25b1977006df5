/* pgdump_check.c - refuse a dump that would make psql run meta-commands
 * (pgdump_check.h says what is allowed and why). */
#include "db/pg/pgdump_check.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum ck_state { CK_SQL, CK_SQUOTE, CK_EQUOTE, CK_DQUOTE, CK_LINECOMMENT, CK_BLOCKCOMMENT, CK_META,
                CK_METAARGS, CK_COPYREST, CK_DATA };

typedef struct ck {
	enum ck_state s;
	unsigned long line;
	int comment_depth;
	/* the statement so far (SQL state) */
	char first[16];            /* its first word, lowercase ("" before it) */
	bool have_first;
	char idl[4];               /* psql's first letters of create/or/replace/function/procedure */
	int nident;                /* identifiers seen (psql's identifier_count) */
	int paren;
	bool prev_from;            /* the previous token was FROM */
	bool from_stdin;           /* ... FROM STDIN seen */
	/* the word being read */
	char word[16];
	size_t wlen;
	bool in_word;
	/* a meta-command's name */
	char cmd[16];
	size_t clen;
	bool data_bol;             /* COPY data: at the start of a line */
	const char *desc;
	ts_err *e;
} ck;

static bool ck_identch(unsigned char c)
{
	return isalnum(c) || c == '_' || c >= 0x80;
}

static ts_err_code ck_refuse(ck *k, const char *what)
{
	return ts_err_set(k->e, TS_ERR_CORRUPT, "%s:%lu: %s; refusing to load the dump (psql would act on "
	                  "it as root; a pg_dump file has no such thing)", k->desc, k->line, what);
}

static void ck_new_statement(ck *k)
{
	k->have_first = false;
	k->first[0] = '\0';
	memset(k->idl, 0, sizeof k->idl);
	k->nident = 0;
	k->paren = 0;
	k->prev_from = k->from_stdin = false;
}

static ts_err_code ck_word_done(ck *k)
{
	char w[16];
	bool ident;

	k->in_word = false;
	snprintf(w, sizeof w, "%.*s", (int)k->wlen, k->word);
	k->wlen = 0;
	if (!k->have_first) {
		static const char *const txn[] = { "begin", "start", "commit", "end", "rollback", "abort",
		                                   "savepoint", "release", "prepare" };
		snprintf(k->first, sizeof k->first, "%s", w);
		k->have_first = true;
		/* The load is one transaction: a dump must not end it early. */
		for (size_t j = 0; j < sizeof txn / sizeof *txn; j++)
			if (!strcmp(w, txn[j]))
				return ck_refuse(k, "a transaction control statement");
	}
	ident = !isdigit((unsigned char)w[0]);
	if (ident) {
		if ((!strcmp(w, "create") || !strcmp(w, "or") || !strcmp(w, "replace") ||
		     !strcmp(w, "function") || !strcmp(w, "procedure")) && k->nident < 4)
			k->idl[k->nident] = w[0];
		k->nident++;
		if (k->idl[0] == 'c' &&
		    (k->idl[1] == 'f' || k->idl[1] == 'p' ||
		     (k->idl[1] == 'o' && k->idl[2] == 'r' && (k->idl[3] == 'f' || k->idl[3] == 'p'))) &&
		    !strcmp(w, "begin"))
			return ck_refuse(k, "a function body with BEGIN");
	}
	if (!strcmp(k->first, "copy") && k->prev_from && !strcmp(w, "stdin"))
		k->from_stdin = true;
	k->prev_from = !strcmp(w, "from");
	return TS_OK;
}

/* One step at b[i] (len bytes valid, eof: nothing after them); *adv gets
 * how many bytes it took. */
static ts_err_code ck_step(ck *k, const unsigned char *b, size_t i, size_t len, size_t *adv)
{
	unsigned char c = b[i];
	int next = i + 1 < len ? b[i + 1] : -1;
	ts_err_code rc = TS_OK;

	*adv = 1;
	switch (k->s) {
	case CK_SQL:
		if (ck_identch(c)) {
			if (k->wlen < sizeof k->word - 1)
				k->word[k->wlen++] = (char)tolower(c);
			else
				k->word[sizeof k->word - 2] = '~';  /* too long to be a keyword */
			k->in_word = true;
			return TS_OK;
		}
		if (k->in_word) {
			bool e_string = c == '\'' && k->wlen == 1 && k->word[0] == 'e';
			if ((rc = ck_word_done(k)) != TS_OK)
				return rc;
			if (e_string) {
				k->s = CK_EQUOTE;
				k->prev_from = false;
				return TS_OK;
			}
		}
		if (c == '\n') {
			k->line++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
			/* blank */
		} else if (c == '-' && next == '-') {
			k->s = CK_LINECOMMENT;
			*adv = 2;
		} else if (c == '/' && next == '*') {
			k->s = CK_BLOCKCOMMENT;
			k->comment_depth = 1;
			*adv = 2;
		} else if (c == '\'') {
			k->s = CK_SQUOTE;
			k->prev_from = false;
		} else if (c == '"') {
			k->s = CK_DQUOTE;
			k->prev_from = false;
		} else if (c == '$') {
			return ck_refuse(k, "'$' outside a literal (dollar quoting)");
		} else if (c == ':') {
			if (next == ':') {
				*adv = 2;
			} else if (next >= 0 && (ck_identch((unsigned char)next) || next == '\'' || next == '"' ||
			                         next == '{')) {
				return ck_refuse(k, "a psql variable reference");
			}
			k->prev_from = false;
		} else if (c == '\\') {
			k->s = CK_META;
			k->clen = 0;
		} else if (c == ';' && k->paren == 0) {
			bool copy_in = !strcmp(k->first, "copy") && k->from_stdin;
			ck_new_statement(k);
			if (copy_in)
				k->s = CK_COPYREST;
		} else {
			if (c == '(')
				k->paren++;
			else if (c == ')' && k->paren > 0)
				k->paren--;
			k->prev_from = false;
		}
		return TS_OK;
	case CK_SQUOTE:
	case CK_EQUOTE:
		if (c == '\n') {
			k->line++;
		} else if (c == '\\') {
			if (k->s == CK_SQUOTE)
				return ck_refuse(k, "a backslash in a '...' literal (its meaning depends on "
				                 "standard_conforming_strings)");
			if (next == '\n')
				k->line++;
			*adv = next >= 0 ? 2 : 1;
		} else if (c == '\'') {
			if (next == '\'')
				*adv = 2;
			else
				k->s = CK_SQL;
		}
		return TS_OK;
	case CK_DQUOTE:
		if (c == '\n')
			k->line++;
		else if (c == '"')
			k->s = CK_SQL;
		return TS_OK;
	case CK_LINECOMMENT:
		if (c == '\n') {
			k->line++;
			k->s = CK_SQL;
		}
		return TS_OK;
	case CK_BLOCKCOMMENT:
		if (c == '\n') {
			k->line++;
		} else if (c == '/' && next == '*') {
			k->comment_depth++;
			*adv = 2;
		} else if (c == '*' && next == '/') {
			*adv = 2;
			if (--k->comment_depth == 0)
				k->s = CK_SQL;
		}
		return TS_OK;
	case CK_META:
		if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\\') {
			if (k->clen < sizeof k->cmd - 1)
				k->cmd[k->clen++] = (char)(isprint(c) ? c : '?');
			return TS_OK;
		}
		k->cmd[k->clen] = '\0';
		if (strcmp(k->cmd, "connect") && strcmp(k->cmd, "restrict") && strcmp(k->cmd, "unrestrict")) {
			char what[64];
			snprintf(what, sizeof what, "psql meta-command \\%s", k->cmd);
			return ck_refuse(k, what);
		}
		k->s = CK_METAARGS;
		*adv = 0;
		return TS_OK;
	case CK_METAARGS:
		if (c == '\n') {
			k->line++;
			k->s = CK_SQL;
		} else if (c == '\\' || c == '`') {
			char what[64];
			snprintf(what, sizeof what, "%s after psql meta-command \\%s",
			         c == '`' ? "a backtick" : "another backslash", k->cmd);
			return ck_refuse(k, what);
		}
		return TS_OK;
	case CK_COPYREST:
		if (c == '\n') {
			k->line++;
			k->s = CK_DATA;
			k->data_bol = true;
		} else if (c != ' ' && c != '\t' && c != '\r') {
			return ck_refuse(k, "text after COPY ... FROM stdin; on its line");
		}
		return TS_OK;
	case CK_DATA:
		if (k->data_bol && c == '\\' && next == '.') {
			int n2 = i + 2 < len ? b[i + 2] : -1;
			int n3 = i + 3 < len ? b[i + 3] : -1;
			if (n2 == '\n' || n2 < 0 || (n2 == '\r' && (n3 == '\n' || n3 < 0))) {
				*adv = n2 < 0 ? 2 : n2 == '\n' ? 3 : n3 < 0 ? 3 : 4;
				if (n2 >= 0 && (n2 == '\n' || n3 == '\n'))
					k->line++;
				k->s = CK_SQL;
				return TS_OK;
			}
		}
		k->data_bol = c == '\n';
		if (c == '\n')
			k->line++;
		return TS_OK;
	}
	return TS_OK;
}

ts_err_code ts_pgdump_check(int fd, const char *desc, ts_err *e)
{
	enum { CHUNK = 1 << 20, KEEP = 8 };
	unsigned char *buf = malloc(CHUNK + KEEP);
	ck k = { .s = CK_SQL, .line = 1, .desc = desc, .e = e };
	size_t have = 0;
	off_t off = 0;
	bool eof = false;
	ts_err_code rc = TS_OK;

	if (!buf)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	ck_new_statement(&k);
	while (rc == TS_OK && (!eof || have)) {
		size_t i = 0, limit, adv;

		if (!eof) {
			ssize_t n = pread(fd, buf + have, CHUNK + KEEP - have, off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				rc = ts_err_sys(e, errno, "%s: cannot read", desc);
				break;
			}
			if (n == 0)
				eof = true;
			have += (size_t)n;
			off += n;
		}
		/* Keep a few bytes for look-ahead unless nothing follows them. */
		limit = eof ? have : have > KEEP ? have - KEEP : 0;
		while (rc == TS_OK && i < limit) {
			rc = ck_step(&k, buf, i, have, &adv);
			i += adv;
		}
		memmove(buf, buf + i, have - i);
		have -= i;
		if (eof && rc == TS_OK && have == 0 && k.in_word)
			rc = ck_word_done(&k);
		if (eof && rc == TS_OK && k.s == CK_META && have == 0) {
			/* "\cmd" at the very end */
			unsigned char nl = '\n';
			rc = ck_step(&k, &nl, 0, 1, &adv);
			break;
		}
	}
	free(buf);
	return rc;
}
