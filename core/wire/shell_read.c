/*
 * shell_read.c - the readers of the shell codec that more than one part
 * uses: size prefixes, lists, the protocol encoding (the decoder reads
 * messages with them, the encoder re-reads what a caller gives it, the
 * walkers step through what either checked). Shapes and bounds are in
 * shell.c; the cursor is shell_internal.h's.
 */
#include "shell_internal.h"


int lp2p__shell_take_size(rd *r, size_t *size, size_t max,
                          const char *why_short, const char *why_big) {
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


int lp2p__shell_fixed_list(rd *r, lp2p_shell_list *l, size_t size, size_t elem,
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


/* Narrow r to its next `size` bytes (size <= left(r)), which l will
 * describe once its elements are counted; returns the end to restore. */
static size_t open_list(rd *r, lp2p_shell_list *l, size_t size) {
  size_t end = r->end;
  r->end = r->pos + size;
  l->p = r->p + r->pos;
  l->len = size;
  l->count = 0;
  return end;
}


int lp2p__shell_blob_list(rd *r, lp2p_shell_list *l, size_t size, size_t min,
                          size_t max, const char *why_short,
                          const char *why_big, const char *why_small) {
  size_t end = open_list(r, l, size);
  while (left(r) > 0) {
    size_t n;
    const uint8_t *b;
    TRY(lp2p__shell_take_size(r, &n, max, why_short, why_big));
    if (n < min)
      return fail(r->m, LP2P_EPROTO, why_small);
    TRY(take(r, &b, n, why_short));
    l->count++;
  }
  r->end = end;
  return 0;
}


/* A string [u32 n][n bytes] inside a protocol. */
static int string(rd *r, const uint8_t **p, size_t *n) {
  TRY(lp2p__shell_take_size(r, n, SIZE_MAX, "truncated protocol component",
                            ""));
  return take(r, p, *n, "truncated protocol component");
}


/* One protocol component: name, optional interface, implementation. */
static int component(rd *r, lp2p_shell_component *c) {
  const uint8_t *b;
  memset(c, 0, sizeof *c);
  TRY(string(r, &c->name, &c->name_len));
  TRY(take(r, &b, 1, "truncated protocol component"));
  if (b[0] == 0xff)
    TRY(string(r, &c->iface, &c->iface_len));
  else if (b[0] != 0x00)
    return fail(r->m, LP2P_EPROTO, "bad protocol interface option tag");
  return string(r, &c->impl, &c->impl_len);
}


int lp2p__shell_protocol(rd *r, lp2p_shell_msg *m) {
  const uint8_t *b;
  size_t n;
  if (left(r) > LP2P_SHELL_PROTOCOL_MAX)
    return fail(m, LP2P_EMSGSIZE, "protocol over 2 MiB");
  m->data = r->p + r->pos;
  m->data_len = left(r);
  TRY(take(r, &b, 2, "truncated protocol"));
  m->expected_env = (uint16_t)(b[0] << 8 | b[1]);
  TRY(lp2p__shell_take_size(r, &n, SIZE_MAX, "truncated protocol components",
                            ""));
  size_t end = open_list(r, &m->list, n);
  while (left(r) > 0) {
    lp2p_shell_component c;
    TRY(component(r, &c));
    m->list.count++;
  }
  r->end = end;
  return 0;
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
  if (left(&r) == 0 || component(&r, c) != 0) {
    memset(c, 0, sizeof *c);
    return 0;
  }
  *pos = r.pos;
  return 1;
}
