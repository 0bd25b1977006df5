/* meminfo.c - how much may be left dirty in the page cache (meminfo.h). */
#include "base/meminfo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of "KEY: N kB" in /proc/meminfo's text, 0 when absent. */
static uint64_t meminfo_kib(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

uint64_t ts_dirty_budget(void)
{
	char buf[8192];
	uint64_t bg_bytes = 0, ratio = 10, avail, dirty, limit;
	FILE *f;

	if ((f = fopen("/proc/sys/vm/dirty_background_bytes", "re"))) {
		if (fscanf(f, "%" SCNu64, &bg_bytes) != 1)
			bg_bytes = 0;
		fclose(f);
	}
	if ((f = fopen("/proc/sys/vm/dirty_background_ratio", "re"))) {
		if (fscanf(f, "%" SCNu64, &ratio) != 1)
			ratio = 10;
		fclose(f);
	}
	if (!(f = fopen("/proc/meminfo", "re")))
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	avail = meminfo_kib(buf, "MemAvailable:") * 1024;
	dirty = (meminfo_kib(buf, "Dirty:") + meminfo_kib(buf, "Writeback:")) * 1024;
	limit = bg_bytes ? bg_bytes : avail / 100 * ratio;
	limit = limit / 10 * 9;
	return limit > dirty ? limit - dirty : 0;
}

