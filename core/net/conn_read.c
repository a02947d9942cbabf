/*
 * conn_read.c - the read side of a connection: reading (the handshake's
 * input goes to conn_handshake.c), then chunks opened and messages
 * reassembled and dispatched, fairly and within bounds (per-pass caps,
 * rate limits, the node's incoming budget, stalled partial messages).
 *
 * libuv reads into the node's shared buffer; whole chunks are opened in
 * place, a chunk cut by the read boundary is copied into a per-connection
 * buffer sized to that chunk.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "node_internal.h"


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);


/*
 * Reading is fair and bounded. Per loop pass a connection reads at most
 * read_pass_bytes (checked after each read: on_alloc then hands it an
 * empty buffer, and libuv skips it until the next pass) and dispatches at
 * most read_pass_msgs messages; P2P and application messages each draw
 * from a token bucket. When either stops dispatching in the middle of a
 * chunk, the rest of that chunk's plaintext and the ciphertext after it
 * are stashed in the connection and fed first at the next pass (the
 * node's prepare handle); out of tokens, reading stops until the
 * connection's timer says a token is back. Nothing is dropped and the
 * peer meets TCP backpressure.
 *
 * Every call into the embedder (the message hook) may close this
 * connection, another one or the node, or ban: after it, only c->state
 * and n->closing are trusted, and a closed connection is never touched
 * past them (its memory lives until its handles' close callbacks, which
 * need the loop, and the loop cannot run inside a callback). The shared
 * buffers (readbuf, scratch) are never read after a yield: what is left
 * of them is copied into the stash first.
 */

enum { DELIVER_GO = 0, DELIVER_STOP = 1, DELIVER_YIELD = 2 };

static void new_pass(lp2p_conn *c);


/* Every connection reads into the node's one buffer: a read is consumed
 * (or stashed) before the loop runs another callback. A connection that
 * spent this pass's budget, or has input held back, gets an empty buffer:
 * libuv then skips it for this pass (UV_ENOBUFS) and, the socket being
 * still readable, polls it again at the next one, with no epoll churn. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  lp2p_conn *c = h->data;
  size_t size = LP2P_READ_SMALL;
  (void)hint;
  if (c->state == LP2P_CONN_RUNNING) {
    const lp2p_node_config *cfg = &c->node->cfg;
    new_pass(c);
    if (lp2p__conn_has_stash(c) || c->pass_bytes >= cfg->read_pass_bytes ||
        c->pass_msgs >= cfg->read_pass_msgs) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    /* Never past this pass's byte budget. */
    size_t left = cfg->read_pass_bytes - c->pass_bytes;
    size = c->read_large ? LP2P_READ_BUF_SIZE : LP2P_READ_SMALL;
    if (size > left)
      size = left;
  }
  *buf = uv_buf_init((char *)c->node->readbuf, (unsigned)size);
}


static void refill(lp2p_conn *c, uint64_t now) {
  const lp2p_node_config *cfg = &c->node->cfg;
  double secs = (double)(now - c->tokens_at) / 1e3;
  c->tokens_at = now;
  c->p2p_tokens += secs * cfg->p2p_rate;
  if (c->p2p_tokens > cfg->p2p_burst)
    c->p2p_tokens = cfg->p2p_burst;
  c->app_tokens += secs * cfg->app_rate;
  if (c->app_tokens > cfg->app_burst)
    c->app_tokens = cfg->app_burst;
}


/* Out of tokens: stop reading until one is back; tell the embedder at
 * most once a second (with the count since the last report). */
static void throttle(lp2p_conn *c, int app, double rate, double tokens) {
  lp2p_node *n = c->node;
  uint64_t now = uv_now(n->loop);
  uint64_t wait = (uint64_t)((1.0 - tokens) / rate * 1e3) + 1;
  c->throttled = 1;
  c->rate_hits++;
  n->stats.throttled++;
  lp2p__conn_arm_timeout(c, wait);
  if (c->rate_event_at == 0 || now - c->rate_event_at >= 1000) {
    c->rate_event_at = now;
    lp2p_event ev = {.type = LP2P_EV_RATE_EXCEEDED, .conn = c->id};
    lp2p__conn_who(c, &ev.u.rate.who);
    ev.u.rate.app = app;
    ev.u.rate.count = c->rate_hits;
    c->rate_hits = 0;
    lp2p__node_emit(n, &ev);
  }
}


