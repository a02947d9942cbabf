/*
 * node.h - the I/O layer's structures (conn.c, handler.c, ban.c and the
 * binding lua_node.c). Not installed.
 *
 * Ownership: an lp2p_node owns its listeners, its connections and its ban
 * table. Every libuv handle is malloc'd inside its owner and freed only from
 * its close callback; the node itself is freed when its last handle closed
 * after lp2p_node_close (refcount `handles`).
 *
 * Connections are named by 64-bit ids (slot index | generation << 32) so
 * that Lua never holds a pointer that may dangle.
 */
#ifndef LP2P_NODE_H
#define LP2P_NODE_H

#include <uv.h>

#include "lp2p.h"

typedef struct lp2p_node lp2p_node;
typedef struct lp2p_conn lp2p_conn;
typedef struct lp2p_bans lp2p_bans;

/* ---------------------------------------------------------- admission.c
 * Admission control at TCP accept, before any byte is read: per-IP and
 * per-prefix (/24, /64) accept-rate token buckets, concurrent caps, a
 * bounded LRU table, an under-load mode. handler.c checks it in
 * on_connection after the ban table; a kept connection is "opened" and
 * "closed" again when released. */
typedef struct lp2p_admission lp2p_admission;

typedef struct lp2p_admission_config {
  double rate, burst;               /* per IP: tokens/s, bucket (20, 5) */
  double prefix_rate, prefix_burst; /* per /24 or /64 (80, 20) */
  unsigned max_per_ip;              /* concurrent, 0 = no cap (8) */
  unsigned max_per_prefix;          /* concurrent, 0 = no cap (32) */
  unsigned table_size;              /* entries, IPs + prefixes (4096) */
  int exempt_loopback;              /* 127/8, ::1 not limited (1) */
  unsigned load_threshold;          /* pending handshakes; 0 = off (10) */
  /* Called when under-load mode starts (1) or ends (0). */
  void (*on_load)(void *ud, int under_load, unsigned pending);
  void *ud;
} lp2p_admission_config;

typedef struct lp2p_admission_stats {
  uint64_t admitted, exempt, refused_ip_rate, refused_prefix_rate,
      refused_ip_cap, refused_prefix_cap, refused_full, evictions,
      uncounted, load_episodes;
  unsigned entries, capacity;
  int under_load;
} lp2p_admission_stats;

void lp2p_admission_config_defaults(lp2p_admission_config *cfg);
/* All memory is allocated here (cfg NULL: defaults). NULL on ENOMEM or a
 * bad config (negative rate, table_size < 2). */
lp2p_admission *lp2p_admission_new(const lp2p_admission_config *cfg);
void lp2p_admission_free(lp2p_admission *a);
/* 0: accept; LP2P_ETOOMANY (concurrent cap, table full of open
 * connections); LP2P_EREFUSED (rate). pending: handshakes in progress,
 * drives the under-load mode. lp2p_admission_reason: why, for the
 * "refused" event (static text, "" after an accept). */
int lp2p_admission_check(lp2p_admission *a, const lp2p_point *addr,
                         uint64_t now_ms, unsigned pending);
const char *lp2p_admission_reason(const lp2p_admission *a);
void lp2p_admission_opened(lp2p_admission *a, const lp2p_point *addr,
                           uint64_t now_ms);
void lp2p_admission_closed(lp2p_admission *a, const lp2p_point *addr);
int lp2p_admission_under_load(const lp2p_admission *a);
void lp2p_admission_get_stats(const lp2p_admission *a,
                              lp2p_admission_stats *s);
unsigned lp2p_admission_open_count(const lp2p_admission *a,
                                   const lp2p_point *addr);

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
  unsigned outgoing_message_queue_size; /* messages queued for writing */
  size_t outgoing_queue_bytes;          /* and their bytes */
  size_t binary_chunks_size;
  size_t max_message_size;
  size_t max_conn_msg_len; /* a connection message's length prefix cap */
  uint64_t connection_timeout_ms, authentication_timeout_ms;
  unsigned ban_table_size;
  int backlog;
  lp2p_admission_config admission;
} lp2p_node_config;

void lp2p_node_config_defaults(lp2p_node_config *cfg);

/* What the handler tells its owner (the Lua binding). */
typedef struct lp2p_event {
  const char *type;    /* "accepted", "refused", "connected", ... */
  uint64_t conn;       /* 0 when no connection id */
  const lp2p_point *point;
  const char *peer_id; /* Base58 text ("id...") or NULL */
  int incoming;        /* -1 unknown */
  int code;            /* 0 or LP2P_E* / UV_E* */
  const char *reason;  /* human text or NULL */
  long value;          /* count for trigger events */
  int motive;          /* Nack motive, -1 none */
  const lp2p_point *points; /* Nack points */
  size_t npoints;
} lp2p_event;

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

/* ------------------------------------------------- internal structures */

/* Larger than a whole chunk, so most chunks are opened in place. */
#define LP2P_READ_BUF_SIZE (256 * 1024)
/* Chunks sealed per write: big enough to keep the socket fed, small enough
 * that the seal buffer stays modest (4 x 64 KiB). */
#define LP2P_SEAL_BATCH_CHUNKS 4

