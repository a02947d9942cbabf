/*
 * handler.c - the connect handler (Octez P2p_connect_handler): listen,
 * accept, connect, the hard limits and checks in Octez order, connection
 * ids, triggers and totals. Policy lives in the hooks (the Lua layer).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "node_internal.h"

#define RATE_TICK_MS 1000
#define RATE_ALPHA 0.2 /* weight of the newest second in the moving average */


void lp2p_node_config_defaults(lp2p_node_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->pow_bits = LP2P_POW_DEFAULT_BITS;
  memcpy(cfg->chain, "TEZOS_MAINNET", 13);
  cfg->chain_len = 13;
  cfg->p2p.min = 0;
  cfg->p2p.max = 1;
  cfg->ddb.min = 0;
  cfg->ddb.max = 2;
  cfg->min_connections = 10;
  cfg->max_connections = 100;
  cfg->max_incoming_connections = 20;
  cfg->outgoing_message_queue_size = 1000;
  cfg->outgoing_queue_bytes = 8u << 20;
  cfg->binary_chunks_size = LP2P_CHUNK_SIZE_MAX;
  cfg->max_message_size = LP2P_MSG_MAX - 4; /* the length field */
  /* A real connection message is under 350 bytes (255-byte chain name):
   * a peer's 2-byte prefix cannot make us reserve 64 KiB. */
  cfg->max_conn_msg_len = 1024;
  cfg->connection_timeout_ms = 10000;
  cfg->authentication_timeout_ms = 5000;
  cfg->ban_table_size = 65536;
  cfg->backlog = 20;
  lp2p_admission_config_defaults(&cfg->admission);
  cfg->incoming_buffer_bytes = (size_t)256 << 20;
  cfg->partial_min_rate = 1024;
  cfg->partial_stall_ms = 10000;
  cfg->read_pass_bytes = 1024 * 1024;
  cfg->read_pass_msgs = 256;
  cfg->p2p_rate = 10;
  cfg->p2p_burst = 100;
  cfg->app_rate = 20000;
  cfg->app_burst = 40000;
  cfg->crypto_workers = -1;
}


const char *lp2p_event_name(lp2p_event_type type) {
  switch (type) {
#define LP2P_EVENT_NAME(name, text)                                         \
  case LP2P_EV_##name:                                                      \
    return text;
    LP2P_EVENT_MAP(LP2P_EVENT_NAME)
#undef LP2P_EVENT_NAME
  default:
    return "unknown";
  }
}


const lp2p_ev_conn *lp2p_event_conn(const lp2p_event *ev) {
  switch (ev->type) {
  case LP2P_EV_ACCEPTED:
  case LP2P_EV_CONNECTING:
  case LP2P_EV_AUTHENTICATED:
  case LP2P_EV_CONNECTED:
    return &ev->u.conn;
  case LP2P_EV_AUTH_FAILED:
  case LP2P_EV_DECODING_ERROR:
  case LP2P_EV_DISCONNECTED:
    return &ev->u.closed.who;
  case LP2P_EV_NACK_SENT:
  case LP2P_EV_NACKED:
    return &ev->u.nack.who;
  case LP2P_EV_RATE_EXCEEDED:
    return &ev->u.rate.who;
  default:
    return NULL;
  }
}


void lp2p__node_emit(lp2p_node *n, const lp2p_event *ev) {
  if (!n->closing)
    n->hooks.event(n->hooks.ud, ev);
}


/* An lp2p_ev_conn kind about c. */
static void emit_conn(lp2p_node *n, lp2p_conn *c, lp2p_event_type type) {
  lp2p_event ev = {.type = type, .conn = c->id};
  lp2p__conn_who(c, &ev.u.conn);
  lp2p__node_emit(n, &ev);
}


static void emit_trigger(lp2p_node *n, lp2p_event_type type) {
  lp2p_event ev = {.type = type};
  ev.u.trigger.active = n->active;
  lp2p__node_emit(n, &ev);
}


static void on_admission_load(void *ud, int under_load, unsigned pending) {
  lp2p_event ev = {.type = under_load ? LP2P_EV_UNDER_LOAD
                                      : LP2P_EV_LOAD_NORMAL};
  ev.u.load.pending = pending;
  ev.u.load.reason =
      under_load ? "pending handshakes over the threshold: accept rates halved"
                 : "pending handshakes back under half the threshold";
  lp2p__node_emit(ud, &ev);
}


