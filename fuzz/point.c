/*
 * point.c - fuzz point parsing and formatting (lp2p_point_parse,
 * lp2p_point_format): points arrive in Advertise, Swap and Nack messages
 * from any peer.
 *
 * Invariants: a parsed point formats to at most LP2P_POINT_TEXT_MAX
 * characters; its text parses again and formats to the same text (the
 * canonical form is a fixed point); parse never accepts more than 47 bytes.
 */
#include "fuzz.h"


int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init();
  return 0;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = (char *)fuzz_dup(data, size);
  lp2p_point p;
  int rc = lp2p_point_parse(&p, s, size);
  FUZZ_CHECK(rc == 0 || rc == LP2P_EPOINT);
  if (rc == 0) {
    FUZZ_CHECK(size <= LP2P_POINT_TEXT_MAX);
    FUZZ_CHECK(p.family == 4 || p.family == 6);
    char text[LP2P_POINT_TEXT_MAX + 1];
    int n = lp2p_point_format(text, &p);
    FUZZ_CHECK(n > 0 && n <= LP2P_POINT_TEXT_MAX);
    FUZZ_CHECK(strlen(text) == (size_t)n);
    lp2p_point q;
    FUZZ_CHECK(lp2p_point_parse(&q, text, (size_t)n) == 0);
    FUZZ_CHECK(q.port == p.port);
    char again[LP2P_POINT_TEXT_MAX + 1];
    int m = lp2p_point_format(again, &q);
    FUZZ_CHECK(m == n && memcmp(text, again, (size_t)n) == 0);
  }
  free(s);
  return 0;
}
