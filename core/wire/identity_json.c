/*
 * identity_json.c - reading and writing identity.json (pure: no Lua, no
 * libuv, no I/O: text in, text out).
 *
 * Facts from Octez src/lib_base/p2p_identity.ml (its encoding):
 * {"peer_id" (optional), "public_key", "secret_key", "proof_of_work_stamp"},
 * bytes as hex. The parser is a small strict JSON reader: any valid JSON
 * object is accepted (unknown keys skipped, depth bounded), the first
 * error is reported with its position.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "lp2p.h"


/* Field values longer than this are wrong anyway; the parser still reads
 * (and bounds-checks) the whole string but keeps only this much. */
#define JSON_VALUE_MAX 96
#define JSON_KEY_MAX 32
#define JSON_DEPTH_MAX 32

enum { F_PEER_ID, F_PUBLIC_KEY, F_SECRET_KEY, F_STAMP, F_COUNT };

static const char *const field_names[F_COUNT] = {
    "peer_id", "public_key", "secret_key", "proof_of_work_stamp"};

typedef struct json_field {
  int seen;      /* the key appeared */
  int is_string; /* its value was a string */
  int too_long;  /* longer than JSON_VALUE_MAX */
  size_t len;
  char val[JSON_VALUE_MAX];
} json_field;

typedef struct json_parser {
  const char *p, *end;
  const char *start;
  char *err;
  size_t errlen;
  int failed;
} json_parser;


/* Keep the first error only: it names the real cause. */
static void jerr(json_parser *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void jerr(json_parser *j, const char *fmt, ...) {
  if (j->failed)
    return;
  j->failed = 1;
  if (j->err != NULL && j->errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
  }
}


/* A syntax error, with the byte offset where it was seen. */
static void jsyntax(json_parser *j, const char *what) {
  char buf[96];
  if (j->p >= j->end)
    snprintf(buf, sizeof buf, "invalid JSON: %s (truncated)", what);
  else
    snprintf(buf, sizeof buf, "invalid JSON: %s at byte %zu", what,
             (size_t)(j->p - j->start));
  jerr(j, "%s", buf);
}


static void jskip_ws(json_parser *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' ||
                           *j->p == '\r'))
    j->p++;
}


static int hex_nibble(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}


/* Read a string at j->p (which is at the opening quote) and keep up to cap
 * decoded bytes in out (out may be NULL). Escapes are decoded; \uXXXX of a
 * non-ASCII code point is kept as 0x80, which no field accepts. Raw control
 * characters are refused, as JSON requires. 0 or -1 (error set). */
static int jstring(json_parser *j, char *out, size_t cap, size_t *outlen,
                   int *too_long) {
  size_t n = 0;
  int over = 0;
  j->p++; /* opening quote */
  for (;;) {
    if (j->p >= j->end) {
      jsyntax(j, "unterminated string");
      return -1;
    }
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      j->p++;
      break;
    }
    if (c < 0x20) {
      jsyntax(j, "control character in string");
      return -1;
    }
    j->p++;
    if (c == '\\') {
      if (j->p >= j->end) {
        jsyntax(j, "unterminated string");
        return -1;
      }
      unsigned char e = (unsigned char)*j->p++;
      switch (e) {
      case '"': case '\\': case '/': c = e; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'n': c = '\n'; break;
      case 'r': c = '\r'; break;
      case 't': c = '\t'; break;
      case 'u': {
        unsigned cp = 0;
        for (int i = 0; i < 4; i++) {
          int v = j->p < j->end ? hex_nibble((unsigned char)*j->p) : -1;
          if (v < 0) {
            jsyntax(j, "bad \\u escape");
            return -1;
          }
          cp = cp << 4 | (unsigned)v;
          j->p++;
        }
        c = cp < 0x80 ? (unsigned char)cp : 0x80;
        break;
      }
      default:
        j->p--;
        jsyntax(j, "bad escape");
        return -1;
      }
    }
    if (out != NULL && n < cap)
      out[n++] = (char)c;
    else
      over = 1;
  }
  if (outlen != NULL)
    *outlen = n;
  if (too_long != NULL)
    *too_long = over;
  return 0;
}


static int jliteral(json_parser *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) {
    jsyntax(j, "unexpected character");
    return -1;
  }
  j->p += n;
  return 0;
}


