/* daemon_handles.h - how many files and directories the kernel has open
 * below each snapshot of the mount (open/opendir not yet released), so that
 * rmdir and keep= leave a snapshot in use alone (doc/contract.md section 2).
 *
 * A snapshot is known by the device and inode of STORE/NAME/tree: a rename
 * of the snapshot while a file is open keeps it (libfuse then releases the
 * handle under the new name).  Thread-safe: mu protects the table, a leaf
 * lock (daemon.h, lock order).
 *
 * Ownership: the table is malloc'd by the set; dmn_handles_free releases it.
 */
#ifndef TS_DAEMON_HANDLES_H
#define TS_DAEMON_HANDLES_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dmn_handle_count {
	dev_t dev;
	ino_t ino;
	unsigned long n;               /* > 0: entries with 0 are dropped */
} dmn_handle_count;

typedef struct dmn_handles {
	pthread_mutex_t mu;
	dmn_handle_count *v;           /* under mu: one per snapshot with handles */
	size_t n, cap;                 /* under mu */
} dmn_handles;

void dmn_handles_init(dmn_handles *h);
/* A handle below the snapshot whose tree is dev:ino was opened (0 if the
 * table could not grow: the caller then refuses the open) or released. */
int dmn_handles_open(dmn_handles *h, dev_t dev, ino_t ino);
void dmn_handles_release(dmn_handles *h, dev_t dev, ino_t ino);
/* Handles open below that snapshot now. */
unsigned long dmn_handles_count(dmn_handles *h, dev_t dev, ino_t ino);
/* Frees the table and destroys the mutex. */
void dmn_handles_free(dmn_handles *h);

#endif
