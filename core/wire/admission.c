/*
 * admission.c - admission control at TCP accept, before any byte is read
 * and before any crypto: per-IP and per-prefix (/24 for IPv4, /64 for
 * IPv6) token buckets on the accept rate, caps on concurrent connections
 * per IP and per prefix, and an "under load" mode that halves the rates
 * while too many handshakes are pending.
 *
 * Anchors: WireGuard's ratelimiter (20 handshakes/s per source, burst 5,
 * IPv6 sources grouped by /64, a bounded table, an under-load mode) and
 * Bitcoin Core's lesson that every per-peer map a stranger can fill must
 * be bounded.
 *
 * Memory: every entry is allocated once by lp2p_admission_new (touched
 * only when first used, so an idle table costs little RSS). The table
 * holds at most `table_size` entries (IPs and prefixes together); a new
 * address takes the least recently used entry that has no open connection,
 * so a flood of fresh addresses recycles entries and never grows memory.
 * Hash buckets are keyed with a random SipHash key (libsodium
 * crypto_shorthash), so chosen addresses cannot pile into one chain.
 * An evicted entry comes back with a full bucket: a source can only win
 * that way by cycling through more addresses than the table holds, and
 * each of those addresses has its own burst anyway.
 *
 * Loopback sources (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) are exempt by
 * default (exempt_loopback), so local tools and tests are never throttled.
 *
 * Not thread-safe: one admission table belongs to one loop thread.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lp2p_tables.h"

#define NIL UINT32_MAX

enum { KIND_IP = 0, KIND_PREFIX = 1 };

typedef struct adm_key {
  uint8_t kind, family;
  uint8_t addr[16]; /* masked to the prefix for KIND_PREFIX */
} adm_key;

typedef struct adm_entry {
  adm_key key;
  double tokens;     /* accept tokens left, <= burst */
  uint64_t last_ms;  /* time of the last refill */
  unsigned open;     /* connections opened and not yet closed */
  uint32_t hnext;    /* hash chain */
  uint32_t prev, next; /* LRU list: head = most recent */
  int used;
} adm_entry;

struct lp2p_admission {
  lp2p_admission_config cfg;
  adm_entry *entries;
  uint32_t *buckets;
  uint32_t cap, nbuckets, count;
  uint32_t head, tail, free_head; /* LRU ends; free list via hnext */
  uint32_t fresh; /* entries [fresh, cap) never used: calloc'd, untouched */
  uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* drawn at the first entry */
  int keyed;
  int under_load;
  const char *reason; /* why the last check refused */
  lp2p_admission_stats stats;
};


void lp2p_admission_config_defaults(lp2p_admission_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->rate = 20.0; /* WireGuard: 20 handshakes per second per source */
  cfg->burst = 5.0; /* and a burst of 5 */
  /* A /24 or a /64 often holds several honest nodes (a data centre, a
   * NAT): four sources' worth before the prefix bucket bites. */
  cfg->prefix_rate = 80.0;
  cfg->prefix_burst = 20.0;
  cfg->max_per_ip = 8;
  cfg->max_per_prefix = 32;
  cfg->table_size = 4096;
  cfg->exempt_loopback = 1;
  cfg->load_threshold = 10; /* half of Octez's max_incoming_connections */
}


/* ------------------------------------------------------------- helpers */

static int is_loopback(const lp2p_point *p) {
  static const uint8_t v6_loop[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (p->family == 4)
    return p->addr[0] == 127;
  if (p->family != 6)
    return 0;
  if (memcmp(p->addr, v6_loop, 16) == 0)
    return 1;
  return memcmp(p->addr, mapped, 12) == 0 && p->addr[12] == 127;
}


/* The key of the address itself or of its prefix. An IPv4-mapped IPv6
 * address is keyed as the IPv4 address it carries, so one host cannot
 * get two buckets by switching notation. */
static adm_key make_key(int kind, const lp2p_point *p) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  adm_key k;
  memset(&k, 0, sizeof k); /* compared bytewise */
  k.kind = (uint8_t)kind;
  if (p->family == 6 && memcmp(p->addr, mapped, 12) != 0) {
    k.family = 6;
    memcpy(k.addr, p->addr, kind == KIND_PREFIX ? 8 : 16);
  } else {
    k.family = 4;
    memcpy(k.addr, p->family == 6 ? p->addr + 12 : p->addr,
           kind == KIND_PREFIX ? 3 : 4);
  }
  return k;
}


