/*
 * point.c - network points "a.b.c.d:port" and "[v6]:port" (pure).
 *
 * What is accepted follows Octez P2p_point.Id.of_string_exn (the function
 * that decodes points off the wire), which runs the Point_parser lexer and
 * then Ipaddr.of_string_exn on the address:
 *   - a port is required (no default port when decoding), digits only,
 *     0..65535; leading zeros are accepted as OCaml's int_of_string does;
 *   - IPv6 must be in brackets; a bare "::1:9732" is rejected;
 *   - inside brackets an IPv4 address is also accepted ("[1.2.3.4]:80");
 *   - host names are rejected (Ipaddr only knows numeric addresses);
 *   - the text is at most 47 bytes (Octez check_size 51 on the encoding,
 *     4 of which are the length prefix).
 * One deliberate difference: Octez's lexer also takes a "#<peer id>" suffix
 * and then ignores it; a node never prints one, so it is rejected here.
 *
 * Octez keeps every address as IPv6 and prints IPv4-mapped ones
 * (::ffff:a.b.c.d) as plain IPv4, so both spellings are the same point:
 * parsing maps them to family 4. IPv6 is printed per RFC 5952 (lowercase,
 * the first longest run of two or more zero groups as "::", no embedded
 * dotted quad), which is what Ipaddr.V6.to_string does; glibc's inet_ntop
 * would print ::1.2.3.4 with a dotted quad, so the formatter is written out.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "lp2p.h"

/* Longest address text inside the brackets: a full IPv6 with an embedded
 * dotted quad is 45 characters (INET6_ADDRSTRLEN - 1). */
#define ADDR_TEXT_MAX 45

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 0xff, 0xff};


/* Digits only, at least one, value <= 65535. Leading zeros are fine; the
 * value check runs per digit so a long run of digits cannot overflow. */
static const char *parse_port(uint16_t *port, const char *s, size_t len) {
  if (len == 0)
    return "no port";
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return "port is not a decimal number";
    v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 65535)
      return "port out of range 0..65535";
  }
  *port = (uint16_t)v;
  return NULL;
}


/* inet_pton needs a NUL-terminated string: copy the address out, refusing
 * embedded NULs (inet_pton would stop there and accept a prefix). */
static const char *parse_addr(lp2p_point *p, const char *s, size_t len,
                              int allow_v6) {
  char buf[ADDR_TEXT_MAX + 1];
  if (len == 0)
    return "no address";
  if (len > ADDR_TEXT_MAX || memchr(s, '\0', len) != NULL)
    return "malformed address";
  memcpy(buf, s, len);
  buf[len] = '\0';
  memset(p->addr, 0, sizeof p->addr);
  if (inet_pton(AF_INET, buf, p->addr) == 1) {
    p->family = 4;
    return NULL;
  }
  if (!allow_v6)
    return memchr(s, ':', len) ? "IPv6 address must be in brackets"
                               : "malformed IPv4 address";
  if (inet_pton(AF_INET6, buf, p->addr) != 1)
    return "malformed IP address";
  if (memcmp(p->addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
    memmove(p->addr, p->addr + 12, 4);
    memset(p->addr + 4, 0, 12);
    p->family = 4;
  } else {
    p->family = 6;
  }
  return NULL;
}


/*
 * Parse with a reason: *why gets a static English phrase on failure (the
 * Lua binding shows it after "EPOINT: "). On failure *p is unspecified.
 */
int lp2p__point_parse_why(lp2p_point *p, const char *s, size_t len,
                          const char **why) {
  const char *err;
  const char *addr, *port;
  size_t alen, plen;
  if (len == 0) {
    err = "empty point";
    goto fail;
  }
  if (len > LP2P_POINT_TEXT_MAX) {
    err = "point longer than 47 bytes";
    goto fail;
  }
  if (s[0] == '[') {
    /* The lexer's IPv6 class has no ']', so the first one closes. */
    const char *rb = memchr(s, ']', len);
    if (rb == NULL) {
      err = "missing ']'";
      goto fail;
    }
    addr = s + 1;
    alen = (size_t)(rb - addr);
    size_t after = len - (size_t)(rb - s) - 1;
    if (after == 0) {
      err = "no port";
      goto fail;
    }
    if (rb[1] != ':') {
      err = "expected ':' after ']'";
      goto fail;
    }
    port = rb + 2;
    plen = after - 1;
  } else {
    const char *colon = memchr(s, ':', len);
    if (colon == NULL) {
      err = "no port";
      goto fail;
    }
    addr = s;
    alen = (size_t)(colon - s);
    port = colon + 1;
    plen = len - alen - 1;
    if (memchr(port, ':', plen) != NULL) {
      err = "IPv6 address must be in brackets";
      goto fail;
    }
  }
  if ((err = parse_port(&p->port, port, plen)) != NULL)
    goto fail;
  if ((err = parse_addr(p, addr, alen, s[0] == '[')) != NULL)
    goto fail;
  return 0;
fail:
  if (why != NULL)
    *why = err;
  return LP2P_EPOINT;
}


int lp2p_point_parse(lp2p_point *p, const char *s, size_t len) {
  return lp2p__point_parse_why(p, s, len, NULL);
}


/* RFC 5952 text of 16 bytes into out (at least 40 bytes); returns length. */
static int format_v6(char *out, const uint8_t a[16]) {
  unsigned g[8];
  int best = -1, best_len = 0;
  for (int i = 0; i < 8; i++)
    g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
  for (int i = 0; i < 8;) {
    if (g[i] != 0) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && g[j] == 0)
      j++;
    /* Strictly longer only: ties keep the first run (RFC 5952 4.2.3). */
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2)
    best = -1; /* a single zero group is written "0" (RFC 5952 4.2.2) */
  int n = 0;
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      out[n++] = ':';
      out[n++] = ':';
      i += best_len - 1;
      continue;
    }
    if (n > 0 && out[n - 1] != ':')
      out[n++] = ':';
    n += sprintf(out + n, "%x", g[i]);
  }
  out[n] = '\0';
  return n;
}


int lp2p_point_format(char out[LP2P_POINT_TEXT_MAX + 1], const lp2p_point *p) {
  const uint8_t *a = p->addr;
  if (p->family == 6 &&
      memcmp(a, v4_mapped_prefix, sizeof v4_mapped_prefix) != 0) {
    char v6[40];
    format_v6(v6, a);
    return snprintf(out, LP2P_POINT_TEXT_MAX + 1, "[%s]:%u", v6,
                    (unsigned)p->port);
  }
  if (p->family == 6)
    a += 12; /* IPv4-mapped: printed as IPv4, as Octez does */
  else if (p->family != 4) {
    out[0] = '\0';
    return LP2P_EINVAL;
  }
  return snprintf(out, LP2P_POINT_TEXT_MAX + 1, "%u.%u.%u.%u:%u",
                  (unsigned)a[0], (unsigned)a[1], (unsigned)a[2],
                  (unsigned)a[3], (unsigned)p->port);
}
