/*
 * shell.c - fuzz the shell message codec (lp2p_shell_decode /
 * lp2p_shell_encode) and Base58Check: the application messages a peer
 * sends after the Ack.
 *
 * Input: [u16 tag][body], as a message is split by lp2p_msg_decode (the
 * layout of spec/vectors/tezedge-carthagenet-session.txt). Invariants:
 *   - decoding returns 0, LP2P_EPROTO or LP2P_EMSGSIZE, with a reason;
 *   - whatever decodes re-encodes to the same bytes: the size query gives
 *     the body's length, a buffer one byte short is left untouched, the
 *     exact buffer gets the body back, and that decodes again;
 *   - the list walkers visit exactly the decoded counts;
 *   - every hash met goes to Base58Check and back unchanged.
 */
#include "fuzz.h"
#include "../core/wire/shell.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


static void b58_trip(lp2p_hash_kind kind, const uint8_t *raw) {
  char text[LP2P_B58_MAX + 1];
  uint8_t back[LP2P_HASH_BYTES];
  int n = lp2p_hash_to_b58(text, kind, raw);
  FUZZ_CHECK(n > 0 && n <= LP2P_B58_MAX && text[n] == '\0');
  FUZZ_CHECK(lp2p_hash_of_b58(back, kind, text, (size_t)n) == 0);
  FUZZ_CHECK(memcmp(back, raw, lp2p_hash_size(kind)) == 0);
}


static size_t blobs(const lp2p_shell_list *l) {
  size_t pos = 0, n, count = 0;
  const uint8_t *p;
  while (lp2p_shell_next_blob(l, &pos, &p, &n)) {
    FUZZ_CHECK(p >= l->p && p + n <= l->p + l->len);
    count++;
  }
  FUZZ_CHECK(pos == l->len);
  return count;
}


static void walk(const lp2p_shell_msg *m) {
  b58_trip(LP2P_HASH_CHAIN_ID, m->chain_id);
  b58_trip(LP2P_HASH_BLOCK, m->block);
  b58_trip(LP2P_HASH_OPERATION_LIST_LIST, m->header.operations_hash);
  b58_trip(LP2P_HASH_CONTEXT, m->header.context);
  FUZZ_CHECK(blobs(&m->header.fitness) == m->header.fitness.count);
  FUZZ_CHECK(m->path_len <= LP2P_SHELL_PATH_MAX);
  if (m->tag == LP2P_SHELL_OPERATIONS_FOR_BLOCKS)
    FUZZ_CHECK(blobs(&m->list) == m->list.count);
  if (m->tag == LP2P_SHELL_PROTOCOL) {
    size_t pos = 0, count = 0;
    lp2p_shell_component c;
    while (lp2p_shell_next_component(&m->list, &pos, &c))
      count++;
    FUZZ_CHECK(count == m->list.count && pos == m->list.len);
  }
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint16_t tag = (uint16_t)(data[0] << 8 | data[1]);
  size_t len = size - 2;
  uint8_t *body = fuzz_dup(data + 2, len);
  lp2p_shell_msg *m = malloc(sizeof *m), *back = malloc(sizeof *back);
  FUZZ_CHECK(m != NULL && back != NULL);

  int rc = lp2p_shell_decode(m, tag, body, len);
  FUZZ_CHECK(rc == 0 || rc == LP2P_EPROTO || rc == LP2P_EMSGSIZE);
  if (rc != 0) {
    FUZZ_CHECK(m->why != NULL);
  } else {
    walk(m);
    long need = lp2p_shell_encode(NULL, 0, m);
    FUZZ_CHECK(need == (long)len);
    /* One byte short: nothing written. */
    uint8_t *out = malloc(len + 1);
    FUZZ_CHECK(out != NULL);
    memset(out, 0xa5, len + 1);
    if (len > 0) {
      FUZZ_CHECK(lp2p_shell_encode(out, len - 1, m) == need);
      for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(out[i] == 0xa5);
    }
    uint8_t *exact = fuzz_dup(out, len); /* a buffer of exactly len */
    FUZZ_CHECK(lp2p_shell_encode(exact, len, m) == need);
    FUZZ_CHECK(len == 0 || memcmp(exact, body, len) == 0);
    FUZZ_CHECK(lp2p_shell_decode(back, tag, exact, len) == 0);
    FUZZ_CHECK(back->tag == m->tag && back->list.count == m->list.count &&
               back->pending.count == m->pending.count &&
               back->path_len == m->path_len);
    free(exact);
    free(out);
  }
  free(back);
  free(m);
  free(body);
  return 0;
}
