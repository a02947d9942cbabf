/*
 * identity.c - keys, peer ids, Base58Check and proof of work (pure: no
 * Lua, no libuv, no I/O); identity.json is identity_json.c.
 *
 * Facts from Octez src/lib_crypto/crypto_box.ml and base58.ml:
 * - peer id = BLAKE2b with a 16-byte digest of the X25519 public key, shown
 *   as Base58Check with the two prefix bytes 153 103 ("id", 30 characters);
 * - proof of work: BLAKE2b-256(pk || stamp) read as a little-endian integer
 *   (Z.of_bits) must be <= make_pow_target(bits).
 *
 * Every function works on its arguments only (no globals), so each may run
 * in several threads at once; randombytes_buf needs sodium_init() first.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "lp2p.h"

_Static_assert(LP2P_PK_BYTES == crypto_box_PUBLICKEYBYTES, "pk size");
_Static_assert(LP2P_SK_BYTES == crypto_box_SECRETKEYBYTES, "sk size");
_Static_assert(LP2P_PK_BYTES == crypto_scalarmult_BYTES, "scalarmult size");
_Static_assert(LP2P_SK_BYTES == crypto_scalarmult_SCALARBYTES, "scalar size");

/* Base58.Prefix.cryptobox_public_key_hash. */
static const uint8_t peer_id_prefix[2] = {153, 103};

/* prefix (2) + BLAKE2b-128 (16) + checksum (4). */
#define B58_RAW_BYTES (2 + LP2P_PEER_ID_BYTES + 4)

static const char b58_alphabet[] =
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";


/* ------------------------------------------------------------------ keys */

void lp2p_peer_id(uint8_t id[LP2P_PEER_ID_BYTES],
                  const uint8_t pk[LP2P_PK_BYTES]) {
  /* A 16-byte digest, not a cut 32-byte one: BLAKE2b mixes the length in. */
  crypto_generichash(id, LP2P_PEER_ID_BYTES, pk, LP2P_PK_BYTES, NULL, 0);
}


void lp2p_identity_set_peer_id(lp2p_identity *id) {
  lp2p_peer_id(id->peer_id, id->pk);
}


void lp2p_identity_generate(lp2p_identity *id) {
  crypto_box_keypair(id->pk, id->sk);
  memset(id->stamp, 0, sizeof id->stamp);
  lp2p_identity_set_peer_id(id);
}


void lp2p_identity_wipe(lp2p_identity *id) {
  sodium_memzero(id, sizeof *id);
}


int lp2p_identity_check_keys(const lp2p_identity *id) {
  uint8_t pk[LP2P_PK_BYTES];
  if (crypto_scalarmult_base(pk, id->sk) != 0)
    return LP2P_EIDENTITY;
  return sodium_memcmp(pk, id->pk, sizeof pk) == 0 ? 0 : LP2P_EIDENTITY;
}


/* ------------------------------------------------------------ Base58Check */

static void sha256d_checksum(uint8_t out[4], const uint8_t *data, size_t len) {
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, data, len);
  crypto_hash_sha256(h, h, sizeof h);
  memcpy(out, h, 4);
}


void lp2p_peer_id_encode(char out[LP2P_PEER_ID_B58_LEN + 1],
                         const uint8_t id[LP2P_PEER_ID_BYTES]) {
  uint8_t raw[B58_RAW_BYTES];
  memcpy(raw, peer_id_prefix, 2);
  memcpy(raw + 2, id, LP2P_PEER_ID_BYTES);
  sha256d_checksum(raw + 2 + LP2P_PEER_ID_BYTES, raw, 2 + LP2P_PEER_ID_BYTES);

  /* Base-256 to base-58 by repeated division, digits least significant
   * first. 22 bytes need at most 31 digits; the prefix makes it exactly 30
   * with no leading zero byte (Octez asserts "id" and 30). */
  uint8_t digits[32];
  size_t n = 0;
  for (size_t i = 0; i < sizeof raw; i++) {
    unsigned carry = raw[i];
    for (size_t j = 0; j < n; j++) {
      carry += (unsigned)digits[j] << 8;
      digits[j] = (uint8_t)(carry % 58);
      carry /= 58;
    }
    while (carry > 0 && n < sizeof digits) {
      digits[n++] = (uint8_t)(carry % 58);
      carry /= 58;
    }
  }
  size_t k = 0;
  while (n > 0 && k < LP2P_PEER_ID_B58_LEN)
    out[k++] = b58_alphabet[digits[--n]];
  out[k] = '\0';
}


static int b58_value(unsigned char c) {
  /* The alphabet lacks 0, O, I and l; anything else outside it is -1. */
  const char *p = c != 0 ? memchr(b58_alphabet, c, 58) : NULL;
  return p != NULL ? (int)(p - b58_alphabet) : -1;
}


