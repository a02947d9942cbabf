/*
 * node_internal.h - the structures of nodes and connections, and the calls
 * between the node (handler*.c) and its connections (conn*.c): down from
 * the node, up through one report (see "Who calls whom" below). Only
 * core/net includes it.
 */
#ifndef LP2P_NODE_INTERNAL_H
#define LP2P_NODE_INTERNAL_H

#include "lp2p_node.h"



/* Much larger than a whole chunk, so most chunks are opened in place,
 * and a receiver that fell behind takes what is queued in one read: with
 * 256 KiB the receiving side of a stream spent ~0.25 s more CPU per GB
 * (bench/PROFILE.md). One buffer per loop, shared by its nodes. */
#define LP2P_READ_BUF_SIZE (1024 * 1024)
/* What a connection reads at once during the handshake, and after a read
 * it could not dispatch whole (the message cap, a rate limit, a pause):
 * what it stashes then stays this small. Large reads come back after a
 * small one is dispatched whole. */
#define LP2P_READ_SMALL (64 * 1024)
/* Sealed per batch (queued messages, lent payloads): whole chunks, at
 * least one, up to about this many bytes. With the default chunk size
 * that is one chunk, handed to the kernel while it is still in cache,
 * which also lets the peer start opening it sooner; batches of 8 or 16
 * such chunks cost the sender much more per GB, 2 or 4 no less
 * (bench/PROFILE.md). Smaller
 * configured chunks are batched up to the same size, so that a write is
 * never one tiny chunk. Small messages still share chunks. */
#define LP2P_SEAL_BATCH_BYTES (64 * 1024)
/* Sealed chunks live in blocks of up to this many bytes (4 chunks of the
 * largest size; a block for less is sized to it, in LP2P_SBLOCK_MIN
 * steps, so that a connection sending small messages holds a few KiB),
 * and one write takes at most LP2P_WRITE_BLOCKS of them: libuv keeps up
 * to 4 buffers of a write inline, so no allocation. */
#define LP2P_SBLOCK_BYTES (256 * 1024)
#define LP2P_SBLOCK_MIN 4096
#define LP2P_WRITE_BLOCKS 4
/* Free full-size blocks a busy connection keeps for reuse (the idle trim
 * frees them all). */
#define LP2P_SBLOCK_SPARE 8

/* A block of sealed chunks. [0, sent) is written or being written (one
 * write in flight at a time), [sent, len) waits; chunks never straddle
 * blocks, and a block is never moved, so more chunks may be appended
 * while a write reads its front. */
typedef struct lp2p_sblock {
  struct lp2p_sblock *next;
  size_t cap, len, sent;
  size_t waiting; /* plaintext bytes of the chunks in [sent, len) */
  uint8_t data[];
} lp2p_sblock;

/* workers.c: a pool of threads running jobs for one loop. A job is
 * caller-owned; `run` on a worker thread touches only the job, `done` runs
 * on the loop thread afterwards (canceled = 1: never run, the pool is
 * going away). */
#define LP2P_WORKERS_MAX LP2P_CRYPTO_WORKERS_MAX
typedef struct lp2p_work {
  struct lp2p_work *next;
  void (*run)(struct lp2p_work *);
  void (*done)(struct lp2p_work *);
  int canceled;
} lp2p_work;
typedef struct lp2p_workers lp2p_workers;
lp2p_workers *lp2p_workers_new(uv_loop_t *loop, int threads, int *err);
int lp2p_workers_grow(lp2p_workers *w, int threads);
void lp2p_workers_submit(lp2p_workers *w, lp2p_work *job);
void lp2p_workers_free(lp2p_workers *w);
int lp2p__cpus(void); /* online CPUs, at least 1 */

/* Handshake bytes that wait for a key job or for the next loop turn (the
 * peer's verdict behind its metadata) stay in the connection up to
 * LP2P_HS_STASH bytes (a metadata chunk, an Ack); more (a Nack naming up
 * to 100 points) goes to the heap, and reading stops until it is fed. */
