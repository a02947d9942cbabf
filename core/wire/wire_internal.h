/*
 * wire_internal.h - helpers shared by the files of core/wire (big-endian
 * integers, connection message sizes). Not part of the public API.
 */
#ifndef LP2P_WIRE_INTERNAL_H
#define LP2P_WIRE_INTERNAL_H

#include <stdint.h>

#include "lp2p.h"

/* Fixed part of a connection message body: port, public key, stamp,
 * message nonce, chain name length, ddb version, p2p version. */
#define CONN_FIXED (2 + LP2P_PK_BYTES + LP2P_STAMP_BYTES + LP2P_NONCE_BYTES)
#define CONN_BODY_MIN (CONN_FIXED + 4 + 2 + 2) /* 90: empty chain name */
#define CONN_LEN_MAX 65535

static inline uint16_t get_u16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}


static inline uint32_t get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}


static inline void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}


static inline void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

#endif /* LP2P_WIRE_INTERNAL_H */
