/*
 * handshake.c - the Octez connection handshake as a pure state machine
 * (no I/O): metadata, Ack / Nack, on top of conn_msg.c (connection
 * messages, version choice, channel key and nonces).
 *
 * Per side, as Octez P2p_socket.authenticate and accept do it:
 *   1. send our connection message (queued by lp2p_hs_new);
 *   2. read the remote one ([u16 N][N bytes], N checked before anything is
 *      allocated); check its proof of work against OUR target; derive the
 *      channel key and the two nonces; note the version choice; queue our
 *      metadata chunk;
 *   3. read the remote metadata chunk; only then reject a connection to
 *      ourselves (newer Octez checks Myself after the first encrypted
 *      message, so a replayed connection message cannot make us mark a
 *      point as our own: a replayer cannot produce that chunk);
 *   4. the caller decides: our Ack, or our Nack (then we are done);
 *   5. after our Ack, read the remote Ack or Nack chunk. Bytes after it
 *      belong to the framed stream and are left to the caller.
 * Any failure kills the state machine; later calls answer LP2P_ESTATE.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lp2p.h"
#include "wire_internal.h"

#define META_BYTES 2
/* A point on the wire: u32 length + at most 47 characters (Octez
 * P2p_point.Id.encoding is check_size 51). */
#define POINT_WIRE_MAX (4 + LP2P_POINT_TEXT_MAX)
/* Largest Ack plaintext we write: Nack tag, motive, list length, points. */
#define NACK_MAX (1 + 2 + 4 + LP2P_NACK_POINTS_MAX * POINT_WIRE_MAX)

/* Our own connection message, at most: kept inline for the nonces. */
#define SENT_MAX (2 + CONN_BODY_MIN + LP2P_CHAIN_NAME_MAX)
/* Inline room for the item being read and for our pending output, so that
 * a handshake needs no heap (the state itself can be reused: lp2p_hs_init
 * and lp2p_hs_clear). ITEM_INLINE holds a remote connection message with
 * a chain name of up to 164 bytes (TEZOS_MAINNET is 13), the metadata and
 * Ack chunks, a Nack naming a few points; OUT_INLINE all we say when
 * nobody takes our output in between (connection message with the longest
 * chain name, metadata chunk, Ack chunk), or our Nack without points.
 * Larger items (a long remote chain name, a Nack with many points) go to
 * the heap, once their announced length is checked: the rare path. */
#define ITEM_INLINE 256
#define OUT_INLINE 448

_Static_assert(NACK_MAX <= LP2P_CHUNK_PAYLOAD_MAX, "a Nack fits a chunk");
_Static_assert(OUT_INLINE >= SENT_MAX + 2 * LP2P_CHUNK_OVERHEAD + META_BYTES + 1,
               "our connection message, metadata and Ack fit inline");
_Static_assert(ITEM_INLINE >= 2 + CONN_BODY_MIN + 13 &&
               ITEM_INLINE >= LP2P_TAG_BYTES + 1 + 2 + 4,
               "a usual connection message and a bare Nack fit inline");
_Static_assert(LP2P_KEY_BYTES == crypto_box_BEFORENMBYTES, "key size");
_Static_assert(LP2P_PK_BYTES == crypto_box_PUBLICKEYBYTES, "pk size");
_Static_assert(LP2P_SK_BYTES == crypto_box_SECRETKEYBYTES, "sk size");

enum hs_state {
  ST_CONN_LEN,  /* reading the u16 length of the remote connection msg */
  ST_CONN_BODY, /* reading its body */
  ST_KEY,       /* defer_key: waiting for lp2p_hs_key_done */
  ST_META_LEN,  /* reading the header of the remote metadata chunk */
  ST_META_BODY,
  ST_DECIDE,    /* waiting for lp2p_hs_ack / lp2p_hs_nack */
  ST_ACK_LEN,   /* our Ack sent: reading the remote Ack / Nack chunk */
  ST_ACK_BODY,
  ST_ACKED,     /* finished: established */
  ST_NACKED,    /* finished: the remote refused us */
  ST_NACK_SENT, /* finished: we refused the remote */
  ST_DEAD       /* finished: an error */
};