int lp2p_peer_id_decode(uint8_t id[LP2P_PEER_ID_BYTES], const char *s,
                        size_t len) {
  if (s == NULL || len != LP2P_PEER_ID_B58_LEN)
    return LP2P_EPEERID;
  /* Base-58 to base-256, big-endian into raw; a value that does not fit in
   * B58_RAW_BYTES is rejected (cannot happen for 30 digits, kept as a
   * bound). Leading '1's would be leading zero bytes: the prefix check
   * catches them. */
  uint8_t raw[B58_RAW_BYTES] = {0};
  for (size_t i = 0; i < len; i++) {
    int v = b58_value((unsigned char)s[i]);
    if (v < 0)
      return LP2P_EPEERID;
    unsigned carry = (unsigned)v;
    for (size_t j = sizeof raw; j-- > 0;) {
      carry += (unsigned)raw[j] * 58;
      raw[j] = (uint8_t)carry;
      carry >>= 8;
    }
    if (carry != 0)
      return LP2P_EPEERID;
  }
  uint8_t sum[4];
  sha256d_checksum(sum, raw, 2 + LP2P_PEER_ID_BYTES);
  if (memcmp(raw, peer_id_prefix, 2) != 0 ||
      memcmp(sum, raw + 2 + LP2P_PEER_ID_BYTES, 4) != 0)
    return LP2P_EPEERID;
  memcpy(id, raw + 2, LP2P_PEER_ID_BYTES);
  return 0;
}


/* ---------------------------------------------------------- proof of work */

/* Octez Crypto_box.make_pow_target f, with frac, shift = modf f:
 *   m = 2^54 - 1                      when frac = 0
 *     = Int64.of_float (2 ** (54 - frac))   otherwise (2^53 < m <= 2^54)
 *   target = (m << (202 - shift)) | (2^(202 - shift) - 1)  when shift < 202
 *          = m >> (shift - 202)                            otherwise
 * For whole f this is 2^(256-f) - 1. Octez keeps the target as an unbounded
 * integer; for f a hair above 0 it can reach 2^256 + 2^202 - 1, which
 * accepts every hash just as 2^256 - 1 does, so we saturate there. pow()
 * is the C library's, as OCaml's ( ** ) is. */
int lp2p_pow_target_make(lp2p_pow_target *t, double bits) {
  if (!(bits >= 0.0 && bits <= 256.0)) /* also rejects NaN */
    return LP2P_EINVAL;
  int shift = (int)bits;                 /* modf's integral part */
  double frac = bits - (double)shift;    /* exact, as modf's */
  uint64_t m = frac == 0.0 ? (UINT64_C(1) << 54) - 1
                           : (uint64_t)(int64_t)pow(2.0, 54.0 - frac);
  memset(t->le, 0, sizeof t->le);
  if (shift >= 202) {
    uint64_t v = m >> (shift - 202); /* shift - 202 <= 54 */
    for (int i = 0; i < 8; i++)
      t->le[i] = (uint8_t)(v >> (8 * i));
    return 0;
  }
  int s = 202 - shift; /* 1..202: the low s bits are ones */
  memset(t->le, 0xff, (size_t)(s / 8));
  if (s % 8 != 0)
    t->le[s / 8] = (uint8_t)((1u << (s % 8)) - 1);
  for (int j = 0; j < 64; j++) {
    if (((m >> j) & 1) == 0)
      continue;
    int bit = s + j;
    if (bit >= 256) {
      memset(t->le, 0xff, sizeof t->le);
      return 0;
    }
    t->le[bit / 8] |= (uint8_t)(1u << (bit % 8));
  }
  return 0;
}


/* 1 when the little-endian hash h <= target. From the most significant
 * byte: a real target has ones in all its low bytes, so the answer almost
 * always comes from the first byte or two. */
static int hash_le_passes(const uint8_t h[32], const uint8_t le[32]) {
  for (int i = 31; i >= 0; i--) {
    if (h[i] != le[i])
      return h[i] < le[i];
  }
  return 1;
}


int lp2p_pow_check(const uint8_t pk[LP2P_PK_BYTES],
                   const uint8_t stamp[LP2P_STAMP_BYTES],
                   const lp2p_pow_target *t) {
  crypto_generichash_state st;
  uint8_t h[32];
  crypto_generichash_init(&st, NULL, 0, sizeof h);
  crypto_generichash_update(&st, pk, LP2P_PK_BYTES);
  crypto_generichash_update(&st, stamp, LP2P_STAMP_BYTES);
  crypto_generichash_final(&st, h, sizeof h);
  return hash_le_passes(h, t->le);
}


/* The pk goes into a hash state once; each try copies that state and adds
 * only the stamp (BLAKE2b buffers the 56 bytes and compresses one block at
 * final). The stamp is a 192-bit big-endian counter from a random start, as
 * Octez Nonce.increment. Runs until found, or until progress asks to stop;
 * with no progress callback and an unreachable target it never returns. */
int lp2p_pow_search(uint8_t stamp[LP2P_STAMP_BYTES],
                    const uint8_t pk[LP2P_PK_BYTES], const lp2p_pow_target *t,
                    uint64_t every, lp2p_pow_progress_cb progress, void *ud) {
  crypto_generichash_state base, st;
  uint8_t s[LP2P_STAMP_BYTES], h[32];
  uint64_t tries = 0, since = 0;

  randombytes_buf(s, sizeof s);
  crypto_generichash_init(&base, NULL, 0, sizeof h);
  crypto_generichash_update(&base, pk, LP2P_PK_BYTES);
  for (;;) {
    st = base;
    crypto_generichash_update(&st, s, sizeof s);
    crypto_generichash_final(&st, h, sizeof h);
    tries++;
    if (hash_le_passes(h, t->le)) {
      memcpy(stamp, s, sizeof s);
      return 0;
    }
    for (int i = LP2P_STAMP_BYTES - 1; i >= 0; i--)
      if (++s[i] != 0)
        break;
    if (every != 0 && ++since >= every) {
      since = 0;
      if (progress != NULL && progress(ud, tries) != 0)
        return LP2P_ECANCELED;
    }
  }
}
