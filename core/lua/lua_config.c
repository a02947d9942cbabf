/*
 * lua_config.c - the config keys the C core reads, as one table.
 *
 * The schema of every key (type, range, default, documentation) is
 * lua/luap2p/config.lua; p2p.new checks a config against it and passes it,
 * complete, to core.node. This table is how the binding copies the keys
 * read by the core into an lp2p_node_config: one line per key. Its ranges
 * repeat the schema's because core.node and core.handshake can be called
 * directly; core.config_keys() exposes them, with the core's fallback
 * defaults (lp2p_node_config_defaults), and spec/config_spec.lua checks
 * that both agree with the schema.
 *
 *   core.config_keys() -> { key = { default =, min =, max = }, ... }
 */
#include <stddef.h>
#include <string.h>

#include "lua_config.h"

typedef enum {
  K_UINT,     /* an unsigned field of 2, 4 or 8 bytes, from an integer */
  K_INT,      /* an int, from an integer */
  K_NUM,      /* a double */
  K_BOOL,     /* an int, 0 or 1 */
  K_MS,       /* a uint64_t of milliseconds, from seconds */
  K_CHAIN,    /* chain + chain_len, 1..LP2P_CHAIN_NAME_MAX bytes */
  K_VERSIONS, /* an lp2p_version_range, from a list of consecutive versions */
  K_POW,      /* pow_bits, and target derived from it */
  K_ADDR      /* an IP address (port 0) into a sockaddr_storage, has_ flag */
} key_kind;

typedef struct key_desc {
  const char *key;
  key_kind kind;
  size_t off, size;
  double lo, hi;
} key_desc;

#define F(field) offsetof(lp2p_node_config, field), \
                 sizeof(((lp2p_node_config *)0)->field)
#define BIG (1 << 20)

/* Adding a key read by the core: a line here and one in the schema. */
static const key_desc keys[] = {
    {"chain", K_CHAIN, F(chain), 1, LP2P_CHAIN_NAME_MAX},
    {"pow_bits", K_POW, F(pow_bits), 0, 256},
    {"p2p_versions", K_VERSIONS, F(p2p), 0, 65535},
    {"ddb_versions", K_VERSIONS, F(ddb), 0, 65535},
    {"advertised_port", K_UINT, F(advertised_port), 0, 65535},
    {"private_mode", K_BOOL, F(private_mode), 0, 1},
    {"disable_mempool", K_BOOL, F(disable_mempool), 0, 1},
    {"disable_peer_discovery", K_BOOL, F(disable_peer_discovery), 0, 1},
    {"min_connections", K_UINT, F(min_connections), 0, BIG},
    {"max_connections", K_UINT, F(max_connections), 0, BIG},
    /* Set by p2p.new from too_many_rule; present: the threshold rule. */
    {"connections_threshold", K_UINT, F(connections_threshold), 0, BIG},
    {"max_incoming_connections", K_UINT, F(max_incoming_connections), 0, BIG},
    {"outgoing_message_queue_size", K_UINT, F(outgoing_message_queue_size), 1,
     1 << 24},
    {"outgoing_queue_bytes", K_UINT, F(outgoing_queue_bytes), 1024,
     1099511627776.0},
    {"binary_chunks_size", K_UINT, F(binary_chunks_size), LP2P_CHUNK_SIZE_MIN,
     LP2P_CHUNK_SIZE_MAX},
    {"max_message_size", K_UINT, F(max_message_size), 2, LP2P_MSG_MAX - 4},
    /* Below 90 bytes no connection message fits. */
    {"max_connection_message", K_UINT, F(max_conn_msg_len), 90, 65535},
    {"connection_timeout", K_MS, F(connection_timeout_ms), 0, 1e9},
    {"authentication_timeout", K_MS, F(authentication_timeout_ms), 0, 1e9},
    {"ban_table_size", K_UINT, F(ban_table_size), 1, 1 << 24},
    {"backlog", K_UINT, F(backlog), 1, 65535},
    {"bind_address", K_ADDR, F(bind_addr), 0, 0},
    {"admission_rate", K_NUM, F(admission.rate), 0, 1e9},
    {"admission_burst", K_NUM, F(admission.burst), 0, 1e9},
    {"admission_prefix_rate", K_NUM, F(admission.prefix_rate), 0, 1e9},
    {"admission_prefix_burst", K_NUM, F(admission.prefix_burst), 0, 1e9},
    {"max_connections_per_ip", K_UINT, F(admission.max_per_ip), 0, BIG},
    {"max_connections_per_prefix", K_UINT, F(admission.max_per_prefix), 0,
     BIG},
    {"admission_table_size", K_UINT, F(admission.table_size), 2, 1 << 24},
    {"admission_exempt_loopback", K_BOOL, F(admission.exempt_loopback), 0, 1},
    {"load_threshold", K_UINT, F(admission.load_threshold), 0, BIG},
    {"incoming_buffer_bytes", K_UINT, F(incoming_buffer_bytes), 64 * 1024,
     17592186044416.0},
    {"partial_message_min_rate", K_NUM, F(partial_min_rate), 0, 1e12},
    {"partial_message_timeout", K_MS, F(partial_stall_ms), 0, 1e9},
    {"read_pass_bytes", K_UINT, F(read_pass_bytes), 1, 1 << 30},
    {"read_pass_messages", K_UINT, F(read_pass_msgs), 1, 1 << 24},
    {"p2p_message_rate", K_NUM, F(p2p_rate), 0, 1e9},
    {"p2p_message_burst", K_NUM, F(p2p_burst), 1, 1e9},
    {"app_message_rate", K_NUM, F(app_rate), 0, 1e9},
    {"app_message_burst", K_NUM, F(app_burst), 1, 1e9},
    {"crypto_workers", K_INT, F(crypto_workers), -1,
     LP2P_CRYPTO_WORKERS_MAX},
};

