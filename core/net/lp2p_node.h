/*
 * lp2p_node.h - the connect handler on libuv: nodes that listen and dial,
 * authenticate, enforce limits and hand back encrypted connections.
 *
 * Ownership: an lp2p_node owns its listeners, its connections and its ban
 * table. Every libuv handle is malloc'd inside its owner and freed only from
 * its close callback; the node itself is freed when its last handle closed
 * after lp2p_node_close.
 *
 * Connections are named by 64-bit ids (slot index | generation << 32) so
 * that an embedder (the Lua binding) never holds a pointer that may dangle.
 * Thread-safety: every function runs on the loop's thread.
 */
#ifndef LP2P_NODE_H
#define LP2P_NODE_H

#include <uv.h>

#include "../wire/lp2p.h"
#include "../wire/lp2p_tables.h"

typedef struct lp2p_node lp2p_node;
typedef struct lp2p_conn lp2p_conn;


typedef struct lp2p_node_config {
  lp2p_identity identity;
  lp2p_pow_target target;
  double pow_bits;
  char chain[LP2P_CHAIN_NAME_MAX + 1];
  size_t chain_len;
  lp2p_version_range p2p, ddb;
  uint16_t advertised_port;
  int private_mode, disable_mempool, disable_peer_discovery;
  unsigned min_connections, max_connections, max_incoming_connections;
  /* threshold_rule 0: Octez up to v24.2, refuse unless max_connections +
   * random(0 or 1) > active; 1: Octez from v24.3, refuse when active >=
   * connections_threshold (the maintenance max_threshold). */
  int threshold_rule;
  unsigned connections_threshold;
  unsigned outgoing_message_queue_size; /* messages queued for writing */
  size_t outgoing_queue_bytes;          /* and their bytes */
  size_t binary_chunks_size;
  size_t max_message_size;
  size_t max_conn_msg_len; /* a connection message's length prefix cap */
  uint64_t connection_timeout_ms, authentication_timeout_ms;
  unsigned ban_table_size;
  int backlog;
  /* Source address of outgoing connections (port 0): a node that listens
   * on one of several local addresses dials from it too, so that its peers
   * see the address it listens on. has_bind_addr 0: the kernel picks. */
  struct sockaddr_storage bind_addr;
  int has_bind_addr;
  lp2p_admission_config admission;
  /* Incoming memory: one node-wide budget for every byte buffered on the
   * read side (partial chunks and messages, input held back by the
   * fairness caps, the embedder's inboxes reported with lp2p_conn_hold);
   * over it, the largest holders are closed with LP2P_ENOBUFS first. */
  size_t incoming_buffer_bytes;
  /* A connection holding a partial message that receives less than
   * min_rate bytes/s for stall_ms is closed (LP2P_ETIMEDOUT). */
  double partial_min_rate;
  uint64_t partial_stall_ms;
  /* Fairness: per connection and loop pass, stop after read_pass_bytes
   * read or read_pass_msgs messages dispatched; resume next pass. */
  size_t read_pass_bytes;
  unsigned read_pass_msgs;
  /* Per-connection token buckets (messages/s, burst; rate 0 = no limit):
   * P2P messages (Bootstrap, Advertise, Swap) and application messages.
   * Past the burst, reading pauses until a token is back and a
   * "rate_exceeded" event (at most one a second) lets policies decide. */
  double p2p_rate, p2p_burst, app_rate, app_burst;
  /* Threads that run the handshake's key job (crypto_box_beforenm and the
   * proof-of-work check) off the loop: one pool per loop, grown to the
   * largest count its nodes ask; -1: one per CPU; 0: on the loop. Jobs
   * are handed out once per loop pass: a pass with one job runs it on
   * the loop, of k the threads take k * n / (n + 1) (workers.c). */
  int crypto_workers;
} lp2p_node_config;

#define LP2P_CRYPTO_WORKERS_MAX 64