#define LP2P_HS_STASH 256

/* Handshake states (lp2p_hs_size bytes) and closed connection structs a
 * loop keeps for its next handshakes, so that a steady stream of
 * handshakes allocates nothing. Bounded: a burst of thousands would
 * otherwise pin its peak in memory for the life of the loop; 32 of each
 * (about 200 KiB) covers the handshakes a node has in flight and closing
 * at any moment in ordinary churn, and past it malloc is the fallback.
 * Freed when no handshake took or gave one for a rate tick (idle), and
 * with the loop's last node. */
#define LP2P_SPARES_MAX 32

/*
 * What the nodes of one loop share; loop->data points to it. Callbacks on
 * a loop never nest across nodes (running the loop from a callback
 * raises), so one read buffer and one plaintext scratch serve them all: a
 * node made per handshake (a fresh identity) no longer maps and unmaps
 * over 1 MiB. Also the key-job worker pool and a buffer of random bytes
 * (one getrandom per 4 KiB, not per handshake). Made with the loop's
 * first node; kept when its last node goes (the next one reuses the
 * threads), freed when the loop closes (lp2p_loop_close_nodes).
 */
typedef struct lp2p_loop_shared {
  lp2p_node *nodes; /* the loop's nodes */
  uint8_t *scratch; /* plaintext of one chunk */
  uint8_t *readbuf; /* LP2P_READ_BUF_SIZE */
  lp2p_workers *workers; /* NULL until a node wants crypto workers */
  int cpus; /* online CPUs, read once (a node asks on every start) */
  int loop_closing; /* lp2p_loop_close_nodes ran: the last node frees it */
  size_t rand_left;
  uint8_t rand[4096];
  /* Spare blocks, all zero (wiped when they came back), used by conn.c. */
  void *hs_spare[LP2P_SPARES_MAX];
  lp2p_conn *conn_spare[LP2P_SPARES_MAX];
  unsigned nhs_spare, nconn_spare;
  uint64_t spare_at; /* loop ms when one was last taken or given back */
} lp2p_loop_shared;

/* A payload lent by the embedder: the rest of it (p, len: whole chunks of
 * plaintext) follows outq[.. pos) in the stream. */
typedef struct lp2p_lent {
  const uint8_t *p;
  size_t len, pos;
  lp2p_release_fn release;
  void *ud;
  uintptr_t token;
} lp2p_lent;

typedef struct lp2p_write { /* what a handshake write left, copied */
  uv_write_t req;
  lp2p_conn *conn;
  uint8_t data[];
} lp2p_write;

