/*
 * chunk.c - fuzz the encrypted-chunk decoder (lp2p_chunk_open) and the
 * sealing side it must agree with (lp2p_chunk_seal, lp2p_frame_seal).
 *
 * Key and nonces are fixed (a peer who knows them can send anything, so
 * the decoder must survive any body). Input: byte 0 = nonce variant and
 * chunk size selector, the rest = a chunk body (tag || ciphertext).
 * Invariants:
 *   - open never writes past blen - 16 bytes and advances the receive
 *     nonce by exactly one, success or not;
 *   - blen < 16 is LP2P_EBADLEN, a random body is LP2P_EAUTH with the
 *     output zeroed (no partial plaintext);
 *   - seal then open gives the plaintext back; one flipped bit fails;
 *   - frame_seal of the input cut at the chosen chunk size opens chunk by
 *     chunk to the same bytes, and frame_sealed_size is the exact size.
 */
#include "fuzz.h"


static lp2p_crypto base;


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  for (int i = 0; i < LP2P_KEY_BYTES; i++)
    base.key[i] = (uint8_t)(0x11 * i + 3);
  for (int i = 0; i < LP2P_NONCE_BYTES; i++)
    base.send_nonce[i] = base.recv_nonce[i] = (uint8_t)(0x40 + i);
  return 0;
}


static void expect_next(const uint8_t before[LP2P_NONCE_BYTES],
                        const uint8_t after[LP2P_NONCE_BYTES]) {
  uint8_t n[LP2P_NONCE_BYTES];
  memcpy(n, before, sizeof n);
  lp2p_nonce_increment(n);
  FUZZ_CHECK(memcmp(n, after, sizeof n) == 0);
}


/* The decoder on arbitrary bodies. */
static void open_arbitrary(const uint8_t *body, size_t blen, uint8_t var) {
  lp2p_crypto c = base;
  if (var & 1) /* a nonce about to wrap: the counter must carry */
    memset(c.recv_nonce + 8, 0xff, LP2P_NONCE_BYTES - 8);
  uint8_t before[LP2P_NONCE_BYTES];
  memcpy(before, c.recv_nonce, sizeof before);
  uint8_t *in = fuzz_dup(body, blen);
  size_t olen = blen >= LP2P_TAG_BYTES ? blen - LP2P_TAG_BYTES : 0;
  uint8_t *out = malloc(olen ? olen : 1);
  FUZZ_CHECK(out != NULL);
  int rc = lp2p_chunk_open(out, in, blen, &c);
  expect_next(before, c.recv_nonce);
  if (blen < LP2P_TAG_BYTES) {
    FUZZ_CHECK(rc == LP2P_EBADLEN);
  } else if (rc != 0) {
    FUZZ_CHECK(rc == LP2P_EAUTH);
    for (size_t i = 0; i < olen; i++)
      FUZZ_CHECK(out[i] == 0);
  }
  free(out);
  free(in);
}


/* Seal the input as one chunk, open it, then break one bit. */
static void round_trip(const uint8_t *plain, size_t len, uint8_t var) {
  if (len > LP2P_CHUNK_PAYLOAD_MAX)
    len = LP2P_CHUNK_PAYLOAD_MAX;
  lp2p_crypto tx = base, rx = base;
  uint8_t *sealed = malloc(len + LP2P_CHUNK_OVERHEAD);
  uint8_t *out = malloc(len ? len : 1);
  FUZZ_CHECK(sealed != NULL && out != NULL);
  FUZZ_CHECK(lp2p_chunk_seal(sealed, plain, len, &tx) == 0);
  size_t blen = (size_t)sealed[0] << 8 | sealed[1];
  FUZZ_CHECK(blen == len + LP2P_TAG_BYTES);
  FUZZ_CHECK(lp2p_chunk_open(out, sealed + 2, blen, &rx) == 0);
  FUZZ_CHECK(len == 0 || memcmp(out, plain, len) == 0);
  FUZZ_CHECK(memcmp(tx.send_nonce, rx.recv_nonce, LP2P_NONCE_BYTES) == 0);
  /* The same chunk again (a replay) meets the next nonce: refused. */
  FUZZ_CHECK(lp2p_chunk_open(out, sealed + 2, blen, &rx) == LP2P_EAUTH);
  lp2p_crypto rx2 = base;
  size_t bit = ((size_t)var * 131u) % (blen * 8);
  sealed[2 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
  FUZZ_CHECK(lp2p_chunk_open(out, sealed + 2, blen, &rx2) == LP2P_EAUTH);
  free(out);
  free(sealed);
}


/* Cut into chunks of a size chosen by var, open them one by one. */
static void frame_trip(const uint8_t *stream, size_t len, uint8_t var) {
  size_t chunk = LP2P_CHUNK_SIZE_MIN + (size_t)var * 37u;
  if (var == 0xff)
    chunk = LP2P_CHUNK_SIZE_MAX;
  FUZZ_CHECK(lp2p_frame_sealed_size(len, LP2P_CHUNK_SIZE_MIN - 1) == 0);
  size_t size = lp2p_frame_sealed_size(len, chunk);
  size_t piece = chunk - LP2P_CHUNK_OVERHEAD;
  size_t nchunks = (len + piece - 1) / piece;
  FUZZ_CHECK(size == len + nchunks * LP2P_CHUNK_OVERHEAD);
  uint8_t *sealed = malloc(size ? size : 1);
  uint8_t *back = malloc(len ? len : 1);
  FUZZ_CHECK(sealed != NULL && back != NULL);
  lp2p_crypto tx = base, rx = base;
  FUZZ_CHECK(lp2p_frame_seal(sealed, stream, len, chunk, &tx) == 0);
  size_t pos = 0, got = 0;
  while (pos < size) {
    FUZZ_CHECK(size - pos >= LP2P_CHUNK_OVERHEAD);
    size_t blen = (size_t)sealed[pos] << 8 | sealed[pos + 1];
    FUZZ_CHECK(blen <= chunk - 2 && pos + 2 + blen <= size);
    FUZZ_CHECK(lp2p_chunk_open(back + got, sealed + pos + 2, blen, &rx) == 0);
    got += blen - LP2P_TAG_BYTES;
    pos += 2 + blen;
  }
  FUZZ_CHECK(got == len && (len == 0 || memcmp(back, stream, len) == 0));
  free(back);
  free(sealed);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t var = data[0];
  data++;
  size--;
  if (size > 3 * LP2P_CHUNK_SIZE_MAX)
    return 0;
  open_arbitrary(data, size < 65535 ? size : 65535, var);
  round_trip(data, size, var);
  frame_trip(data, size, var);
  return 0;
}