void lp2p_node_config_defaults(lp2p_node_config *cfg);

/*
 * Events: what the handler tells its owner (hooks.event). One enum value
 * per kind (LP2P_EVENT_MAP gives each its name, as the Lua binding shows
 * it). An lp2p_event is the kind, the connection's id and, in the union u,
 * one struct per group of kinds that carry the same data:
 *
 *   u.conn     lp2p_ev_conn     ACCEPTED, CONNECTING, AUTHENTICATED,
 *                               CONNECTED
 *   u.closed   lp2p_ev_closed   AUTH_FAILED, DECODING_ERROR, DISCONNECTED
 *   u.nack     lp2p_ev_nack     NACK_SENT, NACKED
 *   u.rate     lp2p_ev_rate     RATE_EXCEEDED
 *   u.refused  lp2p_ev_refused  REFUSED
 *   u.trigger  lp2p_ev_trigger  TOO_FEW_CONNECTIONS, TOO_MANY_CONNECTIONS
 *   u.load     lp2p_ev_load     UNDER_LOAD, LOAD_NORMAL
 *
 * lp2p_event_conn() gives the connection part of any kind that has one.
 * Pointers are valid during the callback only.
 */
#define LP2P_EVENT_MAP(XX)                                                  \
  XX(ACCEPTED, "accepted")                                                  \
  XX(REFUSED, "refused")                                                    \
  XX(CONNECTING, "connecting")                                              \
  XX(AUTHENTICATED, "authenticated")                                        \
  XX(AUTH_FAILED, "auth_failed")                                            \
  XX(NACK_SENT, "nack_sent")                                                \
  XX(NACKED, "nacked")                                                      \
  XX(CONNECTED, "connected")                                                \
  XX(DISCONNECTED, "disconnected")                                          \
  XX(DECODING_ERROR, "decoding_error")                                      \
  XX(TOO_FEW_CONNECTIONS, "too_few_connections")                            \
  XX(TOO_MANY_CONNECTIONS, "too_many_connections")                          \
  XX(UNDER_LOAD, "under_load")                                              \
  XX(LOAD_NORMAL, "load_normal")                                            \
  XX(RATE_EXCEEDED, "rate_exceeded")

typedef enum lp2p_event_type {
#define LP2P_EVENT_ENUM(name, text) LP2P_EV_##name,
  LP2P_EVENT_MAP(LP2P_EVENT_ENUM)
#undef LP2P_EVENT_ENUM
  LP2P_EV_COUNT
} lp2p_event_type;

/* The event's name ("accepted", ...), or "unknown". */
const char *lp2p_event_name(lp2p_event_type type);

/* The connection an event is about, as it stands at that moment.
 *   ACCEPTED       a socket accepted (or adopted) and admitted: no peer
 *                  id yet
 *   CONNECTING     a dial started: no peer id yet
 *   AUTHENTICATED  the remote's metadata read, before our verdict
 *   CONNECTED      both Acks exchanged: the connection runs */
typedef struct lp2p_ev_conn {
  /* Its listening point when known (dialled, or announced in its
   * connection message), else its socket address (family 0: an adopted
   * socket that is not IP). Never NULL. */
  const lp2p_point *point;
  const char *peer_id; /* Base58 ("id...") once known, else NULL */
  int incoming;        /* 1 accepted or adopted, 0 dialled */
} lp2p_ev_conn;

/* A connection that failed or closed.
 *   AUTH_FAILED     the handshake failed (timeout, EOF, bad input, proof
 *                   of work...); DISCONNECTED follows with the same code
 *   DECODING_ERROR  a P2P message that does not decode; the connection
 *                   closes (DISCONNECTED follows)
 *   DISCONNECTED    a connection with an id closed, whatever its state */
typedef struct lp2p_ev_closed {
  lp2p_ev_conn who;
  int code;           /* LP2P_E* / UV_E*; 0 only for DISCONNECTED: a close
                       * without error (ours, or the peer's Disconnect) */
  const char *reason; /* human text, never NULL */
} lp2p_ev_closed;

