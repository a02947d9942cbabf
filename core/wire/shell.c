/*
 * shell.c - the Tezos shell message codec (pure). See shell.h.
 *
 * Facts from Octez (tezos/tezos-mirror, master of 2026-08-21, d26a8bef):
 * src/lib_shell/distributed_db_message.ml, src/lib_base/block_header.ml,
 * block_locator.ml, operation.ml, mempool.ml, protocol.ml, fitness.ml,
 * src/lib_crypto/blake2B.ml (Merkle path). In data_encoding's binary
 * form:
 *   int32/int64 big-endian signed, uint8, int8; a hash is its raw bytes;
 *   `list e` and `bytes`/`string` are [u32 size][content] (dynamic_size);
 *   `Variable.list`/`Variable.bytes` run to the end of their enclosing
 *   range, no prefix; `opt` is a 0x00 / 0xff byte then the value;
 *   `check_size n e` fails when e uses more than n bytes.
 * Shapes:
 *   header    = level i32, proto u8, predecessor, timestamp i64,
 *               validation_pass u8, operations_hash, fitness
 *               (list of bytes), context, protocol_data (Variable.bytes);
 *               check_size 8 MiB
 *   locator   = dynamic_size header, history (Variable.list <= 1000)
 *   mempool   = known_valid (list of hashes), pending (dynamic_size of a
 *               list of hashes); check_size (8 + 4000 * 32)
 *   operation = branch, data (Variable.bytes); check_size 128 KiB
 *   path      = 0xf0 path hash (Left) | 0x0f hash path (Right) | 0x00;
 *               check_size (3 * 33 + 1) for 8 validation passes
 *   protocol  = expected_env u16, components (list of name string, opt
 *               interface string, implementation string); check_size 2 MiB
 * Messages (body = the case's encoding):
 *   0x10 0x12 0x13 0x70  chain_id (4 bytes)
 *   0x11  chain_id, locator          0x14  chain_id, dynamic_size header,
 *                                          mempool
 *   0x20 0x30 0x40  list ~max_length:10 of block / operation / protocol
 *         hashes
 *   0x21  header      0x31  operation      0x41  protocol
 *   0x60  list ~max_length:10 of (block hash, int8 validation pass)
 *   0x61  block hash, int8 validation pass, path, Variable.list of
 *         dynamic_size operation, the list check_size 1 MiB
 *   0x71  chain_id, header            0x80  chain_id, proto_level u8
 *   0x81  chain_id, proto_level u8, locator
 *   0x90  block hash, offset i32      0x91  block hash, offset i32, header
 * Octez no longer has 0x50/0x51 (Get_operation_hashes_for_blocks,
 * Operation_hashes_for_blocks): they are unknown tags here too.
 *
 * Order of checks: a declared length is checked against its bound
 * (EMSGSIZE) before it is checked against the bytes present (EPROTO), so
 * a message over a bound is named as such even when cut short.
 */
#include <string.h>

#include "shell.h"

#define H LP2P_HASH_BYTES

static const struct {
  uint16_t tag;
  const char *name;
} names[] = {
    {LP2P_SHELL_GET_CURRENT_BRANCH, "get_current_branch"},
    {LP2P_SHELL_CURRENT_BRANCH, "current_branch"},
    {LP2P_SHELL_DEACTIVATE, "deactivate"},
    {LP2P_SHELL_GET_CURRENT_HEAD, "get_current_head"},
    {LP2P_SHELL_CURRENT_HEAD, "current_head"},
    {LP2P_SHELL_GET_BLOCK_HEADERS, "get_block_headers"},
    {LP2P_SHELL_BLOCK_HEADER, "block_header"},
    {LP2P_SHELL_GET_OPERATIONS, "get_operations"},
    {LP2P_SHELL_OPERATION, "operation"},
    {LP2P_SHELL_GET_PROTOCOLS, "get_protocols"},
    {LP2P_SHELL_PROTOCOL, "protocol"},
    {LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS, "get_operations_for_blocks"},
    {LP2P_SHELL_OPERATIONS_FOR_BLOCKS, "operations_for_blocks"},
    {LP2P_SHELL_GET_CHECKPOINT, "get_checkpoint"},
    {LP2P_SHELL_CHECKPOINT, "checkpoint"},
    {LP2P_SHELL_GET_PROTOCOL_BRANCH, "get_protocol_branch"},
    {LP2P_SHELL_PROTOCOL_BRANCH, "protocol_branch"},
    {LP2P_SHELL_GET_PREDECESSOR_HEADER, "get_predecessor_header"},
    {LP2P_SHELL_PREDECESSOR_HEADER, "predecessor_header"},
};
#define N_NAMES (sizeof names / sizeof names[0])


