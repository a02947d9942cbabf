/*
 * conn_handshake.c - a connection's handshake input (conn_read.c reads
 * it): bytes fed to the state machine (core/wire/handshake.c), the key job
 * (beforenm, the proof-of-work check) on the loop's workers, the peer's
 * Ack deferred to the next loop turn, input that waits meanwhile and a
 * hang-up heard after it; the node's verdict on the metadata, and the
 * start of a running connection.
 */
#include <stddef.h>
#include <string.h>

#include <sodium.h>

#include "node_internal.h"


/* The node's verdict after the remote metadata: 1 when it closed c. */
static int decide(lp2p_conn *c) {
  lp2p__node_report(c, LP2P_REPORT_AUTHENTICATED);
  if (c->state != LP2P_CONN_HANDSHAKE)
    return 1; /* closed by the verdict */
  return 0;
}


/* The remote Ack arrived: the channel keys replace the handshake, the
 * connection runs with full token buckets, and the node counts it. */
static void establish(lp2p_conn *c) {
  lp2p_node *n = c->node;
  const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
  c->p2p_version = r->p2p_version;
  c->ddb_version = r->ddb_version;
  int rc = lp2p_hs_crypto(c->hs, &c->crypto);
  lp2p__conn_hs_release(c);
  if (rc < 0) {
    lp2p_conn_close(c, rc, NULL, 0);
    return;
  }
  uv_timer_stop(&c->timer);
  c->state = LP2P_CONN_RUNNING;
  c->p2p_tokens = n->cfg.p2p_burst;
  c->app_tokens = n->cfg.app_burst;
  c->tokens_at = uv_now(n->loop);
  c->pass = n->pass;
  lp2p__node_report(c, LP2P_REPORT_ESTABLISHED);
}


static void key_run(lp2p_work *w);
static void key_done(lp2p_work *w);
static void on_hs_resume(uv_timer_t *t);

/* handshake_event: our verdict is given, the handshake goes on. */
#define HS_DECIDED 2


/* The key job goes to the node's workers; our output waits for it. */
static void key_submit(lp2p_conn *c) {
  lp2p_node *n = c->node;
  c->key.work.run = key_run;
  c->key.work.done = key_done;
  c->key.work.canceled = 0;
  c->key_pending = 1;
  c->open_handles++; /* the job holds the connection (and so the node) */
  lp2p_workers_submit(n->workers, &c->key.work);
}


/* One handshake event: what it tells the connection. Returns 1 when the
 * handshake is over for this input (established, closed, or waiting for
 * the key job), 0 to feed on, or an error. */
static int handshake_event(lp2p_conn *c, int ev) {
  int rc;
  switch (ev) {
  case LP2P_HS_KEY_NEEDED:
    if ((rc = lp2p_hs_key_job(c->hs, &c->key.job)) < 0)
      return rc;
    key_submit(c);
    return 1;
  case LP2P_HS_CONN_MSG: {
    const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
    memcpy(c->peer_id, r->peer_id, sizeof c->peer_id);
    lp2p_peer_id_encode(c->peer_id_text, c->peer_id);
    c->has_peer_id = 1;
    if (c->incoming && r->msg.port != 0) {
      c->point = c->addr; /* its listening point: our view of its IP */
      c->point.port = r->msg.port;
    }
    return 0;
  }
  case LP2P_HS_METADATA:
    /* Our Ack stays queued: it leaves with whatever else this input
     * makes us say (one write). */
    return decide(c) ? 1 : HS_DECIDED;
  case LP2P_HS_ACKED:
    /* What we queued goes before the first framed byte. */
    if ((rc = lp2p__conn_flush_handshake(c)) < 0)
      return rc;
    establish(c);
    return 1;
  case LP2P_HS_NACKED: {
    const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
    lp2p_event e = {.type = LP2P_EV_NACKED, .conn = c->id};
    lp2p__conn_who(c, &e.u.nack.who);
    e.u.nack.motive = r->nack_motive;
    e.u.nack.points = r->nack_points;
    e.u.nack.npoints = r->nack_npoints;
    lp2p__node_emit(c->node, &e);
    lp2p_conn_close(c, LP2P_ENACK, "rejected by the peer (Nack)", 0);
    return 1;
  }
  default:
    return 0;
  }
}


/*
 * Keep input that must wait (a key job, the next loop turn) behind what
 * already waits. Past LP2P_HS_STASH bytes it moves to the heap and the
 * socket is no longer read until it is fed: an honest peer's verdict can
 * be a Nack of up to 100 points behind its metadata, and what one read
 * brought (LP2P_READ_SMALL during the handshake) is all a peer can make
 * us hold.
 */
static int hs_hold(lp2p_conn *c, const uint8_t *data, size_t len) {
  size_t need = c->hs_stash_len + len;
  uint8_t *dst = c->hs_spill != NULL ? c->hs_spill : c->hs_stash;
  if (need > LP2P_HS_STASH) {
    uint8_t *p = realloc(c->hs_spill, need);
    if (p == NULL)
      return LP2P_ENOMEM;
    if (c->hs_spill == NULL)
      memcpy(p, c->hs_stash, c->hs_stash_len);
    c->hs_spill = dst = p;
    lp2p__conn_set_reading(c, 0);
  }
  memcpy(dst + c->hs_stash_len, data, len);
  c->hs_stash_len = need;
  return 0;
}


/*
 * Feed handshake input. Everything it makes us say leaves in one write at
 * the end (the metadata with our Ack when both messages of the peer came
 * together), or before the first framed byte. While a key job runs, or
 * until the next loop turn after our verdict, the input waits (hs_hold).
 */