struct lp2p_hs {
  enum hs_state state;
  int incoming;
  /* Our own identity, copied so the caller's copy may go away; the secret
   * key is wiped in lp2p_hs_clear (lp2p_hs_free). */
  uint8_t pk[LP2P_PK_BYTES];
  uint8_t sk[LP2P_SK_BYTES];
  lp2p_pow_target target;
  char chain[LP2P_CHAIN_NAME_MAX + 1];
  size_t chain_len;
  lp2p_version_range p2p, ddb;
  uint8_t disable_mempool, private_node;
  size_t max_conn_msg_len;
  int defer_key;
  /* Our raw connection message, kept for the nonce derivation only. */
  size_t sent_len;
  uint8_t sent[SENT_MAX];
  /* The item being read: a 2-byte length, then exactly the announced size,
   * in item_inline or, past ITEM_INLINE, in a heap buffer allocated only
   * once that size is known and valid. */
  uint8_t hdr[2];
  size_t hdr_have;
  uint8_t *item; /* item_inline, or malloc'd; NULL between items */
  size_t item_len, item_have;
  uint8_t item_inline[ITEM_INLINE];
  /* Output not yet consumed by the caller: out_inline, or a heap buffer
   * once it outgrew it (out_cap bytes either way). */
  uint8_t *out;
  size_t out_len, out_cap;
  uint8_t out_inline[OUT_INLINE];
  lp2p_crypto crypto;
  int have_remote;
  lp2p_hs_remote remote;
};


/* ------------------------------------------------------ state machine */

/* Release what only the reading of items needs. */
static void drop_item(lp2p_hs *hs) {
  if (hs->item != hs->item_inline)
    free(hs->item);
  hs->item = NULL;
  hs->item_len = hs->item_have = 0;
  hs->hdr_have = 0;
}


/* The handshake is over (either way): free buffers, keep the channel only
 * when it is still to be handed out (ACKED). */
static void finish(lp2p_hs *hs, enum hs_state st) {
  hs->state = st;
  drop_item(hs);
  sodium_memzero(hs->sent, hs->sent_len);
  hs->sent_len = 0;
  if (st != ST_ACKED)
    lp2p_crypto_wipe(&hs->crypto);
}


static int fail(lp2p_hs *hs, int err) {
  finish(hs, ST_DEAD);
  return err;
}


/* The output buffer back to the inline one (a heap one is freed). */
static void out_reset(lp2p_hs *hs) {
  if (hs->out != hs->out_inline)
    free(hs->out);
  hs->out = hs->out_inline;
  hs->out_cap = sizeof hs->out_inline;
  hs->out_len = 0;
}


static int out_append(lp2p_hs *hs, const uint8_t *data, size_t len) {
  if (hs->out_cap - hs->out_len < len) {
    size_t cap = hs->out_cap;
    while (cap - hs->out_len < len)
      cap *= 2;
    uint8_t *p;
    if (hs->out == hs->out_inline) {
      p = malloc(cap);
      if (p != NULL)
        memcpy(p, hs->out, hs->out_len);
    } else {
      p = realloc(hs->out, cap);
    }
    if (p == NULL)
      return LP2P_ENOMEM;
    hs->out = p;
    hs->out_cap = cap;
  }
  memcpy(hs->out + hs->out_len, data, len);
  hs->out_len += len;
  return 0;
}


/* Seal one plaintext as a chunk with the send nonce and queue it. */
static int out_chunk(lp2p_hs *hs, const uint8_t *plain, size_t len) {
  uint8_t buf[LP2P_CHUNK_OVERHEAD + NACK_MAX];
  if (len > NACK_MAX)
    return LP2P_EINVAL;
  int rc = lp2p_chunk_seal(buf, plain, len, &hs->crypto);
  if (rc != 0)
    return rc;
  return out_append(hs, buf, len + LP2P_CHUNK_OVERHEAD);
}


