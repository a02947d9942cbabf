/*
 * handshake.c - fuzz the handshake state machine (lp2p_hs_*), both roles,
 * with arbitrary peer bytes after a valid or a broken connection message,
 * and then the framed stream of an established connection.
 *
 * The harness plays the peer. It knows a fixed peer identity, so when it
 * sends a real connection message it derives the same channel as the node
 * and can seal fuzz-chosen plaintexts into valid chunks: the fuzzer then
 * reaches metadata, Ack / Nack decoding and the post-handshake stream
 * instead of stopping at the first MAC.
 *
 * Input: [flags u8][granularity u8] then records [op u8][len u16][bytes]:
 *   flags bit 0     the node accepted the TCP connection (incoming)
 *   flags bit 1     the peer first sends a harness-built connection message
 *   flags bits 2-4  its variant: 0 valid, 1 other chain, 2 p2p version 0,
 *                   3 newer versions, 4 deprecated ddb version, 5 the
 *                   node's own key, 6 low-order key, 7 not enough pow
 *   flags bit 5     node metadata flags set
 *   flags bit 6     node caps the connection message at 200 bytes
 *   granularity     bytes per lp2p_hs_feed call (0 = as many as given)
 *   op & 3 == 0     raw bytes to the node
 *   op & 3 == 1     a plaintext the peer seals into one chunk (raw bytes
 *                   when no channel exists)
 *   op & 3 == 2     the node decides: Ack (bit 2) or Nack with a motive and
 *                   points built from the bytes (bit 3: an invalid motive)
 *   op & 3 == 3     the peer takes and checks the node's output
 * Invariants: feed consumes at most what it is given and fails only with
 * the documented codes, then stays dead (ESTATE); every chunk the node
 * writes opens with the peer's channel, the first being the metadata it
 * was configured with; on Ack the node's channel is the peer's mirror.
 */
#include "fuzz.h"

#define POST_MAX (256 * 1024) /* cap of the post-handshake test buffer */

static lp2p_identity node_id, peer_id;


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  fuzz_identity(&node_id, 1);
  fuzz_identity(&peer_id, 2);
  return 0;
}


typedef struct run {
  lp2p_hs *hs;
  int incoming, meta_flags;
  int dead, acked, nacked, nack_sent, decided;
  int have_chan;       /* the peer derived the channel */
  lp2p_crypto peer;    /* the peer's side: sends with send_nonce */
  size_t chunks_read;  /* node chunks the peer opened */
  /* after Ack: the node's channel and its framed input */
  lp2p_crypto node;
  uint8_t *post;
  size_t post_len;
  int post_dead;
  lp2p_msg_reader reader;
} run;


static int allowed_error(int rc) {
  return rc == LP2P_EBADLEN || rc == LP2P_ETRUNC || rc == LP2P_EEXTRA ||
         rc == LP2P_EPOW || rc == LP2P_EPROTO || rc == LP2P_EAUTH ||
         rc == LP2P_EMYSELF || rc == LP2P_EPOINT;
}


/* The peer reads what the node wrote: whole chunks, each must open. */
static void check_output(run *r) {
  uint8_t *out;
  size_t len = lp2p_hs_take_output(r->hs, &out);
  FUZZ_CHECK((len == 0) == (out == NULL));
  size_t pos = 0;
  while (pos < len) {
    FUZZ_CHECK(len - pos >= 2);
    size_t blen = (size_t)out[pos] << 8 | out[pos + 1];
    FUZZ_CHECK(blen >= LP2P_TAG_BYTES && len - pos - 2 >= blen);
    if (r->have_chan) {
      uint8_t *plain = malloc(blen - LP2P_TAG_BYTES + 1);
      FUZZ_CHECK(plain != NULL);
      FUZZ_CHECK(lp2p_chunk_open(plain, out + pos + 2, blen, &r->peer) == 0);
      size_t n = blen - LP2P_TAG_BYTES;
      if (r->chunks_read == 0) {
        uint8_t f = r->meta_flags ? 0xff : 0x00;
        FUZZ_CHECK(n == 2 && plain[0] == f && plain[1] == f);
      } else {
        /* Ack, Nack_v_0 or Nack. */
        FUZZ_CHECK(n >= 1 && (plain[0] == 0x00 || plain[0] == 0xff ||
                              (plain[0] == 0x01 && n >= 7)));
      }
      free(plain);
    }
    r->chunks_read++;
    pos += 2 + blen;
  }
  free(out);
}