static int deliver(void *ud, const uint8_t *msg, size_t len) {
  lp2p_conn *c = ud;
  lp2p_node *n = c->node;
  const lp2p_node_config *cfg = &n->cfg;
  uint16_t tag = (uint16_t)(msg[0] << 8 | msg[1]);
  c->stat.msgs_in++;
  n->total.msgs_in++;
  int app = tag >= LP2P_MSG_APP_MIN;
  if (!app) {
    lp2p_msg m; /* ~2 KB, on the stack: control messages allocate nothing */
    int rc = lp2p_msg_decode(&m, msg, len);
    if (rc < 0) {
      /* Octez greylists the peer and its IP on a message that does not
       * decode (p2p_conn.ml, "decoding error"), then closes: the event
       * lets the acl policy do the first, returning rc does the second. */
      lp2p__conn_emit_closed(c, LP2P_EV_DECODING_ERROR, rc,
                             "P2P message does not decode");
      return c->state == LP2P_CONN_RUNNING ? rc : 1;
    }
    if (tag == LP2P_MSG_DISCONNECT) {
      lp2p_conn_close(c, 0, "disconnected by peer", 0);
      return DELIVER_STOP;
    }
  }
  if (n->hooks.message(n->hooks.ud, c->id, msg, len))
    c->paused = 1;
  /* The hook may have closed us or the node: nothing else is trusted. */
  if (c->state != LP2P_CONN_RUNNING || n->closing)
    return DELIVER_STOP;
  c->pass_msgs++;
  double rate = app ? cfg->app_rate : cfg->p2p_rate;
  if (rate > 0) {
    refill(c, uv_now(n->loop));
    double *tokens = app ? &c->app_tokens : &c->p2p_tokens;
    *tokens -= 1;
    if (*tokens < 1) {
      throttle(c, app, rate, *tokens);
      if (c->state != LP2P_CONN_RUNNING || n->closing)
        return DELIVER_STOP;
      return DELIVER_YIELD;
    }
  }
  if (c->paused || c->pass_msgs >= cfg->read_pass_msgs)
    return DELIVER_YIELD;
  return DELIVER_GO;
}


static int buf_reserve(uint8_t **buf, size_t *cap, size_t need) {
  if (*cap >= need)
    return 0;
  uint8_t *p = realloc(*buf, need);
  if (p == NULL)
    return LP2P_ENOMEM;
  *buf = p;
  *cap = need;
  return 0;
}


/* Feed plaintext to the reader; on a yield keep the rest in c->plain
 * (data is the shared scratch buffer, or c->plain itself: from_stash). */
static int feed_plain(lp2p_conn *c, const uint8_t *data, size_t len,
                      int from_stash) {
  size_t used = 0;
  int rc = lp2p_msg_reader_feed_some(&c->reader, data, len, deliver, c,
                                     &used);
  if (rc == DELIVER_YIELD && c->state == LP2P_CONN_RUNNING && used < len) {
    size_t rest = len - used;
    if (from_stash) {
      c->plain_off += used;
    } else {
      int e = buf_reserve(&c->plain, &c->plain_cap, rest);
      if (e < 0)
        return e;
      memmove(c->plain, data + used, rest);
      c->plain_off = 0;
      c->plain_len = rest;
    }
  } else if (from_stash) {
    c->plain_off = c->plain_len = 0;
  }
  return rc;
}


/* A chunk whose plaintext is all inside the message being reassembled
 * (the middle and end of a large message: its sender cuts it in whole
 * chunks) is opened straight into the reader's buffer, one copy fewer;
 * any other into the node's scratch, then fed. */