#define NKEYS (sizeof keys / sizeof keys[0])


/* Raise "<who>: config.<key>: expected <what>". Never returns. */
static int bad(lua_State *L, const char *who, const char *key,
               const char *what) {
  return luaL_error(L, "%s: config.%s: expected %s", who, key, what);
}


static void store_uint(void *p, size_t size, lua_Integer v) {
  if (size == 2)
    *(uint16_t *)p = (uint16_t)v;
  else if (size == 4)
    *(uint32_t *)p = (uint32_t)v;
  else
    *(uint64_t *)p = (uint64_t)v;
}


static lua_Integer load_uint(const void *p, size_t size) {
  if (size == 2)
    return *(const uint16_t *)p;
  if (size == 4)
    return *(const uint32_t *)p;
  return (lua_Integer)*(const uint64_t *)p;
}


/*
 * A list of supported versions, e.g. {0, 1}: non-empty, ascending and
 * consecutive, since the core keeps a range and announces its maximum
 * (Octez's lists are consecutive too). Raises otherwise.
 */
static void read_versions(lua_State *L, int idx, const char *who,
                          const key_desc *d, lp2p_version_range *r) {
  const char *what = "a non-empty list of consecutive versions in "
                     "[0, 65535], e.g. {0, 1}";
  lua_Integer n = lua_istable(L, idx) ? (lua_Integer)lua_rawlen(L, idx) : 0;
  if (n == 0)
    bad(L, who, d->key, what);
  lua_Integer first = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    int ok;
    lua_rawgeti(L, idx, i);
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || v < 0 || v > 65535 || (i > 1 && v != first + i - 1))
      bad(L, who, d->key, what);
    if (i == 1)
      first = v;
  }
  r->min = (uint16_t)first;
  r->max = (uint16_t)(first + n - 1);
}


/* Copy t[d->key] into c; absent keys keep c's value. */
static void read_key(lua_State *L, int t, const char *who,
                     const key_desc *d, lp2p_node_config *c) {
  char *p = (char *)c + d->off;
  int type = lua_getfield(L, t, d->key);
  int top = lua_gettop(L);
  char what[96];
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  switch (d->kind) {
  case K_UINT:
  case K_INT: {
    int ok;
    lua_Integer v = lua_tointegerx(L, top, &ok);
    if (type != LUA_TNUMBER || !ok || v < (lua_Integer)d->lo ||
        v > (lua_Integer)d->hi) {
      snprintf(what, sizeof what, "an integer in [%.0f, %.0f]", d->lo,
               d->hi);
      bad(L, who, d->key, what);
    }
    if (d->kind == K_INT)
      *(int *)p = (int)v;
    else
      store_uint(p, d->size, v);
    break;
  }
  case K_NUM:
  case K_MS:
  case K_POW: {
    lua_Number v = lua_tonumber(L, top);
    if (type != LUA_TNUMBER || !(v >= d->lo && v <= d->hi)) {
      snprintf(what, sizeof what, "a number in [%g, %g]", d->lo, d->hi);
      bad(L, who, d->key, what);
    }
    if (d->kind == K_MS)
      *(uint64_t *)p = (uint64_t)(v * 1e3);
    else
      *(double *)p = v;
    break;
  }
  case K_BOOL:
    if (type != LUA_TBOOLEAN)
      bad(L, who, d->key, "a boolean");
    *(int *)p = lua_toboolean(L, top);
    break;
  case K_CHAIN: {
    size_t len = 0;
    const char *s = lua_tolstring(L, top, &len);
    if (type != LUA_TSTRING || len < 1 || len > LP2P_CHAIN_NAME_MAX)
      bad(L, who, d->key, "a string of 1..255 bytes");
    memcpy(c->chain, s, len);
    c->chain[len] = '\0';
    c->chain_len = len;
    break;
  }
  case K_VERSIONS:
    read_versions(L, top, who, d, (lp2p_version_range *)p);
    break;
  case K_ADDR: {
    const char *s = type == LUA_TSTRING ? lua_tostring(L, top) : NULL;
    struct sockaddr_storage *ss = (struct sockaddr_storage *)p;
    if (s == NULL || (uv_ip4_addr(s, 0, (struct sockaddr_in *)ss) < 0 &&
                      uv_ip6_addr(s, 0, (struct sockaddr_in6 *)ss) < 0))
      bad(L, who, d->key, "an IP address");
    c->has_bind_addr = 1;
    break;
  }
  }
  lua_pop(L, 1);
}


