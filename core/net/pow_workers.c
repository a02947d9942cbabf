/*
 * pow_workers.c - the proof-of-work search on threads: lp2p_pow_search
 * (core/wire/identity.c, one thread) run by `threads` workers at once,
 * the first stamp found wins. The calling thread waits, and calls a
 * progress callback about every `period` seconds; a non-zero result
 * cancels. Workers only run lp2p_pow_search and touch the job below, so
 * the callback may call anything (the Lua binding calls Lua from it).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lp2p_node.h"

/* The shared state of one search. */
typedef struct pow_job pow_job;

/* A cache line each (the job is aligned to one too): `seen` is written on
 * every try, and workers sharing a line slowed each other down by a third. */
typedef struct pow_worker {
  _Alignas(64) pow_job *job;
  pthread_t thread;
  uint64_t seen;      /* tries at the last progress callback */
  uint64_t published; /* tries already added to job->tries */
} pow_worker;

struct pow_job {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint8_t pk[LP2P_PK_BYTES];
  lp2p_pow_target target;
  uint64_t every;
  atomic_int stop;                /* found, canceled or error: all stop */
  atomic_uint_least64_t tries;    /* published tries of every worker */
  int running;                    /* under mu: workers not yet finished */
  int found;                      /* under mu */
  uint8_t stamp[LP2P_STAMP_BYTES]; /* under mu, when found */
  int nworkers;
  pow_worker workers[];
};


/* lp2p_pow_search calls this after every try (every = 1, which costs
 * nothing next to a BLAKE2b compression) so that the count stays exact;
 * the shared counter and the stop flag are only touched every job->every
 * tries. */
static int worker_progress(void *ud, uint64_t tries) {
  pow_worker *w = ud;
  w->seen = tries;
  if (tries - w->published < w->job->every)
    return 0;
  atomic_fetch_add_explicit(&w->job->tries, tries - w->published,
                            memory_order_relaxed);
  w->published = tries;
  return atomic_load_explicit(&w->job->stop, memory_order_relaxed);
}


static void *worker_main(void *arg) {
  pow_worker *w = arg;
  pow_job *job = w->job;
  uint8_t stamp[LP2P_STAMP_BYTES];
  int rc = lp2p_pow_search(stamp, job->pk, &job->target, 1, worker_progress,
                           w);
  /* On success the last try never reached the callback. */
  uint64_t mine = rc == 0 ? w->seen + 1 : w->seen;
  pthread_mutex_lock(&job->mu);
  atomic_fetch_add_explicit(&job->tries, mine - w->published,
                            memory_order_relaxed);
  if (rc == 0 && !job->found) {
    job->found = 1;
    memcpy(job->stamp, stamp, sizeof stamp);
  }
  if (rc == 0)
    atomic_store(&job->stop, 1);
  job->running--;
  pthread_cond_signal(&job->cv);
  pthread_mutex_unlock(&job->mu);
  return NULL;
}


static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static void mono_deadline(struct timespec *ts, double at) {
  ts->tv_sec = (time_t)at;
  ts->tv_nsec = (long)((at - (double)ts->tv_sec) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}


/* Start the workers with every signal blocked, so that signals (SIGINT,
 * libuv's handlers) keep going to the calling thread. Returns how many
 * started. */
static int start_workers(pow_job *job) {
  sigset_t all, old;
  int started = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int i = 0; i < job->nworkers; i++) {
    pow_worker *w = &job->workers[started];
    w->job = job;
    w->seen = w->published = 0;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
      break;
    started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return started;
}


int lp2p_pow_search_workers(uint8_t stamp[LP2P_STAMP_BYTES], uint64_t *tries,
                            const uint8_t pk[LP2P_PK_BYTES],
                            const lp2p_pow_target *target, int threads,
                            uint64_t every, double period,
                            lp2p_pow_workers_cb progress, void *ud) {
  if (threads < 1)
    threads = 1;
  if (threads > LP2P_POW_THREADS_MAX)
    threads = LP2P_POW_THREADS_MAX;
  if (every < 1)
    every = 1;
  /* Aligned to a cache line, so each worker has a line of its own. */
  size_t size = sizeof(pow_job) + (size_t)threads * sizeof(pow_worker);
  size = (size + 63) & ~(size_t)63;
  pow_job *job = aligned_alloc(64, size);
  if (job == NULL)
    return LP2P_ENOMEM;
  memset(job, 0, size);
  memcpy(job->pk, pk, sizeof job->pk);
  job->target = *target;
  job->every = every;
  job->nworkers = threads;
  atomic_init(&job->stop, 0);
  atomic_init(&job->tries, 0);

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (pthread_cond_init(&job->cv, &ca) != 0) {
    pthread_condattr_destroy(&ca);
    free(job);
    return LP2P_ENOMEM;
  }
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&job->mu, NULL);

  double start = mono_now();
  pthread_mutex_lock(&job->mu);
  int started = start_workers(job);
  job->running = started;
  int canceled = 0;
  double next = start + period;
  while (started > 0 && !job->found && job->running > 0) {
    struct timespec ts;
    mono_deadline(&ts, next);
    pthread_cond_timedwait(&job->cv, &job->mu, &ts);
    if (job->found || job->running == 0)
      break;
    double now = mono_now();
    if (now < next)
      continue;
    next = now + period;
    if (progress == NULL)
      continue;
    pthread_mutex_unlock(&job->mu);
    canceled = progress(ud, (uint64_t)atomic_load(&job->tries), now - start);
    pthread_mutex_lock(&job->mu);
    if (canceled)
      break;
  }
  atomic_store(&job->stop, 1);
  int found = job->found;
  pthread_mutex_unlock(&job->mu);
  for (int i = 0; i < started; i++)
    pthread_join(job->workers[i].thread, NULL);
  pthread_mutex_destroy(&job->mu);
  pthread_cond_destroy(&job->cv);

  int rc = 0;
  if (started == 0)
    rc = LP2P_ENOMEM;
  else if (canceled || !found)
    rc = LP2P_ECANCELED;
  else
    memcpy(stamp, job->stamp, LP2P_STAMP_BYTES);
  if (tries != NULL)
    *tries = (uint64_t)atomic_load(&job->tries);
  free(job);
  return rc;
}