static int open_chunk(lp2p_conn *c, const uint8_t *chunk, size_t blen) {
  int rc;
  if (blen > LP2P_TAG_BYTES) {
    size_t plen = blen - LP2P_TAG_BYTES;
    uint8_t *room = lp2p_msg_reader_room(&c->reader, plen, &rc);
    if (rc < 0)
      return rc;
    if (room != NULL) {
      if ((rc = lp2p_chunk_open(room, chunk, blen, &c->crypto)) < 0)
        return rc;
      return lp2p_msg_reader_commit(&c->reader, plen, deliver, c);
    }
  }
  rc = lp2p_chunk_open(c->node->scratch, chunk, blen, &c->crypto);
  if (rc < 0)
    return rc;
  return feed_plain(c, c->node->scratch, blen - LP2P_TAG_BYTES, 0);
}


/* Move up to `want` bytes of input into inbuf; returns how many. */
static size_t inbuf_take(lp2p_conn *c, const uint8_t **data, size_t *len,
                         size_t want) {
  size_t take = want - c->in_len < *len ? want - c->in_len : *len;
  memcpy(c->inbuf + c->in_len, *data, take);
  c->in_len += take;
  *data += take;
  *len -= take;
  return take;
}


/* After a chunk: on a yield, keep the unread ciphertext (data is in the
 * shared read buffer, or in c->cstash itself: from_stash). */
static int after_chunk(lp2p_conn *c, int rc, const uint8_t *data,
                       size_t len, int from_stash) {
  if (rc < 0)
    return rc;
  if (rc != DELIVER_YIELD || c->state != LP2P_CONN_RUNNING)
    return 0;
  /* From the stash, what is left stays where it is (moving it to the
   * front per chunk would cost the square of the stash). */
  if (from_stash) {
    c->cstash_off = len > 0 ? (size_t)(data - c->cstash) : 0;
  } else if (len > 0) {
    int e = buf_reserve(&c->cstash, &c->cstash_cap, len);
    if (e < 0)
      return e;
    memcpy(c->cstash, data, len);
    c->cstash_off = 0;
  }
  c->cstash_len = len;
  return DELIVER_YIELD;
}


/*
 * Framed input: whole chunks are opened in place; a chunk cut by the read
 * boundary is copied into inbuf, sized to that chunk and kept while the
 * connection is busy (the rate tick frees it once idle). Returns 0,
 * DELIVER_YIELD (the rest stashed) or an error.
 */
static int framed_input(lp2p_conn *c, const uint8_t *data, size_t len,
                        int from_stash) {
  while (len > 0 && c->state == LP2P_CONN_RUNNING) {
    int rc;
    if (c->in_len == 0 && len >= 2) {
      size_t blen = (size_t)data[0] << 8 | data[1];
      if (len >= 2 + blen) {
        rc = open_chunk(c, data + 2, blen);
        data += 2 + blen;
        len -= 2 + blen;
        if (rc != 0)
          return after_chunk(c, rc, data, len, from_stash);
        continue;
      }
    }
    if (c->in_len < 2) {
      if ((rc = buf_reserve(&c->inbuf, &c->in_cap, 2)) < 0)
        return rc;
      inbuf_take(c, &data, &len, 2);
      if (c->in_len < 2)
        return 0;
    }
    size_t need = 2 + ((size_t)c->inbuf[0] << 8 | c->inbuf[1]);
    if ((rc = buf_reserve(&c->inbuf, &c->in_cap, need)) < 0)
      return rc;
    inbuf_take(c, &data, &len, need);
    if (c->in_len < need)
      return 0;
    c->in_len = 0; /* the buffer stays for the next cut chunk */
    rc = open_chunk(c, c->inbuf + 2, need - 2);
    if (rc != 0)
      return after_chunk(c, rc, data, len, from_stash);
  }
  return 0;
}


/* Feed what an earlier pass held back: plaintext first, then the
 * ciphertext after it. 0 when all of it went, DELIVER_YIELD, or an
 * error. */