/* ---------------------------------------------------------------- slots */

static int slot_assign(lp2p_node *n, lp2p_conn *c) {
  if (n->free_head == n->nslots) {
    uint32_t ns = n->nslots ? n->nslots * 2 : 64;
    lp2p_conn **slots = realloc(n->slots, ns * sizeof *slots);
    if (slots == NULL)
      return LP2P_ENOMEM;
    n->slots = slots;
    uint32_t *gens = realloc(n->gens, ns * sizeof *gens);
    if (gens == NULL)
      return LP2P_ENOMEM;
    n->gens = gens;
    /* Free slots hold NULL; the free list is implicit: scan from hint. */
    for (uint32_t i = n->nslots; i < ns; i++) {
      n->slots[i] = NULL;
      n->gens[i] = 0;
    }
    n->nslots = ns;
  }
  uint32_t i = n->free_head;
  n->slots[i] = c;
  n->gens[i]++;
  c->id = ((uint64_t)n->gens[i] << 32) | (i + 1);
  while (n->free_head < n->nslots && n->slots[n->free_head] != NULL)
    n->free_head++;
  return 0;
}


lp2p_conn *lp2p_node_find(lp2p_node *n, uint64_t id) {
  uint32_t i = (uint32_t)(id & 0xffffffffu);
  if (i == 0 || i > n->nslots)
    return NULL;
  lp2p_conn *c = n->slots[i - 1];
  if (c == NULL || c->id != id || c->state == LP2P_CONN_CLOSING)
    return NULL;
  return c;
}


size_t lp2p_node_conn_ids(lp2p_node *n, uint64_t *ids, size_t cap) {
  size_t k = 0;
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c != NULL && c->state != LP2P_CONN_CLOSING) {
      if (k < cap)
        ids[k] = c->id;
      k++;
    }
  }
  return k;
}


/* A handshake is over (established or closed): release its pending and
 * acked counts. Idempotent. */
static void handshake_over(lp2p_node *n, lp2p_conn *c) {
  if (c->counted_pending) {
    c->counted_pending = 0;
    if (c->incoming)
      n->pending_incoming--;
    else
      n->pending_outgoing--;
  }
  if (c->acked) {
    c->acked = 0;
    n->acked_pending--;
  }
}


/* Release the counts of a closing connection. Idempotent. */
void lp2p__node_conn_released(lp2p_node *n, lp2p_conn *c) {
  handshake_over(n, c);
  if (c->counted_admission) {
    c->counted_admission = 0;
    lp2p_admission_closed(n->admission, &c->addr);
  }
  if (c->counted_active) {
    c->counted_active = 0;
    n->active--;
    if (n->active < n->cfg.min_connections && !n->closing)
      emit_trigger(n, LP2P_EV_TOO_FEW_CONNECTIONS);
  }
}


/* Release the slot of a connection whose memory goes now. A closing
 * connection keeps its slot until then, so the node can still reach it
 * (lp2p_node_force_close). */
void lp2p__node_conn_freed(lp2p_node *n, lp2p_conn *c) {
  lp2p__node_conn_released(n, c);
  if (c->id != 0) {
    uint32_t i = (uint32_t)(c->id & 0xffffffffu) - 1;
    if (i < n->nslots && n->slots[i] == c) {
      n->slots[i] = NULL;
      if (i < n->free_head)
        n->free_head = i;
    }
  }
}


/* ------------------------------------------------------------ lifecycle */

/* The loop's shared state, made with its first node. NULL on ENOMEM. */
static lp2p_loop_shared *loop_shared(uv_loop_t *loop) {
  lp2p_loop_shared *sh = loop->data;
  if (sh != NULL)
    return sh;
  sh = calloc(1, sizeof *sh);
  if (sh == NULL)
    return NULL;
  sh->scratch = malloc(LP2P_CHUNK_SIZE_MAX);
  sh->readbuf = malloc(LP2P_READ_BUF_SIZE);
  if (sh->scratch == NULL || sh->readbuf == NULL) {
    free(sh->scratch);
    free(sh->readbuf);
    free(sh);
    return NULL;
  }
  loop->data = sh;
  return sh;
}


/* Take n off its loop's list; the last node frees what they shared (the
 * worker pool closes its async handle, freed by the loop). */
