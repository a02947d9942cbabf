/*
 * shell_internal.h - the reading primitives of the shell codec, shared by
 * its decoder (shell.c), its encoder (shell_encode.c, which re-reads the
 * lists and protocol bytes a caller gives it with the decoder's own walk)
 * and the list walkers (shell_read.c). Private to core/wire.
 *
 * A reader is a cursor over [pos, end) of p. Nested dynamic_size ranges
 * narrow end and restore it; every read checks end - pos first. A failed
 * read returns the negative LP2P_E* code and sets m->why.
 */
#ifndef LP2P_SHELL_INTERNAL_H
#define LP2P_SHELL_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "shell.h"
#include "wire_internal.h"

#define H LP2P_HASH_BYTES

#define TRY(x)                                                               \
  do {                                                                       \
    int rc_ = (x);                                                           \
    if (rc_ != 0)                                                            \
      return rc_;                                                            \
  } while (0)

typedef struct lp2p__shell_rd {
  const uint8_t *p;
  size_t pos, end;
  lp2p_shell_msg *m; /* where a failure's reason goes */
} rd;


static inline int fail(lp2p_shell_msg *m, int code, const char *why) {
  m->why = why;
  return code;
}


static inline size_t left(const rd *r) {
  return r->end - r->pos;
}


/* Take n bytes: *out points at them. */
static inline int take(rd *r, const uint8_t **out, size_t n, const char *why) {
  if (left(r) < n)
    return fail(r->m, LP2P_EPROTO, why);
  *out = r->p + r->pos;
  r->pos += n;
  return 0;
}


static inline int take_hash(rd *r, uint8_t out[H], const char *why) {
  const uint8_t *b;
  TRY(take(r, &b, H, why));
  memcpy(out, b, H);
  return 0;
}


static inline uint64_t get_u64(const uint8_t *b) {
  return (uint64_t)get_u32(b) << 32 | get_u32(b + 4);
}


/* A [u32 size] prefix: size <= max (else EMSGSIZE, why_big) and <= what
 * is left (else EPROTO, why_short). */
int lp2p__shell_take_size(rd *r, size_t *size, size_t max,
                          const char *why_short, const char *why_big);

/* `count` elements of `elem` bytes over the next `size` bytes (at most
 * max_count of them). */
int lp2p__shell_fixed_list(rd *r, lp2p_shell_list *l, size_t size, size_t elem,
                           size_t max_count, const char *why_odd,
                           const char *why_big);

/* The next `size` bytes as [u32 n][n bytes] elements, each n in
 * [min, max]. */
int lp2p__shell_blob_list(rd *r, lp2p_shell_list *l, size_t size, size_t min,
                          size_t max, const char *why_short,
                          const char *why_big, const char *why_small);

/* A whole protocol encoding over the rest of the range: m->data,
 * m->expected_env and m->list (its components). */
int lp2p__shell_protocol(rd *r, lp2p_shell_msg *m);

#endif /* LP2P_SHELL_INTERNAL_H */