static int drain_stash(lp2p_conn *c) {
  if (c->plain_len > c->plain_off) {
    int rc = feed_plain(c, c->plain + c->plain_off,
                        c->plain_len - c->plain_off, 1);
    if (rc != 0) {
      if (rc == DELIVER_YIELD && c->state == LP2P_CONN_RUNNING)
        return DELIVER_YIELD; /* the ciphertext stays stashed */
      return rc < 0 ? rc : 0;
    }
  }
  if (c->cstash_len > 0 && c->state == LP2P_CONN_RUNNING) {
    size_t off = c->cstash_off, len = c->cstash_len;
    c->cstash_off = c->cstash_len = 0;
    int rc = framed_input(c, c->cstash + off, len, 1);
    /* Drained: a stash grown by a large read goes (reads are small now). */
    if (c->cstash_len == 0 && c->cstash_cap > LP2P_READ_SMALL) {
      free(c->cstash);
      c->cstash = NULL;
      c->cstash_cap = 0;
    }
    return rc;
  }
  return 0;
}


size_t lp2p__conn_usage(const lp2p_conn *c) {
  return lp2p_msg_reader_pending(&c->reader) + c->in_len + c->cstash_len +
         (c->plain_len - c->plain_off) + c->held;
}


void lp2p__conn_recount(lp2p_conn *c) {
  lp2p_node *n = c->node;
  size_t now = c->state == LP2P_CONN_RUNNING ? lp2p__conn_usage(c) : 0;
  n->buffered = n->buffered - c->counted + now;
  c->counted = now;
}


int lp2p__conn_has_stash(const lp2p_conn *c) {
  return c->cstash_len > 0 || c->plain_len > c->plain_off;
}


