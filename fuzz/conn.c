/*
 * conn.c - fuzz the I/O layer (core/net): a node on a real libuv loop
 * takes one end of a socketpair (lp2p_node_adopt) and the harness plays
 * the peer on the other end: the handshake, then a byte stream driven by
 * the input (sealed application and P2P messages, garbage, partial
 * chunks, huge declared lengths, Disconnect, half and full closes, writes
 * split anywhere) while the node's hooks pause, close the connection,
 * close the node or report inbox bytes, as a Lua listener could. Config
 * limits come from the input too, small, so that the fairness caps, the
 * rate limits, the stash and the node budget all trigger.
 *
 * The node sends too (ops 0xf0 and up): numbered application messages of
 * sizes around its chunk size and several chunks long, copied or lent
 * (lp2p_conn_send_lent), through its send queue, while the peer stops and
 * resumes reading, so that the queue, its bounds (derived from the input)
 * and the sealing of large messages straight from the caller's buffer
 * all run under backpressure.
 *
 * Invariants (besides ASan/UBSan/LeakSanitizer):
 *   - application messages reach the hook in order, none lost or
 *     repeated, as long as the peer wrote nothing but valid messages
 *     (numbered payloads); nothing reaches it after the connection or the
 *     node was closed;
 *   - what the node sends decrypts, and its application messages arrive
 *     at the peer whole and in order, each one send accepted, none
 *     repeated; a send is refused only as EQUEUEFULL or ECLOSED; every
 *     lent payload is given back once, and not read after;
 *   - the node's buffered-bytes total equals the sum of its connections'
 *     and never stays over the budget after a read;
 *   - closing the node and running the loop frees every handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "../core/net/node_internal.h"

static lp2p_identity node_id, peer_id;


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  signal(SIGPIPE, SIG_IGN); /* the node may close its end first */
  fuzz_identity(&node_id, 1);
  fuzz_identity(&peer_id, 2);
  return 0;
}


/* ------------------------------------------------------------ the node */

typedef struct harness {
  lp2p_node *node;
  uint64_t conn;
  uint32_t next_seq;  /* next application message expected by the hook */
  int garbage;        /* the peer wrote something invalid */
  int closed;         /* the connection or the node was closed */
  int node_closed;    /* the hook closed the node: its memory may be gone */
  int action;         /* what the hook does on the next message */
  unsigned messages;  /* seen by the hook */
} harness;

enum { ACT_NONE, ACT_PAUSE, ACT_CLOSE, ACT_CLOSE_NODE, ACT_HOLD };

static int hook_accept(void *ud, const lp2p_point *a, char *r, size_t cap) {
  return 1;
}


static void hook_auth(void *ud, const lp2p_auth_info *info, lp2p_verdict *v) {
}


static int hook_message(void *ud, uint64_t id, const uint8_t *msg,
                        size_t len) {
  harness *h = ud;
  FUZZ_CHECK(!h->closed);
  FUZZ_CHECK(len >= 2);
  h->messages++;
  uint16_t tag = (uint16_t)(msg[0] << 8 | msg[1]);
  if (tag >= LP2P_MSG_APP_MIN && !h->garbage && len >= 6) {
    uint32_t seq = (uint32_t)msg[2] << 24 | (uint32_t)msg[3] << 16 |
                   (uint32_t)msg[4] << 8 | msg[5];
    FUZZ_CHECK(seq == h->next_seq);
    h->next_seq++;
  }
  int act = h->action;
  h->action = ACT_NONE;
  lp2p_conn *c = lp2p_node_find(h->node, id);
  switch (act) {
  case ACT_PAUSE:
    return 1;
  case ACT_CLOSE:
    if (c != NULL)
      lp2p_conn_close(c, 0, "closed by the hook", (int)(len & 1));
    h->closed = 1;
    break;
  case ACT_CLOSE_NODE:
    lp2p_node_close(h->node);
    h->closed = h->node_closed = 1;
    break;
  case ACT_HOLD:
    if (c != NULL)
      lp2p_conn_hold(c, (long long)len);
    break;
  }
  return 0;
}


static void hook_event(void *ud, const lp2p_event *ev) {
  harness *h = ud;
  if (ev->type == LP2P_EV_DISCONNECTED && ev->conn == h->conn)
    h->closed = 1;
}


static void check_budget(lp2p_node *n) {
  size_t sum = 0;
  for (uint32_t i = 0; i < n->nslots; i++)
    if (n->slots[i] != NULL)
      sum += n->slots[i]->counted;
  FUZZ_CHECK(sum == n->buffered);
  FUZZ_CHECK(n->buffered <= n->cfg.incoming_buffer_bytes);
}


