/*
 * shell_encode.c - the encoding half of the shell codec (see shell.h; the
 * shapes and Octez's bounds are listed in shell.c). The lists and the
 * protocol bytes a caller gives are re-read with the decoder's own
 * readers (shell_internal.h), so what is sent is what Octez decodes.
 */
#include <string.h>

#include "shell_internal.h"


/* Sizes are computed by a first pass with out == NULL; the second pass
 * writes only when the whole body fits, so a short buffer gets nothing. */
typedef struct wr {
  uint8_t *out;
  size_t pos;
} wr;


static void put(wr *w, const void *p, size_t n) {
  if (w->out != NULL && n > 0)
    memcpy(w->out + w->pos, p, n);
  w->pos += n;
}


static void put_u8(wr *w, uint8_t v) {
  put(w, &v, 1);
}


static void put_be32(wr *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  put(w, b, 4);
}


static void put_be64(wr *w, uint64_t v) {
  put_be32(w, (uint32_t)(v >> 32));
  put_be32(w, (uint32_t)v);
}


/* A caller's list of [u32 n][n bytes] elements must be exactly that:
 * re-read it with the decoder's own walk. */
static int check_blobs(lp2p_shell_msg *m, const lp2p_shell_list *l, size_t min,
                       size_t max, const char *why_big,
                       const char *why_small) {
  if (l->p == NULL && l->len > 0)
    return fail(m, LP2P_EINVAL, "list without bytes");
  rd r = {l->p, 0, l->len, m};
  lp2p_shell_list back;
  int rc = lp2p__shell_blob_list(&r, &back, l->len, min, max,
                                 "malformed element list", why_big, why_small);
  if (rc == LP2P_EPROTO)
    return fail(m, LP2P_EINVAL, m->why);
  if (rc != 0)
    return rc;
  if (back.count != l->count)
    return fail(m, LP2P_EINVAL, "list count disagrees with its elements");
  return 0;
}


static int check_fixed(lp2p_shell_msg *m, const lp2p_shell_list *l,
                       size_t elem, size_t max_count, const char *why_big) {
  if ((l->p == NULL && l->len > 0) || l->len != l->count * elem)
    return fail(m, LP2P_EINVAL, "list length is not count items");
  if (l->count > max_count)
    return fail(m, LP2P_EMSGSIZE, why_big);
  return 0;
}


/* The encoded size of a header, after checking it. */
static int header_size(lp2p_shell_msg *m, const lp2p_shell_header *h,
                       size_t *size) {
  TRY(check_blobs(m, &h->fitness, 0, SIZE_MAX, "", ""));
  if (h->protocol_data == NULL && h->protocol_data_len > 0)
    return fail(m, LP2P_EINVAL, "protocol data without bytes");
  if (h->fitness.len > LP2P_SHELL_HEADER_MAX ||
      h->protocol_data_len > LP2P_SHELL_HEADER_MAX)
    return fail(m, LP2P_EMSGSIZE, "block header over 8 MiB");
  *size =
      4 + 1 + H + 8 + 1 + H + 4 + h->fitness.len + H + h->protocol_data_len;
  if (*size > LP2P_SHELL_HEADER_MAX)
    return fail(m, LP2P_EMSGSIZE, "block header over 8 MiB");
  return 0;
}


static int put_header(wr *w, lp2p_shell_msg *m, const lp2p_shell_header *h,
                      int sized) {
  size_t size;
  TRY(header_size(m, h, &size));
  if (sized)
    put_be32(w, (uint32_t)size);
  put_be32(w, (uint32_t)h->level);
  put_u8(w, h->proto_level);
  put(w, h->predecessor, H);
  put_be64(w, (uint64_t)h->timestamp);
  put_u8(w, h->validation_pass);
  put(w, h->operations_hash, H);
  put_be32(w, (uint32_t)h->fitness.len);
  put(w, h->fitness.p, h->fitness.len);
  put(w, h->context, H);
  put(w, h->protocol_data, h->protocol_data_len);
  return 0;
}


static int put_locator(wr *w, lp2p_shell_msg *m) {
  TRY(put_header(w, m, &m->header, 1));
  TRY(check_fixed(m, &m->list, H, LP2P_SHELL_LOCATOR_MAX,
                  "locator history over 1000 hashes"));
  put(w, m->list.p, m->list.len);
  return 0;
}


static int put_mempool(wr *w, lp2p_shell_msg *m) {
  TRY(check_fixed(m, &m->list, H, SIZE_MAX, ""));
  TRY(check_fixed(m, &m->pending, H, SIZE_MAX, ""));
  if (m->list.count + m->pending.count > (LP2P_SHELL_MEMPOOL_MAX - 12) / H)
    return fail(m, LP2P_EMSGSIZE,
                "mempool over 128008 bytes (3999 operation hashes)");
  put_be32(w, (uint32_t)m->list.len);
  put(w, m->list.p, m->list.len);
  put_be32(w, (uint32_t)m->pending.len + 4);
  put_be32(w, (uint32_t)m->pending.len);
  put(w, m->pending.p, m->pending.len);
  return 0;
}


