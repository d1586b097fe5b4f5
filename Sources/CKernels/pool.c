// The worker pool behind Runtime's parallelFor (see ckernels.h). Why not Grand Central Dispatch:
// concurrentPerform puts its worker to sleep when a loop ends, and a forward pass of
// EfficientNet at batch 1 is about a hundred loops of 10-200 microseconds each; waking a sleeping
// virtual CPU costs tens of microseconds, which was a third of the second core's time. Here a
// worker spins (with `pause`) for about half a millisecond after a job before it sleeps.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

enum { MAX_THREADS = 256, SPINS = 8192 };

static pthread_mutex_t caller_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic unsigned long generation;
static _Atomic int sleepers;
static _Atomic int pending;
static _Atomic long next_task;
static int started;                 /* pool threads running; guarded by caller_lock */

/* The job; written by the caller before `generation` is bumped (release), read after (acquire). */
static ck_task_fn job_fn;
static void *job_context;
static long job_tasks;
static int job_workers;

static _Thread_local int inside;

int ck_pool_inside(void) { return inside; }

static void run_tasks(int worker) {
    for (;;) {
        const long t = atomic_fetch_add_explicit(&next_task, 1, memory_order_relaxed);
        if (t >= job_tasks) break;
        job_fn(job_context, worker, t);
    }
}

typedef struct { int worker; unsigned long generation; } thread_start;

static void *pool_thread(void *arg) {
    const thread_start start = *(thread_start *)arg;
    free(arg);
    const int worker = start.worker;
    unsigned long seen = start.generation;     /* the jobs after this one are this thread's */
    inside = 1;
    for (;;) {
        unsigned long now = seen;
        for (int i = 0; i < SPINS && (now = atomic_load_explicit(&generation, memory_order_acquire)) == seen; i++)
            CPU_RELAX();
        if (now == seen) {
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while ((now = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = now;
        /* Every pool thread acknowledges every job, the ones it has no part in too, so none can
           still be reading this job's fields when the caller publishes the next. */
        if (worker < job_workers) run_tasks(worker);
        atomic_fetch_sub_explicit(&pending, 1, memory_order_release);
    }
    return NULL;
}

/* A forked child has none of the parent's pool threads (and may inherit a lock held by one of
   the parent's other threads): it starts a pool of its own. */
static void after_fork_in_child(void) {
    started = 0;
    atomic_store(&sleepers, 0);
    inside = 0;
    pthread_mutex_init(&caller_lock, NULL);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&wake, NULL);
}

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static void install_fork_handler(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

static void run_inline(long tasks, ck_task_fn fn, void *context) {
    const int was = inside;
    inside = 1;
    for (long t = 0; t < tasks; t++) fn(context, 0, t);
    inside = was;
}

void ck_pool_for(int workers, long tasks, ck_task_fn fn, void *context) {
    if (tasks <= 0) return;
    pthread_once(&fork_handler_once, install_fork_handler);
    if (workers > tasks) workers = (int)tasks;
    if (workers > MAX_THREADS) workers = MAX_THREADS;
    if (workers <= 1 || inside || pthread_mutex_trylock(&caller_lock) != 0) {
        run_inline(tasks, fn, context);
        return;
    }
    while (started < workers - 1) {
        thread_start *start = malloc(sizeof *start);
        if (!start) break;
        start->worker = started + 1;
        start->generation = atomic_load(&generation);
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int ok = pthread_create(&thread, &attr, pool_thread, start) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) {
            free(start);
            break;
        }
        started++;
    }
    if (workers > started + 1) workers = started + 1;
    job_fn = fn;
    job_context = context;
    job_tasks = tasks;
    job_workers = workers;
    atomic_store(&next_task, 0);
    atomic_store(&pending, started);
    atomic_fetch_add(&generation, 1);            /* publishes the job (seq_cst) */
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    inside = 1;
    run_tasks(0);
    inside = 0;
    while (atomic_load_explicit(&pending, memory_order_acquire) > 0) CPU_RELAX();
    pthread_mutex_unlock(&caller_lock);
}