static void unlink_node(lp2p_node *n) {
  lp2p_loop_shared *sh = n->shared;
  if (sh == NULL)
    return;
  for (lp2p_node **pp = &sh->nodes; *pp != NULL; pp = &(*pp)->next_in_loop)
    if (*pp == n) {
      *pp = n->next_in_loop;
      break;
    }
  if (sh->nodes != NULL)
    return;
  if (sh->workers != NULL)
    lp2p_workers_free(sh->workers);
  free(sh->scratch);
  free(sh->readbuf);
  sodium_memzero(sh->rand, sizeof sh->rand);
  free(sh);
  n->loop->data = NULL;
}


static void free_node(lp2p_node *n) {
  unlink_node(n);
  lp2p_bans_free(n->bans);
  if (n->admission != NULL)
    lp2p_admission_free(n->admission);
  free(n->slots);
  free(n->gens);
  lp2p_identity_wipe(&n->cfg.identity);
  free(n);
}


/* Random bytes from the loop's buffer, refilled 4 KiB at a time (nonces of
 * connection messages, Octez's random extra connection). */
void lp2p__node_random(lp2p_node *n, uint8_t *out, size_t len) {
  lp2p_loop_shared *sh = n->shared;
  while (len > 0) {
    if (sh->rand_left == 0) {
      randombytes_buf(sh->rand, sizeof sh->rand);
      sh->rand_left = sizeof sh->rand;
    }
    size_t take = len < sh->rand_left ? len : sh->rand_left;
    uint8_t *src = sh->rand + sizeof sh->rand - sh->rand_left;
    memcpy(out, src, take);
    sodium_memzero(src, take); /* handed out once */
    sh->rand_left -= take;
    out += take;
    len -= take;
  }
}


void lp2p__node_handle_closed(lp2p_node *n) {
  if (--n->handles == 0 && n->closing)
    free_node(n);
}


static void on_node_handle_closed(uv_handle_t *h) {
  lp2p_node *n = h->data;
  if ((void *)h != (void *)&n->rate_timer &&
      (void *)h != (void *)&n->pass_tick && (void *)h != (void *)&n->pass_idle)
    free(h);
  lp2p__node_handle_closed(n);
}


static void on_rate_tick(uv_timer_t *t) {
  lp2p_node *n = t->data;
  double secs = RATE_TICK_MS / 1000.0;
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c == NULL)
      continue;
    double in = (double)(c->stat.bytes_in - c->rate_bytes_in) / secs;
    double out = (double)(c->stat.bytes_out - c->rate_bytes_out) / secs;
    c->stat.rate_in += RATE_ALPHA * (in - c->stat.rate_in);
    c->stat.rate_out += RATE_ALPHA * (out - c->stat.rate_out);
    lp2p__conn_tick(c, RATE_TICK_MS);
    c->rate_bytes_in = c->stat.bytes_in;
    c->rate_bytes_out = c->stat.bytes_out;
    if (c->state == LP2P_CONN_RUNNING && in == 0 && out == 0)
      lp2p__conn_trim(c);
  }
}


static void on_pass_tick(uv_prepare_t *h) {
  lp2p__node_resume(h->data);
}


/*
 * Over the incoming budget: close the connections holding the most bytes
 * on the read side (partial messages, held-back input, inboxes) until
 * under it. A closed connection's bytes stop counting at once; its
 * buffers go with its handles.
 */
void lp2p__node_enforce_budget(lp2p_node *n) {
  while (n->buffered > n->cfg.incoming_buffer_bytes && !n->closing) {
    lp2p_conn *big = NULL;
    for (uint32_t i = 0; i < n->nslots; i++) {
      lp2p_conn *c = n->slots[i];
      if (c != NULL && c->state == LP2P_CONN_RUNNING &&
          (big == NULL || c->counted > big->counted))
        big = c;
    }
    if (big == NULL || big->counted == 0)
      return;
    n->stats.cut_budget++;
    lp2p_conn_close(big, LP2P_ENOBUFS,
                    "incoming buffer budget exceeded: largest holder", 0);
  }
}


void lp2p_node_budget(lp2p_node *n, lp2p_budget *b) {
  *b = n->stats;
  b->buffered = n->buffered;
  b->buffered_max = n->cfg.incoming_buffer_bytes;
  b->partial = b->held = b->stashed = 0;
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c == NULL || c->state != LP2P_CONN_RUNNING)
      continue;
    b->partial += lp2p_msg_reader_pending(&c->reader) + c->in_len;
    b->held += c->held;
    b->stashed += c->cstash_len + (c->plain_len - c->plain_off);
  }
}


