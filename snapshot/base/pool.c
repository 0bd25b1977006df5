/* pool.c - run one job per index on one thread per core (see pool.h). */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "base/copy.h"
#include "base/ioprio.h"

#define POOL_MAX_THREADS 4

typedef struct pool_state {
	size_t n;
	int flags;
	pthread_t caller;          /* never switched to SCHED_IDLE */
	ts_pool_fn fn;
	void *arg;
	size_t next;               /* next index to take (atomic) */
	pthread_mutex_t mu;
	ts_err_code rc;            /* first failure: written under mu, read atomically */
	ts_err err;
} pool_state;

static void *pool_worker(void *arg)
{
	pool_state *p = arg;
	ts_err e;
	int prio = p->flags & TS_POOL_IDLE_IO ? ts_ioprio_idle() : -1;
	/* Only on a thread of the pool's own (see ts_pool_run): an unprivileged
	 * thread cannot leave SCHED_IDLE again. */
	if ((p->flags & TS_POOL_IDLE_CPU) && !pthread_equal(pthread_self(), p->caller)) {
		struct sched_param sp = { 0 };
		(void)sched_setscheduler(0, SCHED_IDLE, &sp);
	}

	ts_err_clear(&e);
	while (__atomic_load_n(&p->rc, __ATOMIC_RELAXED) == TS_OK) {
		size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
		if (i >= p->n)
			break;
		ts_err_code rc = p->fn(p->arg, i, &e);
		if (rc != TS_OK) {
			pthread_mutex_lock(&p->mu);
			if (p->rc == TS_OK) {
				p->err = e;
				__atomic_store_n(&p->rc, rc, __ATOMIC_RELAXED);
			}
			pthread_mutex_unlock(&p->mu);
			break;
		}
	}
	ts_copy_thread_done();   /* waits for this thread's last writeback */
	ts_ioprio_restore(prio);   /* (-1: nothing to restore) */
	return NULL;
}

ts_err_code ts_pool_run(size_t n, size_t min_parallel, int flags, ts_pool_fn fn, void *arg,
                        ts_err *e)
{
	pool_state p = { .n = n, .flags = flags, .fn = fn, .arg = arg, .caller = pthread_self() };
	bool caller_works = !(flags & TS_POOL_IDLE_CPU);
	pthread_t th[POOL_MAX_THREADS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nth = ncpu < 1 ? 1 : ncpu > POOL_MAX_THREADS ? POOL_MAX_THREADS : (int)ncpu, started = 0;

	if (n < min_parallel)
		nth = 1;
	ts_err_clear(&p.err);
	pthread_mutex_init(&p.mu, NULL);
	for (int t = caller_works ? 1 : 0; t < nth; t++)
		if (pthread_create(&th[started], NULL, pool_worker, &p) == 0)
			started++;
	if (caller_works || started == 0)
		pool_worker(&p);   /* no thread of its own could start: at the caller's priority */
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&p.mu);
	if (p.rc != TS_OK && e)
		*e = p.err;
	return p.rc;
}
