/*
 * identity_json.c - fuzz the identity.json parser
 * (lp2p_identity_from_json), which reads a file a user may have edited or
 * copied from anywhere.
 *
 * Input: byte 0 picks the size of the error buffer (0..255, malloc'd to
 * exactly that size), the rest is the JSON text. Invariants: the error
 * message is NUL-terminated inside its buffer; a failure wipes the
 * identity; a success round-trips through lp2p_identity_to_json.
 */
#include "fuzz.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t errlen = data[0];
  char *json = (char *)fuzz_dup(data + 1, size - 1);
  char *err = errlen ? malloc(errlen) : NULL;
  lp2p_identity id;
  memset(&id, 0xaa, sizeof id);
  int rc = lp2p_identity_from_json(&id, json, size - 1, err, errlen);
  FUZZ_CHECK(rc == 0 || rc == LP2P_EIDENTITY);
  if (rc != 0) {
    static const lp2p_identity zero;
    FUZZ_CHECK(memcmp(&id, &zero, sizeof id) == 0);
    if (errlen > 0)
      FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
  } else {
    FUZZ_CHECK(lp2p_identity_check_keys(&id) == 0);
    char out[LP2P_IDENTITY_JSON_MAX];
    int n = lp2p_identity_to_json(out, sizeof out, &id);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof out);
    lp2p_identity back;
    FUZZ_CHECK(lp2p_identity_from_json(&back, out, (size_t)n, NULL, 0) == 0);
    FUZZ_CHECK(memcmp(&back, &id, sizeof id) == 0);
    lp2p_identity_wipe(&back);
  }
  lp2p_identity_wipe(&id);
  free(err);
  free(json);
  return 0;
}
