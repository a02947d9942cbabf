/*
 * frame.c - encrypted chunks, cutting a stream into chunks, and message
 * reassembly from decrypted chunk bytes (pure: no I/O). The message codec
 * is message.c; points are point.c.
 *
 * Checked against Octez p2p_socket.ml (Crypto.write_chunk / read_chunk,
 * Writer with binary_chunks_size, Reader over Data_encoding streams).
 * A chunk is [u16 L][16-byte Poly1305 tag][L-16 bytes XSalsa20 ciphertext],
 * the output of crypto_box_easy_afternm behind a length. Each chunk uses the
 * current nonce of its direction, which then advances as a 192-bit
 * big-endian counter, also when opening fails (Octez does the same, and a
 * failed chunk kills the connection anyway).
 */
#include <stdlib.h>
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


/* 0 when chunk_size is outside 19..65535 (lp2p_frame_seal refuses it) or
 * when the result would not fit in a size_t. */
size_t lp2p_frame_sealed_size(size_t len, size_t chunk_size) {
  if (chunk_size < LP2P_CHUNK_SIZE_MIN || chunk_size > LP2P_CHUNK_SIZE_MAX)
    return 0;
  size_t piece = chunk_size - LP2P_CHUNK_OVERHEAD;
  size_t chunks = len / piece + (len % piece != 0);
  if (chunks > (SIZE_MAX - len) / LP2P_CHUNK_OVERHEAD)
    return 0;
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


/*
 * Message reassembly.
 *
 * Octez reads [u32 length][length bytes] envelopes with Data_encoding's
 * stream reader over the decrypted chunks: a message may span chunks and a
 * chunk may hold the end of one message and the start of the next. The
 * envelope is check_size (100 MiB) over dynamic_size, so the 100 MiB cap
 * covers the 4-byte prefix too: the default cap on the length field is
 * LP2P_MSG_MAX - 4 (a max_len given by the caller caps the field itself).
 *
 * States: hdr_have < 4: reading the prefix. hdr_have == 4 and want >= 2:
 * reading a body of `want` bytes, `have` of them in buf. hdr_have == 4 and
 * want == 0: a bad prefix was read; the error is recomputed from hdr, so
 * every later feed fails the same way without an extra field.
 *
 * buf grows geometrically with the bytes actually received and never
 * beyond `want`, so a peer announcing 100 MiB and sending 10 bytes costs
 * a few hundred bytes, not 100 MiB.
 */
#define READER_MIN_CAP 256
/* A buffer above this size is freed after its message is delivered, so a
 * single huge message does not pin memory for the life of a connection;
 * below it, it is reused (a 64 KiB message and its tag fit). */
#define READER_KEEP_CAP (128 * 1024)


static size_t reader_max(const lp2p_msg_reader *r) {
  return r->max_len != 0 ? r->max_len : LP2P_MSG_MAX - 4;
}


static uint32_t reader_len(const lp2p_msg_reader *r) {
  return (uint32_t)r->hdr[0] << 24 | (uint32_t)r->hdr[1] << 16 |
         (uint32_t)r->hdr[2] << 8 | r->hdr[3];
}


/* The error for the prefix in hdr (LP2P_EPROTO or LP2P_EMSGSIZE), or 0. */
static int reader_check(const lp2p_msg_reader *r) {
  uint32_t n = reader_len(r);
  if (n < 2)
    return LP2P_EPROTO; /* no room for the u16 tag */
  if (n > reader_max(r))
    return LP2P_EMSGSIZE;
  return 0;
}


/* Room for `need` bytes in buf (need <= want). 0 or LP2P_ENOMEM. */
static int reader_reserve(lp2p_msg_reader *r, size_t need) {
  if (need <= r->cap)
    return 0;
  size_t cap = r->cap < READER_MIN_CAP ? READER_MIN_CAP : r->cap;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  if (cap > r->want)
    cap = r->want;
  uint8_t *nb = realloc(r->buf, cap);
  if (nb == NULL)
    return LP2P_ENOMEM;
  r->buf = nb;
  r->cap = cap;
  return 0;
}


/* Back to "reading a prefix". The buffer is kept for reuse when small. */
static void reader_rewind(lp2p_msg_reader *r) {
  r->hdr_have = 0;
  r->have = 0;
  r->want = 0;
}


void lp2p_msg_reader_init(lp2p_msg_reader *r, size_t max_len) {
  memset(r, 0, sizeof *r);
  r->max_len = max_len;
}


/*
 * Whole messages are delivered straight from `data` when none of their
 * bytes had to be buffered. The state is rewound before the callback runs,
 * so a callback that longjmps (a Lua error) leaves the reader at a message
 * boundary. When the callback stops the feed, *used tells how much of
 * `data` was consumed (up to the end of the message just delivered), so a
 * caller that stops to yield can feed the rest later.
 */
int lp2p_msg_reader_feed_some(lp2p_msg_reader *r, const uint8_t *data,
                              size_t len, lp2p_msg_cb cb, void *ud,
                              size_t *used) {
  const uint8_t *start = data;
  *used = 0;
  if (r->hdr_have == 4 && r->want == 0)
    return reader_check(r); /* dead since an earlier bad prefix */
  while (len > 0) {
    if (r->hdr_have < 4) {
      size_t n = 4 - r->hdr_have;
      if (n > len)
        n = len;
      memcpy(r->hdr + r->hdr_have, data, n);
      r->hdr_have += n;
      data += n;
      len -= n;
      *used = (size_t)(data - start);
      if (r->hdr_have < 4)
        break;
      /* Checked before any allocation: a bad length costs nothing. */
      int rc = reader_check(r);
      if (rc != 0)
        return rc;
      r->want = reader_len(r);
      r->have = 0;
      continue;
    }
    const uint8_t *msg;
    size_t n = r->want - r->have;
    if (r->have == 0 && len >= n) {
      msg = data; /* whole message in this feed: no copy */
    } else {
      if (n > len)
        n = len;
      int rc = reader_reserve(r, r->have + n);
      if (rc != 0)
        return rc;
      memcpy(r->buf + r->have, data, n);
      r->have += n;
      if (r->have < r->want) {
        *used += n; /* all consumed; the message is still incomplete */
        break;
      }
      msg = r->buf;
    }
    data += n;
    len -= n;
    *used = (size_t)(data - start);
    size_t mlen = r->want;
    reader_rewind(r);
    int stop = cb(ud, msg, mlen);
    if (msg == r->buf && r->cap > READER_KEEP_CAP) {
      free(r->buf);
      r->buf = NULL;
      r->cap = 0;
    }
    if (stop != 0)
      return stop;
  }
  return 0;
}


int lp2p_msg_reader_feed(lp2p_msg_reader *r, const uint8_t *data, size_t len,
                         lp2p_msg_cb cb, void *ud) {
  size_t used;
  return lp2p_msg_reader_feed_some(r, data, len, cb, ud, &used);
}


/* The whole message is in buf: rewind, then hand it out (see feed). */
static int reader_deliver(lp2p_msg_reader *r, lp2p_msg_cb cb, void *ud) {
  const uint8_t *msg = r->buf;
  size_t mlen = r->want;
  reader_rewind(r);
  int stop = cb(ud, msg, mlen);
  if (r->cap > READER_KEEP_CAP) {
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
  }
  return stop;
}


uint8_t *lp2p_msg_reader_room(lp2p_msg_reader *r, size_t len, int *err) {
  *err = 0;
  if (r->hdr_have < 4 || r->want == 0 || len == 0 ||
      len > r->want - r->have)
    return NULL;
  int rc = reader_reserve(r, r->have + len);
  if (rc != 0) {
    *err = rc;
    return NULL;
  }
  return r->buf + r->have;
}


int lp2p_msg_reader_commit(lp2p_msg_reader *r, size_t len, lp2p_msg_cb cb,
                           void *ud) {
  r->have += len;
  if (r->have < r->want)
    return 0;
  return reader_deliver(r, cb, ud);
}


size_t lp2p_msg_reader_pending(const lp2p_msg_reader *r) {
  return r->hdr_have + r->have;
}


void lp2p_msg_reader_trim(lp2p_msg_reader *r) {
  if (r->hdr_have == 0 && r->have == 0) {
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
  }
}


void lp2p_msg_reader_free(lp2p_msg_reader *r) {
  free(r->buf);
  memset(r, 0, sizeof *r);
}