lp2p_node *lp2p_node_new(uv_loop_t *loop, const lp2p_node_config *cfg,
                         const lp2p_node_hooks *hooks, int *err) {
  lp2p_node *n = calloc(1, sizeof *n);
  if (n == NULL) {
    *err = LP2P_ENOMEM;
    return NULL;
  }
  n->loop = loop;
  n->cfg = *cfg;
  n->hooks = *hooks;
  n->bans = lp2p_bans_new(cfg->ban_table_size);
  lp2p_admission_config adm = cfg->admission;
  adm.on_load = on_admission_load;
  adm.ud = n;
  n->admission = lp2p_admission_new(&adm);
  lp2p_loop_shared *sh = loop_shared(loop);
  if (n->bans == NULL || n->admission == NULL || sh == NULL) {
    free_node(n);
    *err = LP2P_ENOMEM;
    return NULL;
  }
  n->shared = sh;
  n->scratch = sh->scratch;
  n->readbuf = sh->readbuf;
  n->next_in_loop = sh->nodes;
  sh->nodes = n;
  /* Key jobs on the loop's worker pool, grown to what this node asks. */
  int nw = cfg->crypto_workers;
  if (nw < 0)
    nw = lp2p__cpus();
  if (nw > 0) {
    int rc = sh->workers ? lp2p_workers_grow(sh->workers, nw) : 0;
    if (sh->workers == NULL)
      sh->workers = lp2p_workers_new(loop, nw, &rc);
    n->workers = sh->workers; /* none (inline) if it could not start */
  }
  uv_timer_init(loop, &n->rate_timer);
  n->rate_timer.data = n;
  uv_prepare_init(loop, &n->pass_tick);
  n->pass_tick.data = n;
  uv_idle_init(loop, &n->pass_idle);
  n->pass_idle.data = n;
  n->handles = 3;
  uv_prepare_start(&n->pass_tick, on_pass_tick);
  uv_unref((uv_handle_t *)&n->pass_tick);
  uv_timer_start(&n->rate_timer, on_rate_tick, RATE_TICK_MS, RATE_TICK_MS);
  uv_unref((uv_handle_t *)&n->rate_timer); /* never keeps the loop alive */
  return n;
}


void lp2p_node_close(lp2p_node *n) {
  if (n->closing)
    return;
  n->closing = 1;
  for (int i = 0; i < n->nlisteners; i++)
    if (!uv_is_closing((uv_handle_t *)n->listeners[i]))
      uv_close((uv_handle_t *)n->listeners[i], on_node_handle_closed);
  n->nlisteners = 0;
  for (uint32_t i = 0; i < n->nslots; i++)
    if (n->slots[i] != NULL)
      lp2p_conn_close(n->slots[i], LP2P_ECLOSED, "node closed", 0);
  if (!uv_is_closing((uv_handle_t *)&n->rate_timer))
    uv_close((uv_handle_t *)&n->rate_timer, on_node_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&n->pass_tick))
    uv_close((uv_handle_t *)&n->pass_tick, on_node_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&n->pass_idle))
    uv_close((uv_handle_t *)&n->pass_idle, on_node_handle_closed);
}


/* The loop is going away: close every node, then stop the worker pool
 * here (its async handle closed with its own callback, before whoever
 * closes every remaining handle of the loop gets to it); key jobs still
 * in flight are handed back canceled. */
void lp2p_loop_close_nodes(uv_loop_t *loop) {
  lp2p_loop_shared *sh = loop->data;
  if (sh == NULL)
    return;
  for (lp2p_node *n = sh->nodes; n != NULL; n = n->next_in_loop) {
    lp2p_node_close(n);
    for (uint32_t i = 0; i < n->nslots; i++)
      if (n->slots[i] != NULL)
        lp2p__conn_force_close(n->slots[i]);
  }
  lp2p_workers *w = sh->workers;
  if (w != NULL) {
    sh->workers = NULL;
    for (lp2p_node *n = sh->nodes; n != NULL; n = n->next_in_loop)
      n->workers = NULL;
    lp2p_workers_free(w);
  }
}


/* --------------------------------------------------------------- points */