/* A Nack, the last word of a handshake (a DISCONNECTED follows).
 *   NACK_SENT  ours: a hard check or the authenticated hook refused
 *   NACKED     theirs (the connection closes with LP2P_ENACK) */
typedef struct lp2p_ev_nack {
  lp2p_ev_conn who;
  int motive; /* the Octez motive (LP2P_NACK_*) */
  const lp2p_point *points; /* the points offered instead (may be NULL */
  size_t npoints;           /* when npoints is 0) */
  /* NACK_SENT: why we refused ("" when the hook gave no reason); NACKED:
   * NULL. */
  const char *reason;
} lp2p_ev_nack;

/* RATE_EXCEEDED: a connection ran out of tokens for one kind of message
 * (config p2p_rate/app_rate); reading pauses until one is back. At most
 * one a second per connection. */
typedef struct lp2p_ev_rate {
  lp2p_ev_conn who;
  int app;             /* 1 application messages, 0 P2P messages */
  unsigned long count; /* times throttled since the last RATE_EXCEEDED */
} lp2p_ev_rate;

/* REFUSED: an incoming connection refused at accept, before any byte and
 * without a connection id (ban, admission rate or cap, pending cap, the
 * accept hook). */
typedef struct lp2p_ev_refused {
  const lp2p_point *addr; /* its socket address */
  int code;               /* LP2P_EBANNED, LP2P_ETOOMANY, LP2P_EREFUSED... */
  const char *reason;     /* human text, never NULL */
} lp2p_ev_refused;

/* The node's running connections crossed a bound.
 *   TOO_FEW_CONNECTIONS   one closed and fewer than min_connections run
 *   TOO_MANY_CONNECTIONS  one started and more than max_connections run */
typedef struct lp2p_ev_trigger {
  unsigned active; /* running connections now */
} lp2p_ev_trigger;

/* Admission load (config admission.load_threshold).
 *   UNDER_LOAD   pending handshakes went over the threshold: accept rates
 *                are halved
 *   LOAD_NORMAL  they went back to half of it */
typedef struct lp2p_ev_load {
  unsigned pending;   /* pending incoming handshakes at the switch */
  const char *reason; /* human text, never NULL */
} lp2p_ev_load;

typedef struct lp2p_event {
  lp2p_event_type type;
  uint64_t conn; /* the connection's id; 0 for REFUSED, the triggers and
                  * the load events */
  union {
    lp2p_ev_conn conn;
    lp2p_ev_closed closed;
    lp2p_ev_nack nack;
    lp2p_ev_rate rate;
    lp2p_ev_refused refused;
    lp2p_ev_trigger trigger;
    lp2p_ev_load load;
  } u;
} lp2p_event;

/* The connection part of ev (u.conn, or the who of u.closed, u.nack,
 * u.rate), or NULL for a kind about no connection. */
const lp2p_ev_conn *lp2p_event_conn(const lp2p_event *ev);

enum { LP2P_VERDICT_ACK = 0, LP2P_VERDICT_NACK = 1, LP2P_VERDICT_CLOSE = 2 };

typedef struct lp2p_verdict {
  int kind;
  int motive;
  size_t npoints;
  lp2p_point points[LP2P_NACK_POINTS_MAX];
  char reason[128];
} lp2p_verdict;

typedef struct lp2p_auth_info {
  uint64_t conn;
  int incoming;
  lp2p_point addr;       /* socket address of the remote */
  lp2p_point point;      /* its listening point (port 0: none announced) */
  const lp2p_hs_remote *remote;
  const char *peer_id; /* Base58 text of remote->peer_id */
  int refusal;           /* 0 or the hard check that failed (LP2P_E*) */
  int motive;            /* Nack motive for refusal, -1 when it closes */
} lp2p_auth_info;

