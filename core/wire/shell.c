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

#include "shell_internal.h"

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


/* ----------------------------------------------------------- decoding */

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
  TRY(lp2p__shell_take_size(r, &n, SIZE_MAX, "truncated block header fitness",
                            ""));
  TRY(lp2p__shell_blob_list(r, &h->fitness, n, 0, SIZE_MAX,
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
  TRY(lp2p__shell_take_size(r, &n, LP2P_SHELL_HEADER_MAX,
                            "truncated block header",
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
  return lp2p__shell_fixed_list(r, &m->list, left(r), H,
                                LP2P_SHELL_LOCATOR_MAX,
                                "locator history not a whole number of hashes",
                                "locator history over 1000 hashes");
}


/* Mempool: bounded by the bytes it uses, its three prefixes included. */
static int mempool(rd *r, lp2p_shell_msg *m) {
  size_t start = r->pos, n, outer, inner;
  TRY(lp2p__shell_take_size(
      r, &n, LP2P_SHELL_MEMPOOL_MAX - 12, "truncated mempool known_valid",
      "mempool over 128008 bytes (3999 operation hashes)"));
  TRY(lp2p__shell_fixed_list(
      r, &m->list, n, H, SIZE_MAX,
      "mempool known_valid not a whole number of hashes", ""));
  size_t used = r->pos - start;
  TRY(lp2p__shell_take_size(
      r, &outer, LP2P_SHELL_MEMPOOL_MAX - used - 4,
      "truncated mempool pending",
      "mempool over 128008 bytes (3999 operation hashes)"));
  size_t end = r->end;
  r->end = r->pos + outer;
  TRY(lp2p__shell_take_size(r, &inner, SIZE_MAX, "truncated mempool pending",
                            ""));
  if (inner != left(r))
    return fail(m, LP2P_EPROTO, "mempool pending sizes disagree");
  TRY(lp2p__shell_fixed_list(r, &m->pending, inner, H, SIZE_MAX,
                             "mempool pending not a whole number of hashes",
                             ""));
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


static int chain_id(rd *r, lp2p_shell_msg *m) {
  const uint8_t *b;
  TRY(take(r, &b, LP2P_CHAIN_ID_BYTES, "truncated chain id"));
  memcpy(m->chain_id, b, LP2P_CHAIN_ID_BYTES);
  return 0;
}


/* list ~max_length:10 of elem-byte items. */
static int request(rd *r, lp2p_shell_msg *m, size_t elem) {
  size_t n;
  TRY(lp2p__shell_take_size(r, &n, SIZE_MAX, "truncated request list", ""));
  return lp2p__shell_fixed_list(
      r, &m->list, n, elem, LP2P_SHELL_REQUEST_MAX,
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
    return lp2p__shell_protocol(r, m);
  case LP2P_SHELL_OPERATIONS_FOR_BLOCKS:
    TRY(take_hash(r, m->block, "truncated operations_for_blocks"));
    TRY(take(r, &b, 1, "truncated operations_for_blocks"));
    m->validation_pass = (int8_t)b[0];
    TRY(path(r, m, 0));
    if (left(r) > LP2P_SHELL_OPERATIONS_MAX)
      return fail(m, LP2P_EMSGSIZE, "operation list over 1 MiB");
    return lp2p__shell_blob_list(
        r, &m->list, left(r), H, LP2P_SHELL_OPERATION_MAX,
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
    return m->tag == LP2P_SHELL_PREDECESSOR_HEADER ? header(r, &m->header) : 0;
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