static void point_from_sockaddr(lp2p_point *p, const struct sockaddr *sa) {
  memset(p, 0, sizeof *p);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    p->family = 4;
    memcpy(p->addr, &in->sin_addr, 4);
    p->port = ntohs(in->sin_port);
  } else {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&in6->sin6_addr, mapped, 12) == 0) {
      /* An IPv4 peer on a dual-stack socket is an IPv4 point. */
      p->family = 4;
      memcpy(p->addr, (const uint8_t *)&in6->sin6_addr + 12, 4);
    } else {
      p->family = 6;
      memcpy(p->addr, &in6->sin6_addr, 16);
    }
    p->port = ntohs(in6->sin6_port);
  }
}


static void sockaddr_from_point(struct sockaddr_storage *ss,
                                const lp2p_point *p) {
  memset(ss, 0, sizeof *ss);
  if (p->family == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, p->addr, 4);
    in->sin_port = htons(p->port);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, p->addr, 16);
    in6->sin6_port = htons(p->port);
  }
}


static int same_ip(const lp2p_point *a, const lp2p_point *b) {
  return a->family == b->family &&
         memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}


/* --------------------------------------------------------------- accept */

/*
 * The checks at TCP accept, cheapest first, before any byte is read or any
 * crypto is done: the ban table, per-IP and per-prefix admission, the
 * pending-handshake cap, then the policy hook. 0, or the refusal code
 * with its reason in `reason`.
 */
static int admit(lp2p_node *n, const lp2p_point *addr, uint64_t now,
                 char *reason, size_t cap) {
  if (lp2p_bans_addr(n->bans, addr, now)) {
    snprintf(reason, cap, "banned");
    return LP2P_EBANNED;
  }
  int rc = lp2p_admission_check(n->admission, addr, now, n->pending_incoming);
  if (rc < 0) {
    snprintf(reason, cap, "%s", lp2p_admission_reason(n->admission));
    return rc;
  }
  if (n->pending_incoming >= n->cfg.max_incoming_connections) {
    snprintf(reason, cap, "too many incoming connections");
    return LP2P_ETOOMANY;
  }
  snprintf(reason, cap, "refused by policy");
  if (!n->hooks.accept(n->hooks.ud, addr, reason, cap))
    return LP2P_EREFUSED;
  return 0;
}


static void on_connection(uv_stream_t *server, int status) {
  lp2p_node *n = server->data;
  if (status < 0 || n->closing)
    return;
  lp2p_conn *c = lp2p__conn_new(n, 1);
  if (c == NULL)
    return;
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) < 0) {
    lp2p_conn_close(c, LP2P_ECLOSED, NULL, 0);
    return;
  }
  point_from_sockaddr(&c->addr, (struct sockaddr *)&ss);
  char reason[128];
  uint64_t now = uv_now(n->loop);
  int code = admit(n, &c->addr, now, reason, sizeof reason);
  if (code == 0 && n->closing) /* the hook closed the node */
    code = LP2P_ECLOSED;
  if (code < 0) {
    lp2p_event ev = {.type = LP2P_EV_REFUSED};
    ev.u.refused.addr = &c->addr;
    ev.u.refused.code = code;
    ev.u.refused.reason = reason;
    lp2p__node_emit(n, &ev);
    lp2p_conn_close(c, code, reason, 0);
    return;
  }
  if (slot_assign(n, c) < 0) {
    lp2p_conn_close(c, LP2P_ENOMEM, NULL, 0);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  lp2p_admission_opened(n->admission, &c->addr, now);
  c->counted_admission = 1;
  c->counted_pending = 1;
  n->pending_incoming++;
  emit_conn(n, c, LP2P_EV_ACCEPTED);
  lp2p__conn_arm_timeout(c, n->cfg.authentication_timeout_ms);
  lp2p__conn_start_handshake(c);
}


/*
 * Take an already-connected stream socket (socket activation, a
 * socketpair in tests and fuzzers) as an incoming connection: no
 * admission checks, the accept hook is not asked; the handshake starts at
 * once. A socket that is not IP has an empty address. *id on success; on
 * failure the socket is not closed (it stays the caller's).
 */
