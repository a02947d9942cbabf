/*
 * admission.c - fuzz the admission table (core/admission.c): a bounded
 * LRU of token buckets and open counts that strangers fill with their
 * addresses, so its bookkeeping must hold under any sequence of events.
 *
 * Input: [table size u8][max per IP u8] then 4-byte operations
 *   [op u8][address u8][time step u8][pending u8]
 * op % 4: 0 check, 1 check then opened when admitted, 2 closed, 3 check
 * with the clock going backwards. The address byte picks one of 256
 * sources: IPv4 in 8 /24s, IPv6 in 4 /64s, IPv4-mapped IPv6, loopback.
 * A shadow model counts open connections per source. Invariants:
 *   - entries never exceed the capacity; every check returns 0,
 *     LP2P_EREFUSED or LP2P_ETOOMANY;
 *   - a source at its concurrent cap is never admitted;
 *   - while every opened() was counted (stats.uncounted == 0), the
 *     table's open count of each source equals the model's;
 *   - without time passing, a source is admitted at most `burst` times
 *     in a row while nothing was evicted.
 */
#include "fuzz.h"

#include "../core/wire/lp2p_tables.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


/* Source b as a point; sources sharing a model key share an IP. */
static void source(lp2p_point *p, uint8_t b) {
  memset(p, 0, sizeof *p);
  p->port = 9732;
  switch (b >> 6) {
  case 0: /* IPv4, 8 /24s of 8 hosts */
    p->family = 4;
    p->addr[0] = 198;
    p->addr[1] = 51;
    p->addr[2] = (uint8_t)(b >> 3 & 7);
    p->addr[3] = (uint8_t)(b & 7);
    break;
  case 1: /* IPv6, 4 /64s of 16 hosts */
    p->family = 6;
    p->addr[0] = 0x20;
    p->addr[1] = 0x01;
    p->addr[7] = (uint8_t)(b >> 4 & 3);
    p->addr[15] = (uint8_t)(b & 15);
    break;
  case 2: /* the same IPv4 hosts, IPv4-mapped */
    p->family = 6;
    p->addr[10] = p->addr[11] = 0xff;
    p->addr[12] = 198;
    p->addr[13] = 51;
    p->addr[14] = (uint8_t)(b >> 3 & 7);
    p->addr[15] = (uint8_t)(b & 7);
    break;
  default: /* loopback, exempt */
    p->family = 4;
    p->addr[0] = 127;
    p->addr[3] = (uint8_t)(b & 63);
    break;
  }
}


/* The model's key: mapped addresses are the IPv4 host. */
static int model_key(uint8_t b) {
  return (b >> 6) == 2 ? (b & 63) : b;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  lp2p_admission_config cfg;
  lp2p_admission_config_defaults(&cfg);
  cfg.table_size = 2 + fuzz_u8(&in) % 64;
  cfg.max_per_ip = fuzz_u8(&in) % 5;
  cfg.max_per_prefix = 12;
  lp2p_admission *a = lp2p_admission_new(&cfg);
  FUZZ_CHECK(a != NULL);
  unsigned open[256] = {0};
  int streak_src = -1;
  unsigned streak = 0;
  uint64_t streak_t = 0, streak_ev = 0;
  uint64_t t = 1000000;
  while (in.len >= 4) {
    uint8_t op = fuzz_u8(&in), b = fuzz_u8(&in), dt = fuzz_u8(&in);
    unsigned pending = fuzz_u8(&in);
    lp2p_point p;
    source(&p, b);
    int k = model_key(b);
    int loop = (b >> 6) == 3;
    lp2p_admission_stats before, after;
    lp2p_admission_get_stats(a, &before);
    if ((op & 3) == 3)
      t -= dt < t ? dt : 0;
    else
      t += dt;
    if ((op & 3) == 2) {
      lp2p_admission_closed(a, &p);
      if (open[k] > 0 && !loop)
        open[k]--;
    } else {
      int rc = lp2p_admission_check(a, &p, t, pending);
      FUZZ_CHECK(rc == 0 || rc == LP2P_EREFUSED || rc == LP2P_ETOOMANY);
      if (rc == 0 && !loop && cfg.max_per_ip)
        FUZZ_CHECK(open[k] < cfg.max_per_ip || before.uncounted > 0);
      lp2p_admission_get_stats(a, &after);
      if (rc == 0 && !loop) {
        /* Same source, same instant, nothing evicted since the streak
         * began: the bucket cannot have been refilled or recreated. */
        if (k == streak_src && t == streak_t && after.evictions == streak_ev)
          streak++;
        else
          streak = 1;
        streak_src = k;
        streak_t = t;
        streak_ev = after.evictions;
        FUZZ_CHECK(streak <= (unsigned)cfg.burst);
      }
      if (rc == 0 && (op & 3) == 1) {
        lp2p_admission_opened(a, &p, t);
        if (!loop)
          open[k]++;
      }
    }
    lp2p_admission_get_stats(a, &after);
    FUZZ_CHECK(after.entries <= after.capacity);
    if (after.uncounted == 0 && !loop)
      FUZZ_CHECK(lp2p_admission_open_count(a, &p) == open[k]);
  }
  lp2p_admission_free(a);
  return 0;
}
