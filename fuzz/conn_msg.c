/*
 * conn_msg.c - fuzz the connection-message decoder (lp2p_conn_msg_decode),
 * the one parser that runs on every accepted socket before any crypto.
 *
 * Input: a connection message body (no u16 prefix). Invariants:
 *   - a body that decodes re-encodes (lp2p_conn_msg_encode) to exactly
 *     prefix || input when its chain name fits the struct;
 *   - the decoded chain name is NUL-terminated within the struct;
 *   - version selection on the decoded versions is consistent (a chosen
 *     version lies in the local range or equals the remote's).
 */
#include "fuzz.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *body = fuzz_dup(data, size);
  lp2p_conn_msg m;
  int rc = lp2p_conn_msg_decode(&m, body, size);
  FUZZ_CHECK(rc == 0 || rc == LP2P_ETRUNC || rc == LP2P_EEXTRA);
  if (rc == 0) {
    FUZZ_CHECK(memchr(m.chain, '\0', sizeof m.chain) != NULL);
    FUZZ_CHECK(m.chain_len <= size);
    if (m.chain_len <= LP2P_CHAIN_NAME_MAX && size <= 65535) {
      size_t cap = size + 2;
      uint8_t *out = malloc(cap);
      FUZZ_CHECK(out != NULL);
      long n = lp2p_conn_msg_encode(out, cap, &m);
      FUZZ_CHECK(n == (long)cap);
      FUZZ_CHECK(out[0] == (uint8_t)(size >> 8) && out[1] == (uint8_t)size);
      FUZZ_CHECK(memcmp(out + 2, body, size) == 0);
      /* One byte short: refused, nothing assumed about out. */
      FUZZ_CHECK(lp2p_conn_msg_encode(out, cap - 1, &m) == LP2P_EINVAL);
      free(out);
    }
    lp2p_version_range local = {1, 2};
    uint16_t chosen = 0xffff;
    int v = lp2p_version_select(&chosen, local, m.p2p_version, LP2P_EP2PVER);
    if (v == 0)
      FUZZ_CHECK(chosen == local.max ||
                 (chosen == m.p2p_version && chosen >= local.min));
    else
      FUZZ_CHECK(v == LP2P_EP2PVER && m.p2p_version < local.min);
    uint8_t ir[LP2P_NONCE_BYTES], ri[LP2P_NONCE_BYTES];
    lp2p_nonces_derive(ir, ri, body, size, body, size);
    FUZZ_CHECK(memcmp(ir, ri, sizeof ir) != 0);
  }
  free(body);
  return 0;
}