static int on_msg(void *ud, const uint8_t *msg, size_t len) {
  (void)ud;
  lp2p_msg m;
  int rc = lp2p_msg_decode(&m, msg, len);
  FUZZ_CHECK(rc <= 0);
  return 0;
}


/* Established: chunks as conn_read.c reads them, then reassembly and decode. */
static void post_input(run *r, const uint8_t *data, size_t len) {
  if (r->post_dead)
    return;
  if (len > POST_MAX - r->post_len)
    len = POST_MAX - r->post_len;
  memcpy(r->post + r->post_len, data, len);
  r->post_len += len;
  size_t pos = 0;
  while (r->post_len - pos >= 2) {
    size_t blen = (size_t)r->post[pos] << 8 | r->post[pos + 1];
    if (r->post_len - pos - 2 < blen)
      break;
    uint8_t *plain = malloc(blen + 1);
    FUZZ_CHECK(plain != NULL);
    int rc = lp2p_chunk_open(plain, r->post + pos + 2, blen, &r->node);
    if (rc == 0)
      rc = lp2p_msg_reader_feed(&r->reader, plain,
                                blen - LP2P_TAG_BYTES, on_msg, r);
    free(plain);
    pos += 2 + blen;
    if (rc != 0) {
      FUZZ_CHECK(rc == LP2P_EBADLEN || rc == LP2P_EAUTH ||
                 rc == LP2P_EMSGSIZE || rc == LP2P_EPROTO);
      r->post_dead = 1;
      return;
    }
  }
  memmove(r->post, r->post + pos, r->post_len - pos);
  r->post_len -= pos;
}


static void established(run *r) {
  r->acked = 1;
  FUZZ_CHECK(lp2p_hs_crypto(r->hs, &r->node) == 0);
  check_output(r); /* the peer reads our Ack, so its counters are current */
  if (r->have_chan) {
    FUZZ_CHECK(memcmp(r->node.key, r->peer.key, LP2P_KEY_BYTES) == 0);
    FUZZ_CHECK(memcmp(r->node.recv_nonce, r->peer.send_nonce,
                      LP2P_NONCE_BYTES) == 0);
    FUZZ_CHECK(memcmp(r->node.send_nonce, r->peer.recv_nonce,
                      LP2P_NONCE_BYTES) == 0);
  }
  lp2p_msg_reader_init(&r->reader, 4096);
  r->post = malloc(POST_MAX);
  FUZZ_CHECK(r->post != NULL);
}


/* Bytes from the peer, `gran` at a time. */
static void feed(run *r, const uint8_t *data, size_t len, size_t gran) {
  uint8_t *copy = fuzz_dup(data, len);
  size_t pos = 0;
  if (r->nack_sent && !r->dead && len > 0) {
    size_t used = 1;
    FUZZ_CHECK(lp2p_hs_feed(r->hs, copy, len, &used) == LP2P_ESTATE);
    FUZZ_CHECK(used == 0);
    pos = len;
  }
  while (pos < len && !r->dead && !r->nacked) {
    if (r->acked) {
      post_input(r, copy + pos, len - pos);
      break;
    }
    size_t n = len - pos;
    if (gran != 0 && gran < n)
      n = gran;
    size_t used = 12345;
    int ev = lp2p_hs_feed(r->hs, copy + pos, n, &used);
    FUZZ_CHECK(used <= n);
    pos += used;
    if (ev < 0) {
      FUZZ_CHECK(allowed_error(ev));
      r->dead = 1;
      size_t u2;
      FUZZ_CHECK(lp2p_hs_feed(r->hs, copy, len, &u2) == LP2P_ESTATE);
      FUZZ_CHECK(u2 == 0);
      break;
    }
    FUZZ_CHECK(ev <= LP2P_HS_NACKED);
    if (ev == LP2P_HS_CONN_MSG)
      FUZZ_CHECK(lp2p_hs_remote_info(r->hs) != NULL);
    if (ev == LP2P_HS_ACKED)
      established(r);
    else if (ev == LP2P_HS_NACKED)
      r->nacked = 1;
    else if (ev == LP2P_HS_NEED_MORE && used == 0)
      break; /* waiting for the decision */
  }
  free(copy);
}