void lp2p__config_read(lua_State *L, int t, const char *who,
                       lp2p_node_config *c, const char *const *only) {
  t = lua_absindex(L, t);
  lp2p_node_config_defaults(c);
  for (size_t i = 0; i < NKEYS; i++) {
    int wanted = only == NULL;
    for (size_t j = 0; only != NULL && only[j] != NULL; j++)
      if (strcmp(only[j], keys[i].key) == 0)
        wanted = 1;
    if (wanted)
      read_key(L, t, who, &keys[i], c);
  }
  if (lp2p_pow_target_make(&c->target, c->pow_bits) < 0)
    bad(L, who, "pow_bits", "a number in [0, 256]");
}


/* Levenshtein distance of a and b, capped at 9 (names are short). */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 9;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}


/* Whether k is a whole word of name ("port" of "advertised_port"). */
static int part_of(const char *k, const char *name) {
  size_t lk = strlen(k), ln = strlen(name);
  for (const char *p = strstr(name, k); p != NULL; p = strstr(p + 1, k))
    if ((p == name || p[-1] == '_') && (p[lk] == '\0' || p[lk] == '_'))
      return lk < ln;
  return 0;
}


void lp2p__config_check_names(lua_State *L, int t, const char *who,
                              const char *const *names) {
  t = lua_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: config keys must be strings", who);
    const char *k = lua_tostring(L, -1);
    const char *near = NULL;
    size_t best = 3; /* a suggestion within two edits */
    int known = 0;
    for (size_t i = 0; names[i] != NULL && !known; i++) {
      size_t dist = distance(k, names[i]);
      known = dist == 0;
      if (dist < best) {
        best = dist;
        near = names[i];
      }
    }
    for (size_t i = 0; names[i] != NULL && !known && near == NULL; i++)
      if (part_of(k, names[i]))
        near = names[i];
    if (!known && near != NULL)
      luaL_error(L, "%s: unknown config key '%s' (did you mean '%s'?)", who,
                 k, near);
    if (!known)
      luaL_error(L, "%s: unknown config key '%s'", who, k);
  }
}


/* core.config_keys() -> { key = { default =, min =, max = } } */
static int l_config_keys(lua_State *L) {
  lp2p_node_config c;
  lp2p_node_config_defaults(&c);
  lua_createtable(L, 0, (int)NKEYS);
  for (size_t i = 0; i < NKEYS; i++) {
    const key_desc *d = &keys[i];
    const char *p = (const char *)&c + d->off;
    lua_createtable(L, 0, 3);
    switch (d->kind) {
    case K_UINT:
      lua_pushinteger(L, load_uint(p, d->size));
      break;
    case K_INT:
      lua_pushinteger(L, *(const int *)p);
      break;
    case K_NUM:
    case K_POW:
      lua_pushnumber(L, *(const double *)p);
      break;
    case K_MS:
      lua_pushnumber(L, (lua_Number)*(const uint64_t *)p / 1e3);
      break;
    case K_BOOL:
      lua_pushboolean(L, *(const int *)p);
      break;
    case K_CHAIN:
      lua_pushlstring(L, c.chain, c.chain_len);
      break;
    case K_ADDR:
      lua_pushnil(L); /* none: the kernel picks */
      break;
    case K_VERSIONS: {
      const lp2p_version_range *r = (const lp2p_version_range *)p;
      lua_createtable(L, r->max - r->min + 1, 0);
      for (int v = r->min; v <= r->max; v++) {
        lua_pushinteger(L, v);
        lua_rawseti(L, -2, v - r->min + 1);
      }
      break;
    }
    }
    lua_setfield(L, -2, "default");
    lua_pushnumber(L, d->lo);
    lua_setfield(L, -2, "min");
    lua_pushnumber(L, d->hi);
    lua_setfield(L, -2, "max");
    lua_setfield(L, -2, d->key);
  }
  return 1;
}


void lp2p__open_config(lua_State *L) {
  lua_pushcfunction(L, l_config_keys);
  lua_setfield(L, -2, "config_keys");
}