const char *lp2p_shell_name(uint16_t tag) {
  for (size_t i = 0; i < N_NAMES; i++)
    if (names[i].tag == tag)
      return names[i].name;
  return NULL;
}


int lp2p_shell_tag(const char *name) {
  for (size_t i = 0; name != NULL && i < N_NAMES; i++)
    if (strcmp(names[i].name, name) == 0)
      return names[i].tag;
  return -1;
}


static uint32_t get_u32(const uint8_t *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
         b[3];
}


static uint64_t get_u64(const uint8_t *b) {
  return (uint64_t)get_u32(b) << 32 | get_u32(b + 4);
}


/* ------------------------------------------------------------ reading */

/* A cursor over [pos, end) of p. Nested dynamic_size ranges narrow end
 * and restore it; every read checks end - pos first. */
typedef struct rd {
  const uint8_t *p;
  size_t pos, end;
  lp2p_shell_msg *m;
} rd;

#define TRY(x)                                                               \
  do {                                                                       \
    int rc_ = (x);                                                           \
    if (rc_ != 0)                                                            \
      return rc_;                                                            \
  } while (0)


static int fail(lp2p_shell_msg *m, int code, const char *why) {
  m->why = why;
  return code;
}


static size_t left(const rd *r) {
  return r->end - r->pos;
}


/* Take n bytes: *out points at them. */
static int take(rd *r, const uint8_t **out, size_t n, const char *why) {
  if (left(r) < n)
    return fail(r->m, LP2P_EPROTO, why);
  *out = r->p + r->pos;
  r->pos += n;
  return 0;
}


static int take_hash(rd *r, uint8_t out[H], const char *why) {
  const uint8_t *b;
  TRY(take(r, &b, H, why));
  memcpy(out, b, H);
  return 0;
}


/* A [u32 size] prefix: size <= max (else EMSGSIZE, why_big) and <= what
 * is left (else EPROTO, why_short). */
static int take_size(rd *r, size_t *size, size_t max, const char *why_short,
                     const char *why_big) {
  const uint8_t *b;
  TRY(take(r, &b, 4, why_short));
  uint32_t n = get_u32(b);
  if (n > max)
    return fail(r->m, LP2P_EMSGSIZE, why_big);
  if (n > left(r))
    return fail(r->m, LP2P_EPROTO, why_short);
  *size = n;
  return 0;
}


/* `count` elements of `elem` bytes over the next `size` bytes. */
static int fixed_list(rd *r, lp2p_shell_list *l, size_t size, size_t elem,
                      size_t max_count, const char *why_odd,
                      const char *why_big) {
  if (size / elem > max_count)
    return fail(r->m, LP2P_EMSGSIZE, why_big);
  if (size % elem != 0)
    return fail(r->m, LP2P_EPROTO, why_odd);
  l->p = r->p + r->pos;
  l->len = size;
  l->count = size / elem;
  r->pos += size;
  return 0;
}


/* Walk `size` bytes of [u32 n][n bytes] elements, each n in [min, max]. */
static int blob_list(rd *r, lp2p_shell_list *l, size_t size, size_t min,
                     size_t max, const char *why_short, const char *why_big,
                     const char *why_small) {
  size_t end = r->end;
  r->end = r->pos + size;
  l->p = r->p + r->pos;
  l->len = size;
  l->count = 0;
  while (left(r) > 0) {
    size_t n;
    const uint8_t *b;
    TRY(take_size(r, &n, max, why_short, why_big));
    if (n < min)
      return fail(r->m, LP2P_EPROTO, why_small);
    TRY(take(r, &b, n, why_short));
    l->count++;
  }
  r->end = end;
  return 0;
}


