/*
 * frame.c - encrypted chunks and message framing (pure: no I/O).
 *
 * A chunk is [u16 L][16-byte Poly1305 tag][L-16 bytes XSalsa20 ciphertext],
 * the output of crypto_box_easy_afternm behind a length. Each chunk uses the
 * current nonce of its direction, which then advances as a 192-bit
 * big-endian counter, also when opening fails (Octez does the same, and a
 * failed chunk kills the connection anyway).
 */
#include <string.h>

#include <sodium.h>

#include "lp2p.h"

_Static_assert(LP2P_TAG_BYTES == crypto_box_MACBYTES, "tag size");
_Static_assert(LP2P_NONCE_BYTES == crypto_box_NONCEBYTES, "nonce size");
_Static_assert(LP2P_KEY_BYTES == crypto_box_BEFORENMBYTES, "key size");


void lp2p_crypto_wipe(lp2p_crypto *c) {
  sodium_memzero(c, sizeof *c);
}


void lp2p_nonce_increment(uint8_t n[LP2P_NONCE_BYTES]) {
  for (int i = LP2P_NONCE_BYTES - 1; i >= 0; i--)
    if (++n[i] != 0)
      break;
}


int lp2p_chunk_seal(uint8_t *out, const uint8_t *plain, size_t len,
                    lp2p_crypto *c) {
  if (len > LP2P_CHUNK_PAYLOAD_MAX)
    return LP2P_EMSGSIZE;
  size_t body = LP2P_TAG_BYTES + len;
  out[0] = (uint8_t)(body >> 8);
  out[1] = (uint8_t)body;
  if (crypto_box_easy_afternm(out + LP2P_CHUNK_HEADER, plain, len,
                              c->send_nonce, c->key) != 0)
    return LP2P_EINVAL;
  lp2p_nonce_increment(c->send_nonce);
  return 0;
}


int lp2p_chunk_open(uint8_t *out, const uint8_t *body, size_t blen,
                    lp2p_crypto *c) {
  if (blen < LP2P_TAG_BYTES) {
    lp2p_nonce_increment(c->recv_nonce);
    return LP2P_EBADLEN;
  }
  int rc = crypto_box_open_easy_afternm(out, body, blen, c->recv_nonce,
                                        c->key);
  lp2p_nonce_increment(c->recv_nonce);
  if (rc != 0) {
    /* Never hand out partial plaintext. */
    sodium_memzero(out, blen - LP2P_TAG_BYTES);
    return LP2P_EAUTH;
  }
  return 0;
}


size_t lp2p_frame_sealed_size(size_t len, size_t chunk_size) {
  size_t piece = chunk_size - LP2P_CHUNK_OVERHEAD;
  size_t chunks = len == 0 ? 0 : (len + piece - 1) / piece;
  return len + chunks * LP2P_CHUNK_OVERHEAD;
}


int lp2p_frame_seal(uint8_t *out, const uint8_t *stream, size_t len,
                    size_t chunk_size, lp2p_crypto *c) {
  if (chunk_size < LP2P_CHUNK_SIZE_MIN || chunk_size > LP2P_CHUNK_SIZE_MAX)
    return LP2P_EINVAL;
  size_t piece = chunk_size - LP2P_CHUNK_OVERHEAD;
  while (len > 0) {
    size_t n = len < piece ? len : piece;
    int rc = lp2p_chunk_seal(out, stream, n, c);
    if (rc != 0)
      return rc;
    out += n + LP2P_CHUNK_OVERHEAD;
    stream += n;
    len -= n;
  }
  return 0;
}