static void decide(run *r, uint8_t op, const uint8_t *data, size_t len) {
  int rc;
  if (op & 4) {
    rc = lp2p_hs_ack(r->hs);
  } else {
    lp2p_point pts[LP2P_NACK_POINTS_MAX];
    size_t np = len / 7;
    if (np > LP2P_NACK_POINTS_MAX)
      np = LP2P_NACK_POINTS_MAX;
    for (size_t i = 0; i < np; i++) {
      const uint8_t *b = data + 7 * i;
      memset(&pts[i], 0, sizeof pts[i]);
      pts[i].family = (b[0] & 1) ? 6 : 4;
      memcpy(pts[i].addr, b + 1, 4);
      memcpy(pts[i].addr + 12, b + 1, 4);
      pts[i].port = (uint16_t)(b[5] << 8 | b[6]);
    }
    int motive = len >= 2 ? (int16_t)(data[0] << 8 | data[1]) : 1;
    if (op & 8)
      motive = 40000;
    rc = lp2p_hs_nack(r->hs, motive, pts, np);
    if (op & 8)
      FUZZ_CHECK(rc == LP2P_EINVAL || rc == LP2P_ESTATE);
    if (rc == 0)
      r->nack_sent = 1; /* the handshake is over: nothing more is read */
  }
  FUZZ_CHECK(rc == 0 || rc == LP2P_ESTATE || rc == LP2P_EINVAL);
  if (rc == 0)
    r->decided = 1;
}