static uint32_t bucket_of(const lp2p_admission *a, const adm_key *k) {
  uint8_t h[crypto_shorthash_BYTES];
  crypto_shorthash(h, (const uint8_t *)k, sizeof *k, a->hash_key);
  uint32_t v = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
               (uint32_t)h[3] << 24;
  return v & (a->nbuckets - 1);
}


static void lru_unlink(lp2p_admission *a, uint32_t i) {
  adm_entry *e = &a->entries[i];
  if (e->prev != NIL)
    a->entries[e->prev].next = e->next;
  else
    a->head = e->next;
  if (e->next != NIL)
    a->entries[e->next].prev = e->prev;
  else
    a->tail = e->prev;
  e->prev = e->next = NIL;
}


static void lru_push_head(lp2p_admission *a, uint32_t i) {
  adm_entry *e = &a->entries[i];
  e->prev = NIL;
  e->next = a->head;
  if (a->head != NIL)
    a->entries[a->head].prev = i;
  a->head = i;
  if (a->tail == NIL)
    a->tail = i;
}


static uint32_t find(const lp2p_admission *a, const adm_key *k) {
  if (a->count == 0)
    return NIL; /* nothing to hash for (and no key yet) */
  for (uint32_t i = a->buckets[bucket_of(a, k)]; i != NIL;
       i = a->entries[i].hnext)
    if (memcmp(&a->entries[i].key, k, sizeof *k) == 0)
      return i;
  return NIL;
}


/* Remove entry i from its hash chain and the LRU list; back to free. */
static void evict(lp2p_admission *a, uint32_t i) {
  adm_entry *e = &a->entries[i];
  uint32_t *link = &a->buckets[bucket_of(a, &e->key)];
  while (*link != i)
    link = &a->entries[*link].hnext;
  *link = e->hnext;
  lru_unlink(a, i);
  e->used = 0;
  e->hnext = a->free_head;
  a->free_head = i;
  a->count--;
  a->stats.evictions++;
}


/*
 * The entry for k, moved to the front of the LRU list; created with a full
 * bucket when absent. NIL when the table is full of entries that carry
 * open connections (nothing may be forgotten without losing a count).
 * Entry `keep` (the IP entry while its prefix is looked up) is never the
 * one evicted.
 */
static uint32_t get(lp2p_admission *a, const adm_key *k, double burst,
                    uint64_t now_ms, uint32_t keep) {
  uint32_t i = find(a, k);
  if (i != NIL) {
    lru_unlink(a, i);
    lru_push_head(a, i);
    return i;
  }
  if (a->free_head == NIL && a->fresh < a->cap) {
    /* Never-used entries are taken in order, so an idle node's table
     * costs address space, not resident memory. */
    a->entries[a->fresh].hnext = NIL;
    a->free_head = a->fresh++;
  }
  if (a->free_head == NIL) {
    /* The least recently used entry without open connections. Entries
     * with connections are at most 2 per open connection. */
    uint32_t v = a->tail;
    while (v != NIL && (a->entries[v].open > 0 || v == keep))
      v = a->entries[v].prev;
    if (v == NIL)
      return NIL;
    evict(a, v);
  }
  i = a->free_head;
  adm_entry *e = &a->entries[i];
  a->free_head = e->hnext;
  memset(e, 0, sizeof *e);
  e->key = *k;
  e->tokens = burst;
  e->last_ms = now_ms;
  e->used = 1;
  if (!a->keyed) {
    /* Only now: a node that never accepts never needs one. */
    randombytes_buf(a->hash_key, sizeof a->hash_key);
    a->keyed = 1;
  }
  uint32_t b = bucket_of(a, k);
  e->hnext = a->buckets[b];
  a->buckets[b] = i;
  e->prev = e->next = NIL;
  lru_push_head(a, i);
  a->count++;
  return i;
}