struct lp2p_conn {
  lp2p_node *node;
  uint64_t id;
  int state, incoming, open_handles;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  lp2p_point addr, point;
  uint8_t expected_peer_id[LP2P_PEER_ID_BYTES];
  int has_expected, counted_pending, counted_active;
  int acked; /* our Ack sent, theirs not read yet: holds a slot */
  int counted_admission;
  lp2p_hs *hs; /* during the handshake only */
  /* The key job on a worker (node->workers): while key_pending it holds
   * one of open_handles, so the connection (and so its node, which lives
   * while it has connections) does not go away under it; input meanwhile
   * waits in hs_stash. */
  struct {
    lp2p_work work;
    lp2p_hs_keyjob job;
  } key;
  int key_pending;
  int hs_deferred; /* the peer's Ack waits for the next loop turn */
  int hs_eof;      /* the read error met while input waited, or 0 */
  size_t hs_stash_len;
  uint8_t *hs_spill; /* NULL, or the heap stash (hs_stash_len bytes) */
  uint8_t hs_stash[LP2P_HS_STASH];
  lp2p_crypto crypto;
  uint8_t peer_id[LP2P_PEER_ID_BYTES];
  char peer_id_text[LP2P_PEER_ID_B58_LEN + 1]; /* encoded once */
  int has_peer_id;
  uint16_t p2p_version, ddb_version;
  uint8_t disable_mempool, private_node;
  /* read side: a partial chunk, the message reassembly */
  uint8_t *inbuf;
  size_t in_len, in_cap;
  lp2p_msg_reader reader;
  int paused, reading;
  /* Input held back when the pass budget or a rate limit stopped
   * dispatching: the rest of an opened chunk (plain, from plain_off) and
   * the ciphertext after it (cstash). Fed before any new read. */
  uint8_t *plain, *cstash;
  size_t plain_off, plain_len, plain_cap;
  size_t cstash_off, cstash_len, cstash_cap; /* cstash[off, off + len) */
  int read_large; /* its last read from the socket was dispatched whole */
  int yielded;   /* on the node's resume list (next loop pass) */
  int throttled; /* a rate limit: the timer resumes it */
  int draining;  /* paused, but the peer hung up: read to the EOF */
  uint64_t pass; /* the node pass the counters below belong to */
  size_t pass_bytes;
  unsigned pass_msgs;
  double p2p_tokens, app_tokens;
  uint64_t tokens_at; /* loop ms of the last refill */
  uint64_t rate_event_at;
  unsigned long rate_hits;  /* throttles since the last rate_exceeded */
  size_t held;    /* bytes of ours in the embedder's inbox */
  size_t counted; /* what this connection adds to node->buffered */
  uint64_t stall_ms; /* time spent holding a partial message, too slow */
  /* write side, in stream order: sealed chunks (sq_head..sq_tail, then
   * spare blocks in sq_free), then what is not sealed yet: the plaintext
   * queue (outq from outq_off) with lent payloads between its bytes.
   * sq_waiting: plaintext bytes of the sealed chunks not handed to a
   * write yet. One write in flight. */
  lp2p_sblock *sq_head, *sq_tail, *sq_free;
  size_t sq_waiting;
  unsigned sq_nfree;
  uint8_t *outq;
  size_t outq_len, outq_off, outq_cap;
  unsigned outq_msgs;
  /* Payloads lent by the embedder (lp2p_conn_send_lent), in order, each
   * following outq[.. pos); lent[lent_head .. nlent) wait, lent_bytes of
   * them. */
  lp2p_lent *lent;
  unsigned lent_head, nlent, lent_cap;
  size_t lent_bytes;
  uv_write_t batch_req;
  int batch_in_flight, writes_in_flight, close_when_flushed;
  lp2p_stat stat;
  uint64_t rate_bytes_in, rate_bytes_out; /* at the last rate tick */
  int close_code;
  char close_reason[96];
};

struct lp2p_node {
  uv_loop_t *loop;
  lp2p_node_config cfg;
  lp2p_node_hooks hooks;
  lp2p_bans *bans;
  lp2p_admission *admission;
  uv_tcp_t *listeners[4];
  int nlisteners;
  uv_timer_t rate_timer;
  lp2p_conn **slots;
  uint32_t *gens;
  uint32_t nslots, free_head;
  unsigned pending_incoming, pending_outgoing, active;
  unsigned acked_pending; /* connections with an acked handshake */
  unsigned handles; /* its own open handles (listeners, timers) */
  unsigned nconns;  /* its connections not freed yet */
  int closing;
  lp2p_stat total;
  uv_prepare_t pass_tick; /* a new loop pass; resumes yielded conns */
  uv_idle_t pass_idle;    /* active while some are yielded: no blocking */
  uint64_t pass;
  unsigned nyielded;
  size_t buffered; /* sum of the connections' counted bytes */
  lp2p_budget stats;
  lp2p_loop_shared *shared; /* the loop's (loop->data) */
  uint8_t *scratch; /* shared->scratch */
  uint8_t *readbuf; /* shared->readbuf */
  lp2p_workers *workers; /* shared->workers when crypto_workers > 0 */
  lp2p_node *next_in_loop; /* the loop's nodes: shared->nodes is the head */
};