size_t lp2p_hs_size(void) { return sizeof(lp2p_hs); }


int lp2p_hs_init(lp2p_hs *hs, const lp2p_hs_config *cfg) {
  /* Zeroed first, so that a refused config leaves a block that
   * lp2p_hs_clear accepts. */
  memset(hs, 0, sizeof *hs);
  if (cfg == NULL || cfg->identity == NULL ||
      cfg->chain_name_len > LP2P_CHAIN_NAME_MAX ||
      (cfg->chain_name == NULL && cfg->chain_name_len > 0) ||
      cfg->p2p.min > cfg->p2p.max || cfg->ddb.min > cfg->ddb.max ||
      cfg->max_conn_msg_len > CONN_LEN_MAX)
    return LP2P_EINVAL;
  hs->out = hs->out_inline;
  hs->out_cap = sizeof hs->out_inline;
  hs->state = ST_CONN_LEN;
  hs->incoming = cfg->incoming != 0;
  memcpy(hs->pk, cfg->identity->pk, LP2P_PK_BYTES);
  memcpy(hs->sk, cfg->identity->sk, LP2P_SK_BYTES);
  hs->target = cfg->target;
  if (cfg->chain_name_len > 0)
    memcpy(hs->chain, cfg->chain_name, cfg->chain_name_len);
  hs->chain_len = cfg->chain_name_len;
  hs->p2p = cfg->p2p;
  hs->ddb = cfg->ddb;
  hs->disable_mempool = cfg->disable_mempool != 0;
  hs->private_node = cfg->private_node != 0;
  hs->max_conn_msg_len =
      cfg->max_conn_msg_len ? cfg->max_conn_msg_len : CONN_LEN_MAX;
  hs->defer_key = cfg->defer_key != 0;

  /* Network_version.announced: the greatest supported versions. */
  lp2p_conn_msg m;
  memset(&m, 0, sizeof m);
  m.port = cfg->advertised_port;
  memcpy(m.pk, cfg->identity->pk, LP2P_PK_BYTES);
  memcpy(m.stamp, cfg->identity->stamp, LP2P_STAMP_BYTES);
  if (cfg->message_nonce != NULL)
    memcpy(m.nonce, cfg->message_nonce, LP2P_NONCE_BYTES);
  else
    randombytes_buf(m.nonce, LP2P_NONCE_BYTES);
  memcpy(m.chain, hs->chain, hs->chain_len);
  m.chain_len = hs->chain_len;
  m.ddb_version = cfg->ddb.max;
  m.p2p_version = cfg->p2p.max;
  hs->sent_len = 2 + CONN_BODY_MIN + m.chain_len;
  /* Fits inline (OUT_INLINE >= SENT_MAX): neither step can fail. */
  if (lp2p_conn_msg_encode(hs->sent, hs->sent_len, &m) != (long)hs->sent_len ||
      out_append(hs, hs->sent, hs->sent_len) != 0) {
    lp2p_hs_clear(hs);
    return LP2P_EINVAL;
  }
  return 0;
}


void lp2p_hs_clear(lp2p_hs *hs) {
  if (hs == NULL)
    return;
  if (hs->item != hs->item_inline)
    free(hs->item);
  if (hs->out != hs->out_inline)
    free(hs->out);
  sodium_memzero(hs, sizeof *hs); /* secret key and channel key */
}


lp2p_hs *lp2p_hs_new(const lp2p_hs_config *cfg, int *err) {
  int dummy;
  if (err == NULL)
    err = &dummy;
  lp2p_hs *hs = malloc(sizeof *hs);
  if (hs == NULL) {
    *err = LP2P_ENOMEM;
    return NULL;
  }
  *err = lp2p_hs_init(hs, cfg);
  if (*err != 0) {
    free(hs);
    return NULL;
  }
  return hs;
}


