/*
 * lp2p_tables.h - the pure tables behind admission and bans: no libuv, no
 * Lua, no I/O. Time is passed in by the caller (milliseconds of its loop),
 * so both are tested and fuzzed without sockets. The connect handler
 * (core/net) owns one of each per node.
 */
#ifndef LP2P_TABLES_H
#define LP2P_TABLES_H

#include "lp2p.h"

typedef struct lp2p_bans lp2p_bans;


/* ---------------------------------------------------------- admission.c
 * Admission control at TCP accept, before any byte is read: per-IP and
 * per-prefix (/24, /64) accept-rate token buckets, concurrent caps, a
 * bounded LRU table, an under-load mode. the handler checks it in
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

#endif /* LP2P_TABLES_H */
