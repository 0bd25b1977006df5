/* daemon_auto.c - first-access names and their period (daemon_auto.h). */
#include "daemon_auto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ts_err_code dmn_auto_parse(dmn_auto *a, const char *spec, ts_err *e)
{
	char *dup = strdup(spec), *save = NULL, *tok;
	ts_err_code rc = TS_OK;

	if (!dup)
		return ts_err_set(e, TS_ERR_NOMEM, "out of memory");
	for (tok = strtok_r(dup, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		if (a->n == DMN_MAX_AUTO) {
			rc = ts_err_set(e, TS_ERR_USAGE, "auto=%s: at most %d formats", spec,
			                DMN_MAX_AUTO);
			goto out;
		}
		a->fmts[a->n] = strdup(tok);
		if (!a->fmts[a->n]) {
			rc = ts_err_set(e, TS_ERR_NOMEM, "out of memory");
			goto out;
		}
		a->n++;
	}
out:
	free(dup);
	return rc;
}

void dmn_auto_free(dmn_auto *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->fmts[i]);
	a->n = 0;
}

unsigned dmn_auto_mask(const dmn_auto *a, const char *name, time_t now)
{
	struct tm tm;
	char buf[NAME_MAX + 1];
	unsigned mask = 0;

	localtime_r(&now, &tm);
	for (int i = 0; i < a->n; i++) {
		size_t n = strftime(buf, sizeof buf, a->fmts[i], &tm);
		if (n > 0 && !strcmp(buf, name))
			mask |= 1u << i;
	}
	return mask;
}

size_t dmn_auto_names(const dmn_auto *a, time_t now, char buf[][NAME_MAX + 1],
                      const char **ptrs)
{
	struct tm tm;
	size_t k = 0;

	localtime_r(&now, &tm);
	for (int i = 0; i < a->n; i++)
		if (strftime(buf[k], NAME_MAX + 1, a->fmts[i], &tm) > 0) {
			ptrs[k] = buf[k];
			k++;
		}
	return k;
}

bool dmn_auto_spent(const dmn_auto *a, const char *name, unsigned mask)
{
	for (int i = 0; i < a->n; i++)
		if ((mask & (1u << i)) && !strcmp(a->made[i], name))
			return true;
	return false;
}

void dmn_auto_record(dmn_auto *a, const char *name, unsigned mask)
{
	for (int i = 0; i < a->n; i++)
		if (mask & (1u << i))
			snprintf(a->made[i], sizeof a->made[i], "%s", name);
}
