/*
 * ban.c - the C ban table consulted before any byte is read: exact IPs,
 * points and peer ids in a hash table, IP prefixes in a short list. Entries
 * expire; the table never holds more than its capacity (when full, expired
 * entries go first, then the oldest insertion).
 *
 * The decisions that fill it come from Lua policies (node:ban).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lp2p_tables.h"

#define PREFIX_MAX 256

typedef struct ban_key {
  uint8_t kind, family;
  uint8_t addr[16]; /* IP, or peer id */
  uint16_t port;
} ban_key;

typedef struct ban_entry {
  ban_key key;
  uint64_t until_ms; /* 0: permanent */
  uint64_t seq;      /* insertion order, for eviction */
  struct ban_entry *next;
} ban_entry;

typedef struct ban_prefix {
  uint8_t family, bits;
  uint8_t addr[16];
  uint64_t until_ms;
} ban_prefix;

struct lp2p_bans {
  uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random per table, drawn
                                                 at the first entry */
  int keyed;
  ban_entry **buckets;
  size_t nbuckets, count, cap;
  uint64_t seq;
  ban_prefix prefixes[PREFIX_MAX];
  size_t nprefixes;
};


static ban_key make_key(int kind, const lp2p_point *p, const uint8_t *id) {
  ban_key k;
  memset(&k, 0, sizeof k); /* padding too: keys are compared bytewise */
  k.kind = (uint8_t)kind;
  if (id != NULL) {
    memcpy(k.addr, id, LP2P_PEER_ID_BYTES);
  } else {
    k.family = p->family;
    memcpy(k.addr, p->addr, p->family == 4 ? 4 : 16);
    if (kind == LP2P_BAN_POINT)
      k.port = p->port;
  }
  return k;
}


/* Keyed SipHash: chosen addresses cannot pile up in one bucket. */
static size_t hash_key(const lp2p_bans *b, const ban_key *k, size_t nbuckets) {
  uint64_t h;
  crypto_shorthash((unsigned char *)&h, (const unsigned char *)k, sizeof *k,
                   b->hash_key);
  return (size_t)(h & (nbuckets - 1));
}


static int alive(uint64_t until_ms, uint64_t now_ms) {
  return until_ms == 0 || until_ms > now_ms;
}


lp2p_bans *lp2p_bans_new(unsigned cap) {
  lp2p_bans *b = calloc(1, sizeof *b);
  if (b == NULL)
    return NULL;
  b->cap = cap ? cap : 1;
  b->nbuckets = 64; /* grows with the entries, not with the capacity */
  b->buckets = calloc(b->nbuckets, sizeof *b->buckets);
  if (b->buckets == NULL) {
    free(b);
    return NULL;
  }
  return b;
}


void lp2p_bans_free(lp2p_bans *b) {
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->nbuckets; i++)
    for (ban_entry *e = b->buckets[i], *next; e != NULL; e = next) {
      next = e->next;
      free(e);
    }
  free(b->buckets);
  free(b);
}


/* Unlink and free the entry with key k; returns 1 when one went. */
static int remove_where(lp2p_bans *b, const ban_key *k) {
  if (b->count == 0)
    return 0;
  ban_entry **pp = &b->buckets[hash_key(b, k, b->nbuckets)];
  for (; *pp != NULL; pp = &(*pp)->next)
    if (memcmp(&(*pp)->key, k, sizeof *k) == 0) {
      ban_entry *e = *pp;
      *pp = e->next;
      free(e);
      b->count--;
      return 1;
    }
  return 0;
}


/* Make room for one entry: drop expired ones, else the oldest. */
static void evict(lp2p_bans *b, uint64_t now_ms) {
  ban_entry **oldest = NULL;
  for (size_t i = 0; i < b->nbuckets; i++)
    for (ban_entry **pp = &b->buckets[i]; *pp != NULL;) {
      if (!alive((*pp)->until_ms, now_ms)) {
        ban_entry *e = *pp;
        *pp = e->next;
        free(e);
        b->count--;
        continue;
      }
      if (oldest == NULL || (*pp)->seq < (*oldest)->seq)
        oldest = pp;
      pp = &(*pp)->next;
    }
  if (b->count >= b->cap && oldest != NULL) {
    ban_entry *e = *oldest;
    *oldest = e->next;
    free(e);
    b->count--;
  }
}


/* Double the buckets (load factor 1); on failure keep the old ones. */
static void grow(lp2p_bans *b) {
  size_t n = b->nbuckets * 2;
  ban_entry **nb = calloc(n, sizeof *nb);
  if (nb == NULL)
    return;
  for (size_t i = 0; i < b->nbuckets; i++)
    for (ban_entry *e = b->buckets[i], *next; e != NULL; e = next) {
      next = e->next;
      size_t h = hash_key(b, &e->key, n);
      e->next = nb[h];
      nb[h] = e;
    }
  free(b->buckets);
  b->buckets = nb;
  b->nbuckets = n;
}


