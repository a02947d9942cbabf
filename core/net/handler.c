/*
 * handler.c - the connect handler (Octez P2p_connect_handler): the node's
 * life (new, close, the loop's shared state), its connection slots and
 * counts, events and triggers, the rate and pass timers, the incoming
 * budget and the totals. Where connections come from is handler_open.c,
 * the verdict after authentication handler_verdict.c. Policy lives in
 * the hooks (the Lua layer).
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
void lp2p__node_emit_conn(lp2p_node *n, lp2p_conn *c,
                          lp2p_event_type type) {
  lp2p_event ev = {.type = type, .conn = c->id};
  lp2p__conn_who(c, &ev.u.conn);
  lp2p__node_emit(n, &ev);
}


void lp2p__node_emit_trigger(lp2p_node *n, lp2p_event_type type) {
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

int lp2p__node_slot_assign(lp2p_node *n, lp2p_conn *c) {
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
void lp2p__node_handshake_over(lp2p_node *n, lp2p_conn *c) {
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


/* Active only while a connection is yielded: the loop must not block in
 * poll, since nothing will wake it for input that is already here. */
static void on_pass_idle(uv_idle_t *h) { (void)h; }


/* Put c on the list of connections resumed at the next loop pass (input
 * held back by the fairness caps), or take it off. */
static void set_yielded(lp2p_node *n, lp2p_conn *c, int on) {
  if (on == c->yielded)
    return;
  c->yielded = on;
  if (on) {
    n->stats.yields++;
    if (n->nyielded++ == 0)
      uv_idle_start(&n->pass_idle, on_pass_idle);
  } else if (--n->nyielded == 0) {
    uv_idle_stop(&n->pass_idle);
  }
}


/* Release the counts of a closing connection, and its place on the
 * resume list. Idempotent. */
static void conn_released(lp2p_node *n, lp2p_conn *c) {
  set_yielded(n, c, 0);
  lp2p__node_handshake_over(n, c);
  if (c->counted_admission) {
    c->counted_admission = 0;
    lp2p_admission_closed(n->admission, &c->addr);
  }
  if (c->counted_active) {
    c->counted_active = 0;
    n->active--;
    if (n->active < n->cfg.min_connections && !n->closing)
      lp2p__node_emit_trigger(n, LP2P_EV_TOO_FEW_CONNECTIONS);
  }
}


/* Release the slot of a connection whose memory goes now. A closing
 * connection keeps its slot until then, so the node can still reach it
 * (lp2p_loop_close_nodes). */
void lp2p__node_slot_release(lp2p_node *n, lp2p_conn *c) {
  conn_released(n, c);
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
  sh->cpus = lp2p__cpus();
  loop->data = sh;
  return sh;
}


/* Free what the loop's nodes share (the worker pool closes its handles,
 * freed by the loop). */
static void free_shared(uv_loop_t *loop, lp2p_loop_shared *sh) {
  if (sh->workers != NULL)
    lp2p_workers_free(sh->workers);
  lp2p__conn_spares_free(sh);
  free(sh->scratch);
  free(sh->readbuf);
  sodium_memzero(sh->rand, sizeof sh->rand);
  free(sh);
  loop->data = NULL;
}


/* Take n off its loop's list. What the nodes share stays for the loop's
 * next node (a program making nodes one after another would otherwise
 * start and join the worker threads for each: about 170 us a node), until
 * the loop closes (lp2p_loop_close_nodes): then the last node frees it. */
static void unlink_node(lp2p_node *n) {
  lp2p_loop_shared *sh = n->shared;
  if (sh == NULL)
    return;
  for (lp2p_node **pp = &sh->nodes; *pp != NULL; pp = &(*pp)->next_in_loop)
    if (*pp == n) {
      *pp = n->next_in_loop;
      break;
    }
  if (sh->nodes == NULL && sh->loop_closing)
    free_shared(n->loop, sh);
  else if (sh->nodes == NULL)
    lp2p__conn_spares_free(sh); /* no node to trim them when idle */
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


/* A closed node goes once its own handles are closed and its
 * connections freed. */
static void maybe_free(lp2p_node *n) {
  if (n->closing && n->handles == 0 && n->nconns == 0)
    free_node(n);
}


void lp2p__node_on_handle_closed(uv_handle_t *h) {
  lp2p_node *n = h->data;
  if ((void *)h != (void *)&n->rate_timer &&
      (void *)h != (void *)&n->pass_tick && (void *)h != (void *)&n->pass_idle)
    free(h);
  n->handles--;
  maybe_free(n);
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
  lp2p__conn_spares_trim(n->shared, uv_now(n->loop), RATE_TICK_MS);
}


/* A new loop pass: every connection that held input back gets its next
 * one. */
static void on_pass_tick(uv_prepare_t *h) {
  lp2p_node *n = h->data;
  n->pass++;
  for (uint32_t i = 0; i < n->nslots && n->nyielded > 0 && !n->closing;
       i++) {
    lp2p_conn *c = n->slots[i];
    if (c == NULL || !c->yielded)
      continue;
    set_yielded(n, c, 0);
    lp2p__conn_next_pass(c);
  }
}


/*
 * Over the incoming budget: close the connections holding the most bytes
 * on the read side (partial messages, held-back input, inboxes) until
 * under it. A closed connection's bytes stop counting at once; its
 * buffers go with its handles.
 */
static void enforce_budget(lp2p_node *n) {
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


/* What a connection tells its node (node_internal.h). */
void lp2p__node_report(lp2p_conn *c, lp2p_conn_report what) {
  lp2p_node *n = c->node;
  switch (what) {
  case LP2P_REPORT_AUTHENTICATED:
    lp2p__node_decide(n, c);
    break;
  case LP2P_REPORT_ESTABLISHED:
    lp2p__node_running(n, c);
    break;
  case LP2P_REPORT_YIELDED:
  case LP2P_REPORT_UNYIELDED:
    set_yielded(n, c, what == LP2P_REPORT_YIELDED);
    break;
  case LP2P_REPORT_OVER_BUDGET:
    enforce_budget(n);
    break;
  case LP2P_REPORT_CLOSING:
    conn_released(n, c);
    break;
  case LP2P_REPORT_FREED:
    lp2p__node_slot_release(n, c);
    n->nconns--;
    maybe_free(n);
    break;
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
    nw = sh->cpus;
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
      uv_close((uv_handle_t *)n->listeners[i], lp2p__node_on_handle_closed);
  n->nlisteners = 0;
  for (uint32_t i = 0; i < n->nslots; i++)
    if (n->slots[i] != NULL)
      lp2p_conn_close(n->slots[i], LP2P_ECLOSED, "node closed", 0);
  if (!uv_is_closing((uv_handle_t *)&n->rate_timer))
    uv_close((uv_handle_t *)&n->rate_timer, lp2p__node_on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&n->pass_tick))
    uv_close((uv_handle_t *)&n->pass_tick, lp2p__node_on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&n->pass_idle))
    uv_close((uv_handle_t *)&n->pass_idle, lp2p__node_on_handle_closed);
}


/* The loop is going away: close every node, then stop the worker pool
 * here (its handles closed with their own callback, before whoever
 * closes every remaining handle of the loop gets to it); key jobs still
 * in flight are handed back canceled. What the nodes share goes now if
 * none is left, else with the last one's memory. */
void lp2p_loop_close_nodes(uv_loop_t *loop) {
  lp2p_loop_shared *sh = loop->data;
  if (sh == NULL)
    return;
  sh->loop_closing = 1;
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
  if (sh->nodes == NULL)
    free_shared(loop, sh);
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
