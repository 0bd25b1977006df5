/* daemon_plus.h - which snapshot directories the kernel has had with
 * attributes (daemon_plus.c says why).  Thread-safe: mu protects the
 * table, a leaf lock (daemon.h, lock order).
 *
 * Ownership: keys is malloc'd by the set; dmn_plus_free releases it.
 */
#ifndef TS_DAEMON_PLUS_H
#define TS_DAEMON_PLUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Past this many directories the set starts again (8 MiB of keys). */
#define DMN_PLUS_MAX (1u << 20)

typedef struct dmn_plus {
	pthread_mutex_t mu;
	uint64_t *keys;                /* under mu: open addressing, 0 = empty */
	size_t cap, n;                 /* under mu */
} dmn_plus;

void dmn_plus_init(dmn_plus *p);
bool dmn_plus_seen(dmn_plus *p, dev_t dev, ino_t ino);
void dmn_plus_mark(dmn_plus *p, dev_t dev, ino_t ino);
void dmn_plus_forget(dmn_plus *p, dev_t dev, ino_t ino);
/* Frees the table and destroys the mutex. */
void dmn_plus_free(dmn_plus *p);

#endif
