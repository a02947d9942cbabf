/*
 * conn_msg.c - the connection message that opens an Octez handshake, the
 * version choice and the nonce derivation (pure: no Lua, no libuv, no
 * I/O). The state machine that uses them is handshake.c.
 */
#include <string.h>

#include <sodium.h>

#include "lp2p.h"
#include "wire_internal.h"


/*
 * Data_encoding order: port u16, public key, stamp, nonce, chain name
 * (u32 length + bytes), ddb u16, p2p u16. Octez reads exactly the N bytes
 * of the prefix: running short is Not_enough_data (LP2P_ETRUNC), bytes
 * left over are Extra_bytes (LP2P_EEXTRA). A chain name longer than what
 * m->chain holds keeps its real length in chain_len.
 */
int lp2p_conn_msg_decode(lp2p_conn_msg *m, const uint8_t *body, size_t len) {
  memset(m, 0, sizeof *m);
  if (len < CONN_FIXED + 4)
    return LP2P_ETRUNC;
  const uint8_t *p = body;
  m->port = get_u16(p);
  p += 2;
  memcpy(m->pk, p, LP2P_PK_BYTES);
  p += LP2P_PK_BYTES;
  memcpy(m->stamp, p, LP2P_STAMP_BYTES);
  p += LP2P_STAMP_BYTES;
  memcpy(m->nonce, p, LP2P_NONCE_BYTES);
  p += LP2P_NONCE_BYTES;
  uint32_t clen = get_u32(p);
  p += 4;
  size_t left = len - CONN_FIXED - 4;
  if (clen > left)
    return LP2P_ETRUNC;
  m->chain_len = clen;
  size_t keep = clen < LP2P_CHAIN_NAME_MAX ? clen : LP2P_CHAIN_NAME_MAX;
  memcpy(m->chain, p, keep);
  m->chain[keep] = '\0';
  p += clen;
  left -= clen;
  if (left < 4)
    return LP2P_ETRUNC;
  m->ddb_version = get_u16(p);
  m->p2p_version = get_u16(p + 2);
  if (left > 4)
    return LP2P_EEXTRA;
  return 0;
}


long lp2p_conn_msg_encode(uint8_t *out, size_t cap, const lp2p_conn_msg *m) {
  if (m->chain_len > LP2P_CHAIN_NAME_MAX)
    return LP2P_EINVAL; /* we do not hold the whole name */
  size_t body = CONN_BODY_MIN + m->chain_len;
  size_t total = 2 + body;
  if (out == NULL || cap < total)
    return LP2P_EINVAL;
  uint8_t *p = out;
  put_u16(p, (uint16_t)body);
  p += 2;
  put_u16(p, m->port);
  p += 2;
  memcpy(p, m->pk, LP2P_PK_BYTES);
  p += LP2P_PK_BYTES;
  memcpy(p, m->stamp, LP2P_STAMP_BYTES);
  p += LP2P_STAMP_BYTES;
  memcpy(p, m->nonce, LP2P_NONCE_BYTES);
  p += LP2P_NONCE_BYTES;
  put_u32(p, (uint32_t)m->chain_len);
  p += 4;
  memcpy(p, m->chain, m->chain_len);
  p += m->chain_len;
  put_u16(p, m->ddb_version);
  put_u16(p + 2, m->p2p_version);
  return (long)total;
}


/*
 * Network_version.may_select_version: the local maximum when the remote's
 * version is at least that, else the remote's when we support it, else
 * the rejection given by the caller.
 */
int lp2p_version_select(uint16_t *chosen, lp2p_version_range local,
                        uint16_t remote, int fail) {
  if (local.max <= remote) {
    *chosen = local.max;
    return 0;
  }
  if (local.min <= remote) {
    *chosen = remote;
    return 0;
  }
  return fail;
}


void lp2p_nonces_derive(uint8_t ir[LP2P_NONCE_BYTES],
                        uint8_t ri[LP2P_NONCE_BYTES], const uint8_t *init_msg,
                        size_t init_len, const uint8_t *resp_msg,
                        size_t resp_len) {
  static const char *labels[2] = {"Init -> Resp", "Resp -> Init"};
  uint8_t *outs[2] = {ir, ri};
  for (int i = 0; i < 2; i++) {
    crypto_generichash_blake2b_state st;
    uint8_t h[32];
    crypto_generichash_blake2b_init(&st, NULL, 0, sizeof h);
    crypto_generichash_blake2b_update(&st, init_msg, init_len);
    crypto_generichash_blake2b_update(&st, resp_msg, resp_len);
    crypto_generichash_blake2b_update(&st, (const uint8_t *)labels[i],
                                      strlen(labels[i]));
    crypto_generichash_blake2b_final(&st, h, sizeof h);
    memcpy(outs[i], h, LP2P_NONCE_BYTES);
  }
}