/* A header filling the rest of the current range. */
static int header(rd *r, lp2p_shell_header *h) {
  const uint8_t *b;
  size_t n;
  if (left(r) > LP2P_SHELL_HEADER_MAX)
    return fail(r->m, LP2P_EMSGSIZE, "block header over 8 MiB");
  h->raw = r->p + r->pos;
  h->raw_len = left(r);
  TRY(take(r, &b, 4 + 1 + H + 8 + 1, "truncated block header"));
  h->level = (int32_t)get_u32(b);
  h->proto_level = b[4];
  memcpy(h->predecessor, b + 5, H);
  h->timestamp = (int64_t)get_u64(b + 5 + H);
  h->validation_pass = b[5 + H + 8];
  TRY(take_hash(r, h->operations_hash, "truncated block header"));
  TRY(take_size(r, &n, SIZE_MAX, "truncated block header fitness", ""));
  TRY(blob_list(r, &h->fitness, n, 0, SIZE_MAX,
                "truncated block header fitness", "", ""));
  TRY(take_hash(r, h->context, "truncated block header"));
  h->protocol_data = r->p + r->pos;
  h->protocol_data_len = left(r);
  r->pos = r->end;
  return 0;
}


/* dynamic_size header: [u32 n][header of n bytes]. */
static int sized_header(rd *r, lp2p_shell_header *h) {
  size_t n;
  TRY(take_size(r, &n, LP2P_SHELL_HEADER_MAX, "truncated block header",
                "block header over 8 MiB"));
  size_t end = r->end;
  r->end = r->pos + n;
  TRY(header(r, h));
  r->end = end;
  return 0;
}


/* Block_locator: sized header then the history to the end. */
static int locator(rd *r, lp2p_shell_msg *m) {
  TRY(sized_header(r, &m->header));
  return fixed_list(r, &m->list, left(r), H, LP2P_SHELL_LOCATOR_MAX,
                    "locator history not a whole number of hashes",
                    "locator history over 1000 hashes");
}


/* Mempool: bounded by the bytes it uses, its three prefixes included. */
static int mempool(rd *r, lp2p_shell_msg *m) {
  size_t start = r->pos, n, outer, inner;
  TRY(take_size(r, &n, LP2P_SHELL_MEMPOOL_MAX - 12,
                "truncated mempool known_valid",
                "mempool over 128008 bytes (3999 operation hashes)"));
  TRY(fixed_list(r, &m->list, n, H, SIZE_MAX,
                 "mempool known_valid not a whole number of hashes", ""));
  size_t used = r->pos - start;
  TRY(take_size(r, &outer, LP2P_SHELL_MEMPOOL_MAX - used - 4,
                "truncated mempool pending",
                "mempool over 128008 bytes (3999 operation hashes)"));
  size_t end = r->end;
  r->end = r->pos + outer;
  TRY(take_size(r, &inner, SIZE_MAX, "truncated mempool pending", ""));
  if (inner != left(r))
    return fail(m, LP2P_EPROTO, "mempool pending sizes disagree");
  TRY(fixed_list(r, &m->pending, inner, H, SIZE_MAX,
                 "mempool pending not a whole number of hashes", ""));
  r->end = end;
  return 0;
}


/* Operation_list_list_hash path, outermost step first. */
static int path(rd *r, lp2p_shell_msg *m, size_t depth) {
  const uint8_t *b;
  TRY(take(r, &b, 1, "truncated operation path"));
  if (b[0] == 0x00) {
    m->path_len = depth;
    return 0;
  }
  if (b[0] != 0xf0 && b[0] != 0x0f)
    return fail(m, LP2P_EPROTO, "bad operation path tag");
  if (depth == LP2P_SHELL_PATH_MAX)
    return fail(m, LP2P_EMSGSIZE,
                "operation path deeper than 3 steps (over 100 bytes)");
  lp2p_shell_path_step *s = &m->path[depth];
  s->left = b[0] == 0xf0;
  if (!s->left)
    TRY(take_hash(r, s->hash, "truncated operation path"));
  TRY(path(r, m, depth + 1));
  if (s->left)
    TRY(take_hash(r, s->hash, "truncated operation path"));
  return 0;
}


/* A string [u32 n][n bytes] inside a protocol. */
static int string(rd *r, const uint8_t **p, size_t *n) {
  TRY(take_size(r, n, SIZE_MAX, "truncated protocol component", ""));
  return take(r, p, *n, "truncated protocol component");
}


/* Protocol components over the next `size` bytes. */
static int components(rd *r, lp2p_shell_list *l, size_t size) {
  size_t end = r->end;
  r->end = r->pos + size;
  l->p = r->p + r->pos;
  l->len = size;
  l->count = 0;
  while (left(r) > 0) {
    lp2p_shell_component c;
    const uint8_t *b;
    TRY(string(r, &c.name, &c.name_len));
    TRY(take(r, &b, 1, "truncated protocol component"));
    if (b[0] == 0xff)
      TRY(string(r, &c.iface, &c.iface_len));
    else if (b[0] != 0x00)
      return fail(r->m, LP2P_EPROTO, "bad protocol interface option tag");
    TRY(string(r, &c.impl, &c.impl_len));
    l->count++;
  }
  r->end = end;
  return 0;
}


