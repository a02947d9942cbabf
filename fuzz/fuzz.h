/*
 * fuzz.h - helpers shared by the libFuzzer targets in fuzz/.
 *
 * Each target is one file defining LLVMFuzzerTestOneInput, linked with the
 * pure core (identity.c, handshake.c, frame.c, message.c, point.c,
 * error.c) under -fsanitize=fuzzer,address,undefined (see the Makefile's
 * hardening block). A target aborts (FUZZ_CHECK) when an invariant that
 * holds for every input breaks: round trips, split independence, sizes.
 * Buffers handed to the code under test are malloc'd to their exact size
 * so that ASan sees any byte read or written past them.
 */
#ifndef LP2P_FUZZ_H
#define LP2P_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../core/wire/lp2p.h"

#define FUZZ_CHECK(cond)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                        \
      abort();                                                               \
    }                                                                        \
  } while (0)


/* libsodium must be initialised once before any call (randombytes). */
static inline void fuzz_init(void) {
  if (sodium_init() < 0)
    abort();
}


/* A copy of data in a buffer of exactly len bytes (1 when len is 0, so the
 * pointer is never NULL); the caller frees it. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  if (p == NULL)
    abort();
  if (len)
    memcpy(p, data, len);
  return p;
}


/* A byte reader over the fuzz input: take() returns 0 past the end, so a
 * short input simply runs with zero parameters. */
typedef struct fuzz_in {
  const uint8_t *p;
  size_t len;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in) {
  if (in->len == 0)
    return 0;
  in->len--;
  return *in->p++;
}

static inline uint16_t fuzz_u16(fuzz_in *in) {
  uint16_t hi = fuzz_u8(in);
  return (uint16_t)(hi << 8 | fuzz_u8(in));
}

/* Up to n bytes; *got says how many. */
static inline const uint8_t *fuzz_bytes(fuzz_in *in, size_t n, size_t *got) {
  const uint8_t *p = in->p;
  if (n > in->len)
    n = in->len;
  in->p += n;
  in->len -= n;
  *got = n;
  return p;
}


/* Deterministic identity number `which` (keys from a fixed seed; stamp
 * zero, which passes a 0-bit target). */
static inline void fuzz_identity(lp2p_identity *id, uint8_t which) {
  uint8_t seed[crypto_box_SEEDBYTES];
  memset(seed, 0x5a, sizeof seed);
  seed[0] = which;
  memset(id, 0, sizeof *id);
  if (crypto_box_seed_keypair(id->pk, id->sk, seed) != 0)
    abort();
  lp2p_identity_set_peer_id(id);
}

#endif /* LP2P_FUZZ_H */