void lp2p_hs_free(lp2p_hs *hs) {
  if (hs == NULL)
    return;
  lp2p_hs_clear(hs);
  free(hs);
}


/*
 * The remote connection message is whole in hs->item (prefix included).
 * Decode it and note the version choice (recorded, not enforced: the
 * caller answers a mismatch with a Nack); then, in Octez order, the key
 * job (proof of work against our target, channel key) and the nonces and
 * our metadata (lp2p_hs_key_done), at once or, with defer_key, when the
 * caller has run the job.
 */
static int got_conn_msg(lp2p_hs *hs) {
  lp2p_hs_remote *r = &hs->remote;
  int rc = lp2p_conn_msg_decode(&r->msg, hs->item + 2, hs->item_len - 2);
  if (rc != 0)
    return fail(hs, rc);
  lp2p_peer_id(r->peer_id, r->msg.pk);
  hs->have_remote = 1;

  /* Network_version.select: chain name first; then both versions, the
   * distributed db one reported first when both fail (Octez joins the two
   * results ddb first and looks at the head of the trace). */
  int ddb_rc = lp2p_version_select(&r->ddb_version, hs->ddb,
                                   r->msg.ddb_version, LP2P_EDDBVER);
  int p2p_rc = lp2p_version_select(&r->p2p_version, hs->p2p,
                                   r->msg.p2p_version, LP2P_EP2PVER);
  if (r->msg.chain_len != hs->chain_len ||
      memcmp(r->msg.chain, hs->chain, hs->chain_len) != 0)
    r->version_status = LP2P_ECHAIN;
  else
    r->version_status = ddb_rc != 0 ? ddb_rc : p2p_rc;
  if (r->version_status != 0)
    r->ddb_version = r->p2p_version = 0;

  hs->state = ST_KEY;
  if (hs->defer_key)
    return LP2P_HS_KEY_NEEDED;
  lp2p_hs_keyjob job;
  rc = lp2p_hs_key_job(hs, &job);
  if (rc == 0)
    lp2p_hs_keyjob_run(&job);
  return lp2p_hs_key_done(hs, &job);
}


int lp2p_hs_key_job(const lp2p_hs *hs, lp2p_hs_keyjob *job) {
  if (hs->state != ST_KEY)
    return LP2P_ESTATE;
  memcpy(job->remote_pk, hs->remote.msg.pk, LP2P_PK_BYTES);
  memcpy(job->stamp, hs->remote.msg.stamp, LP2P_STAMP_BYTES);
  memcpy(job->sk, hs->sk, LP2P_SK_BYTES);
  job->target = hs->target;
  job->result = LP2P_ESTATE; /* until run */
  return 0;
}


void lp2p_hs_keyjob_run(lp2p_hs_keyjob *job) {
  if (!lp2p_pow_check(job->remote_pk, job->stamp, &job->target))
    job->result = LP2P_EPOW;
  /* crypto_box_beforenm refuses a low-order public key (the shared secret
   * would be all zeros, known to anyone): malformed input. */
  else if (crypto_box_beforenm(job->key, job->remote_pk, job->sk) != 0)
    job->result = LP2P_EPROTO;
  else
    job->result = 0;
  sodium_memzero(job->sk, sizeof job->sk);
}