static void spin(uv_loop_t *loop, harness *h, int times) {
  for (int i = 0; i < times; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (!h->closed)
      check_budget(h->node);
  }
}


/* ------------------------------------------------------------ the peer */

typedef struct peer {
  int fd;
  lp2p_crypto crypto;
  uint8_t *out; /* bytes not yet written */
  size_t len, cap;
  /* read side: what the node wrote, chunks opened and reassembled */
  int stopped;  /* not reading: the node meets backpressure */
  uint8_t *in;  /* ciphertext not yet a whole chunk */
  size_t in_len;
  lp2p_msg_reader reader;
  uint32_t next_rx; /* next numbered message expected from the node */
  uint32_t sent;    /* numbered messages the node accepted to send */
  int lent_out;     /* payloads lent to the node, not given back yet */
} peer;


#define NODE_TAG 0x20

/* Byte i of the node's numbered message seq (after its 4-byte number). */
static uint8_t node_byte(uint32_t seq, size_t i) {
  return (uint8_t)(seq * 131u + i * 7u + (i >> 8));
}


static void out_add(peer *p, const uint8_t *b, size_t n) {
  if (p->len + n > p->cap) {
    p->cap = (p->len + n) * 2;
    p->out = realloc(p->out, p->cap);
    if (p->out == NULL)
      abort();
  }
  memcpy(p->out + p->len, b, n);
  p->len += n;
}


/* Seal a whole stream (one or more messages) into chunks of `chunk`. */
static void out_sealed(peer *p, const uint8_t *stream, size_t n,
                       size_t chunk) {
  if (n == 0)
    return;
  size_t size = lp2p_frame_sealed_size(n, chunk);
  uint8_t *buf = malloc(size);
  if (buf == NULL)
    abort();
  FUZZ_CHECK(lp2p_frame_seal(buf, stream, n, chunk, &p->crypto) == 0);
  out_add(p, buf, size);
  free(buf);
}


/* Write up to n queued bytes without blocking; the loop reads between. */
static void flush_some(peer *p, size_t n, uv_loop_t *loop, harness *h) {
  size_t off = 0;
  int stuck = 0;
  if (n > p->len)
    n = p->len;
  while (off < n && p->fd >= 0 && stuck < 50) {
    ssize_t w = write(p->fd, p->out + off, n - off);
    if (w > 0) {
      off += (size_t)w;
      stuck = 0;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      break; /* the node closed its end */
    } else {
      stuck++;
      spin(loop, h, 1);
    }
  }
  memmove(p->out, p->out + off, p->len - off);
  p->len -= off;
}


/* A message from the node: its numbered ones must come in order, whole. */
static int node_message(void *ud, const uint8_t *msg, size_t len) {
  peer *p = ud;
  uint16_t tag = (uint16_t)(msg[0] << 8 | msg[1]);
  if (tag != NODE_TAG)
    return 0; /* Disconnect */
  FUZZ_CHECK(len >= 6);
  uint32_t seq = (uint32_t)msg[2] << 24 | (uint32_t)msg[3] << 16 |
                 (uint32_t)msg[4] << 8 | msg[5];
  FUZZ_CHECK(seq == p->next_rx);
  FUZZ_CHECK(seq < p->sent);
  p->next_rx++;
  for (size_t i = 6; i < len; i++)
    FUZZ_CHECK(msg[i] == node_byte(seq, i - 6));
  return 0;
}


/* Read what the node wrote (unless stopped, or `all`): every chunk must
 * open, every message decode in order. */
static void drain(peer *p, int all) {
  uint8_t buf[8192];
  while (p->fd >= 0 && (!p->stopped || all)) {
    ssize_t r = read(p->fd, buf, sizeof buf);
    if (r <= 0)
      break;
    p->in = realloc(p->in, p->in_len + (size_t)r);
    if (p->in == NULL)
      abort();
    memcpy(p->in + p->in_len, buf, (size_t)r);
    p->in_len += (size_t)r;
    size_t off = 0;
    while (p->in_len - off >= 2) {
      size_t blen = (size_t)p->in[off] << 8 | p->in[off + 1];
      if (p->in_len - off < 2 + blen)
        break;
      uint8_t *plain = malloc(blen ? blen : 1);
      if (plain == NULL)
        abort();
      FUZZ_CHECK(lp2p_chunk_open(plain, p->in + off + 2, blen,
                                 &p->crypto) == 0);
      FUZZ_CHECK(lp2p_msg_reader_feed(&p->reader, plain,
                                      blen - LP2P_TAG_BYTES, node_message,
                                      p) == 0);
      free(plain);
      off += 2 + blen;
    }
    memmove(p->in, p->in + off, p->in_len - off);
    p->in_len -= off;
  }
}