int lp2p_node_adopt(lp2p_node *n, uv_os_sock_t sock, uint64_t *id) {
  if (n->closing)
    return LP2P_ECLOSED;
  lp2p_conn *c = lp2p__conn_new(n, 1);
  if (c == NULL)
    return LP2P_ENOMEM;
  /* The slot first: once uv_tcp_open took the socket, nothing fails. */
  int rc = slot_assign(n, c);
  if (rc == 0) {
    rc = uv_tcp_open(&c->tcp, sock);
    if (rc < 0)
      lp2p__node_conn_freed(n, c);
  }
  if (rc < 0) {
    c->id = 0; /* no "disconnected" for a connection never started */
    lp2p_conn_close(c, rc, NULL, 0);
    return rc;
  }
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0 &&
      (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
    point_from_sockaddr(&c->addr, (struct sockaddr *)&ss);
  c->counted_pending = 1;
  n->pending_incoming++;
  *id = c->id;
  emit_conn(n, c, LP2P_EV_ACCEPTED);
  lp2p__conn_arm_timeout(c, n->cfg.authentication_timeout_ms);
  lp2p__conn_start_handshake(c);
  return 0;
}


int lp2p_node_listen(lp2p_node *n, const char *host, int port) {
  if (n->closing)
    return LP2P_ECLOSED;
  if (n->nlisteners == (int)(sizeof n->listeners / sizeof n->listeners[0]))
    return LP2P_EINVAL;
  struct sockaddr_storage ss;
  int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc < 0)
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  if (rc < 0)
    return LP2P_EPOINT;
  uv_tcp_t *t = malloc(sizeof *t);
  if (t == NULL)
    return LP2P_ENOMEM;
  uv_tcp_init(n->loop, t);
  t->data = n;
  n->handles++;
  rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)t, n->cfg.backlog, on_connection);
  int namelen = sizeof ss;
  if (rc == 0)
    rc = uv_tcp_getsockname(t, (struct sockaddr *)&ss, &namelen);
  if (rc < 0) {
    uv_close((uv_handle_t *)t, on_node_handle_closed);
    return rc;
  }
  n->listeners[n->nlisteners++] = t;
  lp2p_point bound;
  point_from_sockaddr(&bound, (struct sockaddr *)&ss);
  if (n->cfg.advertised_port == 0)
    n->cfg.advertised_port = bound.port;
  return bound.port;
}


/* -------------------------------------------------------------- connect */

static void on_connect(uv_connect_t *req, int status) {
  lp2p_conn *c = req->data;
  if (c->state == LP2P_CONN_CLOSING)
    return;
  if (status < 0) {
    lp2p_conn_close(c, status, uv_strerror(status), 0);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  lp2p__conn_start_handshake(c);
}


static int point_busy(lp2p_node *n, const lp2p_point *p) {
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c != NULL && c->state != LP2P_CONN_CLOSING &&
        c->point.port == p->port && same_ip(&c->point, p))
      return 1;
  }
  return 0;
}


int lp2p_node_connect(lp2p_node *n, const lp2p_point *p,
                      const uint8_t *expected_peer_id, uint64_t timeout_ms,
                      uint64_t *id) {
  if (n->closing)
    return LP2P_ECLOSED;
  if (lp2p_bans_addr(n->bans, p, uv_now(n->loop)))
    return LP2P_EBANNED;
  if (n->active > n->cfg.max_connections)
    return LP2P_ETOOMANY;
  if (point_busy(n, p))
    return LP2P_EALREADY;
  lp2p_conn *c = lp2p__conn_new(n, 0);
  if (c == NULL)
    return LP2P_ENOMEM;
  c->addr = *p;
  c->point = *p;
  if (expected_peer_id != NULL) {
    memcpy(c->expected_peer_id, expected_peer_id, LP2P_PEER_ID_BYTES);
    c->has_expected = 1;
  }
  int rc = slot_assign(n, c);
  struct sockaddr_storage ss;
  sockaddr_from_point(&ss, p);
  if (rc == 0 && n->cfg.has_bind_addr)
    rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&n->cfg.bind_addr, 0);
  if (rc == 0)
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss,
                        on_connect);
  if (rc < 0) {
    lp2p__node_conn_freed(n, c);
    c->id = 0; /* no "disconnected" for a connection never started */
    lp2p_conn_close(c, rc, NULL, 0);
    return rc;
  }
  c->counted_pending = 1;
  n->pending_outgoing++;
  lp2p__conn_arm_timeout(c, timeout_ms ? timeout_ms
                                       : n->cfg.connection_timeout_ms);
  *id = c->id;
  emit_conn(n, c, LP2P_EV_CONNECTING);
  return 0;
}