typedef struct lp2p_write { /* a handshake write */
  uv_write_t req;
  lp2p_conn *conn;
  uint8_t *buf;
  size_t len;
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
  /* write side: plaintext envelopes waiting (sealed up to outq_off), one
   * sealed batch in flight from sealbuf */
  uint8_t *outq;
  size_t outq_len, outq_off, outq_cap;
  unsigned outq_msgs;
  uint8_t *sealbuf;
  size_t seal_cap;
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
  unsigned handles; /* open libuv handles; freed at 0 after close */
  int closing;
  lp2p_stat total;
  uint8_t *scratch; /* shared plaintext buffer, one chunk */
  uint8_t *readbuf; /* shared read buffer, LP2P_READ_BUF_SIZE */
  lp2p_node *next_in_loop; /* the loop's nodes: loop->data is the head */
};

/* Used by conn.c, defined in handler.c. */
void lp2p__node_emit(lp2p_node *n, const lp2p_event *ev);
void lp2p__node_authenticated(lp2p_node *n, lp2p_conn *c);
void lp2p__node_established(lp2p_node *n, lp2p_conn *c);
void lp2p__node_conn_released(lp2p_node *n, lp2p_conn *c);
void lp2p__node_conn_freed(lp2p_node *n, lp2p_conn *c);
/* conn.c: an event about connection c (id, point, peer id, direction). */
void lp2p__conn_event(lp2p_conn *c, lp2p_event *ev, const char *type);
/* conn.c: free the buffers of an idle connection. */
void lp2p__conn_trim(lp2p_conn *c);
/* conn.c: close both handles now, even with writes pending. */
void lp2p__conn_force_close(lp2p_conn *c);
void lp2p__node_handle_closed(lp2p_node *n);
void lp2p__conn_start_handshake(lp2p_conn *c);
/* conn.c: a connection with both handles initialised (2 node handles). */
lp2p_conn *lp2p__conn_new(lp2p_node *n, int incoming);
void lp2p__conn_arm_timeout(lp2p_conn *c, uint64_t ms);
/* Write what the handshake queued (a Nack), then close. */
void lp2p__conn_finish(lp2p_conn *c, int code, const char *reason);

/* handler.c */
lp2p_node *lp2p_node_new(uv_loop_t *loop, const lp2p_node_config *cfg,
                         const lp2p_node_hooks *hooks, int *err);
/* Close every handle; hooks are no longer called. Memory goes when the last
 * handle closed. */
void lp2p_node_close(lp2p_node *n);
/* When the loop itself goes (its Lua state closes): close every node of
 * the loop at once, pending writes dropped, so that running the loop
 * frees them all. The loop's data field is the node list's head. */
void lp2p_loop_close_nodes(uv_loop_t *loop);
/* Returns the bound port (> 0) or an error. */
int lp2p_node_listen(lp2p_node *n, const char *host, int port);
/* Returns 0 and *id, or an error (EBANNED, EALREADY, ETOOMANY, UV_E*). */
int lp2p_node_connect(lp2p_node *n, const lp2p_point *p,
                      const uint8_t *expected_peer_id, uint64_t timeout_ms,
                      uint64_t *id);
lp2p_conn *lp2p_node_find(lp2p_node *n, uint64_t id);
size_t lp2p_node_conn_ids(lp2p_node *n, uint64_t *ids, size_t cap);
void lp2p_node_stat(lp2p_node *n, lp2p_stat *s, unsigned counts[4]);

/* ban.c: exact points, IPs, peer ids and prefixes, with expiry. */
enum { LP2P_BAN_IP = 1, LP2P_BAN_POINT = 2, LP2P_BAN_PEER = 3 };
lp2p_bans *lp2p_bans_new(unsigned cap);
void lp2p_bans_free(lp2p_bans *b);
/* until_ms: absolute loop time, 0 = permanent. prefix_bits only for IP
 * (0 = exact address). Returns 0, LP2P_EINVAL, LP2P_ENOMEM (256 prefixes). */
int lp2p_bans_add_addr(lp2p_bans *b, const lp2p_point *p, int kind,
                       unsigned prefix_bits, uint64_t until_ms,
                       uint64_t now_ms);
int lp2p_bans_add_peer(lp2p_bans *b, const uint8_t id[16], uint64_t until_ms,
                       uint64_t now_ms);
/* Returns 1 when something was removed. */
int lp2p_bans_remove_addr(lp2p_bans *b, const lp2p_point *p, int kind,
                          unsigned prefix_bits);
int lp2p_bans_remove_peer(lp2p_bans *b, const uint8_t id[16]);
/* Is the address (its IP, its point, or a covering prefix) banned now? */
int lp2p_bans_addr(lp2p_bans *b, const lp2p_point *p, uint64_t now_ms);
int lp2p_bans_peer(lp2p_bans *b, const uint8_t id[16], uint64_t now_ms);
size_t lp2p_bans_count(lp2p_bans *b);

/* conn.c */
int lp2p_conn_send(lp2p_conn *c, const uint8_t *msg, size_t len,
                   int with_envelope, uint16_t tag);
void lp2p_conn_close(lp2p_conn *c, int code, const char *reason,
                     int graceful);
void lp2p_conn_pause(lp2p_conn *c, int paused);
void lp2p_conn_get_info(lp2p_conn *c, lp2p_conn_info *info);


#endif /* LP2P_NODE_H */
