/*
 * conn.c - one connection on a libuv TCP handle: the handshake driven by the
 * pure state machine, then encrypted framed messages, bounded queues,
 * timeouts and byte/message counters.
 *
 * The read path (chunks, reassembly, fairness, rate limits, the incoming
 * budget) is conn_read.c. Idle connections give their buffers back.
 *
 * Write path: conn_send appends envelopes to a plaintext queue; when no
 * sealed batch is in flight, up to 4 chunks of it are sealed into a reused
 * buffer and written at once, so small messages share chunks and syscalls.
 */
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <sodium.h>

#include "node_internal.h"



static void flush_queue(lp2p_conn *c);


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


/* ------------------------------------------------------------- writing */

/* After any write: close when asked to once flushed, else keep feeding the
 * socket from the queue. */
static void wrote(lp2p_conn *c, int status) {
  c->writes_in_flight--;
  int closing = c->state == LP2P_CONN_CLOSING;
  if (status < 0) {
    if (closing)
      lp2p__conn_force_close(c);
    else
      lp2p__conn_fail(c, status, "write failed");
    return;
  }
  /* A graceful close sends everything queued, its Disconnect last. */
  if (c->outq_len > c->outq_off && (!closing || c->close_when_flushed))
    flush_queue(c);
  if (closing && c->close_when_flushed && c->writes_in_flight == 0)
    lp2p_conn_close(c, c->close_code, NULL, 0);
}


static void on_write(uv_write_t *req, int status) {
  lp2p_write *w = (lp2p_write *)req;
  lp2p_conn *c = w->conn;
  free(w->buf);
  free(w);
  wrote(c, status);
}


static void on_batch_written(uv_write_t *req, int status) {
  lp2p_conn *c = req->data;
  c->batch_in_flight = 0;
  wrote(c, status);
}


/* Takes ownership of buf (handshake output, a Nack). */
static int write_buf(lp2p_conn *c, uint8_t *buf, size_t len) {
  lp2p_write *w = malloc(sizeof *w);
  if (w == NULL) {
    free(buf);
    return LP2P_ENOMEM;
  }
  w->conn = c;
  w->buf = buf;
  w->len = len;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(buf);
    free(w);
    return rc;
  }
  c->writes_in_flight++;
  c->stat.bytes_out += len;
  c->node->total.bytes_out += len;
  return 0;
}


int lp2p__conn_flush_handshake(lp2p_conn *c) {
  uint8_t *out;
  if (c->hs == NULL)
    return 0;
  size_t len = lp2p_hs_take_output(c->hs, &out);
  if (len == 0)
    return 0;
  return write_buf(c, out, len);
}


/*
 * Seal the next batch of queued bytes (at most LP2P_SEAL_BATCH_CHUNKS full
 * chunks) into the connection's reused seal buffer and write it: one batch
 * in flight at a time, small messages sharing chunks, no allocation per
 * batch. Whatever is queued meanwhile goes in the next batch.
 */
static void flush_queue(lp2p_conn *c) {
  if (c->batch_in_flight || c->outq_len == c->outq_off)
    return;
  size_t chunk = c->node->cfg.binary_chunks_size;
  size_t piece = chunk - LP2P_CHUNK_OVERHEAD;
  size_t len = c->outq_len - c->outq_off;
  if (len > piece * LP2P_SEAL_BATCH_CHUNKS)
    len = piece * LP2P_SEAL_BATCH_CHUNKS;
  size_t size = lp2p_frame_sealed_size(len, chunk);
  if (c->seal_cap < size) {
    free(c->sealbuf);
    c->sealbuf = malloc(size);
    c->seal_cap = c->sealbuf ? size : 0;
    if (c->sealbuf == NULL) {
      lp2p__conn_fail(c, LP2P_ENOMEM, "out of memory sealing a batch");
      return;
    }
  }
  int rc = lp2p_frame_seal(c->sealbuf, c->outq + c->outq_off, len, chunk,
                           &c->crypto);
  c->outq_off += len;
  if (c->outq_off == c->outq_len)
    c->outq_off = c->outq_len = c->outq_msgs = 0;
  uv_buf_t b = uv_buf_init((char *)c->sealbuf, (unsigned)size);
  c->batch_req.data = c;
  if (rc == 0)
    rc = uv_write(&c->batch_req, (uv_stream_t *)&c->tcp, &b, 1,
                  on_batch_written);
  if (rc < 0) {
    lp2p__conn_fail(c, rc, "write failed");
    return;
  }
  c->writes_in_flight++;
  c->batch_in_flight = 1;
  c->stat.bytes_out += size;
  c->node->total.bytes_out += size;
}


/* Give back the buffers of a connection with nothing in progress, so that
 * idle connections hold none (called on the rate tick). */
void lp2p__conn_trim(lp2p_conn *c) {
  if (!c->batch_in_flight && c->sealbuf != NULL) {
    free(c->sealbuf);
    c->sealbuf = NULL;
    c->seal_cap = 0;
  }
  if (c->outq_len == 0 && c->outq != NULL) {
    free(c->outq);
    c->outq = NULL;
    c->outq_cap = 0;
  }
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
    c->plain_off = c->plain_len = c->cstash_len = 0;
  }
}


