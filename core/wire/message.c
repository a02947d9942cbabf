/*
 * message.c - the P2P message codec (pure).
 *
 * Octez P2p_message.encoding is
 *   check_size (100 MiB) (dynamic_size (union ~tag_size:`Uint16 cases))
 * so an envelope is [u32 length][u16 tag][body], at most 100 MiB in all
 * (the 4-byte prefix included). Bodies:
 *   0x01 Disconnect, 0x02 Bootstrap  empty (constant fields encode to
 *                                    nothing): trailing bytes are an error;
 *   0x03 Advertise     Variable.list ~max_length:100 of points: points run
 *                      to the end of the message, no count;
 *   0x04 Swap_request, 0x05 Swap_ack  point, then the 16-byte peer id;
 *   a point is a string: [u32 n][n bytes of text], n <= 47.
 * Octez rejects any tag its shell does not know; luap2p hands every tag
 * >= 0x10 to the application untouched and rejects the rest.
 */
#include <string.h>

#include "lp2p.h"
#include "wire_internal.h"


/* One [u32 n][text] point at *pos; advances *pos past it. The length is
 * checked against the 47-byte cap before the bytes are looked at. */
static int read_point(lp2p_point *p, const uint8_t *msg, size_t len,
                      size_t *pos) {
  if (len - *pos < 4)
    return LP2P_ETRUNC;
  uint32_t n = get_u32(msg + *pos);
  if (n > LP2P_POINT_TEXT_MAX)
    return LP2P_EPOINT;
  if (len - *pos - 4 < n)
    return LP2P_ETRUNC;
  int rc = lp2p__point_parse_why(p, (const char *)msg + *pos + 4, n, NULL);
  if (rc != 0)
    return rc;
  *pos += 4 + n;
  return 0;
}


int lp2p_msg_decode(lp2p_msg *m, const uint8_t *msg, size_t len) {
  m->npoints = 0;
  m->body = NULL;
  m->body_len = 0;
  memset(&m->point, 0, sizeof m->point);
  memset(m->peer_id, 0, sizeof m->peer_id);
  if (len < 2)
    return LP2P_ETRUNC;
  m->tag = (uint16_t)(msg[0] << 8 | msg[1]);
  size_t pos = 2;
  int rc;
  switch (m->tag) {
  case LP2P_MSG_DISCONNECT:
  case LP2P_MSG_BOOTSTRAP:
    break;
  case LP2P_MSG_ADVERTISE:
    while (pos < len) {
      if (m->npoints == LP2P_ADVERTISE_MAX)
        return LP2P_EPROTO;
      rc = read_point(&m->points[m->npoints], msg, len, &pos);
      if (rc != 0)
        return rc;
      m->npoints++;
    }
    break;
  case LP2P_MSG_SWAP_REQUEST:
  case LP2P_MSG_SWAP_ACK:
    if ((rc = read_point(&m->point, msg, len, &pos)) != 0)
      return rc;
    if (len - pos < LP2P_PEER_ID_BYTES)
      return LP2P_ETRUNC;
    memcpy(m->peer_id, msg + pos, LP2P_PEER_ID_BYTES);
    pos += LP2P_PEER_ID_BYTES;
    break;
  default:
    if (m->tag < LP2P_MSG_APP_MIN)
      return LP2P_EPROTO;
    m->body = msg + 2;
    m->body_len = len - 2;
    pos = len;
    break;
  }
  return pos == len ? 0 : LP2P_EEXTRA;
}


/* Append one point at out + pos when it fits in cap; always returns the
 * encoded size (or LP2P_EINVAL for a point with a bad family). */
static long put_point(uint8_t *out, size_t cap, size_t pos,
                      const lp2p_point *p) {
  char text[LP2P_POINT_TEXT_MAX + 1];
  int n = lp2p_point_format(text, p);
  if (n < 0)
    return LP2P_EINVAL;
  if (pos + 4 + (size_t)n <= cap) {
    put_u32(out + pos, (uint32_t)n);
    memcpy(out + pos + 4, text, (size_t)n);
  }
  return 4 + n;
}


long lp2p_msg_encode(uint8_t *out, size_t cap, const lp2p_msg *m) {
  /* The size is computed first so that nothing is written unless the
   * whole envelope fits: a short buffer gets no partial message. */
  size_t total = 6;
  long n;
  switch (m->tag) {
  case LP2P_MSG_DISCONNECT:
  case LP2P_MSG_BOOTSTRAP:
    break;
  case LP2P_MSG_ADVERTISE:
    if (m->npoints > LP2P_ADVERTISE_MAX)
      return LP2P_EINVAL;
    for (size_t i = 0; i < m->npoints; i++) {
      if ((n = put_point(NULL, 0, 0, &m->points[i])) < 0)
        return n;
      total += (size_t)n;
    }
    break;
  case LP2P_MSG_SWAP_REQUEST:
  case LP2P_MSG_SWAP_ACK:
    if ((n = put_point(NULL, 0, 0, &m->point)) < 0)
      return n;
    total += (size_t)n + LP2P_PEER_ID_BYTES;
    break;
  default:
    if (m->tag < LP2P_MSG_APP_MIN)
      return LP2P_EINVAL;
    if (m->body == NULL && m->body_len > 0)
      return LP2P_EINVAL;
    if (m->body_len > LP2P_MSG_MAX)
      return LP2P_EMSGSIZE;
    total += m->body_len;
    break;
  }
  if (total > LP2P_MSG_MAX)
    return LP2P_EMSGSIZE;
  if (total > cap)
    return (long)total;

  put_u32(out, (uint32_t)(total - 4));
  out[4] = (uint8_t)(m->tag >> 8);
  out[5] = (uint8_t)m->tag;
  size_t pos = 6;
  switch (m->tag) {
  case LP2P_MSG_DISCONNECT:
  case LP2P_MSG_BOOTSTRAP:
    break;
  case LP2P_MSG_ADVERTISE:
    for (size_t i = 0; i < m->npoints; i++)
      pos += (size_t)put_point(out, cap, pos, &m->points[i]);
    break;
  case LP2P_MSG_SWAP_REQUEST:
  case LP2P_MSG_SWAP_ACK:
    pos += (size_t)put_point(out, cap, pos, &m->point);
    memcpy(out + pos, m->peer_id, LP2P_PEER_ID_BYTES);
    break;
  default:
    if (m->body_len > 0)
      memcpy(out + pos, m->body, m->body_len);
    break;
  }
  return (long)total;
}