typedef struct lp2p_node_hooks {
  void *ud;
  /* At TCP accept, before any byte: 1 accept, 0 refuse (reason filled). */
  int (*accept)(void *ud, const lp2p_point *addr, char *reason, size_t cap);
  /* After metadata; v comes filled with the default verdict. */
  void (*authenticated)(void *ud, const lp2p_auth_info *info,
                        lp2p_verdict *v);
  /* A decoded message (tag || payload) on an established connection.
   * Return non-zero to pause reading this connection. */
  int (*message)(void *ud, uint64_t conn, const uint8_t *msg, size_t len);
  void (*event)(void *ud, const lp2p_event *ev);
} lp2p_node_hooks;

typedef struct lp2p_stat {
  uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
  double rate_in, rate_out; /* bytes/s, moving average */
} lp2p_stat;

enum {
  LP2P_CONN_CONNECTING = 0, /* TCP connect in flight */
  LP2P_CONN_HANDSHAKE = 1,
  LP2P_CONN_RUNNING = 2,
  LP2P_CONN_CLOSING = 3
};

typedef struct lp2p_conn_info {
  uint64_t id;
  int state, incoming;
  lp2p_point addr, point;
  char peer_id[LP2P_PEER_ID_B58_LEN + 1]; /* "" until known */
  uint16_t p2p_version, ddb_version;
  uint8_t disable_mempool, private_node;
  size_t queued_msgs, queued_bytes;
  lp2p_stat stat;
} lp2p_conn_info;

/* The read-side budgets and what they stopped (lp2p_node_budget). */
typedef struct lp2p_budget {
  size_t buffered, buffered_max; /* bytes held now / the node budget */
  size_t partial;                /* of which partial chunks and messages */
  size_t held;                   /* of which the embedder's inboxes */
  size_t stashed;                /* of which input held back by fairness */
  uint64_t cut_budget;           /* connections closed over the budget */
  uint64_t cut_stalled;          /* closed for a stalled partial message */
  uint64_t throttled;            /* times a connection hit a rate limit */
  uint64_t yields;               /* times a connection yielded its pass */
} lp2p_budget;

/* handler.c */
lp2p_node *lp2p_node_new(uv_loop_t *loop, const lp2p_node_config *cfg,
                         const lp2p_node_hooks *hooks, int *err);
/* Close every handle; hooks are no longer called. Memory goes when the last
 * handle closed. */
void lp2p_node_close(lp2p_node *n);
/* When the loop itself goes (its Lua state closes): close every node of
 * the loop at once, pending writes dropped, so that running the loop
 * frees them all, with what the loop's nodes share (read buffers, the
 * key-job worker threads and their handles). That stays after the loop's
 * last node is closed, for its next node: call this before uv_loop_close
 * (UV_EBUSY until then) and run the loop once more. The loop's data field
 * is the shared state's. */
void lp2p_loop_close_nodes(uv_loop_t *loop);
/* A connected stream socket taken as an incoming connection (no
 * admission, no accept hook): 0 and *id, or an error (the socket then
 * stays the caller's). */
int lp2p_node_adopt(lp2p_node *n, uv_os_sock_t sock, uint64_t *id);
/* Returns the bound port (> 0) or an error. */
int lp2p_node_listen(lp2p_node *n, const char *host, int port);
/* Returns 0 and *id, or an error (EBANNED, EALREADY, ETOOMANY, UV_E*). */
int lp2p_node_connect(lp2p_node *n, const lp2p_point *p,
                      const uint8_t *expected_peer_id, uint64_t timeout_ms,
                      uint64_t *id);
lp2p_conn *lp2p_node_find(lp2p_node *n, uint64_t id);
size_t lp2p_node_conn_ids(lp2p_node *n, uint64_t *ids, size_t cap);
void lp2p_node_stat(lp2p_node *n, lp2p_stat *s, unsigned counts[4]);
void lp2p_node_budget(lp2p_node *n, lp2p_budget *b);
/* The node's ban table (owned by the node; valid until it is freed). */
lp2p_bans *lp2p_node_bans(lp2p_node *n);

