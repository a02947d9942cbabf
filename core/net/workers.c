/*
 * workers.c - a small pool of threads that runs jobs for one libuv loop:
 * the handshake's key job (crypto_box_beforenm and the proof-of-work
 * check, core/wire/handshake.c) so that the loop never blocks on them and
 * handshakes use every core.
 *
 * A job is caller-owned memory (embedded in a connection: nothing is
 * allocated per job). `run` is called on a worker thread and must touch
 * only the job; `done` is called on the loop thread afterwards, from a
 * uv_async_t. Jobs queue FIFO under one mutex; finished jobs go back on a
 * second list, and one uv_async_send wakes the loop for all of them.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "node_internal.h"

struct lp2p_workers {
  uv_loop_t *loop;
  uv_async_t async; /* unref'd: jobs keep the loop alive through their
                       connections' handles, not through the pool */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  lp2p_work *queue, *queue_tail; /* under mu: waiting to run */
  lp2p_work *finished;           /* under mu: run, `done` not called yet */
  int stop;                      /* under mu */
  int nthreads;
  pthread_t threads[LP2P_WORKERS_MAX];
};


static void *worker_main(void *arg) {
  lp2p_workers *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->queue == NULL && !w->stop)
      pthread_cond_wait(&w->cv, &w->mu);
    if (w->stop)
      break;
    lp2p_work *job = w->queue;
    w->queue = job->next;
    if (w->queue == NULL)
      w->queue_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    job->run(job);
    pthread_mutex_lock(&w->mu);
    int wake = w->finished == NULL; /* one send covers a whole batch */
    job->next = w->finished;
    w->finished = job;
    if (wake)
      uv_async_send(&w->async);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}


/* On the loop thread: call `done` of every finished job, oldest first. */
static void on_finished(uv_async_t *a) {
  lp2p_workers *w = a->data;
  pthread_mutex_lock(&w->mu);
  lp2p_work *list = w->finished;
  w->finished = NULL;
  pthread_mutex_unlock(&w->mu);
  lp2p_work *rev = NULL; /* the list is newest first */
  while (list != NULL) {
    lp2p_work *next = list->next;
    list->next = rev;
    rev = list;
    list = next;
  }
  while (rev != NULL) {
    lp2p_work *next = rev->next;
    rev->done(rev);
    rev = next;
  }
}


/* Start threads up to `n` (capped at LP2P_WORKERS_MAX), every signal
 * blocked in them so that signals keep going to the loop thread. */
int lp2p_workers_grow(lp2p_workers *w, int n) {
  if (n > LP2P_WORKERS_MAX)
    n = LP2P_WORKERS_MAX;
  if (w->nthreads >= n)
    return 0; /* a node joining the loop's pool: no system call */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  while (w->nthreads < n) {
    if (pthread_create(&w->threads[w->nthreads], NULL, worker_main, w) != 0) {
      rc = LP2P_ENOMEM;
      break;
    }
    w->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return w->nthreads > 0 ? 0 : rc;
}


lp2p_workers *lp2p_workers_new(uv_loop_t *loop, int n, int *err) {
  lp2p_workers *w = calloc(1, sizeof *w);
  *err = LP2P_ENOMEM;
  if (w == NULL)
    return NULL;
  w->loop = loop;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  int rc = uv_async_init(loop, &w->async, on_finished);
  if (rc < 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    *err = rc;
    return NULL;
  }
  w->async.data = w;
  uv_unref((uv_handle_t *)&w->async);
  if ((rc = lp2p_workers_grow(w, n)) < 0) {
    lp2p_workers_free(w);
    *err = rc;
    return NULL;
  }
  *err = 0;
  return w;
}


void lp2p_workers_submit(lp2p_workers *w, lp2p_work *job) {
  job->next = NULL;
  pthread_mutex_lock(&w->mu);
  if (w->queue_tail != NULL)
    w->queue_tail->next = job;
  else
    w->queue = job;
  w->queue_tail = job;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}


static void on_async_closed(uv_handle_t *h) {
  free(h->data);
}


/*
 * Stop and join the threads (a job being run finishes first), then call
 * `done` of every job, finished or still queued (those with `canceled`
 * set, never run), so that their owners can let go of them; then close
 * the async handle, which frees the pool.
 */
void lp2p_workers_free(lp2p_workers *w) {
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  for (int i = 0; i < w->nthreads; i++)
    pthread_join(w->threads[i], NULL);
  w->nthreads = 0;
  on_finished(&w->async);
  lp2p_work *q = w->queue;
  w->queue = w->queue_tail = NULL;
  while (q != NULL) {
    lp2p_work *next = q->next;
    q->canceled = 1;
    q->done(q);
    q = next;
  }
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  uv_close((uv_handle_t *)&w->async, on_async_closed);
}


int lp2p__cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > LP2P_WORKERS_MAX ? LP2P_WORKERS_MAX : (int)n;
}