/* The node gives a lent payload back: once, and never touches it again
 * (ASan sees a later read of the freed buffer). */
static void release_lent(void *ud, uintptr_t token) {
  peer *p = ud;
  FUZZ_CHECK(p->lent_out > 0);
  p->lent_out--;
  free((void *)token);
}


/* The node sends message number p->sent of `size` bytes (at least 4),
 * copied or lent. */
static void node_send(peer *p, harness *h, size_t size, int lend) {
  if (h->closed)
    return;
  lp2p_conn *c = lp2p_node_find(h->node, h->conn);
  if (c == NULL)
    return;
  uint8_t *m = malloc(size); /* exact size: ASan sees any overread */
  if (m == NULL)
    abort();
  uint32_t seq = p->sent;
  m[0] = (uint8_t)(seq >> 24);
  m[1] = (uint8_t)(seq >> 16);
  m[2] = (uint8_t)(seq >> 8);
  m[3] = (uint8_t)seq;
  for (size_t i = 4; i < size; i++)
    m[i] = node_byte(seq, i - 4);
  int rc;
  if (lend) {
    p->lent_out++; /* it may come back before the call returns */
    rc = lp2p_conn_send_lent(c, m, size, NODE_TAG, release_lent, p,
                             (uintptr_t)m);
    if (rc < 0) {
      p->lent_out--;
      free(m);
    }
  } else {
    rc = lp2p_conn_send(c, m, size, 1, NODE_TAG);
    free(m);
  }
  if (rc == 0)
    p->sent++;
  else
    FUZZ_CHECK(rc == LP2P_EQUEUEFULL || rc == LP2P_ECLOSED);
}


/* The client side of the handshake over the socketpair. 0 when
 * established (crypto filled). */
static int handshake(peer *p, uv_loop_t *loop, harness *h) {
  lp2p_hs_config hc = {0};
  hc.identity = &peer_id;
  FUZZ_CHECK(lp2p_pow_target_make(&hc.target, 0) == 0);
  hc.advertised_port = 9732;
  hc.chain_name = "TEZOS_MAINNET";
  hc.chain_name_len = 13;
  hc.p2p.max = 1;
  hc.ddb.max = 2;
  hc.incoming = 0;
  int err = 0;
  lp2p_hs *hs = lp2p_hs_new(&hc, &err);
  FUZZ_CHECK(hs != NULL);
  uint8_t *in = NULL;
  size_t in_len = 0;
  int done = -1;
  for (int round = 0; round < 200 && done < 0; round++) {
    uint8_t *o;
    size_t olen = lp2p_hs_take_output(hs, &o);
    if (olen > 0) {
      out_add(p, o, olen);
      free(o);
      flush_some(p, p->len, loop, h);
    }
    spin(loop, h, 2);
    uint8_t buf[4096];
    ssize_t r = read(p->fd, buf, sizeof buf);
    if (r == 0)
      break;
    if (r > 0) {
      in = realloc(in, in_len + (size_t)r);
      memcpy(in + in_len, buf, (size_t)r);
      in_len += (size_t)r;
    }
    while (in_len > 0) {
      size_t used = 0;
      int ev = lp2p_hs_feed(hs, in, in_len, &used);
      memmove(in, in + used, in_len - used);
      in_len -= used;
      if (ev < 0 || ev == LP2P_HS_NACKED) {
        done = 1;
        break;
      }
      if (ev == LP2P_HS_METADATA)
        FUZZ_CHECK(lp2p_hs_ack(hs) == 0);
      if (ev == LP2P_HS_ACKED) {
        FUZZ_CHECK(lp2p_hs_crypto(hs, &p->crypto) == 0);
        done = 0;
      }
      if (used == 0 || done >= 0)
        break;
    }
  }
  uint8_t *o;
  size_t olen = lp2p_hs_take_output(hs, &o);
  if (olen > 0) {
    out_add(p, o, olen);
    free(o);
    flush_some(p, p->len, loop, h);
  }
  free(in);
  lp2p_hs_free(hs);
  return done == 0 ? 0 : -1;
}