static int outq_reserve(lp2p_conn *c, size_t more) {
  size_t need = c->outq_len + more;
  if (need <= c->outq_cap)
    return 0;
  /* Sealed bytes at the front: reuse their room once they are at least
   * half of the buffer, so each byte is moved O(1) times. */
  if (c->outq_off > 0 && c->outq_off >= c->outq_len - c->outq_off) {
    memmove(c->outq, c->outq + c->outq_off, c->outq_len - c->outq_off);
    c->outq_len -= c->outq_off;
    c->outq_off = 0;
    need = c->outq_len + more;
    if (need <= c->outq_cap)
      return 0;
  }
  size_t cap = c->outq_cap ? c->outq_cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(c->outq, cap);
  if (p == NULL)
    return LP2P_ENOMEM;
  c->outq = p;
  c->outq_cap = cap;
  return 0;
}


/*
 * Queue one message. with_envelope: msg is the payload of an application
 * message with `tag`; otherwise msg is a whole envelope already. Returns 0,
 * LP2P_EQUEUEFULL (nothing queued), LP2P_EMSGSIZE, LP2P_ECLOSED.
 */
int lp2p_conn_send(lp2p_conn *c, const uint8_t *msg, size_t len,
                   int with_envelope, uint16_t tag) {
  const lp2p_node_config *cfg = &c->node->cfg;
  if (c->state != LP2P_CONN_RUNNING)
    return LP2P_ECLOSED;
  size_t total = with_envelope ? len + 6 : len;
  if (total - 4 > cfg->max_message_size)
    return LP2P_EMSGSIZE;
  /* An empty queue always takes one message, whatever its size. Messages
   * count from when the queue was last empty. */
  if (c->outq_msgs > 0 &&
      (c->outq_msgs >= cfg->outgoing_message_queue_size ||
       c->outq_len - c->outq_off + total > cfg->outgoing_queue_bytes))
    return LP2P_EQUEUEFULL;
  if (outq_reserve(c, total) < 0)
    return LP2P_ENOMEM;
  uint8_t *p = c->outq + c->outq_len;
  if (with_envelope) {
    uint32_t body = (uint32_t)len + 2;
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    p[4] = (uint8_t)(tag >> 8);
    p[5] = (uint8_t)tag;
    p += 6;
  }
  memcpy(p, msg, len);
  c->outq_len += total;
  c->outq_msgs++;
  c->stat.msgs_out++;
  c->node->total.msgs_out++;
  flush_queue(c);
  return 0;
}


/* ------------------------------------------------------------- closing */

/* Drop one of the connection's references (a libuv handle, or a key job
 * in flight); the last frees it. */
void lp2p__conn_unref(lp2p_conn *c) {
  lp2p_node *n = c->node;
  if (--c->open_handles == 0) {
    lp2p__node_conn_freed(n, c);
    lp2p_hs_free(c->hs);
    free(c->hs_spill);
    free(c->inbuf);
    free(c->plain);
    free(c->cstash);
    free(c->outq);
    free(c->sealbuf);
    lp2p_msg_reader_free(&c->reader);
    lp2p_crypto_wipe(&c->crypto);
    free(c);
  }
  lp2p__node_handle_closed(n); /* may free the node: last */
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
      static const uint8_t disconnect[6] = {0, 0, 0, 2, 0, LP2P_MSG_DISCONNECT};
      /* Past the queue bounds: the last word is always said. */
      if (outq_reserve(c, sizeof disconnect) == 0) {
        memcpy(c->outq + c->outq_len, disconnect, sizeof disconnect);
        c->outq_len += sizeof disconnect;
        flush_queue(c);
      }
    }
    c->state = LP2P_CONN_CLOSING;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : (code ? lp2p_strerror(code) : "closed"));
    if (c->id != 0)
      lp2p__conn_emit_closed(c, LP2P_EV_DISCONNECTED, code, c->close_reason);
    lp2p__node_conn_released(c->node, c);
    c->node->buffered -= c->counted;
    c->counted = 0;
    if (c->yielded) {
      c->yielded = 0;
      if (--c->node->nyielded == 0)
        uv_idle_stop(&c->node->pass_idle);
    }
    lp2p_hs_free(c->hs);
    c->hs = NULL;
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
void lp2p__conn_start_handshake(lp2p_conn *c) {
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
  uint8_t nonce[LP2P_NONCE_BYTES];
  lp2p__node_random(c->node, nonce, sizeof nonce);
  hc.message_nonce = nonce;
  int err = 0;
  c->state = LP2P_CONN_HANDSHAKE;
  c->hs = lp2p_hs_new(&hc, &err);
  sodium_memzero(nonce, sizeof nonce);
  if (c->hs == NULL) {
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
  lp2p_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
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
  n->handles += 2;
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
  info->queued_bytes = c->outq_len - c->outq_off;
  info->stat = c->stat;
}