/* The peer's connection message (whole, with prefix) in *msg. */
static size_t peer_conn_msg(uint8_t *msg, size_t cap, int variant) {
  lp2p_conn_msg m;
  memset(&m, 0, sizeof m);
  m.port = 9732;
  memcpy(m.pk, peer_id.pk, LP2P_PK_BYTES);
  memset(m.nonce, 0x77, LP2P_NONCE_BYTES);
  memcpy(m.chain, "TEZOS_MAINNET", 13);
  m.chain_len = 13;
  m.ddb_version = 2;
  m.p2p_version = 1;
  switch (variant) {
  case 1:
    memcpy(m.chain, "TEZOS_OTHERNET", 14);
    m.chain_len = 14;
    break;
  case 2:
    m.p2p_version = 0;
    break;
  case 3:
    m.p2p_version = 7;
    m.ddb_version = 9;
    break;
  case 4:
    m.ddb_version = 0;
    break;
  case 5:
    memcpy(m.pk, node_id.pk, LP2P_PK_BYTES);
    break;
  case 6:
    memset(m.pk, 0, LP2P_PK_BYTES);
    break;
  default:
    break;
  }
  long n = lp2p_conn_msg_encode(msg, cap, &m);
  FUZZ_CHECK(n > 0);
  return (size_t)n;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  uint8_t flags = fuzz_u8(&in);
  size_t gran = fuzz_u8(&in);
  int variant = (flags >> 2) & 7;
  run r;
  memset(&r, 0, sizeof r);
  r.incoming = flags & 1;
  r.meta_flags = (flags >> 5) & 1;

  static const uint8_t nonce[LP2P_NONCE_BYTES] = {1, 2, 3};
  lp2p_hs_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.identity = &node_id;
  FUZZ_CHECK(lp2p_pow_target_make(&cfg.target,
                                  variant == 7 ? 200.0 : 0.0) == 0);
  cfg.advertised_port = 19732;
  cfg.chain_name = "TEZOS_MAINNET";
  cfg.chain_name_len = 13;
  cfg.p2p.min = 0;
  cfg.p2p.max = 1;
  cfg.ddb.min = 1;
  cfg.ddb.max = 2;
  cfg.disable_mempool = cfg.private_node = (uint8_t)r.meta_flags;
  cfg.incoming = r.incoming;
  cfg.max_conn_msg_len = (flags & 0x40) ? 200 : 0;
  cfg.message_nonce = nonce;
  int err = 0;
  r.hs = lp2p_hs_new(&cfg, &err);
  FUZZ_CHECK(r.hs != NULL && err == 0);
  FUZZ_CHECK(lp2p_hs_remote_info(r.hs) == NULL);

  /* The node's connection message comes out first. */
  uint8_t *mine;
  size_t mine_len = lp2p_hs_take_output(r.hs, &mine);
  FUZZ_CHECK(mine_len >= 92);
  FUZZ_CHECK((size_t)(mine[0] << 8 | mine[1]) == mine_len - 2);

  if (flags & 2) {
    uint8_t theirs[512];
    size_t theirs_len = peer_conn_msg(theirs, sizeof theirs, variant);
    if (crypto_box_beforenm(r.peer.key, mine + 4, variant == 5
                            ? node_id.sk : peer_id.sk) == 0) {
      uint8_t ir[LP2P_NONCE_BYTES], ri[LP2P_NONCE_BYTES];
      if (r.incoming) /* the peer opened the TCP connection */
        lp2p_nonces_derive(ir, ri, theirs, theirs_len, mine, mine_len);
      else
        lp2p_nonces_derive(ir, ri, mine, mine_len, theirs, theirs_len);
      /* The accepting side sends with N_ir. */
      memcpy(r.peer.send_nonce, r.incoming ? ri : ir, LP2P_NONCE_BYTES);
      memcpy(r.peer.recv_nonce, r.incoming ? ir : ri, LP2P_NONCE_BYTES);
      r.have_chan = variant != 6 && variant != 7;
    }
    feed(&r, theirs, theirs_len, gran);
  }
  free(mine);

  while (in.len > 0) {
    uint8_t op = fuzz_u8(&in);
    size_t len;
    const uint8_t *b = fuzz_bytes(&in, fuzz_u16(&in), &len);
    switch (op & 3) {
    case 0:
      feed(&r, b, len, gran);
      break;
    case 1:
      if (r.have_chan && len <= LP2P_CHUNK_PAYLOAD_MAX) {
        uint8_t *chunk = malloc(len + LP2P_CHUNK_OVERHEAD);
        FUZZ_CHECK(chunk != NULL);
        FUZZ_CHECK(lp2p_chunk_seal(chunk, b, len, &r.peer) == 0);
        feed(&r, chunk, len + LP2P_CHUNK_OVERHEAD, gran);
        free(chunk);
      } else {
        feed(&r, b, len, gran);
      }
      break;
    case 2:
      decide(&r, op, b, len);
      break;
    default:
      if (!r.acked)
        check_output(&r);
      break;
    }
  }
  if (!r.acked)
    check_output(&r);
  const lp2p_hs_remote *rem = lp2p_hs_remote_info(r.hs);
  if (rem != NULL) {
    FUZZ_CHECK(rem->nack_npoints <= LP2P_NACK_POINTS_MAX);
    FUZZ_CHECK(rem->version_status == 0 || rem->version_status == LP2P_ECHAIN
               || rem->version_status == LP2P_EP2PVER ||
               rem->version_status == LP2P_EDDBVER);
  }
  lp2p_hs_free(r.hs);
  free(r.post);
  lp2p_msg_reader_free(&r.reader);
  return 0;
}