/* ------------------------------------------------------- authentication */

/* Of two connections to one peer made by dialling each other at once, both
 * ends keep the one opened by the peer with the lower id, so they agree. */
static int preferred(const lp2p_node *n, const lp2p_conn *c) {
  int we_are_lower = memcmp(n->cfg.identity.peer_id, c->peer_id,
                            LP2P_PEER_ID_BYTES) < 0;
  return c->incoming != we_are_lower;
}


/*
 * Is self's peer already connected? A running connection, or an acked
 * handshake that self does not beat, takes the peer: self is Nacked
 * (Already_connected). When self beats an acked handshake racing it, that
 * one is returned in *loser for the caller to close once self is acked.
 */
static int peer_taken(lp2p_node *n, const lp2p_conn *self, lp2p_conn **loser) {
  *loser = NULL;
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c == NULL || c == self || !c->has_peer_id ||
        c->state == LP2P_CONN_CLOSING ||
        memcmp(c->peer_id, self->peer_id, LP2P_PEER_ID_BYTES) != 0)
      continue;
    if (c->state == LP2P_CONN_RUNNING)
      return 1;
    if (!c->acked)
      continue; /* it will meet self at its own decision */
    if (c->incoming != self->incoming && preferred(n, self))
      *loser = c;
    else
      return 1;
  }
  return 0;
}


/* Is there no slot for one more peer? Connections acked but not yet
 * running hold their slot. Octez up to v24.2 randomly allows one more
 * connection than max_connections (p2p_connect_handler.ml, "Random.int
 * 2"); from v24.3 it refuses once active >= connections_threshold, the
 * maintenance max_threshold. */
static int too_many(const lp2p_node *n) {
  unsigned busy = n->active + n->acked_pending;
  if (n->cfg.threshold_rule)
    return busy >= n->cfg.connections_threshold;
  uint8_t bit;
  lp2p__node_random((lp2p_node *)n, &bit, 1);
  return !(n->cfg.max_connections + (bit & 1u) > busy);
}


static void refusal(const lp2p_node *n, lp2p_conn *c,
                    const lp2p_hs_remote *r, lp2p_auth_info *info,
                    lp2p_conn **loser) {
  static const int motive_of[] = {LP2P_NACK_UNKNOWN_CHAIN_NAME,
                                  LP2P_NACK_DEPRECATED_P2P_VERSION,
                                  LP2P_NACK_DEPRECATED_DDB_VERSION};
  lp2p_node *node = (lp2p_node *)n;
  info->motive = -1;
  if (lp2p_bans_peer(node->bans, r->peer_id, uv_now(node->loop))) {
    info->refusal = LP2P_EBANNED;
  } else if (c->has_expected && memcmp(c->expected_peer_id, r->peer_id,
                                       LP2P_PEER_ID_BYTES) != 0) {
    info->refusal = LP2P_EUNEXPECTED;
  } else if (r->version_status != 0) {
    info->refusal = r->version_status;
    info->motive = r->version_status == LP2P_ECHAIN     ? motive_of[0]
                   : r->version_status == LP2P_EP2PVER ? motive_of[1]
                                                        : motive_of[2];
  } else if (too_many(n)) {
    info->refusal = LP2P_ETOOMANY;
    info->motive = LP2P_NACK_TOO_MANY_CONNECTIONS;
  } else if (peer_taken(node, c, loser)) {
    info->refusal = LP2P_EALREADY;
    info->motive = LP2P_NACK_ALREADY_CONNECTED;
  }
}


/*
 * After the remote metadata: run the hard checks, ask the hook, apply the
 * verdict (Ack, Nack then close, or close). A hard refusal cannot be turned
 * into an Ack by the hook; the hook may add Nack points or close instead.
 */