/*
 * Who calls whom. The node (handler*.c) owns its connections: it makes
 * them, reaches down into them through the lp2p__conn_* calls below (and
 * reads and writes their fields: the counts it keeps in them are its
 * own), and frees nothing of theirs. A connection (conn*.c) reports up
 * through exactly two calls, lp2p__node_report and lp2p__node_emit, and
 * calls no other function of the node's files. It does read the node's
 * config, loop, pass counter and shared buffers, add to its totals and
 * budget counters (plain sums the node reads back), and call the
 * embedder's message hook itself: the hot path, to which the node would
 * add nothing. spec/house_spec.lua checks the two calls.
 */

/* What a connection reports to its node; c->node acts on it. */
typedef enum lp2p_conn_report {
  /* The remote metadata is read: the node runs the hard checks and the
   * authenticated hook and applies its verdict (lp2p_hs_ack, or
   * lp2p__conn_finish after a Nack, or lp2p_conn_close); c may be
   * closing on return. */
  LP2P_REPORT_AUTHENTICATED,
  /* Both Acks are out and c runs: it moves from the pending counts to the
   * active ones; "connected" (and maybe "too_many_connections"). */
  LP2P_REPORT_ESTABLISHED,
  /* c holds input back for the next loop pass, or no more: the node keeps
   * the list it resumes from its pass tick (lp2p__conn_next_pass) and
   * sets c->yielded. */
  LP2P_REPORT_YIELDED,
  LP2P_REPORT_UNYIELDED,
  /* After c's recount the node's buffered bytes are over its budget: the
   * largest holders are closed (maybe c). */
  LP2P_REPORT_OVER_BUDGET,
  /* c is closing (it said "disconnected" or "auth_failed" already): its
   * counts go back, it leaves the resume list. Idempotent. */
  LP2P_REPORT_CLOSING,
  /* c's last reference is gone: its slot goes. The node may free itself
   * here (once closed, with no handle and no connection left); c's own
   * memory is freed right after, without c->node. */
  LP2P_REPORT_FREED
} lp2p_conn_report;

/* Up, defined in handler.c: a connection's report; an event (about a
 * connection or not) to the embedder's event hook, unless the node is
 * closing. */
void lp2p__node_report(lp2p_conn *c, lp2p_conn_report what);
void lp2p__node_emit(lp2p_node *n, const lp2p_event *ev);

/* Down, what the node asks of a connection (conn.c). A new connection of
 * n with both handles initialised (2 references), or NULL. */
lp2p_conn *lp2p__conn_new(lp2p_node *n, int incoming);
/* Start the handshake (nonce: our connection message's): send our
 * connection message unless incoming, read. */
void lp2p__conn_start_handshake(lp2p_conn *c, const uint8_t *nonce);
void lp2p__conn_arm_timeout(lp2p_conn *c, uint64_t ms);
/* Who c is, for an event about it (pointers into c). */
void lp2p__conn_who(const lp2p_conn *c, lp2p_ev_conn *who);
/* Write what the handshake queued (a Nack), then close. */
void lp2p__conn_finish(lp2p_conn *c, int code, const char *reason);
/* Close both handles now, even with writes pending. */
void lp2p__conn_force_close(lp2p_conn *c);
/* Free the buffers of an idle connection. */
void lp2p__conn_trim(lp2p_conn *c);
/* The loop's spare handshake and connection blocks (LP2P_SPARES_MAX):
 * free them all when none was taken or given back since idle_ms before
 * now (the rate tick), or at once (the loop's last node goes). */
void lp2p__conn_spares_trim(lp2p_loop_shared *sh, uint64_t now,
                            uint64_t idle_ms);
void lp2p__conn_spares_free(lp2p_loop_shared *sh);
/* conn_read.c: the rate tick's checks (stalled partial message, a paused
 * connection whose peer hung up); the pass tick, for a connection taken
 * off the resume list. */
void lp2p__conn_tick(lp2p_conn *c, uint64_t tick_ms);
void lp2p__conn_next_pass(lp2p_conn *c);