void lp2p__conn_set_reading(lp2p_conn *c, int on) {
  if (on && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->reading = 1;
  } else if (!on && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}


/* Input held back for the next loop pass, or no more: the node keeps the
 * list of those it resumes (and sets c->yielded). */
static void set_yielded(lp2p_conn *c, int on) {
  if (on != c->yielded)
    lp2p__node_report(c, on ? LP2P_REPORT_YIELDED : LP2P_REPORT_UNYIELDED);
}


/*
 * After input was fed (rc: 0, DELIVER_YIELD or an error): fail on an
 * error; otherwise read on, or stop reading while paused, throttled or
 * out of this pass's budget (yielded: resumed at the next pass). Then
 * recount the bytes held and enforce the node's budget.
 */
void lp2p__conn_after_input(lp2p_conn *c, int rc) {
  lp2p_node *n = c->node;
  if (rc < 0) {
    lp2p__conn_fail(c, rc, lp2p_strerror(rc));
    return;
  }
  if (c->state != LP2P_CONN_RUNNING)
    return;
  /* Paused or throttled: stop reading (for long). Otherwise keep the
   * socket polled; what is stashed is fed at the next pass (the prepare
   * handle), and on_alloc holds new input back until then. */
  int held_back = (c->paused && !c->draining) || c->throttled;
  lp2p__conn_set_reading(c, !held_back);
  set_yielded(c, !held_back && lp2p__conn_has_stash(c));
  lp2p__conn_recount(c);
  if (n->buffered > n->cfg.incoming_buffer_bytes)
    lp2p__node_report(c, LP2P_REPORT_OVER_BUDGET);
}


static void new_pass(lp2p_conn *c) {
  if (c->pass != c->node->pass) {
    c->pass = c->node->pass;
    c->pass_bytes = 0;
    c->pass_msgs = 0;
  }
}


/* Input of a running connection (after the handshake, or bytes behind
 * the remote Ack), with the read pass accounting of on_read. */
int lp2p__conn_running_input(lp2p_conn *c, const uint8_t *data,
                             size_t len, size_t nread) {
  new_pass(c);
  c->pass_bytes += nread;
  if (lp2p__conn_has_stash(c)) {
    /* Cannot happen (on_alloc holds input back while anything is
     * stashed), but order must hold: behind what is stashed. */
    size_t end = c->cstash_off + c->cstash_len;
    int e = buf_reserve(&c->cstash, &c->cstash_cap, end + len);
    if (e == 0) {
      memcpy(c->cstash + end, data, len);
      c->cstash_len += len;
    }
    return e < 0 ? e : DELIVER_YIELD;
  }
  int rc = len > 0 ? framed_input(c, data, len, 0) : 0;
  /* A read dispatched whole allows large ones; one that yielded makes
   * them small again. */
  c->read_large = rc == 0;
  return rc;
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  lp2p_conn *c = s->data;
  /* UV_ENOBUFS: on_alloc held this pass's input back. */
  if (nread == 0 || nread == UV_ENOBUFS || c->state == LP2P_CONN_CLOSING)
    return;
  if (nread < 0) {
    int code = (int)nread;
    if (c->state == LP2P_CONN_HANDSHAKE && lp2p__conn_hs_eof(c, code))
      return;
    lp2p__conn_fail(c, code, code == UV_EOF ? "connection closed by peer"
                                      : uv_strerror(code));
    return;
  }
  const uint8_t *data = (const uint8_t *)buf->base;
  size_t len = (size_t)nread;
  c->stat.bytes_in += len;
  c->node->total.bytes_in += len;
  int rc = 0;
  if (c->state == LP2P_CONN_HANDSHAKE)
    rc = lp2p__conn_hs_input(c, &data, &len);
  if (rc == 0 && c->state == LP2P_CONN_RUNNING)
    rc = lp2p__conn_running_input(c, data, len, (size_t)nread);
  if (rc < 0 || c->state == LP2P_CONN_RUNNING)
    lp2p__conn_after_input(c, rc);
}


/* The node's pass tick, for a connection that held input back (the node
 * took it off its list): feed what is stashed, read on. */
void lp2p__conn_next_pass(lp2p_conn *c) {
  if (c->state != LP2P_CONN_RUNNING)
    return;
  new_pass(c);
  lp2p__conn_after_input(c, drain_stash(c));
}


void lp2p_conn_pause(lp2p_conn *c, int paused) {
  c->paused = paused;
  if (c->state != LP2P_CONN_RUNNING) {
    if (c->state != LP2P_CONN_CLOSING && !paused && !c->reading)
      lp2p__conn_set_reading(c, 1);
    return;
  }
  lp2p__conn_after_input(c, 0);
}


void lp2p_conn_hold(lp2p_conn *c, long long delta) {
  if (delta < 0 && (size_t)-delta > c->held)
    c->held = 0;
  else
    c->held = (size_t)((long long)c->held + delta);
  if (c->state == LP2P_CONN_RUNNING)
    lp2p__conn_recount(c);
}


/* The rate tick (tick_ms): a partial message that does not progress at
 * the minimum rate for too long closes the connection; a paused
 * connection whose peer hung up reads on to its EOF (what it sent past
 * the inbox is bounded by the socket buffer: the peer can send no
 * more). */
void lp2p__conn_tick(lp2p_conn *c, uint64_t tick_ms) {
  lp2p_node *n = c->node;
  if (c->state != LP2P_CONN_RUNNING)
    return;
  size_t partial = lp2p_msg_reader_pending(&c->reader) + c->in_len;
  uint64_t got = c->stat.bytes_in - c->rate_bytes_in;
  if (partial > 0 && !c->paused && !c->throttled && !lp2p__conn_has_stash(c) &&
      n->cfg.partial_stall_ms > 0 &&
      (double)got * 1e3 / (double)tick_ms < n->cfg.partial_min_rate) {
    c->stall_ms += tick_ms;
    if (c->stall_ms >= n->cfg.partial_stall_ms) {
      n->stats.cut_stalled++;
      lp2p_conn_close(c, LP2P_ETIMEDOUT, "partial message stalled", 0);
      return;
    }
  } else {
    c->stall_ms = 0;
  }
#if defined(TCP_INFO) && defined(__linux__)
  if (c->paused && !c->draining) {
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
        ti.tcpi_state == TCP_CLOSE_WAIT) {
      c->draining = 1;
      lp2p__conn_after_input(c, 0);
    }
  }
#endif
}


int lp2p__conn_read_start(lp2p_conn *c) {
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc == 0)
    c->reading = 1;
  return rc;
}
