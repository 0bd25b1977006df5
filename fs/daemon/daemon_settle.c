/* daemon_settle.c - the stager's settle rules (daemon_settle.h). */
#include "daemon_settle.h"

void dmn_settle_event(dmn_settle *s, int64_t now)
{
	s->last = now;
	if (!s->dirty)
		s->first = now;
	s->dirty = true;
}

void dmn_settle_rebuilt(dmn_settle *s)
{
	s->dirty = true;
	s->first = s->last = 0;
}

void dmn_settle_built_clean(dmn_settle *s)
{
	s->dirty = false;
}

int64_t dmn_settle_due(const dmn_settle *s, size_t nopen)
{
	int64_t due;

	if (!s->dirty)
		return -1;
	due = nopen ? s->first + DMN_SETTLE_MAX_WAIT_MS : s->last + DMN_SETTLE_QUIET_MS;
	if (due > s->first + DMN_SETTLE_MAX_WAIT_MS)
		due = s->first + DMN_SETTLE_MAX_WAIT_MS;
	return due < s->next_ok ? s->next_ok : due;
}

void dmn_settle_refreshed(dmn_settle *s, int64_t now, int64_t took)
{
	int64_t gap = took * DMN_SETTLE_GAP_X;

	s->dirty = false;
	s->next_ok = now + (gap > DMN_SETTLE_GAP_MS ? gap : DMN_SETTLE_GAP_MS);
}

void dmn_settle_busy(dmn_settle *s, int64_t now)
{
	s->next_ok = now + DMN_SETTLE_BUSY_MS;
}