/* The whole protocol encoding over the rest of the range. */
static int protocol(rd *r, lp2p_shell_msg *m) {
  const uint8_t *b;
  size_t n;
  if (left(r) > LP2P_SHELL_PROTOCOL_MAX)
    return fail(m, LP2P_EMSGSIZE, "protocol over 2 MiB");
  m->data = r->p + r->pos;
  m->data_len = left(r);
  TRY(take(r, &b, 2, "truncated protocol"));
  m->expected_env = (uint16_t)(b[0] << 8 | b[1]);
  TRY(take_size(r, &n, SIZE_MAX, "truncated protocol components", ""));
  return components(r, &m->list, n);
}


static int chain_id(rd *r, lp2p_shell_msg *m) {
  const uint8_t *b;
  TRY(take(r, &b, LP2P_CHAIN_ID_BYTES, "truncated chain id"));
  memcpy(m->chain_id, b, LP2P_CHAIN_ID_BYTES);
  return 0;
}


/* list ~max_length:10 of elem-byte items. */
static int request(rd *r, lp2p_shell_msg *m, size_t elem) {
  size_t n;
  TRY(take_size(r, &n, SIZE_MAX, "truncated request list", ""));
  return fixed_list(r, &m->list, n, elem, LP2P_SHELL_REQUEST_MAX,
                    elem == H ? "request list not a whole number of hashes"
                              : "request list not a whole number of "
                                "(block, pass) pairs",
                    "request list over 10 items");
}


static int decode_body(rd *r, lp2p_shell_msg *m) {
  const uint8_t *b;
  switch (m->tag) {
  case LP2P_SHELL_GET_CURRENT_BRANCH:
  case LP2P_SHELL_DEACTIVATE:
  case LP2P_SHELL_GET_CURRENT_HEAD:
  case LP2P_SHELL_GET_CHECKPOINT:
    return chain_id(r, m);
  case LP2P_SHELL_CURRENT_BRANCH:
    TRY(chain_id(r, m));
    return locator(r, m);
  case LP2P_SHELL_CURRENT_HEAD:
    TRY(chain_id(r, m));
    TRY(sized_header(r, &m->header));
    return mempool(r, m);
  case LP2P_SHELL_GET_BLOCK_HEADERS:
  case LP2P_SHELL_GET_OPERATIONS:
  case LP2P_SHELL_GET_PROTOCOLS:
    return request(r, m, H);
  case LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS:
    return request(r, m, H + 1);
  case LP2P_SHELL_BLOCK_HEADER:
    return header(r, &m->header);
  case LP2P_SHELL_OPERATION:
    if (left(r) > LP2P_SHELL_OPERATION_MAX)
      return fail(m, LP2P_EMSGSIZE, "operation over 128 KiB");
    TRY(take_hash(r, m->branch, "truncated operation"));
    m->data = r->p + r->pos;
    m->data_len = left(r);
    r->pos = r->end;
    return 0;
  case LP2P_SHELL_PROTOCOL:
    return protocol(r, m);
  case LP2P_SHELL_OPERATIONS_FOR_BLOCKS:
    TRY(take_hash(r, m->block, "truncated operations_for_blocks"));
    TRY(take(r, &b, 1, "truncated operations_for_blocks"));
    m->validation_pass = (int8_t)b[0];
    TRY(path(r, m, 0));
    if (left(r) > LP2P_SHELL_OPERATIONS_MAX)
      return fail(m, LP2P_EMSGSIZE, "operation list over 1 MiB");
    return blob_list(r, &m->list, left(r), H, LP2P_SHELL_OPERATION_MAX,
                     "truncated operation", "operation over 128 KiB",
                     "operation shorter than its branch");
  case LP2P_SHELL_CHECKPOINT:
    TRY(chain_id(r, m));
    return header(r, &m->header);
  case LP2P_SHELL_GET_PROTOCOL_BRANCH:
  case LP2P_SHELL_PROTOCOL_BRANCH:
    TRY(chain_id(r, m));
    TRY(take(r, &b, 1, "truncated protocol level"));
    m->proto_level = b[0];
    return m->tag == LP2P_SHELL_PROTOCOL_BRANCH ? locator(r, m) : 0;
  case LP2P_SHELL_GET_PREDECESSOR_HEADER:
  case LP2P_SHELL_PREDECESSOR_HEADER:
    TRY(take_hash(r, m->block, "truncated block hash"));
    TRY(take(r, &b, 4, "truncated offset"));
    m->offset = (int32_t)get_u32(b);
    return m->tag == LP2P_SHELL_PREDECESSOR_HEADER ? header(r, &m->header)
                                                   : 0;
  default:
    return fail(m, LP2P_EPROTO, "unknown shell message tag");
  }
}