static int jdigits(json_parser *j) {
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
    jsyntax(j, "bad number");
    return -1;
  }
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
    j->p++;
  return 0;
}


/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int jnumber(json_parser *j) {
  if (j->p < j->end && *j->p == '-')
    j->p++;
  if (j->p < j->end && *j->p == '0')
    j->p++;
  else if (jdigits(j) != 0)
    return -1;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (jdigits(j) != 0)
      return -1;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
      j->p++;
    if (jdigits(j) != 0)
      return -1;
  }
  return 0;
}


/* A member's key at j->p (white space first) and its ':': as jstring
 * into key. 0 or -1 (error set). */
static int jkey(json_parser *j, char *key, size_t cap, size_t *len,
                int *too_long) {
  jskip_ws(j);
  if (j->p >= j->end || *j->p != '"') {
    jsyntax(j, "expected a key");
    return -1;
  }
  if (jstring(j, key, cap, len, too_long) != 0)
    return -1;
  jskip_ws(j);
  if (j->p >= j->end || *j->p != ':') {
    jsyntax(j, "expected ':'");
    return -1;
  }
  j->p++;
  return 0;
}


/* After a member or an element: 1 past a ',', 0 past the closing
 * bracket, -1 (error set) at anything else. */
static int jnext(json_parser *j, char close) {
  jskip_ws(j);
  if (j->p < j->end && (*j->p == ',' || *j->p == close))
    return *j->p++ == ',';
  jsyntax(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
  return -1;
}


/* Skip any JSON value (the values of unknown keys); nesting is bounded so
 * the recursion is too. */
static int jskip_value(json_parser *j, int depth) {
  jskip_ws(j);
  if (j->p >= j->end) {
    jsyntax(j, "expected a value");
    return -1;
  }
  char c = *j->p;
  if (c == '"')
    return jstring(j, NULL, 0, NULL, NULL);
  if (c == 't')
    return jliteral(j, "true");
  if (c == 'f')
    return jliteral(j, "false");
  if (c == 'n')
    return jliteral(j, "null");
  if (c == '-' || (c >= '0' && c <= '9'))
    return jnumber(j);
  if (c != '{' && c != '[') {
    jsyntax(j, "expected a value");
    return -1;
  }
  if (depth >= JSON_DEPTH_MAX) {
    jsyntax(j, "nested too deeply");
    return -1;
  }
  char close = c == '{' ? '}' : ']';
  j->p++;
  jskip_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return 0;
  }
  for (;;) {
    if (c == '{' && jkey(j, NULL, 0, NULL, NULL) != 0)
      return -1;
    if (jskip_value(j, depth + 1) != 0)
      return -1;
    int more = jnext(j, close);
    if (more <= 0)
      return more;
  }
}


/* The top-level object: known keys fill fields[], others are skipped. */
static int jobject(json_parser *j, json_field fields[F_COUNT]) {
  jskip_ws(j);
  if (j->p >= j->end || *j->p != '{') {
    jerr(j, "%s", "not a JSON object");
    return -1;
  }
  j->p++;
  jskip_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return 0;
  }
  for (;;) {
    char key[JSON_KEY_MAX];
    size_t klen = 0;
    int klong = 0;
    if (jkey(j, key, sizeof key, &klen, &klong) != 0)
      return -1;
    int f = -1;
    for (int i = 0; i < F_COUNT && !klong; i++)
      if (strlen(field_names[i]) == klen &&
          memcmp(field_names[i], key, klen) == 0)
        f = i;
    if (f < 0) {
      if (jskip_value(j, 1) != 0)
        return -1;
    } else {
      json_field *fd = &fields[f];
      if (fd->seen) {
        jerr(j, "duplicate field \"%s\"", field_names[f]);
        return -1;
      }
      fd->seen = 1;
      jskip_ws(j);
      if (j->p < j->end && *j->p == '"') {
        fd->is_string = 1;
        if (jstring(j, fd->val, sizeof fd->val, &fd->len, &fd->too_long) != 0)
          return -1;
      } else if (jskip_value(j, 1) != 0) {
        return -1;
      }
    }
    int more = jnext(j, '}');
    if (more < 0)
      return -1;
    if (more == 0)
      break;
  }
  jskip_ws(j);
  if (j->p != j->end) {
    jsyntax(j, "trailing characters after the object");
    return -1;
  }
  return 0;
}


