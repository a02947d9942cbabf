/*
 * workers.c - a small pool of threads that runs jobs for one libuv loop:
 * the handshake's key job (crypto_box_beforenm and the proof-of-work
 * check, core/wire/handshake.c) so that a burst of handshakes uses every
 * core and the loop does not run all of their crypto itself.
 *
 * A job is caller-owned memory (embedded in a connection: nothing is
 * allocated per job). Jobs submitted during a loop pass are handed out
 * once, just before the loop polls again (a prepare handle): a thread is
 * worth waking only for a share of a batch. Handing a job over costs
 * about as much as the job (a futex wake, two context switches, an
 * eventfd write and an extra loop wake-up: 20-30 us of CPU per job,
 * measured), so a pass with one job runs it on the loop; of k jobs the
 * threads get k * n / (n + 1) and the loop runs the rest meanwhile.
 * `run` (on a thread or the loop) touches only the job; `done` is called
 * on the loop thread afterwards, from a uv_async_t for the threads' jobs.
 * Handed-out jobs queue FIFO under one mutex; finished ones go back on a
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
  uv_prepare_t hand_out; /* unref'd; active while jobs are pending */
  lp2p_work *pending, *pending_tail; /* loop thread: this pass's jobs */
  unsigned npending;
  int closing; /* handles left to close before the pool is freed */
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


/*
 * Before the loop polls: hand this pass's jobs out. The threads get their
 * share (k * n / (n + 1) of k, none of a single job) in one lock and one
 * wake per thread needed; the loop runs the rest now. Jobs run here are
 * done at once; `done` may submit (the next pass gets those) and may free
 * the pool's nodes: nothing of w is touched after the first `done`.
 */
static void on_hand_out(uv_prepare_t *p) {
  lp2p_workers *w = p->data;
  lp2p_work *list = w->pending;
  unsigned k = w->npending;
  w->pending = w->pending_tail = NULL;
  w->npending = 0;
  uv_prepare_stop(p);
  unsigned give = k * (unsigned)w->nthreads / ((unsigned)w->nthreads + 1);
  if (give > 0) {
    lp2p_work *last = list;
    for (unsigned i = 1; i < give; i++)
      last = last->next;
    lp2p_work *mine = last->next;
    last->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->queue_tail != NULL)
      w->queue_tail->next = list;
    else
      w->queue = list;
    w->queue_tail = last;
    for (unsigned i = 0; i < give && (int)i < w->nthreads; i++)
      pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    list = mine;
  }
  for (lp2p_work *job = list; job != NULL; job = job->next)
    job->run(job);
  while (list != NULL) {
    lp2p_work *next = list->next;
    list->done(list);
    list = next;
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
  uv_prepare_init(loop, &w->hand_out); /* cannot fail */
  w->hand_out.data = w;
  uv_unref((uv_handle_t *)&w->hand_out);
  if ((rc = lp2p_workers_grow(w, n)) < 0) {
    lp2p_workers_free(w);
    *err = rc;
    return NULL;
  }
  *err = 0;
  return w;
}


/* On the loop thread: the job waits for the end of this pass. */
void lp2p_workers_submit(lp2p_workers *w, lp2p_work *job) {
  job->next = NULL;
  if (w->pending_tail != NULL)
    w->pending_tail->next = job;
  else
    w->pending = job;
  w->pending_tail = job;
  if (w->npending++ == 0)
    uv_prepare_start(&w->hand_out, on_hand_out);
}


static void on_handle_closed(uv_handle_t *h) {
  lp2p_workers *w = h->data;
  if (--w->closing == 0)
    free(w);
}


static void cancel_all(lp2p_work *q) {
  while (q != NULL) {
    lp2p_work *next = q->next;
    q->canceled = 1;
    q->done(q);
    q = next;
  }
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
  lp2p_work *q = w->queue, *p = w->pending;
  w->queue = w->queue_tail = w->pending = w->pending_tail = NULL;
  w->npending = 0;
  cancel_all(q);
  cancel_all(p);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  w->closing = 2;
  uv_close((uv_handle_t *)&w->hand_out, on_handle_closed);
  uv_close((uv_handle_t *)&w->async, on_handle_closed);
}


int lp2p__cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > LP2P_WORKERS_MAX ? LP2P_WORKERS_MAX : (int)n;
}
