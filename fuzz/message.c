/*
 * message.c - fuzz message reassembly (lp2p_msg_reader_feed) and the P2P
 * message codec (lp2p_msg_decode / lp2p_msg_encode): the bytes a peer puts
 * inside authenticated chunks.
 *
 * Input: byte 0 = length cap selector, byte 1 = split seed, the rest = the
 * decrypted stream. Invariants:
 *   - split independence: feeding the stream whole or cut into pieces of
 *     seeded sizes delivers the same messages and ends with the same code;
 *   - the reader never holds more than the bytes received of the message
 *     in progress (pending() <= 4 + what was fed since the last boundary)
 *     and refuses a length over the cap before buffering anything;
 *   - every message that decodes re-encodes (size query first, then into a
 *     buffer of exactly that size) and decodes back to the same fields.
 */
#include "fuzz.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


/* A digest of every message delivered, in order. */
typedef struct trace {
  crypto_generichash_state h;
  size_t count;
} trace;


static void same_msg(const lp2p_msg *a, const lp2p_msg *b) {
  FUZZ_CHECK(a->tag == b->tag);
  FUZZ_CHECK(a->npoints == b->npoints);
  char ta[LP2P_POINT_TEXT_MAX + 1], tb[LP2P_POINT_TEXT_MAX + 1];
  for (size_t i = 0; i < a->npoints; i++) {
    int na = lp2p_point_format(ta, &a->points[i]);
    int nb = lp2p_point_format(tb, &b->points[i]);
    FUZZ_CHECK(na == nb && memcmp(ta, tb, (size_t)na) == 0);
  }
  if (a->tag == LP2P_MSG_SWAP_REQUEST || a->tag == LP2P_MSG_SWAP_ACK) {
    int na = lp2p_point_format(ta, &a->point);
    int nb = lp2p_point_format(tb, &b->point);
    FUZZ_CHECK(na == nb && memcmp(ta, tb, (size_t)na) == 0);
    FUZZ_CHECK(memcmp(a->peer_id, b->peer_id, LP2P_PEER_ID_BYTES) == 0);
  }
  FUZZ_CHECK(a->body_len == b->body_len);
  FUZZ_CHECK(a->body_len == 0 ||
             memcmp(a->body, b->body, a->body_len) == 0);
}


/* Decode, re-encode, decode again. */
static void codec_trip(const uint8_t *msg, size_t len) {
  uint8_t *copy = fuzz_dup(msg, len);
  lp2p_msg *m = malloc(sizeof *m), *back = malloc(sizeof *back);
  FUZZ_CHECK(m != NULL && back != NULL);
  int rc = lp2p_msg_decode(m, copy, len);
  FUZZ_CHECK(rc == 0 || rc == LP2P_EPROTO || rc == LP2P_EEXTRA ||
             rc == LP2P_ETRUNC || rc == LP2P_EPOINT);
  if (rc == 0) {
    long need = lp2p_msg_encode(NULL, 0, m);
    FUZZ_CHECK(need >= 6);
    uint8_t *env = malloc((size_t)need);
    FUZZ_CHECK(env != NULL);
    FUZZ_CHECK(lp2p_msg_encode(env, (size_t)need, m) == need);
    uint32_t body = (uint32_t)env[0] << 24 | (uint32_t)env[1] << 16 |
                    (uint32_t)env[2] << 8 | env[3];
    FUZZ_CHECK(body == (uint32_t)need - 4);
    FUZZ_CHECK(lp2p_msg_decode(back, env + 4, (size_t)need - 4) == 0);
    same_msg(m, back);
    /* Application and empty messages are carried byte for byte. */
    if (m->tag >= LP2P_MSG_APP_MIN || m->tag <= LP2P_MSG_BOOTSTRAP)
      FUZZ_CHECK((size_t)need - 4 == len &&
                 memcmp(env + 4, copy, len) == 0);
    free(env);
  }
  free(back);
  free(m);
  free(copy);
}


static int on_msg(void *ud, const uint8_t *msg, size_t len) {
  trace *t = ud;
  FUZZ_CHECK(len >= 2);
  uint8_t l[8];
  for (int i = 0; i < 8; i++)
    l[i] = (uint8_t)((uint64_t)len >> (8 * i));
  crypto_generichash_update(&t->h, l, sizeof l);
  crypto_generichash_update(&t->h, msg, len);
  t->count++;
  codec_trip(msg, len);
  return 0;
}


/* Feed the stream in pieces whose sizes come from a xorshift seeded by
 * `seed` (0 = all at once). Returns the final code; out gets the digest. */
static int run(const uint8_t *s, size_t len, size_t max_len, uint8_t seed,
               uint8_t out[32], size_t *count) {
  trace t;
  crypto_generichash_init(&t.h, NULL, 0, 32);
  t.count = 0;
  lp2p_msg_reader r;
  lp2p_msg_reader_init(&r, max_len);
  uint32_t x = seed | 0x100u;
  size_t pos = 0, since_boundary = 0;
  int rc = 0;
  while (pos < len && rc == 0) {
    size_t n = len - pos;
    if (seed != 0) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      size_t cut = 1 + x % (x & 1 ? 7 : 300);
      if (cut < n)
        n = cut;
    }
    uint8_t *piece = fuzz_dup(s + pos, n); /* exact: overreads show */
    size_t before = t.count;
    rc = lp2p_msg_reader_feed(&r, piece, n, on_msg, &t);
    free(piece);
    since_boundary = t.count == before ? since_boundary + n : n;
    if (rc == 0)
      FUZZ_CHECK(lp2p_msg_reader_pending(&r) <= since_boundary);
    pos += n;
  }
  if (rc != 0) {
    FUZZ_CHECK(rc == LP2P_EMSGSIZE || rc == LP2P_EPROTO);
    /* Dead: every later feed fails the same way. */
    uint8_t one = 0;
    FUZZ_CHECK(lp2p_msg_reader_feed(&r, &one, 1, on_msg, &t) == rc);
  }
  lp2p_msg_reader_free(&r);
  crypto_generichash_final(&t.h, out, 32);
  *count = t.count;
  return rc;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  static const size_t caps[4] = {0, 2, 64, 1024};
  size_t max_len = caps[data[0] & 3];
  uint8_t seed = data[1] ? data[1] : 1;
  data += 2;
  size -= 2;
  uint8_t whole[32], split[32];
  size_t nw, ns;
  int rw = run(data, size, max_len, 0, whole, &nw);
  int rs = run(data, size, max_len, seed, split, &ns);
  FUZZ_CHECK(rw == rs);
  FUZZ_CHECK(nw == ns && memcmp(whole, split, 32) == 0);
  return 0;
}