/* Add the tokens earned since the last refill, capped at burst. A clock
 * that goes backwards earns nothing. */
static void refill(adm_entry *e, double rate, double burst, uint64_t now_ms) {
  if (now_ms > e->last_ms) {
    e->tokens += (double)(now_ms - e->last_ms) * rate / 1000.0;
    e->last_ms = now_ms;
  }
  if (e->tokens > burst)
    e->tokens = burst;
}


/* Under load every rate and burst is halved; a burst never drops below
 * one token, so a quiet source still gets through. */
static void limits(const lp2p_admission *a, int kind, double *rate,
                   double *burst) {
  *rate = kind == KIND_IP ? a->cfg.rate : a->cfg.prefix_rate;
  *burst = kind == KIND_IP ? a->cfg.burst : a->cfg.prefix_burst;
  if (a->under_load) {
    *rate /= 2;
    *burst /= 2;
  }
  if (*burst < 1.0)
    *burst = 1.0;
}


/* Enter under-load mode above the threshold; leave it at half of it
 * (hysteresis, so that one handshake more or less does not flap). */
static void update_load(lp2p_admission *a, unsigned pending) {
  unsigned t = a->cfg.load_threshold;
  if (t == 0)
    return;
  int was = a->under_load;
  if (!was && pending > t)
    a->under_load = 1;
  else if (was && pending <= t / 2)
    a->under_load = 0;
  if (a->under_load != was) {
    if (a->under_load)
      a->stats.load_episodes++;
    if (a->cfg.on_load != NULL)
      a->cfg.on_load(a->cfg.ud, a->under_load, pending);
  }
}


/* ------------------------------------------------------------------ API */

lp2p_admission *lp2p_admission_new(const lp2p_admission_config *cfg) {
  lp2p_admission_config def;
  if (cfg == NULL) {
    lp2p_admission_config_defaults(&def);
    cfg = &def;
  }
  if (!(cfg->rate >= 0) || !(cfg->burst >= 0) || !(cfg->prefix_rate >= 0) ||
      !(cfg->prefix_burst >= 0) || cfg->table_size < 2 ||
      cfg->table_size > (1u << 24))
    return NULL;
  lp2p_admission *a = calloc(1, sizeof *a);
  if (a == NULL)
    return NULL;
  a->cfg = *cfg;
  a->cap = cfg->table_size;
  a->nbuckets = 16;
  while (a->nbuckets < a->cap)
    a->nbuckets *= 2;
  a->entries = calloc(a->cap, sizeof *a->entries);
  a->buckets = malloc(a->nbuckets * sizeof *a->buckets);
  if (a->entries == NULL || a->buckets == NULL) {
    lp2p_admission_free(a);
    return NULL;
  }
  for (uint32_t i = 0; i < a->nbuckets; i++)
    a->buckets[i] = NIL;
  a->free_head = NIL;
  a->fresh = 0;
  a->head = a->tail = NIL;
  a->reason = "";
  return a;
}


void lp2p_admission_free(lp2p_admission *a) {
  if (a == NULL)
    return;
  free(a->entries);
  free(a->buckets);
  free(a);
}


/*
 * May a connection from addr be accepted now? Cheapest first: the load
 * mode (pending is the caller's count of handshakes in progress), the
 * loopback exemption, the concurrent caps, then one token from the IP's
 * and the prefix's buckets, taken only when both have one (a refused
 * attempt costs the source nothing more). 0, LP2P_ETOOMANY (a cap, or
 * the table full of open connections) or LP2P_EREFUSED (rate).
 */