static int put_path(wr *w, lp2p_shell_msg *m) {
  if (m->path_len > LP2P_SHELL_PATH_MAX)
    return fail(m, LP2P_EMSGSIZE,
                "operation path deeper than 3 steps (over 100 bytes)");
  for (size_t i = 0; i < m->path_len; i++) {
    put_u8(w, m->path[i].left ? 0xf0 : 0x0f);
    if (!m->path[i].left)
      put(w, m->path[i].hash, H);
  }
  put_u8(w, 0x00);
  for (size_t i = m->path_len; i-- > 0;)
    if (m->path[i].left)
      put(w, m->path[i].hash, H);
  return 0;
}


static int put_protocol(wr *w, lp2p_shell_msg *m) {
  if (m->data == NULL && m->data_len > 0)
    return fail(m, LP2P_EINVAL, "protocol without bytes");
  /* The bytes must be a protocol Octez decodes: read them back. */
  lp2p_shell_msg back;
  memset(&back, 0, sizeof back);
  rd r = {m->data, 0, m->data_len, &back};
  int rc = lp2p__shell_protocol(&r, &back);
  if (rc == 0 && r.pos != r.end)
    rc = fail(&back, LP2P_EPROTO, "trailing bytes after the protocol");
  if (rc != 0)
    return fail(m, rc, back.why);
  put(w, m->data, m->data_len);
  return 0;
}


static int encode_body(wr *w, lp2p_shell_msg *m) {
  switch (m->tag) {
  case LP2P_SHELL_GET_CURRENT_BRANCH:
  case LP2P_SHELL_DEACTIVATE:
  case LP2P_SHELL_GET_CURRENT_HEAD:
  case LP2P_SHELL_GET_CHECKPOINT:
    put(w, m->chain_id, LP2P_CHAIN_ID_BYTES);
    return 0;
  case LP2P_SHELL_CURRENT_BRANCH:
    put(w, m->chain_id, LP2P_CHAIN_ID_BYTES);
    return put_locator(w, m);
  case LP2P_SHELL_CURRENT_HEAD:
    put(w, m->chain_id, LP2P_CHAIN_ID_BYTES);
    TRY(put_header(w, m, &m->header, 1));
    return put_mempool(w, m);
  case LP2P_SHELL_GET_BLOCK_HEADERS:
  case LP2P_SHELL_GET_OPERATIONS:
  case LP2P_SHELL_GET_PROTOCOLS:
  case LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS: {
    size_t elem = m->tag == LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS ? H + 1 : H;
    TRY(check_fixed(m, &m->list, elem, LP2P_SHELL_REQUEST_MAX,
                    "request list over 10 items"));
    put_be32(w, (uint32_t)m->list.len);
    put(w, m->list.p, m->list.len);
    return 0;
  }
  case LP2P_SHELL_BLOCK_HEADER:
    return put_header(w, m, &m->header, 0);
  case LP2P_SHELL_OPERATION:
    if (m->data == NULL && m->data_len > 0)
      return fail(m, LP2P_EINVAL, "operation data without bytes");
    if (m->data_len > LP2P_SHELL_OPERATION_MAX - H)
      return fail(m, LP2P_EMSGSIZE, "operation over 128 KiB");
    put(w, m->branch, H);
    put(w, m->data, m->data_len);
    return 0;
  case LP2P_SHELL_PROTOCOL:
    return put_protocol(w, m);
  case LP2P_SHELL_OPERATIONS_FOR_BLOCKS:
    put(w, m->block, H);
    put_u8(w, (uint8_t)m->validation_pass);
    TRY(put_path(w, m));
    if (m->list.len > LP2P_SHELL_OPERATIONS_MAX)
      return fail(m, LP2P_EMSGSIZE, "operation list over 1 MiB");
    TRY(check_blobs(m, &m->list, H, LP2P_SHELL_OPERATION_MAX,
                    "operation over 128 KiB",
                    "operation shorter than its branch"));
    put(w, m->list.p, m->list.len);
    return 0;
  case LP2P_SHELL_CHECKPOINT:
    put(w, m->chain_id, LP2P_CHAIN_ID_BYTES);
    return put_header(w, m, &m->header, 0);
  case LP2P_SHELL_GET_PROTOCOL_BRANCH:
  case LP2P_SHELL_PROTOCOL_BRANCH:
    put(w, m->chain_id, LP2P_CHAIN_ID_BYTES);
    put_u8(w, m->proto_level);
    return m->tag == LP2P_SHELL_PROTOCOL_BRANCH ? put_locator(w, m) : 0;
  case LP2P_SHELL_GET_PREDECESSOR_HEADER:
  case LP2P_SHELL_PREDECESSOR_HEADER:
    put(w, m->block, H);
    put_be32(w, (uint32_t)m->offset);
    return m->tag == LP2P_SHELL_PREDECESSOR_HEADER
               ? put_header(w, m, &m->header, 0)
               : 0;
  default:
    return fail(m, LP2P_EINVAL, "unknown shell message tag");
  }
}


long lp2p_shell_encode(uint8_t *out, size_t cap, lp2p_shell_msg *m) {
  m->why = NULL;
  wr w = {NULL, 0};
  TRY(encode_body(&w, m));
  size_t total = w.pos;
  if (total > LP2P_MSG_MAX - 6)
    return fail(m, LP2P_EMSGSIZE, "message over 100 MiB");
  if (out != NULL && total <= cap) {
    wr w2 = {out, 0};
    TRY(encode_body(&w2, m));
  }
  return (long)total;
}