/* Decode a field of exactly 2*n hex characters into out. */
static int field_hex(json_parser *j, const json_field *fd, const char *name,
                     uint8_t *out, size_t n) {
  if (!fd->seen) {
    jerr(j, "missing field \"%s\"", name);
    return -1;
  }
  if (!fd->is_string || fd->too_long || fd->len != 2 * n) {
    jerr(j, "field \"%s\": expected %zu hex characters", name, 2 * n);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    int hi = hex_nibble((unsigned char)fd->val[2 * i]);
    int lo = hex_nibble((unsigned char)fd->val[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      jerr(j, "field \"%s\": expected %zu hex characters", name, 2 * n);
      return -1;
    }
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}


/* Octez reads "peer_id" as optional (computed from the public key when
 * absent); when present it must be well formed and, here, must also be the
 * public key's own id, since a node would otherwise announce one id and be
 * known by another. The keys must match too: a mismatched secret key would
 * only show up as failed handshakes. */
static int identity_parse(lp2p_identity *id, json_parser *j,
                          json_field fields[F_COUNT]) {
  uint8_t given[LP2P_PEER_ID_BYTES];
  const json_field *pid = &fields[F_PEER_ID];

  if (jobject(j, fields) != 0)
    return -1;
  if (pid->seen &&
      (!pid->is_string || pid->too_long ||
       lp2p_peer_id_decode(given, pid->val, pid->len) != 0)) {
    jerr(j, "field \"%s\": expected a base58 peer id (\"id\", 30 characters)",
         "peer_id");
    return -1;
  }
  if (field_hex(j, &fields[F_PUBLIC_KEY], "public_key", id->pk,
                LP2P_PK_BYTES) != 0 ||
      field_hex(j, &fields[F_SECRET_KEY], "secret_key", id->sk,
                LP2P_SK_BYTES) != 0 ||
      field_hex(j, &fields[F_STAMP], "proof_of_work_stamp", id->stamp,
                LP2P_STAMP_BYTES) != 0)
    return -1;
  lp2p_identity_set_peer_id(id);
  if (pid->seen && memcmp(given, id->peer_id, sizeof given) != 0) {
    jerr(j, "field \"%s\" does not match public_key", "peer_id");
    return -1;
  }
  if (lp2p_identity_check_keys(id) != 0) {
    jerr(j, "%s", "secret_key does not match public_key");
    return -1;
  }
  return 0;
}


int lp2p_identity_from_json(lp2p_identity *id, const char *json, size_t len,
                            char *err, size_t errlen) {
  json_field fields[F_COUNT];
  if (json == NULL) {
    json = "";
    len = 0;
  }
  json_parser j = {json, json + len, json, err, errlen, 0};
  memset(fields, 0, sizeof fields);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  int rc = identity_parse(id, &j, fields);
  /* The secret key's hex text sits in fields[]. */
  sodium_memzero(fields, sizeof fields);
  if (rc != 0) {
    lp2p_identity_wipe(id);
    return LP2P_EIDENTITY;
  }
  return 0;
}


static void put_hex(char *out, const uint8_t *b, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}


/* The layout Octez writes: one field per line, hex in lower case. */
int lp2p_identity_to_json(char *out, size_t cap, const lp2p_identity *id) {
  char pid[LP2P_PEER_ID_B58_LEN + 1];
  char pk[2 * LP2P_PK_BYTES + 1], sk[2 * LP2P_SK_BYTES + 1];
  char stamp[2 * LP2P_STAMP_BYTES + 1];

  lp2p_peer_id_encode(pid, id->peer_id);
  put_hex(pk, id->pk, LP2P_PK_BYTES);
  put_hex(sk, id->sk, LP2P_SK_BYTES);
  put_hex(stamp, id->stamp, LP2P_STAMP_BYTES);
  int n = snprintf(out, cap,
                   "{\n  \"peer_id\": \"%s\",\n  \"public_key\": \"%s\",\n"
                   "  \"secret_key\": \"%s\",\n"
                   "  \"proof_of_work_stamp\": \"%s\"\n}\n",
                   pid, pk, sk, stamp);
  sodium_memzero(sk, sizeof sk);
  if (n < 0 || (size_t)n >= cap) {
    if (cap > 0)
      sodium_memzero(out, cap);
    return LP2P_EINVAL;
  }
  return n;
}
