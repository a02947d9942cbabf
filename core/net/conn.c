/*
 * conn.c - one connection on a libuv TCP handle: the handshake driven by the
 * pure state machine, then encrypted framed messages, bounded queues,
 * timeouts and byte/message counters.
 *
 * The read path (chunks, reassembly, fairness, rate limits, the incoming
 * budget) is conn_read.c, the send path (queue, sealing, writes)
 * conn_send.c, the handshake's input conn_handshake.c. This file keeps a
 * connection's life: creation, starting the handshake, timeouts, closing.
 * Idle connections give their buffers back.
 */
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <sodium.h>

#include "node_internal.h"

/* Under AddressSanitizer a spare block is poisoned while it waits, so
 * that a stale pointer into a recycled connection or handshake is still
 * reported as a use after free would be. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LP2P_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(LP2P_ASAN)
#define LP2P_ASAN 1
#endif
#ifdef LP2P_ASAN
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SPARE_POISON(p, n) ((void)(p), (void)(n))
#define SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif


void lp2p__conn_who(const lp2p_conn *c, lp2p_ev_conn *who) {
  who->point = c->point.family ? &c->point : &c->addr;
  who->peer_id = c->has_peer_id ? c->peer_id_text : NULL;
  who->incoming = c->incoming;
}


void lp2p__conn_emit_closed(lp2p_conn *c, lp2p_event_type type, int code,
                            const char *reason) {
  lp2p_event ev = {.type = type, .conn = c->id};
  lp2p__conn_who(c, &ev.u.closed.who);
  ev.u.closed.code = code;
  ev.u.closed.reason = reason ? reason : lp2p_strerror(code);
  lp2p__node_emit(c->node, &ev);
}



/* -------------------------------------------------------------- spares */

/* A block for a handshake state: a spare of the loop's, or the heap. */
static lp2p_hs *hs_block_take(lp2p_loop_shared *sh, uint64_t now) {
  if (sh->nhs_spare == 0)
    return malloc(lp2p_hs_size());
  sh->spare_at = now;
  lp2p_hs *hs = sh->hs_spare[--sh->nhs_spare];
  SPARE_UNPOISON(hs, lp2p_hs_size());
  return hs;
}


void lp2p__conn_hs_release(lp2p_conn *c) {
  lp2p_hs *hs = c->hs;
  if (hs == NULL)
    return;
  c->hs = NULL;
  lp2p_hs_clear(hs); /* wiped: keys, and all zero */
  lp2p_loop_shared *sh = c->node->shared;
  if (sh->nhs_spare < LP2P_SPARES_MAX && !sh->loop_closing) {
    sh->spare_at = uv_now(c->node->loop);
    SPARE_POISON(hs, lp2p_hs_size());
    sh->hs_spare[sh->nhs_spare++] = hs;
  } else {
    free(hs);
  }
}


void lp2p__conn_spares_free(lp2p_loop_shared *sh) {
  while (sh->nhs_spare > 0) {
    void *p = sh->hs_spare[--sh->nhs_spare];
    SPARE_UNPOISON(p, lp2p_hs_size());
    free(p);
  }
  while (sh->nconn_spare > 0) {
    lp2p_conn *c = sh->conn_spare[--sh->nconn_spare];
    SPARE_UNPOISON(c, sizeof *c);
    free(c);
  }
}


void lp2p__conn_spares_trim(lp2p_loop_shared *sh, uint64_t now,
                            uint64_t idle_ms) {
  if (now - sh->spare_at >= idle_ms)
    lp2p__conn_spares_free(sh);
}


/* ------------------------------------------------------------- closing */

/* Drop one of the connection's references (a libuv handle, or a key job
 * in flight); the last frees it, once the node gave its slot back (the
 * node may go then too: c->node is not touched after the report). Its
 * struct, wiped, becomes a spare of the loop's when there is room and the
 * loop lives on: the loop's shared state cannot go during the report
 * unless the loop is closing (lp2p_loop_close_nodes), and after it, with
 * no node left, the spares are gone (unlink_node) and c is freed too. */