int lp2p_hs_key_done(lp2p_hs *hs, lp2p_hs_keyjob *job) {
  int rc = job->result;
  if (hs->state != ST_KEY)
    rc = LP2P_ESTATE;
  else if (rc == 0)
    memcpy(hs->crypto.key, job->key, LP2P_KEY_BYTES);
  sodium_memzero(job, sizeof *job);
  if (rc != 0)
    return hs->state == ST_KEY ? fail(hs, rc) : rc;
  /* The side that opened the TCP connection wrote init_msg. The accepting
   * side sends with N_ir and receives with N_ri (Crypto_box.
   * generate_nonces); the connecting side the reverse. */
  uint8_t ir[LP2P_NONCE_BYTES], ri[LP2P_NONCE_BYTES];
  if (hs->incoming)
    lp2p_nonces_derive(ir, ri, hs->item, hs->item_len, hs->sent,
                       hs->sent_len);
  else
    lp2p_nonces_derive(ir, ri, hs->sent, hs->sent_len, hs->item,
                       hs->item_len);
  memcpy(hs->crypto.send_nonce, hs->incoming ? ir : ri, LP2P_NONCE_BYTES);
  memcpy(hs->crypto.recv_nonce, hs->incoming ? ri : ir, LP2P_NONCE_BYTES);
  sodium_memzero(hs->sent, hs->sent_len);
  hs->sent_len = 0;
  drop_item(hs);

  /* Connection metadata: two Data_encoding bools, written 0x00 / 0xff. */
  uint8_t meta[META_BYTES] = {hs->disable_mempool ? 0xff : 0x00,
                              hs->private_node ? 0xff : 0x00};
  if ((rc = out_chunk(hs, meta, sizeof meta)) != 0)
    return fail(hs, rc);
  hs->state = ST_META_LEN;
  return LP2P_HS_CONN_MSG;
}


/* Open the chunk in hs->item in place; *plen gets the plaintext length. */
static int open_item(lp2p_hs *hs, size_t *plen) {
  int rc = lp2p_chunk_open(hs->item, hs->item, hs->item_len, &hs->crypto);
  *plen = hs->item_len - LP2P_TAG_BYTES;
  return rc;
}


static int got_metadata(lp2p_hs *hs) {
  size_t n;
  int rc = open_item(hs, &n);
  if (rc != 0)
    return fail(hs, rc);
  if (n < META_BYTES)
    return fail(hs, LP2P_ETRUNC);
  if (n > META_BYTES)
    return fail(hs, LP2P_EEXTRA);
  /* Data_encoding reads a bool as "byte <> 0". */
  hs->remote.disable_mempool = hs->item[0] != 0;
  hs->remote.private_node = hs->item[1] != 0;
  drop_item(hs);
  /* Octez compares peer ids, hashes of the public keys: same outcome. */
  if (memcmp(hs->remote.msg.pk, hs->pk, LP2P_PK_BYTES) == 0)
    return fail(hs, LP2P_EMYSELF);
  hs->state = ST_DECIDE;
  return LP2P_HS_METADATA;
}


/*
 * Nack body after its tag: i16 motive, then Data_encoding.list ~max_length
 * 100 of points: a u32 byte length, then elements each u32 length + text.
 */
static int decode_nack(lp2p_hs_remote *r, const uint8_t *p, size_t n) {
  if (n < 2)
    return LP2P_ETRUNC;
  r->nack_motive = (int16_t)get_u16(p);
  p += 2;
  n -= 2;
  if (n < 4)
    return LP2P_ETRUNC;
  uint32_t list = get_u32(p);
  p += 4;
  n -= 4;
  if (list > n)
    return LP2P_ETRUNC;
  if (list < n)
    return LP2P_EEXTRA;
  size_t count = 0;
  while (n > 0) {
    if (n < 4)
      return LP2P_ETRUNC;
    uint32_t plen = get_u32(p);
    p += 4;
    n -= 4;
    if (plen > n)
      return LP2P_ETRUNC;
    if (plen > LP2P_POINT_TEXT_MAX)
      return LP2P_EPOINT;
    if (count == LP2P_NACK_POINTS_MAX)
      return LP2P_EPROTO; /* list longer than its max_length */
    if (lp2p_point_parse(&r->nack_points[count], (const char *)p, plen) != 0)
      return LP2P_EPOINT;
    count++;
    r->nack_npoints = count;
    p += plen;
    n -= plen;
  }
  return 0;
}