int lp2p__conn_hs_input(lp2p_conn *c, const uint8_t **data, size_t *len) {
  int rc = 0;
  while (*len > 0 && c->state == LP2P_CONN_HANDSHAKE && !c->key_pending &&
         !c->hs_deferred) {
    size_t used = 0;
    int ev = lp2p_hs_feed(c->hs, *data, *len, &used);
    *data += used;
    *len -= used;
    if (ev < 0)
      return ev;
    if ((rc = handshake_event(c, ev)) == HS_DECIDED) {
      /* The peer's Ack came with its metadata: read it at the next loop
       * turn, so that "connected" comes a turn after the verdict (what a
       * hook spawned meanwhile sees it), as with a peer that waits for
       * our metadata first. */
      rc = 0;
      if (*len > 0 && c->state == LP2P_CONN_HANDSHAKE) {
        c->hs_deferred = 1;
        uv_timer_start(&c->timer, on_hs_resume, 0, 0);
      }
      continue;
    }
    if (rc != 0)
      break;
    if (used == 0 && ev == LP2P_HS_NEED_MORE)
      break;
  }
  if (rc < 0)
    return rc;
  if ((c->key_pending || c->hs_deferred) && *len > 0 &&
      c->state == LP2P_CONN_HANDSHAKE) {
    if ((rc = hs_hold(c, *data, *len)) < 0)
      return rc;
    *data += *len;
    *len = 0;
  }
  if (c->state == LP2P_CONN_HANDSHAKE && !c->key_pending)
    return lp2p__conn_flush_handshake(c);
  return 0;
}


/* Feed what waited (a key job, a deferred Ack), then any framed bytes
 * behind it; read again if the stash had stopped reading. */
static void resume_stash(lp2p_conn *c) {
  uint8_t held[LP2P_HS_STASH];
  uint8_t *spill = c->hs_spill;
  size_t len = c->hs_stash_len;
  const uint8_t *data = spill;
  if (spill == NULL) {
    memcpy(held, c->hs_stash, len);
    data = held;
  }
  c->hs_spill = NULL;
  c->hs_stash_len = 0;
  int rc = lp2p__conn_hs_input(c, &data, &len);
  if (rc == 0 && c->state == LP2P_CONN_RUNNING)
    rc = lp2p__conn_running_input(c, data, len, 0);
  free(spill); /* what is left of it was copied (hs_hold, the stashes) */
  if (rc < 0 || c->state == LP2P_CONN_RUNNING)
    lp2p__conn_after_input(c, rc);
  else if (c->state == LP2P_CONN_HANDSHAKE && c->hs_spill == NULL &&
           c->hs_eof == 0)
    lp2p__conn_set_reading(c, 1);
  /* The peer hung up behind that input: now it counts. */
  if (c->hs_eof != 0 && c->state == LP2P_CONN_HANDSHAKE && !c->key_pending &&
      !c->hs_deferred)
    lp2p__conn_fail(c, c->hs_eof, c->hs_eof == UV_EOF
                                      ? "connection closed by peer"
                                      : uv_strerror(c->hs_eof));
}


/* The loop turn after the verdict: the handshake timeout runs again (from
 * now: at most once more per handshake), and the peer's Ack is read. */
static void on_hs_resume(uv_timer_t *t) {
  lp2p_conn *c = t->data;
  c->hs_deferred = 0;
  if (c->state != LP2P_CONN_HANDSHAKE)
    return;
  lp2p__conn_arm_timeout(c, c->incoming
                                ? c->node->cfg.authentication_timeout_ms
                                : c->node->cfg.connection_timeout_ms);
  resume_stash(c);
}


/* On a worker thread: touches only the job. */
static void key_run(lp2p_work *w) {
  lp2p_conn *c = (lp2p_conn *)((char *)w - offsetof(lp2p_conn, key.work));
  lp2p_hs_keyjob_run(&c->key.job);
}


/*
 * On the loop: the key is ready. Unless the connection closed meanwhile,
 * the handshake goes on where the job stopped it: our metadata (and, for
 * an incoming connection, our connection message before it) leaves in one
 * write, then the input that waited is fed. Drops the job's reference
 * last (it may free the connection).
 */
static void key_done(lp2p_work *w) {
  lp2p_conn *c = (lp2p_conn *)((char *)w - offsetof(lp2p_conn, key.work));
  c->key_pending = 0;
  if (w->canceled || c->state != LP2P_CONN_HANDSHAKE || c->hs == NULL) {
    sodium_memzero(&c->key.job, sizeof c->key.job);
    lp2p__conn_unref(c);
    return;
  }
  int rc = lp2p_hs_key_done(c->hs, &c->key.job);
  if (rc >= 0)
    rc = handshake_event(c, rc) < 0 ? LP2P_EPROTO : 0;
  if (rc < 0)
    lp2p__conn_after_input(c, rc);
  else if (c->state == LP2P_CONN_HANDSHAKE)
    resume_stash(c);
  lp2p__conn_unref(c);
}


/* The peer hung up (code) during the handshake: when input waits (a key
 * job, a deferred Ack or Nack), that input is what the peer said before
 * it hung up and goes first; the EOF counts after it. 1 when kept for
 * then, 0 when the caller fails c now. */
int lp2p__conn_hs_eof(lp2p_conn *c, int code) {
  if (!c->key_pending && !c->hs_deferred)
    return 0;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  c->hs_eof = code;
  if (c->hs_deferred) {
    uv_timer_stop(&c->timer);
    on_hs_resume(&c->timer);
  }
  return 1;
}