void lp2p__conn_unref(lp2p_conn *c) {
  if (--c->open_handles > 0)
    return;
  lp2p_loop_shared *sh = c->node->shared;
  int keep = !sh->loop_closing;
  uint64_t now = uv_now(c->node->loop);
  lp2p__node_report(c, LP2P_REPORT_FREED);
  lp2p_hs_free(c->hs); /* lp2p_conn_close released it: NULL */
  free(c->hs_spill);
  free(c->inbuf);
  free(c->plain);
  free(c->cstash);
  lp2p__conn_send_free(c);
  lp2p_msg_reader_free(&c->reader);
  lp2p_crypto_wipe(&c->crypto);
  if (keep && sh->nodes != NULL && sh->nconn_spare < LP2P_SPARES_MAX) {
    /* The handles are closed (this is their last close callback, or a
     * key job's end after it): libuv holds nothing of c. All zero, as
     * calloc gives it (lp2p__conn_new relies on that). */
    sodium_memzero(c, sizeof *c);
    SPARE_POISON(c, sizeof *c);
    sh->spare_at = now;
    sh->conn_spare[sh->nconn_spare++] = c;
  } else {
    free(c);
  }
}


static void on_handle_closed(uv_handle_t *h) {
  lp2p__conn_unref(h->data);
}


/*
 * Close the connection: emit LP2P_EV_DISCONNECTED (or nothing for a refused
 * socket, id 0), release its slot and counts, close both handles. graceful:
 * send Disconnect first and close once written. Idempotent.
 */
void lp2p_conn_close(lp2p_conn *c, int code, const char *reason,
                     int graceful) {
  if (c->state == LP2P_CONN_CLOSING) {
    if (!c->close_when_flushed || c->writes_in_flight > 0)
      return;
  } else {
    int was_running = c->state == LP2P_CONN_RUNNING;
    if (graceful && was_running) {
      lp2p__conn_say_disconnect(c);
      if (c->state == LP2P_CONN_CLOSING)
        return; /* the flush failed and closed it */
    }
    c->state = LP2P_CONN_CLOSING;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : (code ? lp2p_strerror(code) : "closed"));
    if (c->id != 0)
      lp2p__conn_emit_closed(c, LP2P_EV_DISCONNECTED, code, c->close_reason);
    lp2p__node_report(c, LP2P_REPORT_CLOSING);
    lp2p__conn_recount(c); /* its bytes stop counting */
    lp2p__conn_hs_release(c);
    if (graceful && c->writes_in_flight > 0) {
      /* Linger until written, but not forever: a peer that never reads
       * is cut at the authentication timeout. */
      c->close_when_flushed = 1;
      uv_read_stop((uv_stream_t *)&c->tcp);
      lp2p__conn_arm_timeout(c, c->node->cfg.authentication_timeout_ms);
      return;
    }
  }
  c->close_when_flushed = 0;
  lp2p__conn_lent_drop(c);
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}


/* Failures during the handshake are reported as LP2P_EV_AUTH_FAILED (the acl
 * policy greylists by code); every connection with an id then reports
 * LP2P_EV_DISCONNECTED with the same code. */
void lp2p__conn_force_close(lp2p_conn *c) {
  if (c->state != LP2P_CONN_CLOSING)
    lp2p_conn_close(c, LP2P_ECLOSED, "node closed", 0);
  c->close_when_flushed = 0;
  lp2p__conn_lent_drop(c);
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}


void lp2p__conn_fail(lp2p_conn *c, int code, const char *reason) {
  if (c->state == LP2P_CONN_HANDSHAKE)
    lp2p__conn_emit_closed(c, LP2P_EV_AUTH_FAILED, code, reason);
  lp2p_conn_close(c, code, reason, 0);
}


static void on_timeout(uv_timer_t *t) {
  lp2p_conn *c = t->data;
  if (c->state == LP2P_CONN_CLOSING) { /* a graceful close lingered */
    lp2p__conn_force_close(c);
    return;
  }
  if (c->state == LP2P_CONN_RUNNING) { /* a token is back */
    c->throttled = 0;
    lp2p__conn_after_input(c, 0);
    return;
  }
  lp2p__conn_fail(c, LP2P_ETIMEDOUT,
            c->state == LP2P_CONN_CONNECTING ? "connection timed out"
                                             : "handshake timed out");
}