/* Ack.encoding: union with a u8 tag, 0x00 Ack, 0xff Nack_v_0, 0x01 Nack. */
static int got_ack(lp2p_hs *hs) {
  size_t n;
  int rc = open_item(hs, &n);
  if (rc != 0)
    return fail(hs, rc);
  if (n < 1)
    return fail(hs, LP2P_ETRUNC);
  lp2p_hs_remote *r = &hs->remote;
  switch (hs->item[0]) {
  case 0x00:
    if (n != 1)
      return fail(hs, LP2P_EEXTRA);
    finish(hs, ST_ACKED);
    return LP2P_HS_ACKED;
  case 0xff:
    if (n != 1)
      return fail(hs, LP2P_EEXTRA);
    r->nack_motive = -1;
    r->nack_npoints = 0;
    finish(hs, ST_NACKED);
    return LP2P_HS_NACKED;
  case 0x01:
    rc = decode_nack(r, hs->item + 1, n - 1);
    if (rc != 0) {
      r->nack_motive = 0;
      r->nack_npoints = 0;
      return fail(hs, rc);
    }
    finish(hs, ST_NACKED);
    return LP2P_HS_NACKED;
  default:
    return fail(hs, LP2P_EPROTO);
  }
}


/* Room for an item of hs->item_len bytes: inline, or the heap past it. */
static int item_alloc(lp2p_hs *hs) {
  if (hs->item_len <= sizeof hs->item_inline)
    hs->item = hs->item_inline;
  else if ((hs->item = malloc(hs->item_len)) == NULL)
    return LP2P_ENOMEM;
  return 0;
}


/* The length of the item now known: check it, find room, move on. */
static int got_length(lp2p_hs *hs) {
  size_t n = get_u16(hs->hdr);
  hs->hdr_have = 0;
  if (hs->state == ST_CONN_LEN) {
    if (n < CONN_BODY_MIN || n > hs->max_conn_msg_len)
      return fail(hs, LP2P_EBADLEN);
    /* Keep the prefix: the nonces hash the whole raw message. */
    hs->item_len = 2 + n;
    if (item_alloc(hs) != 0)
      return fail(hs, LP2P_ENOMEM);
    memcpy(hs->item, hs->hdr, 2);
    hs->item_have = 2;
    hs->state = ST_CONN_BODY;
    return 0;
  }
  if (n < LP2P_TAG_BYTES)
    return fail(hs, LP2P_EBADLEN); /* Invalid_incoming_ciphertext_size */
  hs->item_len = n;
  hs->item_have = 0;
  if (item_alloc(hs) != 0)
    return fail(hs, LP2P_ENOMEM);
  hs->state = hs->state == ST_META_LEN ? ST_META_BODY : ST_ACK_BODY;
  return 0;
}


int lp2p_hs_feed(lp2p_hs *hs, const uint8_t *data, size_t len,
                 size_t *consumed) {
  size_t dummy, used = 0;
  if (consumed == NULL)
    consumed = &dummy;
  *consumed = 0;
  if (hs->state >= ST_ACKED)
    return LP2P_ESTATE;
  if (hs->state == ST_DECIDE || hs->state == ST_KEY)
    return LP2P_HS_NEED_MORE;
  for (;;) {
    if (hs->state == ST_CONN_LEN || hs->state == ST_META_LEN ||
        hs->state == ST_ACK_LEN) {
      size_t take = 2 - hs->hdr_have;
      if (take > len - used)
        take = len - used;
      memcpy(hs->hdr + hs->hdr_have, data + used, take);
      hs->hdr_have += take;
      used += take;
      *consumed = used;
      if (hs->hdr_have < 2)
        return LP2P_HS_NEED_MORE;
      int rc = got_length(hs);
      if (rc < 0)
        return rc;
    }
    size_t take = hs->item_len - hs->item_have;
    if (take > len - used)
      take = len - used;
    memcpy(hs->item + hs->item_have, data + used, take);
    hs->item_have += take;
    used += take;
    *consumed = used;
    if (hs->item_have < hs->item_len)
      return LP2P_HS_NEED_MORE;
    switch (hs->state) {
    case ST_CONN_BODY:
      return got_conn_msg(hs);
    case ST_META_BODY:
      return got_metadata(hs);
    case ST_ACK_BODY:
      return got_ack(hs);
    default:
      return fail(hs, LP2P_ESTATE); /* unreachable */
    }
  }
}