/* Within a connection's files (conn.c, conn_send.c, conn_read.c,
 * conn_handshake.c). Emit an lp2p_ev_closed kind about c (reason NULL:
 * the code's text); fail c (auth_failed during the handshake, then
 * closed); write what the handshake queued (conn_send.c); drop a
 * reference (a handle, a key job: the last frees c). */
void lp2p__conn_emit_closed(lp2p_conn *c, lp2p_event_type type, int code,
                            const char *reason);
void lp2p__conn_fail(lp2p_conn *c, int code, const char *reason);
int lp2p__conn_flush_handshake(lp2p_conn *c);
/* Wipe c's handshake state and give its block back (c->hs NULL after). */
void lp2p__conn_hs_release(lp2p_conn *c);
void lp2p__conn_unref(lp2p_conn *c);
/* conn_send.c: the bytes queued
 * and not handed to a write yet; give every lent payload back; queue the
 * Disconnect past the queue bounds and flush (a failed flush closes c);
 * free the send buffers that hold nothing (the idle trim); free all of
 * them (the last reference). */
size_t lp2p__conn_queued_bytes(const lp2p_conn *c);
void lp2p__conn_lent_drop(lp2p_conn *c);
void lp2p__conn_say_disconnect(lp2p_conn *c);
void lp2p__conn_send_trim(lp2p_conn *c);
void lp2p__conn_send_free(lp2p_conn *c);
/* conn_read.c: start reading c; does c hold input back (stashed by the
 * fairness caps)? The bytes c holds on the read side; refresh its share
 * of node->buffered (0 once it is not running). */
int lp2p__conn_read_start(lp2p_conn *c);
int lp2p__conn_has_stash(const lp2p_conn *c);
size_t lp2p__conn_usage(const lp2p_conn *c);
void lp2p__conn_recount(lp2p_conn *c);

/* Between conn_read.c and conn_handshake.c. Feed running input (nread:
 * bytes of this read, for the pass caps) and handle what the input
 * left: fail on an error, read on or stop, recount (0, DELIVER_YIELD or
 * an error). Feed handshake input (data and len advance past what it
 * used); a hang-up during the handshake (1: kept until the input that
 * waits is fed). */
int lp2p__conn_running_input(lp2p_conn *c, const uint8_t *data,
                             size_t len, size_t nread);
void lp2p__conn_after_input(lp2p_conn *c, int rc);
int lp2p__conn_hs_input(lp2p_conn *c, const uint8_t **data, size_t *len);
int lp2p__conn_hs_eof(lp2p_conn *c, int code);
/* Read c's socket, or stop (idempotent). */
void lp2p__conn_set_reading(lp2p_conn *c, int on);

/* Among the node's files (handler.c, handler_open.c, handler_verdict.c).
 * handler.c: random bytes from the loop's buffer; emit an lp2p_ev_conn
 * kind about c, or a trigger (the active count); give c a slot and its
 * id, or give it back (idempotent); release c's pending and acked counts
 * (idempotent); the close callback of the node's own handles (listeners,
 * timers). handler_verdict.c: the verdict (LP2P_REPORT_AUTHENTICATED), the
 * counts of a connection that runs (LP2P_REPORT_ESTABLISHED). */
void lp2p__node_random(lp2p_node *n, uint8_t *out, size_t len);
void lp2p__node_emit_conn(lp2p_node *n, lp2p_conn *c, lp2p_event_type type);
void lp2p__node_emit_trigger(lp2p_node *n, lp2p_event_type type);
int lp2p__node_slot_assign(lp2p_node *n, lp2p_conn *c);
void lp2p__node_slot_release(lp2p_node *n, lp2p_conn *c);
void lp2p__node_handshake_over(lp2p_node *n, lp2p_conn *c);
void lp2p__node_on_handle_closed(uv_handle_t *h);
void lp2p__node_decide(lp2p_node *n, lp2p_conn *c);
void lp2p__node_running(lp2p_node *n, lp2p_conn *c);

#endif /* LP2P_NODE_INTERNAL_H */
