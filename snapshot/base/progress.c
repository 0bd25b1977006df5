/* progress.c - shared formatting for progress and summaries. */
#include "base/progress.h"

#include <stdio.h>

void ts_human_bytes(double b, char *buf, unsigned len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int k = 0;
	while (b >= 1024 && k < 4) {
		b /= 1024;
		k++;
	}
	snprintf(buf, len, k ? "%.1f %s" : "%.0f %s", b, unit[k]);
}