int lp2p_hs_ack(lp2p_hs *hs) {
  if (hs->state != ST_DECIDE)
    return LP2P_ESTATE;
  static const uint8_t ack = 0x00;
  int rc = out_chunk(hs, &ack, 1);
  if (rc != 0)
    return fail(hs, rc);
  hs->state = ST_ACK_LEN;
  return 0;
}


/*
 * P2p_socket.nack: Nack_v_0 when the remote announced p2p version 0 (no
 * Nack_with_list feature), else Nack with motive and points. Nothing is
 * read afterwards: Octez closes the connection.
 */
int lp2p_hs_nack(lp2p_hs *hs, int motive, const lp2p_point *points,
                 size_t npoints) {
  if (hs->state != ST_DECIDE)
    return LP2P_ESTATE;
  if (motive < INT16_MIN || motive > INT16_MAX ||
      npoints > LP2P_NACK_POINTS_MAX || (npoints > 0 && points == NULL))
    return LP2P_EINVAL;
  uint8_t buf[NACK_MAX];
  size_t n;
  if (hs->remote.msg.p2p_version == 0) {
    buf[0] = 0xff;
    n = 1;
  } else {
    buf[0] = 0x01;
    put_u16(buf + 1, (uint16_t)(int16_t)motive);
    n = 1 + 2 + 4;
    for (size_t i = 0; i < npoints; i++) {
      char text[LP2P_POINT_TEXT_MAX + 1];
      int tl = lp2p_point_format(text, &points[i]);
      if (tl <= 0 || tl > LP2P_POINT_TEXT_MAX)
        return LP2P_EINVAL;
      put_u32(buf + n, (uint32_t)tl);
      memcpy(buf + n + 4, text, (size_t)tl);
      n += 4 + (size_t)tl;
    }
    put_u32(buf + 3, (uint32_t)(n - 7));
  }
  int rc = out_chunk(hs, buf, n);
  if (rc != 0)
    return fail(hs, rc);
  finish(hs, ST_NACK_SENT);
  return 0;
}


size_t lp2p_hs_output(const lp2p_hs *hs, const uint8_t **out) {
  *out = hs->out_len > 0 ? hs->out : NULL;
  return hs->out_len;
}


void lp2p_hs_output_consumed(lp2p_hs *hs, size_t n) {
  if (n >= hs->out_len) {
    out_reset(hs); /* a heap buffer (a Nack with points) goes now */
    return;
  }
  memmove(hs->out, hs->out + n, hs->out_len - n);
  hs->out_len -= n;
}


/* A heap output buffer is handed over as it is; inline output is copied
 * (the callers of this form are the Lua binding and the fuzzers; the net
 * layer reads the view instead). */
size_t lp2p_hs_take_output(lp2p_hs *hs, uint8_t **out) {
  size_t len = hs->out_len;
  *out = NULL;
  if (len == 0)
    return 0;
  if (hs->out != hs->out_inline) {
    *out = hs->out;
    hs->out = hs->out_inline;
    hs->out_cap = sizeof hs->out_inline;
  } else {
    /* ENOMEM: nothing is taken (0), the output stays queued. */
    if ((*out = malloc(len)) == NULL)
      return 0;
    memcpy(*out, hs->out, len);
  }
  hs->out_len = 0;
  return len;
}


const lp2p_hs_remote *lp2p_hs_remote_info(const lp2p_hs *hs) {
  return hs->have_remote ? &hs->remote : NULL;
}


int lp2p_hs_crypto(const lp2p_hs *hs, lp2p_crypto *out) {
  if (hs->state != ST_ACKED)
    return LP2P_ESTATE;
  *out = hs->crypto;
  return 0;
}
