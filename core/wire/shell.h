/*
 * shell.h - the Tezos shell message codec (pure): Base58Check hashes and
 * the application messages peers exchange after the Ack.
 *
 * Octez decodes every application message (tag >= 0x10) with
 * Distributed_db_message.encoding (src/lib_shell/distributed_db_message.ml)
 * and greylists a peer whose message does not decode, so both directions
 * here follow that encoding byte for byte, bounds included.
 *
 * Tag and body are separate. The P2P envelope [u32 length][u16 tag][body]
 * is already split by the message layer (lp2p_msg_decode gives tag and
 * body; conn:send(payload, tag) and the "message" event carry them apart),
 * and Octez's shell cases are exactly the envelope's union cases: the
 * body of a shell message is the case's encoding with nothing around it.
 * So the codec reads (tag, body) and writes body for m->tag.
 *
 * Ownership: decoding fills a caller-allocated lp2p_shell_msg whose
 * pointers (lists, protocol data, operation data) point into the input,
 * which must outlive it; encoding reads the same struct and writes into a
 * caller-provided buffer. No allocation anywhere; every function works
 * only on what it is given (any thread, one struct per thread).
 *
 * Errors: LP2P_EPROTO for anything Octez would not decode (truncated,
 * trailing bytes, unknown tag, bad option tag, list length not a multiple
 * of its element), LP2P_EMSGSIZE for a bound of Bounded_encoding exceeded,
 * LP2P_EINVAL for an inconsistent struct given to the encoder. On failure
 * m->why names the problem (a static English phrase).
 */
#ifndef LP2P_SHELL_H
#define LP2P_SHELL_H

#include <stddef.h>
#include <stdint.h>

#include "lp2p.h"


/* ------------------------------------------------------- Base58Check */

/* Octez Base58.Prefix (src/lib_crypto/base58.ml) and sizes. */
typedef enum lp2p_hash_kind {
  LP2P_HASH_BLOCK,               /* B...   32 bytes, prefix 1 52 */
  LP2P_HASH_OPERATION,           /* o...   32 bytes, prefix 5 116 */
  LP2P_HASH_OPERATION_LIST,      /* Lo...  32 bytes, prefix 133 233 */
  LP2P_HASH_OPERATION_LIST_LIST, /* LLo... 32 bytes, prefix 29 159 109 */
  LP2P_HASH_PROTOCOL,            /* P...   32 bytes, prefix 2 170 */
  LP2P_HASH_CONTEXT,             /* Co...  32 bytes, prefix 79 199 */
  LP2P_HASH_CHAIN_ID,            /* Net... 4 bytes,  prefix 87 82 0 */
  LP2P__HASH_KINDS
} lp2p_hash_kind;

#define LP2P_HASH_BYTES 32
#define LP2P_CHAIN_ID_BYTES 4
/* Longest text of any kind above (LLo..., 53 characters). */
#define LP2P_B58_MAX 56

/* Raw size of a kind (32 or 4); 0 for an unknown kind. */
size_t lp2p_hash_size(lp2p_hash_kind kind);
/* Snake-case name ("block", "operation_list_list", "chain_id", ...);
 * NULL for an unknown kind. */
const char *lp2p_hash_kind_name(lp2p_hash_kind kind);
/* Base58Check of prefix || raw (lp2p_hash_size(kind) bytes): out gets the
 * text and a NUL; returns its length, or LP2P_EINVAL for a bad kind. */
int lp2p_hash_to_b58(char out[LP2P_B58_MAX + 1], lp2p_hash_kind kind,
                     const uint8_t *raw);
/* The reverse: 0 and raw filled, or LP2P_EPROTO (bad character, length,
 * prefix or checksum) / LP2P_EINVAL (bad kind). */
int lp2p_hash_of_b58(uint8_t *raw, lp2p_hash_kind kind, const char *s,
                     size_t len) LP2P_WARN_UNUSED;


/* --------------------------------------------------------- the codec */

enum {
  LP2P_SHELL_GET_CURRENT_BRANCH = 0x10,
  LP2P_SHELL_CURRENT_BRANCH = 0x11,
  LP2P_SHELL_DEACTIVATE = 0x12,
  LP2P_SHELL_GET_CURRENT_HEAD = 0x13,
  LP2P_SHELL_CURRENT_HEAD = 0x14,
  LP2P_SHELL_GET_BLOCK_HEADERS = 0x20,
  LP2P_SHELL_BLOCK_HEADER = 0x21,
  LP2P_SHELL_GET_OPERATIONS = 0x30,
  LP2P_SHELL_OPERATION = 0x31,
  LP2P_SHELL_GET_PROTOCOLS = 0x40,
  LP2P_SHELL_PROTOCOL = 0x41,
  LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS = 0x60,
  LP2P_SHELL_OPERATIONS_FOR_BLOCKS = 0x61,
  LP2P_SHELL_GET_CHECKPOINT = 0x70,
  LP2P_SHELL_CHECKPOINT = 0x71,
  LP2P_SHELL_GET_PROTOCOL_BRANCH = 0x80,
  LP2P_SHELL_PROTOCOL_BRANCH = 0x81,
  LP2P_SHELL_GET_PREDECESSOR_HEADER = 0x90,
  LP2P_SHELL_PREDECESSOR_HEADER = 0x91
};

/* Octez's bounds (Bounded_encoding defaults, list ~max_length, Mempool
 * and Operation_list_list_hash.bounded_path_encoding). Sizes are of the
 * encoded value, its own length prefix excluded. */