/* A connection: conn_send.c sends, conn.c closes and tells, conn_read.c
 * pauses and counts what the embedder holds. */
/* Queue one message. with_envelope: msg is the payload of an application
 * message with `tag`; otherwise msg is a whole envelope already. msg is
 * copied: the caller may reuse it on return. 0, LP2P_EQUEUEFULL (nothing
 * queued: outgoing_message_queue_size / outgoing_queue_bytes),
 * LP2P_EMSGSIZE, LP2P_ECLOSED, LP2P_ENOMEM (nothing queued). */
int lp2p_conn_send(lp2p_conn *c, const uint8_t *msg, size_t len,
                   int with_envelope, uint16_t tag);
/* Called once when the connection no longer needs the bytes it was lent
 * (sealed, or dropped at a close); it must not call into the node. */
typedef void (*lp2p_release_fn)(void *ud, uintptr_t token);
/* The same for an application message whose payload the connection may
 * keep a pointer to instead of copying it: the caller keeps msg alive
 * and unchanged until release(ud, token) runs, exactly once, which may be
 * before this returns. On an error nothing is kept and release never
 * runs. */
int lp2p_conn_send_lent(lp2p_conn *c, const uint8_t *msg, size_t len,
                        uint16_t tag, lp2p_release_fn release, void *ud,
                        uintptr_t token);
void lp2p_conn_close(lp2p_conn *c, int code, const char *reason,
                     int graceful);
void lp2p_conn_pause(lp2p_conn *c, int paused);
/* The embedder holds delta more bytes (negative: fewer) of c's messages
 * (its inbox): they count in the node's incoming budget. */
void lp2p_conn_hold(lp2p_conn *c, long long delta);
void lp2p_conn_get_info(lp2p_conn *c, lp2p_conn_info *info);


/* pow_workers.c: the proof-of-work search of lp2p_pow_search on
 * `threads` threads (1..LP2P_POW_THREADS_MAX). Blocks the calling thread;
 * progress (may be NULL) is called from it about every `period` seconds
 * with the tries so far, and a non-zero result cancels. Each worker looks
 * at the shared stop flag every `every` tries. Returns 0 with the stamp,
 * LP2P_ECANCELED, or LP2P_ENOMEM (no thread could start); *tries (may be
 * NULL) gets the tries of every worker. Signals stay with the caller. */
#define LP2P_POW_THREADS_MAX 256
typedef int (*lp2p_pow_workers_cb)(void *ud, uint64_t tries,
                                    double elapsed);
int lp2p_pow_search_workers(uint8_t stamp[LP2P_STAMP_BYTES], uint64_t *tries,
                            const uint8_t pk[LP2P_PK_BYTES],
                            const lp2p_pow_target *target, int threads,
                            uint64_t every, double period,
                            lp2p_pow_workers_cb progress, void *ud);

/* fs.c: private files (identity.json, ban files). Errors are negative
 * UV_E* codes. Write data to a new file of mode 0600: without overwrite
 * an existing path (even a dangling link) fails with UV_EEXIST; with it
 * the file is replaced atomically (a 0600 temporary file renamed over
 * it). Nothing truncated is left behind on failure. */
#define LP2P_FILE_PATH_MAX 4096
int lp2p_file_write_private(const char *path, const void *data, size_t len,
                            int overwrite);
/* The permission bits of path (e.g. 0600) in *mode, or a UV_E* code. */
int lp2p_file_mode(const char *path, unsigned *mode);
/* What path is (after symbolic links): one of these, or a UV_E* code. */
#define LP2P_FILE_REGULAR 1
#define LP2P_FILE_DIRECTORY 2
#define LP2P_FILE_OTHER 3 /* a device, a FIFO, a socket */
int lp2p_file_type(const char *path);

#endif /* LP2P_NODE_H */
