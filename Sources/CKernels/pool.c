// The worker pool behind Runtime's parallelFor (see ckernels.h). Why not Grand Central Dispatch:
// concurrentPerform puts its worker to sleep when a loop ends, and a forward pass of
// EfficientNet at batch 1 is about a hundred loops of 10-200 microseconds each; waking a sleeping
// virtual CPU costs tens of microseconds, which was a third of the second core's time. Here a
// worker spins (with `pause`) a while after a job before it sleeps: 8192 pauses, about 0.2 ms on
// the 2-core AMD EPYC (Zen 5) the figures were measured on. Longer spins measured slower there on a
// busy machine (the spinning thread takes the core from the one doing the work).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
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
static int started;                 /* pool threads running; guarded by caller_lock */

/* Who runs which task, without the caller ever waiting for a thread that has no task: the claim
   word holds the job's generation (high 32 bits) and its next task (low 32), or CLOSED while the
   caller writes the next job's fields. A thread reads the fields, then claims a task by a
   compare-and-swap of the word it read them under; the swap succeeds only if the caller has not
   closed the job since (its closing exchange would then have been ordered after the swap, so the
   fields read were this job's), and while a claimed task runs the job cannot end. The caller waits
   only for `done` to reach the task count: a thread descheduled by a busy machine holds up a loop
   only if it was preempted inside a task, not by missing the job altogether. */
#define CLOSED UINT64_MAX
static _Atomic uint64_t claim = CLOSED;
static _Atomic long done;
static _Atomic(ck_task_fn) job_fn;
static void *_Atomic job_context;
static _Atomic long job_tasks;
static _Atomic int job_workers;

static _Thread_local int inside;
/* On a pool thread: its worker number and the last generation it acknowledged (the job after it is
   its next one). */
static _Thread_local int pool_worker;          /* 0: not a pool thread */
static _Thread_local unsigned long seen;

int ck_pool_inside(void) { return inside; }

/* Idle work (see ckernels.h). Set and cleared under `idle_lock` (rarely); read without it.
   `idle_running` counts the threads between deciding to call the provider and returning from
   it: clearing stores NULL first, then waits for the count to drop, so (all sequentially
   consistent) a thread either saw NULL or is waited for, and a context is stored before its
   function is. */
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(ck_idle_fn) idle_fn;
static void *_Atomic idle_context;
static _Atomic int idle_available;
static _Atomic int idle_running;

int ck_pool_set_idle_work(ck_idle_fn fn, void *context) {
    pthread_mutex_lock(&idle_lock);
    const int free = atomic_load(&idle_fn) == NULL;
    if (free) {
        atomic_store(&idle_available, 0);
        atomic_store(&idle_context, context);
        atomic_store(&idle_fn, fn);
    }
    pthread_mutex_unlock(&idle_lock);
    return free;
}

void ck_pool_offer_idle_work(void *context, int available) {
    if (atomic_load(&idle_fn) != NULL && atomic_load(&idle_context) == context) atomic_store(&idle_available, available);
}

void ck_pool_clear_idle_work(void *context) {
    pthread_mutex_lock(&idle_lock);
    if (atomic_load(&idle_fn) != NULL && atomic_load(&idle_context) == context) {
        atomic_store(&idle_available, 0);
        atomic_store(&idle_fn, NULL);
        while (atomic_load(&idle_running) > 0) CPU_RELAX();
    }
    pthread_mutex_unlock(&idle_lock);
}

/* One unit of idle work if there is one; 1 if it ran one. */
static int run_idle(void) {
    if (!atomic_load_explicit(&idle_available, memory_order_relaxed)) return 0;
    atomic_fetch_add(&idle_running, 1);
    const ck_idle_fn fn = atomic_load(&idle_fn);
    int did = 0;
    if (fn) {
        void *const context = atomic_load(&idle_context);
        const int was = inside;
        inside = 1;
        did = fn(context);
        inside = was;
    }
    atomic_fetch_sub(&idle_running, 1);
    return did;
}

/* Runs tasks of job `gen` until none is left (or the job is another's already). */
static void run_tasks(int worker, uint32_t gen) {
    uint64_t word = atomic_load_explicit(&claim, memory_order_acquire);
    for (;;) {
        if (word == CLOSED || (uint32_t)(word >> 32) != gen) return;
        const ck_task_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
        void *const context = atomic_load_explicit(&job_context, memory_order_relaxed);
        const long tasks = atomic_load_explicit(&job_tasks, memory_order_relaxed);
        const int workers = atomic_load_explicit(&job_workers, memory_order_relaxed);
        const long t = (long)(word & 0xffffffffu);
        /* Fields read while the caller was closing the job may be the next job's; leaving early
           is harmless (the caller runs every task nobody claims), running needs the swap. */
        if (worker >= workers || t >= tasks) return;
        if (atomic_compare_exchange_weak_explicit(&claim, &word, word + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(context, worker, t);
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            word = atomic_load_explicit(&claim, memory_order_acquire);
        }
    }
}

typedef struct { int worker; unsigned long generation; } thread_start;

/* Takes this thread's part of the job published as generation `now` (none if it is over). */
static void take_job(unsigned long now) {
    seen = now;
    run_tasks(pool_worker, (uint32_t)now);
}

static void *pool_thread(void *arg) {
    const thread_start start = *(thread_start *)arg;
    free(arg);
    pool_worker = start.worker;
    seen = start.generation;                   /* the jobs after this one are this thread's */
    inside = 1;
    for (;;) {
        unsigned long now = seen;
        int spins = 0;
        while ((now = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
            /* Between jobs: idle work while there is some, else spin a while, then sleep until
               a job. */
            if (run_idle()) {
                spins = 0;
                continue;
            }
            if (++spins < SPINS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
            spins = 0;
        }
        take_job(now);
    }
    return NULL;
}

static void wake_sleepers(void) {
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
}

/* A forked child has none of the parent's pool threads (and may inherit a lock held by one of
   the parent's other threads): it starts a pool of its own. */
static void after_fork_in_child(void) {
    started = 0;
    atomic_store(&sleepers, 0);
    inside = 0;
    atomic_store(&idle_fn, NULL);
    atomic_store(&idle_available, 0);
    atomic_store(&idle_running, 0);
    pthread_mutex_init(&idle_lock, NULL);
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
    if (workers <= 1 || inside || tasks >= (long)0xffffffffL || pthread_mutex_trylock(&caller_lock) != 0) {
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
    const unsigned long next = atomic_load(&generation) + 1;
    /* Closing first: a thread that read the previous job's fields can no longer claim with them. */
    atomic_exchange_explicit(&claim, CLOSED, memory_order_acq_rel);
    atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job_context, context, memory_order_relaxed);
    atomic_store_explicit(&job_tasks, tasks, memory_order_relaxed);
    atomic_store_explicit(&job_workers, workers, memory_order_relaxed);
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    atomic_store_explicit(&claim, (uint64_t)(uint32_t)next << 32, memory_order_release);
    atomic_store(&generation, next);             /* wakes the spinning and sleeping threads */
    wake_sleepers();
    inside = 1;
    run_tasks(0, (uint32_t)next);
    inside = 0;
    while (atomic_load_explicit(&done, memory_order_acquire) < tasks) {
        if (!run_idle()) CPU_RELAX();
    }
    pthread_mutex_unlock(&caller_lock);
}