#define LP2P_SHELL_REQUEST_MAX 10                 /* Get_* lists */
#define LP2P_SHELL_HEADER_MAX (8u * 1024 * 1024)  /* a block header */
#define LP2P_SHELL_LOCATOR_MAX 1000               /* locator history */
#define LP2P_SHELL_OPERATION_MAX (128u * 1024)    /* branch + data */
#define LP2P_SHELL_OPERATIONS_MAX (1024u * 1024)  /* Operations_for_blocks */
#define LP2P_SHELL_PROTOCOL_MAX (2u * 1024 * 1024)
/* check_size (8 + 4000 * 32): both lists with their three prefixes. */
#define LP2P_SHELL_MEMPOOL_MAX (8u + 4000u * LP2P_HASH_BYTES)
/* log2 of 8 validation passes; check_size (3 * 33 + 1). */
#define LP2P_SHELL_PATH_MAX 3
#define LP2P_SHELL_PATH_BYTES_MAX (LP2P_SHELL_PATH_MAX * 33 + 1)

/* A list as it is on the wire, without its own size prefix: `count`
 * elements in `len` bytes. Hash lists: 32-byte hashes back to back.
 * Get_operations_for_blocks: 33-byte (block hash, int8 pass) pairs.
 * Fitness, operations: each element [u32 n][n bytes]. Protocol
 * components: [u32][name] [0x00 | 0xff [u32][interface]] [u32][impl]. */
typedef struct lp2p_shell_list {
  const uint8_t *p;
  size_t len;
  size_t count;
} lp2p_shell_list;

/* Block_header.t: the shell fields decoded, protocol data as bytes. */
typedef struct lp2p_shell_header {
  int32_t level;
  uint8_t proto_level;
  uint8_t predecessor[LP2P_HASH_BYTES];
  int64_t timestamp; /* seconds since the epoch */
  uint8_t validation_pass;
  uint8_t operations_hash[LP2P_HASH_BYTES];
  lp2p_shell_list fitness; /* elements [u32 n][n bytes] */
  uint8_t context[LP2P_HASH_BYTES];
  const uint8_t *protocol_data;
  size_t protocol_data_len;
  /* Decode only: the header's own bytes (its BLAKE2b-256 is the block
   * hash). Ignored by the encoder. */
  const uint8_t *raw;
  size_t raw_len;
} lp2p_shell_header;

/* One step of an operation list path (Octez Left/Right), outermost
 * first: left = 1 is Left (path, right): the list is in the left
 * subtree and `hash` is the right sibling; left = 0 is Right (left, path). */
typedef struct lp2p_shell_path_step {
  uint8_t left;
  uint8_t hash[LP2P_HASH_BYTES];
} lp2p_shell_path_step;

/* Fields used per tag (others are left zero by the decoder and ignored by
 * the encoder):
 *   0x10 0x12 0x13 0x70   chain_id
 *   0x11                  chain_id, header (locator head), list (history)
 *   0x14                  chain_id, header, list (mempool known_valid),
 *                         pending (mempool pending)
 *   0x20 0x30 0x40        list (block, operation or protocol hashes)
 *   0x21                  header
 *   0x31                  branch, data (protocol-specific bytes)
 *   0x41                  expected_env, list (components), data (the whole
 *                         protocol encoding, whose hash is the protocol's)
 *   0x60                  list (33-byte (block, validation pass) pairs)
 *   0x61                  block, validation_pass, path, list (operations,
 *                         each [u32 n][branch || data])
 *   0x71                  chain_id, header
 *   0x80                  chain_id, proto_level
 *   0x81                  chain_id, proto_level, header, list (history)
 *   0x90                  block, offset
 *   0x91                  block, offset, header */
typedef struct lp2p_shell_msg {
  uint16_t tag;
  uint8_t chain_id[LP2P_CHAIN_ID_BYTES];
  uint8_t block[LP2P_HASH_BYTES];
  uint8_t branch[LP2P_HASH_BYTES];
  int32_t offset;
  int8_t validation_pass;
  uint8_t proto_level;
  uint16_t expected_env;
  lp2p_shell_header header;
  lp2p_shell_list list;
  lp2p_shell_list pending;
  const uint8_t *data;
  size_t data_len;
  size_t path_len;
  lp2p_shell_path_step path[LP2P_SHELL_PATH_MAX];
  const char *why; /* set on failure */
} lp2p_shell_msg;

/* Snake-case name of a shell tag ("current_head"), or NULL. */
const char *lp2p_shell_name(uint16_t tag);
/* The tag of a snake-case name, or -1. */
int lp2p_shell_tag(const char *name);

/* Decode body (len bytes) of a message with this tag. 0, LP2P_EPROTO or
 * LP2P_EMSGSIZE (m->why says what). */
int lp2p_shell_decode(lp2p_shell_msg *m, uint16_t tag, const uint8_t *body,
                      size_t len) LP2P_WARN_UNUSED;
/* Encode the body of m->tag. Returns its length, writing it only when it
 * fits in cap (call with out NULL, cap 0 to size it), or LP2P_EINVAL /
 * LP2P_EMSGSIZE / LP2P_EPROTO (malformed protocol bytes); m->why says
 * what. */
long lp2p_shell_encode(uint8_t *out, size_t cap, lp2p_shell_msg *m);

/* Walk a list of [u32 n][n bytes] elements (fitness, operations) that
 * the decoder (or the encoder) checked: *pos starts at 0; each call gives
 * the next element and returns 1, then 0 at the end. */
int lp2p_shell_next_blob(const lp2p_shell_list *l, size_t *pos,
                         const uint8_t **p, size_t *n);
/* The same for protocol components; *iface is NULL when absent. */
typedef struct lp2p_shell_component {
  const uint8_t *name, *iface, *impl;
  size_t name_len, iface_len, impl_len;
} lp2p_shell_component;
int lp2p_shell_next_component(const lp2p_shell_list *l, size_t *pos,
                              lp2p_shell_component *c);

#endif /* LP2P_SHELL_H */