void lp2p__node_authenticated(lp2p_node *n, lp2p_conn *c) {
  const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
  lp2p_auth_info info;
  memset(&info, 0, sizeof info);
  info.conn = c->id;
  info.incoming = c->incoming;
  info.addr = c->addr;
  info.point = c->point;
  info.remote = r;
  info.peer_id = c->peer_id_text;
  c->disable_mempool = r->disable_mempool;
  c->private_node = r->private_node;
  lp2p_conn *loser = NULL;
  refusal(n, c, r, &info, &loser);
  /* On the stack, points left uninitialised: a handshake allocates
   * nothing here. */
  lp2p_verdict v;
  v.npoints = 0;
  v.reason[0] = '\0';
  v.kind = info.refusal == 0    ? LP2P_VERDICT_ACK
            : info.motive >= 0   ? LP2P_VERDICT_NACK
                                 : LP2P_VERDICT_CLOSE;
  v.motive = info.motive;
  if (info.refusal != 0)
    snprintf(v.reason, sizeof v.reason, "%s", lp2p_strerror(info.refusal));
  emit_conn(n, c, LP2P_EV_AUTHENTICATED);
  if (c->state == LP2P_CONN_HANDSHAKE && !n->closing)
    n->hooks.authenticated(n->hooks.ud, &info, &v);
  if (c->state != LP2P_CONN_HANDSHAKE || n->closing)
    return;
  if (info.refusal != 0 && v.kind == LP2P_VERDICT_ACK) {
    v.kind = info.motive >= 0 ? LP2P_VERDICT_NACK : LP2P_VERDICT_CLOSE;
    v.motive = info.motive;
  }
  int rc = 0;
  if (v.kind == LP2P_VERDICT_ACK) {
    rc = lp2p_hs_ack(c->hs);
    if (rc == 0) {
      c->acked = 1;
      n->acked_pending++;
      if (loser != NULL && loser->state == LP2P_CONN_HANDSHAKE)
        lp2p_conn_close(loser, LP2P_EALREADY, "simultaneous connection", 0);
    }
  } else if (v.kind == LP2P_VERDICT_NACK) {
    rc = lp2p_hs_nack(c->hs, v.motive, v.points, v.npoints);
    if (rc == 0) {
      lp2p_event ev = {.type = LP2P_EV_NACK_SENT, .conn = c->id};
      lp2p__conn_who(c, &ev.u.nack.who);
      ev.u.nack.motive = v.motive;
      ev.u.nack.points = v.points;
      ev.u.nack.npoints = v.npoints;
      ev.u.nack.reason = v.reason;
      lp2p__node_emit(n, &ev);
      /* The Nack is the last thing said: close once it is written. */
      lp2p__conn_finish(c, info.refusal ? info.refusal : LP2P_EREFUSED,
                        v.reason[0] ? v.reason : "nack sent");
    }
  } else {
    lp2p_conn_close(c, info.refusal ? info.refusal : LP2P_EREFUSED,
                    v.reason[0] ? v.reason : "closed by policy", 0);
  }
  if (rc < 0)
    lp2p_conn_close(c, rc, NULL, 0);
}


/* The remote Ack arrived: the connection is running. */
void lp2p__node_established(lp2p_node *n, lp2p_conn *c) {
  const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
  c->p2p_version = r->p2p_version;
  c->ddb_version = r->ddb_version;
  int rc = lp2p_hs_crypto(c->hs, &c->crypto);
  lp2p_hs_free(c->hs);
  c->hs = NULL;
  if (rc < 0) {
    lp2p_conn_close(c, rc, NULL, 0);
    return;
  }
  uv_timer_stop(&c->timer);
  handshake_over(n, c);
  c->state = LP2P_CONN_RUNNING;
  c->p2p_tokens = n->cfg.p2p_burst;
  c->app_tokens = n->cfg.app_burst;
  c->tokens_at = uv_now(n->loop);
  c->pass = n->pass;
  c->counted_active = 1;
  n->active++;
  emit_conn(n, c, LP2P_EV_CONNECTED);
  if (n->active > n->cfg.max_connections && c->state == LP2P_CONN_RUNNING)
    emit_trigger(n, LP2P_EV_TOO_MANY_CONNECTIONS);
}


/* ---------------------------------------------------------------- stats */

void lp2p_node_stat(lp2p_node *n, lp2p_stat *s, unsigned counts[4]) {
  *s = n->total;
  s->rate_in = s->rate_out = 0;
  for (uint32_t i = 0; i < n->nslots; i++)
    if (n->slots[i] != NULL) {
      s->rate_in += n->slots[i]->stat.rate_in;
      s->rate_out += n->slots[i]->stat.rate_out;
    }
  counts[0] = n->active;
  counts[1] = n->pending_incoming;
  counts[2] = n->pending_outgoing;
  counts[3] = (unsigned)lp2p_bans_count(n->bans);
}


lp2p_bans *lp2p_node_bans(lp2p_node *n) { return n->bans; }