static size_t envelope(uint8_t *out, uint16_t tag, const uint8_t *body,
                       size_t n) {
  uint32_t len = (uint32_t)n + 2;
  out[0] = (uint8_t)(len >> 24);
  out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);
  out[3] = (uint8_t)len;
  out[4] = (uint8_t)(tag >> 8);
  out[5] = (uint8_t)tag;
  if (n)
    memcpy(out + 6, body, n);
  return n + 6;
}


/* ------------------------------------------------------------- the run */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    abort();
  loop.data = NULL;
  lp2p_node_config cfg;
  lp2p_node_config_defaults(&cfg);
  cfg.identity = node_id;
  FUZZ_CHECK(lp2p_pow_target_make(&cfg.target, 0) == 0);
  cfg.pow_bits = 0;
  cfg.read_pass_msgs = 1 + fuzz_u8(&in) % 8;
  cfg.read_pass_bytes = 1 + (size_t)fuzz_u16(&in) * 4;
  cfg.p2p_rate = 1000;
  cfg.p2p_burst = 1 + fuzz_u8(&in) % 8;
  cfg.app_rate = fuzz_u8(&in) & 1 ? 0 : 2000;
  cfg.app_burst = 1 + fuzz_u8(&in) % 64;
  cfg.incoming_buffer_bytes = 64 * 1024 + (size_t)fuzz_u16(&in) * 16;
  cfg.max_message_size = 1 << 20;
  cfg.crypto_workers = 0; /* key jobs on the loop: one thread, replayable */
  size_t chunk = LP2P_CHUNK_SIZE_MIN + fuzz_u16(&in) % 2048;
  /* The node's sending side, from the bytes above (older seeds keep
   * their meaning): its chunks as the peer's, a small send queue. */
  cfg.binary_chunks_size = chunk;
  cfg.outgoing_queue_bytes = 1024 + cfg.read_pass_bytes * 2;
  cfg.outgoing_message_queue_size = 1 + (unsigned)cfg.app_burst % 64;

  harness h = {0};
  lp2p_node_hooks hooks = {&h, hook_accept, hook_auth, hook_message,
                           hook_event};
  int err = 0;
  h.node = lp2p_node_new(&loop, &cfg, &hooks, &err);
  FUZZ_CHECK(h.node != NULL);
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  peer p = {0};
  p.fd = sv[1];
  lp2p_msg_reader_init(&p.reader, 0);
  if (lp2p_node_adopt(h.node, sv[0], &h.conn) != 0) {
    close(sv[0]);
    h.closed = 1;
  }
  uint32_t seq = 0;
  if (!h.closed && handshake(&p, &loop, &h) == 0) {
    uint8_t msg[4096 + 6];
    while (in.len > 0 && p.fd >= 0) {
      uint8_t op = fuzz_u8(&in);
      if (op >= 0xf0) { /* the node's side */
        size_t piece = chunk - LP2P_CHUNK_OVERHEAD;
        uint8_t k = fuzz_u8(&in);
        if (op == 0xf0) { /* stop or resume reading */
          p.stopped = !p.stopped;
        } else if (op < 0xf8) { /* around k whole chunks of plaintext */
          size_t size = (size_t)(k % 8) * piece + (k >> 3) % 16;
          size_t back = fuzz_u8(&in) % 16;
          size = size > back + 4 ? size - back : 4;
          node_send(&p, &h, size, op & 1);
        } else { /* a small one */
          node_send(&p, &h, 4 + k, op & 1);
        }
        spin(&loop, &h, 1);
        drain(&p, 0);
        continue;
      }
      switch (op % 12) {
      case 0:
      case 1: { /* numbered application messages, several per chunk */
        unsigned k = 1 + fuzz_u8(&in) % 16;
        uint8_t stream[16 * (64 + 6)];
        size_t n = 0;
        for (unsigned i = 0; i < k; i++) {
          uint8_t body[64];
          size_t bl = 4 + fuzz_u8(&in) % 60;
          body[0] = (uint8_t)(seq >> 24);
          body[1] = (uint8_t)(seq >> 16);
          body[2] = (uint8_t)(seq >> 8);
          body[3] = (uint8_t)seq;
          memset(body + 4, 0xab, bl - 4);
          seq++;
          n += envelope(stream + n, 0x10 + (op & 1), body, bl);
        }
        out_sealed(&p, stream, n, chunk);
        break;
      }
      case 2: { /* a P2P message */
        lp2p_msg m;
        memset(&m, 0, sizeof m);
        uint8_t kind = fuzz_u8(&in) % 4;
        m.tag = (uint16_t)(LP2P_MSG_BOOTSTRAP + kind);
        if (m.tag == LP2P_MSG_ADVERTISE) {
          m.npoints = fuzz_u8(&in) % 4;
          for (size_t i = 0; i < m.npoints; i++)
            FUZZ_CHECK(lp2p_point_parse(&m.points[i], "127.0.0.9:9732",
                                        14) == 0);
        } else if (m.tag != LP2P_MSG_BOOTSTRAP) {
          FUZZ_CHECK(lp2p_point_parse(&m.point, "127.0.0.9:9732", 14) == 0);
        }
        long n = lp2p_msg_encode(msg, sizeof msg, &m);
        if (n > 0 && (size_t)n <= sizeof msg)
          out_sealed(&p, msg, (size_t)n, chunk);
        break;
      }
      case 3: { /* garbage */
        size_t got;
        const uint8_t *g = fuzz_bytes(&in, 1 + fuzz_u8(&in) % 32, &got);
        out_add(&p, g, got);
        h.garbage = 1;
        break;
      }
      case 4: /* write a part of what is queued */
        flush_some(&p, fuzz_u16(&in), &loop, &h);
        break;
      case 5: /* what the hook does next */
        h.action = fuzz_u8(&in) % 5;
        break;
      case 6:
        spin(&loop, &h, 1 + fuzz_u8(&in) % 8);
        break;
      case 7: /* the application drains: resume */
        if (!h.closed) {
          lp2p_conn *c = lp2p_node_find(h.node, h.conn);
          if (c != NULL) {
            lp2p_conn_hold(c, -(long long)fuzz_u16(&in));
            lp2p_conn_pause(c, 0);
          }
        }
        break;
      case 8: { /* a message longer than what follows: a partial one */
        size_t decl = 1 + (size_t)fuzz_u16(&in) * 32;
        size_t have = fuzz_u8(&in);
        uint8_t stream[6 + 255];
        memset(stream, 0xcd, sizeof stream);
        envelope(stream, 0x10, NULL, 0);
        stream[0] = (uint8_t)((decl + 2) >> 24);
        stream[1] = (uint8_t)((decl + 2) >> 16);
        stream[2] = (uint8_t)((decl + 2) >> 8);
        stream[3] = (uint8_t)(decl + 2);
        out_sealed(&p, stream, 6 + (have < decl ? have : decl), chunk);
        h.garbage = 1; /* later messages are inside it */
        break;
      }
      case 9: { /* Disconnect */
        size_t n = envelope(msg, LP2P_MSG_DISCONNECT, NULL, 0);
        out_sealed(&p, msg, n, chunk);
        break;
      }
      case 10: /* half close: the node must see the EOF */
        flush_some(&p, p.len, &loop, &h);
        shutdown(p.fd, SHUT_WR);
        break;
      case 11: /* hang up, maybe in the middle of a chunk */
        flush_some(&p, fuzz_u16(&in), &loop, &h);
        close(p.fd);
        p.fd = -1;
        break;
      }
      drain(&p, 0);
    }
    if (p.fd >= 0)
      flush_some(&p, p.len, &loop, &h);
    /* Let throttled and yielded connections finish. */
    for (int i = 0; i < 200 && !h.closed; i++) {
      uv_run(&loop, UV_RUN_NOWAIT);
      drain(&p, 1);
      if (h.closed)
        break;
      lp2p_conn *c = lp2p_node_find(h.node, h.conn);
      if (c == NULL || (!c->yielded && !c->throttled))
        break;
      if (c->throttled)
        usleep(500);
      check_budget(h.node);
    }
  }
  /* What the node still sends is read (and checked) to the end. */
  if (!h.closed && p.fd >= 0) {
    lp2p_conn *c = lp2p_node_find(h.node, h.conn);
    for (int i = 0; i < 1000 && c != NULL && c->batch_in_flight; i++) {
      drain(&p, 1);
      uv_run(&loop, UV_RUN_NOWAIT);
      c = lp2p_node_find(h.node, h.conn);
    }
    drain(&p, 1);
  }
  if (p.fd >= 0)
    close(p.fd);
  free(p.out);
  free(p.in);
  lp2p_msg_reader_free(&p.reader);
  if (!h.node_closed)
    lp2p_node_close(h.node);
  h.closed = 1;
  uv_run(&loop, UV_RUN_DEFAULT);
  lp2p_loop_close_nodes(&loop); /* what the loop's nodes shared */
  uv_run(&loop, UV_RUN_DEFAULT);
  FUZZ_CHECK(uv_loop_close(&loop) == 0);
  FUZZ_CHECK(p.lent_out == 0); /* every lent payload given back */
  return 0;
}