int lp2p_admission_check(lp2p_admission *a, const lp2p_point *addr,
                         uint64_t now_ms, unsigned pending) {
  update_load(a, pending);
  a->reason = "";
  if (a->cfg.exempt_loopback && is_loopback(addr)) {
    a->stats.exempt++;
    return 0;
  }
  double ip_rate, ip_burst, pfx_rate, pfx_burst;
  limits(a, KIND_IP, &ip_rate, &ip_burst);
  limits(a, KIND_PREFIX, &pfx_rate, &pfx_burst);
  adm_key kip = make_key(KIND_IP, addr), kpfx = make_key(KIND_PREFIX, addr);
  uint32_t ip = get(a, &kip, ip_burst, now_ms, NIL);
  uint32_t pfx = ip == NIL ? NIL : get(a, &kpfx, pfx_burst, now_ms, ip);
  if (ip == NIL || pfx == NIL) {
    a->reason = "admission table full of open connections";
    a->stats.refused_full++;
    return LP2P_ETOOMANY;
  }
  adm_entry *eip = &a->entries[ip], *epfx = &a->entries[pfx];
  if (a->cfg.max_per_ip && eip->open >= a->cfg.max_per_ip) {
    a->reason = "too many connections from this IP";
    a->stats.refused_ip_cap++;
    return LP2P_ETOOMANY;
  }
  if (a->cfg.max_per_prefix && epfx->open >= a->cfg.max_per_prefix) {
    a->reason = "too many connections from this prefix";
    a->stats.refused_prefix_cap++;
    return LP2P_ETOOMANY;
  }
  refill(eip, ip_rate, ip_burst, now_ms);
  refill(epfx, pfx_rate, pfx_burst, now_ms);
  if (eip->tokens < 1.0) {
    a->reason = "accept rate limit (IP)";
    a->stats.refused_ip_rate++;
    return LP2P_EREFUSED;
  }
  if (epfx->tokens < 1.0) {
    a->reason = "accept rate limit (prefix)";
    a->stats.refused_prefix_rate++;
    return LP2P_EREFUSED;
  }
  eip->tokens -= 1.0;
  epfx->tokens -= 1.0;
  a->stats.admitted++;
  return 0;
}


const char *lp2p_admission_reason(const lp2p_admission *a) {
  return a->reason;
}


/* Count one more open connection for addr (after the caller kept it). */
void lp2p_admission_opened(lp2p_admission *a, const lp2p_point *addr,
                           uint64_t now_ms) {
  if (a->cfg.exempt_loopback && is_loopback(addr))
    return;
  double rate, burst;
  adm_key k[2] = {make_key(KIND_IP, addr), make_key(KIND_PREFIX, addr)};
  uint32_t keep = NIL;
  for (int i = 0; i < 2; i++) {
    limits(a, i == 0 ? KIND_IP : KIND_PREFIX, &rate, &burst);
    uint32_t e = get(a, &k[i], burst, now_ms, keep);
    if (e != NIL)
      a->entries[e].open++;
    else
      a->stats.uncounted++; /* table full of open connections */
    keep = e;
  }
}


/* One connection of addr closed. Never goes below zero, so a connection
 * that was not counted (table full) cannot steal another's count. */
void lp2p_admission_closed(lp2p_admission *a, const lp2p_point *addr) {
  if (a->cfg.exempt_loopback && is_loopback(addr))
    return;
  adm_key k[2] = {make_key(KIND_IP, addr), make_key(KIND_PREFIX, addr)};
  for (int i = 0; i < 2; i++) {
    uint32_t e = find(a, &k[i]);
    if (e != NIL && a->entries[e].open > 0)
      a->entries[e].open--;
  }
}


int lp2p_admission_under_load(const lp2p_admission *a) {
  return a->under_load;
}


void lp2p_admission_get_stats(const lp2p_admission *a,
                              lp2p_admission_stats *s) {
  *s = a->stats;
  s->entries = a->count;
  s->capacity = a->cap;
  s->under_load = a->under_load;
}


/* Open connections counted for addr's IP (0 when unknown or exempt). */
unsigned lp2p_admission_open_count(const lp2p_admission *a,
                                   const lp2p_point *addr) {
  adm_key k = make_key(KIND_IP, addr);
  uint32_t e = find(a, &k);
  return e == NIL ? 0 : a->entries[e].open;
}