static int insert(lp2p_bans *b, const ban_key *k, uint64_t until_ms,
                  uint64_t now_ms) {
  if (!b->keyed) {
    /* Only now: most tables (a client node's) never hold an entry. */
    randombytes_buf(b->hash_key, sizeof b->hash_key);
    b->keyed = 1;
  }
  remove_where(b, k);
  if (b->count >= b->cap)
    evict(b, now_ms);
  if (b->count >= b->nbuckets)
    grow(b);
  ban_entry *e = malloc(sizeof *e);
  if (e == NULL)
    return LP2P_ENOMEM;
  e->key = *k;
  e->until_ms = until_ms;
  e->seq = ++b->seq;
  size_t h = hash_key(b, k, b->nbuckets);
  e->next = b->buckets[h];
  b->buckets[h] = e;
  b->count++;
  return 0;
}


static const ban_entry *lookup(lp2p_bans *b, const ban_key *k) {
  if (b->count == 0)
    return NULL; /* nothing to hash for (and no key yet) */
  for (ban_entry *e = b->buckets[hash_key(b, k, b->nbuckets)]; e; e = e->next)
    if (memcmp(&e->key, k, sizeof *k) == 0)
      return e;
  return NULL;
}


static int prefix_covers(const ban_prefix *p, const lp2p_point *a) {
  if (p->family != a->family)
    return 0;
  unsigned full = p->bits / 8, rest = p->bits % 8;
  if (memcmp(p->addr, a->addr, full) != 0)
    return 0;
  if (rest == 0)
    return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (p->addr[full] & mask) == (a->addr[full] & mask);
}


int lp2p_bans_add_addr(lp2p_bans *b, const lp2p_point *p, int kind,
                       unsigned prefix_bits, uint64_t until_ms,
                       uint64_t now_ms) {
  unsigned width = p->family == 4 ? 32 : 128;
  if (prefix_bits == 0 || kind != LP2P_BAN_IP || prefix_bits == width) {
    ban_key k = make_key(kind, p, NULL);
    return insert(b, &k, until_ms, now_ms);
  }
  if (prefix_bits > width)
    return LP2P_EINVAL;
  lp2p_bans_remove_addr(b, p, kind, prefix_bits);
  if (b->nprefixes == PREFIX_MAX) { /* drop expired prefixes first */
    for (size_t i = 0; i < b->nprefixes;) {
      if (!alive(b->prefixes[i].until_ms, now_ms))
        b->prefixes[i] = b->prefixes[--b->nprefixes];
      else
        i++;
    }
  }
  if (b->nprefixes == PREFIX_MAX)
    return LP2P_ENOMEM;
  ban_prefix *bp = &b->prefixes[b->nprefixes++];
  memset(bp, 0, sizeof *bp);
  bp->family = p->family;
  bp->bits = (uint8_t)prefix_bits;
  memcpy(bp->addr, p->addr, 16);
  bp->until_ms = until_ms;
  return 0;
}


int lp2p_bans_add_peer(lp2p_bans *b, const uint8_t id[16], uint64_t until_ms,
                       uint64_t now_ms) {
  ban_key k = make_key(LP2P_BAN_PEER, NULL, id);
  return insert(b, &k, until_ms, now_ms);
}


int lp2p_bans_remove_addr(lp2p_bans *b, const lp2p_point *p, int kind,
                          unsigned prefix_bits) {
  unsigned width = p->family == 4 ? 32 : 128;
  if (prefix_bits == 0 || kind != LP2P_BAN_IP || prefix_bits == width) {
    ban_key k = make_key(kind, p, NULL);
    return remove_where(b, &k);
  }
  for (size_t i = 0; i < b->nprefixes; i++) {
    ban_prefix *bp = &b->prefixes[i];
    if (bp->family == p->family && bp->bits == prefix_bits &&
        prefix_covers(bp, p)) {
      b->prefixes[i] = b->prefixes[--b->nprefixes];
      return 1;
    }
  }
  return 0;
}


int lp2p_bans_remove_peer(lp2p_bans *b, const uint8_t id[16]) {
  ban_key k = make_key(LP2P_BAN_PEER, NULL, id);
  return remove_where(b, &k);
}


int lp2p_bans_addr(lp2p_bans *b, const lp2p_point *p, uint64_t now_ms) {
  ban_key ip = make_key(LP2P_BAN_IP, p, NULL);
  const ban_entry *e = lookup(b, &ip);
  if (e != NULL && alive(e->until_ms, now_ms))
    return 1;
  ban_key pt = make_key(LP2P_BAN_POINT, p, NULL);
  e = lookup(b, &pt);
  if (e != NULL && alive(e->until_ms, now_ms))
    return 1;
  for (size_t i = 0; i < b->nprefixes; i++)
    if (alive(b->prefixes[i].until_ms, now_ms) &&
        prefix_covers(&b->prefixes[i], p))
      return 1;
  return 0;
}


int lp2p_bans_peer(lp2p_bans *b, const uint8_t id[16], uint64_t now_ms) {
  ban_key k = make_key(LP2P_BAN_PEER, NULL, id);
  const ban_entry *e = lookup(b, &k);
  return e != NULL && alive(e->until_ms, now_ms);
}


size_t lp2p_bans_count(lp2p_bans *b) {
  return b->count + b->nprefixes;
}
