/*
 * base58.c - Base58Check of the shell's hashes (pure).
 *
 * Facts from Octez src/lib_crypto/base58.ml: text = base58(prefix || raw
 * || checksum), checksum = the first 4 bytes of SHA-256(SHA-256(prefix ||
 * raw)), Bitcoin's alphabet; leading zero bytes would be '1's (no prefix
 * here starts with one). The prefixes are chosen so that every value of a
 * kind starts with the same letters (B, o, Lo, LLo, P, Co, Net).
 */
#include <string.h>

#include <sodium.h>

#include "shell.h"

static const struct {
  const char *name;
  uint8_t prefix[3];
  uint8_t prefix_len;
  uint8_t size;
} kinds[LP2P__HASH_KINDS] = {
    [LP2P_HASH_BLOCK] = {"block", {1, 52}, 2, 32},
    [LP2P_HASH_OPERATION] = {"operation", {5, 116}, 2, 32},
    [LP2P_HASH_OPERATION_LIST] = {"operation_list", {133, 233}, 2, 32},
    [LP2P_HASH_OPERATION_LIST_LIST] = {"operation_list_list",
                                       {29, 159, 109}, 3, 32},
    [LP2P_HASH_PROTOCOL] = {"protocol", {2, 170}, 2, 32},
    [LP2P_HASH_CONTEXT] = {"context", {79, 199}, 2, 32},
    [LP2P_HASH_CHAIN_ID] = {"chain_id", {87, 82, 0}, 3, 4},
};

/* prefix (<= 3) + raw (<= 32) + checksum (4). */
#define RAW_MAX (3 + LP2P_HASH_BYTES + 4)

static const char alphabet[] =
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";


static int valid_kind(lp2p_hash_kind kind) {
  return (unsigned)kind < LP2P__HASH_KINDS;
}


size_t lp2p_hash_size(lp2p_hash_kind kind) {
  return valid_kind(kind) ? kinds[kind].size : 0;
}


const char *lp2p_hash_kind_name(lp2p_hash_kind kind) {
  return valid_kind(kind) ? kinds[kind].name : NULL;
}


static void checksum(uint8_t out[4], const uint8_t *data, size_t len) {
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, data, len);
  crypto_hash_sha256(h, h, sizeof h);
  memcpy(out, h, 4);
}


int lp2p_hash_to_b58(char out[LP2P_B58_MAX + 1], lp2p_hash_kind kind,
                     const uint8_t *raw) {
  if (!valid_kind(kind))
    return LP2P_EINVAL;
  uint8_t buf[RAW_MAX];
  size_t plen = kinds[kind].prefix_len, size = kinds[kind].size;
  size_t n = plen + size + 4;
  memcpy(buf, kinds[kind].prefix, plen);
  memcpy(buf + plen, raw, size);
  checksum(buf + plen + size, buf, plen + size);

  /* Base 256 to base 58 by repeated division, least significant digit
   * first. 39 bytes need at most 54 digits (39 * log(256) / log(58)). */
  uint8_t digits[LP2P_B58_MAX];
  size_t nd = 0, zeros = 0;
  while (zeros < n && buf[zeros] == 0)
    zeros++;
  for (size_t i = zeros; i < n; i++) {
    unsigned carry = buf[i];
    for (size_t j = 0; j < nd; j++) {
      carry += (unsigned)digits[j] << 8;
      digits[j] = (uint8_t)(carry % 58);
      carry /= 58;
    }
    while (carry > 0 && nd < sizeof digits) {
      digits[nd++] = (uint8_t)(carry % 58);
      carry /= 58;
    }
  }
  size_t k = 0;
  while (k < zeros && k < LP2P_B58_MAX)
    out[k++] = '1';
  while (nd > 0 && k < LP2P_B58_MAX)
    out[k++] = alphabet[digits[--nd]];
  out[k] = '\0';
  return (int)k;
}


static int digit_value(unsigned char c) {
  const char *p = c != 0 ? memchr(alphabet, c, 58) : NULL;
  return p != NULL ? (int)(p - alphabet) : -1;
}


int lp2p_hash_of_b58(uint8_t *raw, lp2p_hash_kind kind, const char *s,
                     size_t len) {
  if (!valid_kind(kind))
    return LP2P_EINVAL;
  if (s == NULL || len == 0 || len > LP2P_B58_MAX)
    return LP2P_EPROTO;
  size_t plen = kinds[kind].prefix_len, size = kinds[kind].size;
  size_t n = plen + size + 4;
  /* Base 58 to base 256, big-endian, into exactly n bytes: a value that
   * overflows them is too long for this kind. */
  uint8_t buf[RAW_MAX] = {0};
  size_t zeros = 0;
  while (zeros < len && s[zeros] == '1')
    zeros++;
  for (size_t i = 0; i < len; i++) {
    int v = digit_value((unsigned char)s[i]);
    if (v < 0)
      return LP2P_EPROTO;
    unsigned carry = (unsigned)v;
    for (size_t j = n; j-- > 0;) {
      carry += (unsigned)buf[j] * 58;
      buf[j] = (uint8_t)carry;
      carry >>= 8;
    }
    if (carry != 0)
      return LP2P_EPROTO;
  }
  /* The leading '1's must be exactly the leading zero bytes, so that the
   * text is the one encoding of its bytes (no padding accepted). */
  size_t lead = 0;
  while (lead < n && buf[lead] == 0)
    lead++;
  if (lead != zeros)
    return LP2P_EPROTO;
  uint8_t sum[4];
  checksum(sum, buf, plen + size);
  if (memcmp(buf, kinds[kind].prefix, plen) != 0 ||
      memcmp(sum, buf + plen + size, 4) != 0)
    return LP2P_EPROTO;
  memcpy(raw, buf + plen, size);
  return 0;
}