/* Build the handshake state machine, send our connection message, read. */
void lp2p__conn_start_handshake(lp2p_conn *c, const uint8_t *nonce) {
  const lp2p_node_config *cfg = &c->node->cfg;
  lp2p_hs_config hc = {0};
  hc.identity = &cfg->identity;
  hc.target = cfg->target;
  hc.advertised_port = cfg->advertised_port;
  hc.chain_name = cfg->chain;
  hc.chain_name_len = cfg->chain_len;
  hc.p2p = cfg->p2p;
  hc.ddb = cfg->ddb;
  hc.disable_mempool = (uint8_t)cfg->disable_mempool;
  hc.private_node = (uint8_t)cfg->private_mode;
  hc.incoming = c->incoming;
  hc.max_conn_msg_len = cfg->max_conn_msg_len;
  hc.defer_key = c->node->workers != NULL;
  hc.message_nonce = nonce;
  c->state = LP2P_CONN_HANDSHAKE;
  int err = LP2P_ENOMEM;
  c->hs = hs_block_take(c->node->shared, uv_now(c->node->loop));
  if (c->hs == NULL || (err = lp2p_hs_init(c->hs, &hc)) != 0) {
    lp2p__conn_hs_release(c); /* init zeroed it: a spare again */
    lp2p__conn_fail(c, err, "handshake setup failed");
    return;
  }
  lp2p_msg_reader_init(&c->reader, cfg->max_message_size);
  /* The side that connected speaks first; we answer its connection
   * message with ours and our metadata in one write (Octez's initiator
   * writes before it reads, so nobody waits on the other). */
  int rc = c->incoming ? 0 : lp2p__conn_flush_handshake(c);
  if (rc == 0)
    rc = lp2p__conn_read_start(c);
  if (rc < 0)
    lp2p__conn_fail(c, rc, uv_strerror(rc));
}


void lp2p__conn_finish(lp2p_conn *c, int code, const char *reason) {
  int rc = lp2p__conn_flush_handshake(c);
  lp2p_conn_close(c, code, reason, rc == 0);
}


lp2p_conn *lp2p__conn_new(lp2p_node *n, int incoming) {
  lp2p_loop_shared *sh = n->shared;
  lp2p_conn *c;
  if (sh->nconn_spare > 0) {
    c = sh->conn_spare[--sh->nconn_spare]; /* all zero: wiped on return */
    SPARE_UNPOISON(c, sizeof *c);
    sh->spare_at = uv_now(n->loop);
  } else if ((c = calloc(1, sizeof *c)) == NULL) {
    return NULL;
  }
  c->node = n;
  c->incoming = incoming;
  c->state = incoming ? LP2P_CONN_HANDSHAKE : LP2P_CONN_CONNECTING;
  if (uv_tcp_init(n->loop, &c->tcp) < 0) {
    free(c);
    return NULL;
  }
  uv_timer_init(n->loop, &c->timer); /* cannot fail */
  c->tcp.data = c;
  c->timer.data = c;
  c->connect_req.data = c;
  c->open_handles = 2;
  return c;
}


void lp2p__conn_arm_timeout(lp2p_conn *c, uint64_t ms) {
  uv_update_time(c->node->loop); /* Lua may have run long since the loop */
  uv_timer_start(&c->timer, on_timeout, ms, 0);
}


void lp2p_conn_get_info(lp2p_conn *c, lp2p_conn_info *info) {
  memset(info, 0, sizeof *info);
  info->id = c->id;
  info->state = c->state;
  info->incoming = c->incoming;
  info->addr = c->addr;
  info->point = c->point;
  memcpy(info->peer_id, c->peer_id_text, sizeof info->peer_id);
  info->p2p_version = c->p2p_version;
  info->ddb_version = c->ddb_version;
  info->disable_mempool = c->disable_mempool;
  info->private_node = c->private_node;
  info->queued_msgs = c->outq_msgs;
  info->queued_bytes = lp2p__conn_queued_bytes(c);
  info->stat = c->stat;
}


/* Give back the buffers of a connection with nothing in progress, so that
 * idle connections hold none (called on the rate tick). */
void lp2p__conn_trim(lp2p_conn *c) {
  lp2p__conn_send_trim(c);
  lp2p_msg_reader_trim(&c->reader);
  if (c->in_len == 0 && c->inbuf != NULL) {
    free(c->inbuf);
    c->inbuf = NULL;
    c->in_cap = 0;
  }
  if (!lp2p__conn_has_stash(c)) {
    free(c->plain);
    free(c->cstash);
    c->plain = c->cstash = NULL;
    c->plain_cap = c->cstash_cap = 0;
    c->plain_off = c->plain_len = c->cstash_off = c->cstash_len = 0;
  }
}