int lp2p_shell_decode(lp2p_shell_msg *m, uint16_t tag, const uint8_t *body,
                      size_t len) {
  memset(m, 0, sizeof *m);
  m->tag = tag;
  if (body == NULL && len > 0)
    return fail(m, LP2P_EINVAL, "no body");
  rd r = {body, 0, len, m};
  TRY(decode_body(&r, m));
  if (r.pos != len)
    return fail(m, LP2P_EPROTO, "trailing bytes after the message");
  return 0;
}


/* ------------------------------------------------------------ writing */

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


static void put_u32(wr *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  put(w, b, 4);
}


static void put_u64(wr *w, uint64_t v) {
  put_u32(w, (uint32_t)(v >> 32));
  put_u32(w, (uint32_t)v);
}


/* A caller's list of [u32 n][n bytes] elements must be exactly that:
 * re-read it with the decoder's own walk. */
static int check_blobs(lp2p_shell_msg *m, const lp2p_shell_list *l,
                       size_t min, size_t max, const char *why_big,
                       const char *why_small) {
  if (l->p == NULL && l->len > 0)
    return fail(m, LP2P_EINVAL, "list without bytes");
  rd r = {l->p, 0, l->len, m};
  lp2p_shell_list back;
  int rc = blob_list(&r, &back, l->len, min, max, "malformed element list",
                     why_big, why_small);
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
  *size = 4 + 1 + H + 8 + 1 + H + 4 + h->fitness.len + H +
          h->protocol_data_len;
  if (*size > LP2P_SHELL_HEADER_MAX)
    return fail(m, LP2P_EMSGSIZE, "block header over 8 MiB");
  return 0;
}


static int put_header(wr *w, lp2p_shell_msg *m, const lp2p_shell_header *h,
                      int sized) {
  size_t size;
  TRY(header_size(m, h, &size));
  if (sized)
    put_u32(w, (uint32_t)size);
  put_u32(w, (uint32_t)h->level);
  put_u8(w, h->proto_level);
  put(w, h->predecessor, H);
  put_u64(w, (uint64_t)h->timestamp);
  put_u8(w, h->validation_pass);
  put(w, h->operations_hash, H);
  put_u32(w, (uint32_t)h->fitness.len);
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
  put_u32(w, (uint32_t)m->list.len);
  put(w, m->list.p, m->list.len);
  put_u32(w, (uint32_t)m->pending.len + 4);
  put_u32(w, (uint32_t)m->pending.len);
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
  int rc = protocol(&r, &back);
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
    put_u32(w, (uint32_t)m->list.len);
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
    put_u32(w, (uint32_t)m->offset);
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


/* ---------------------------------------------------------- iterators */

int lp2p_shell_next_blob(const lp2p_shell_list *l, size_t *pos,
                         const uint8_t **p, size_t *n) {
  if (*pos + 4 > l->len)
    return 0;
  size_t k = get_u32(l->p + *pos);
  if (k > l->len - *pos - 4)
    return 0;
  *p = l->p + *pos + 4;
  *n = k;
  *pos += 4 + k;
  return 1;
}


int lp2p_shell_next_component(const lp2p_shell_list *l, size_t *pos,
                              lp2p_shell_component *c) {
  lp2p_shell_msg scratch;
  rd r = {l->p, *pos, l->len, &scratch};
  const uint8_t *b;
  memset(c, 0, sizeof *c);
  if (left(&r) == 0 || string(&r, &c->name, &c->name_len) != 0 ||
      take(&r, &b, 1, "") != 0)
    return 0;
  if (b[0] == 0xff && string(&r, &c->iface, &c->iface_len) != 0)
    return 0;
  if (string(&r, &c->impl, &c->impl_len) != 0)
    return 0;
  *pos = r.pos;
  return 1;
}
