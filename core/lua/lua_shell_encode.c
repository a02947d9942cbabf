/*
 * lua_shell_encode.c - the encoding half of the shell codec's binding
 * (core.shell_encode) and Base58Check hashes (core.b58_encode,
 * core.b58_decode); decoding and the module's constants are lua_shell.c.
 *
 * Encoding builds the lists the C encoder reads (hashes back to back,
 * [u32 n][bytes] elements) in userdata scratch buffers left on the stack,
 * so they live until the call returns and are collected if a field error
 * raises halfway.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "lua_lp2p.h"
#include "../wire/shell.h"
#include "lua_shell.h"


/* ------------------------------------------------------------- encode */

/* Field paths for error messages ("header.fitness[2]"). */
typedef struct field {
  char path[96];
} field;


/* Paths are short ("mempool.known_valid[12]"); one cut to the buffer is
 * only a less precise message. */
static const char *sub(field *f, const char *parent, const char *k) {
  if (snprintf(f->path, sizeof f->path, "%s%s%s", parent ? parent : "",
               parent && *parent ? "." : "", k) < 0)
    f->path[0] = '\0';
  return f->path;
}


static const char *idx(field *f, const char *parent, lua_Integer i) {
  if (snprintf(f->path, sizeof f->path, "%s[%d]", parent, (int)i) < 0)
    f->path[0] = '\0';
  return f->path;
}


/* Raise "bad argument #1 to 'shell_encode' (<field>: <why>)". */
static int field_error(lua_State *L, const char *path, const char *why) {
  return luaL_argerror(L, 1, lua_pushfstring(L, "%s: %s", path, why));
}


/* Raise "<path>: <what> expected, got <type of the value on top>". */
static int type_error(lua_State *L, const char *path, const char *what) {
  return field_error(L, path,
                     lua_pushfstring(L, "%s expected, got %s", what,
                                     luaL_typename(L, -1)));
}


static const char *hash_letters[LP2P__HASH_KINDS] = {
    [LP2P_HASH_BLOCK] = "B",
    [LP2P_HASH_OPERATION] = "o",
    [LP2P_HASH_OPERATION_LIST] = "Lo",
    [LP2P_HASH_OPERATION_LIST_LIST] = "LLo",
    [LP2P_HASH_PROTOCOL] = "P",
    [LP2P_HASH_CONTEXT] = "Co",
    [LP2P_HASH_CHAIN_ID] = "Net",
};


/* The value at idx as a hash of this kind: raw bytes of its size or its
 * Base58Check text. Raises naming path. */
static void check_hash(lua_State *L, int idx, lp2p_hash_kind kind,
                       uint8_t *raw, const char *path) {
  size_t len, size = lp2p_hash_size(kind);
  const char *s = lua_type(L, idx) == LUA_TSTRING
                      ? lua_tolstring(L, idx, &len)
                      : NULL;
  if (s != NULL && len == size) {
    memcpy(raw, s, size);
    return;
  }
  if (s != NULL && lp2p_hash_of_b58(raw, kind, s, len) == 0)
    return;
  field_error(L, path,
              lua_pushfstring(L, "%s hash expected (%d raw bytes or "
                                 "Base58Check %s...), got %s",
                              lp2p_hash_kind_name(kind), (int)size,
                              hash_letters[kind],
                              s != NULL ? "a string that is neither"
                                        : luaL_typename(L, idx)));
}


/* t[k] as a hash (t at index t). */
static void get_hash(lua_State *L, int t, const char *k, lp2p_hash_kind kind,
                     uint8_t *raw, const char *parent) {
  field f;
  lua_getfield(L, t, k);
  check_hash(L, -1, kind, raw, sub(&f, parent, k));
  lua_pop(L, 1);
}


static lua_Integer get_int(lua_State *L, int t, const char *k,
                           lua_Integer min, lua_Integer max,
                           const char *parent) {
  field f;
  int isint;
  lua_getfield(L, t, k);
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < min || v > max)
    field_error(L, sub(&f, parent, k),
                lua_pushfstring(L, "integer in %I..%I expected, got %s", min,
                                max, luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}


/* t[k] as a string (nil = "" when optional). Stays on the stack, which
 * keeps *len bytes alive. */
static const uint8_t *get_bytes(lua_State *L, int t, const char *k,
                                size_t *len, int optional,
                                const char *parent) {
  field f;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TNIL && optional) {
    *len = 0;
    return (const uint8_t *)"";
  }
  if (ty != LUA_TSTRING)
    type_error(L, sub(&f, parent, k), "string");
  return (const uint8_t *)lua_tolstring(L, -1, len);
}


/* t[k] as an array (nil = empty when optional): pushes it (or an empty
 * table) and returns its length. */
static lua_Integer get_array(lua_State *L, int t, const char *k, int optional,
                             const char *parent) {
  field f;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TNIL && optional) {
    lua_pop(L, 1);
    lua_newtable(L);
    ty = LUA_TTABLE;
  }
  if (ty != LUA_TTABLE)
    type_error(L, sub(&f, parent, k), "array");
  return luaL_len(L, -1);
}


/* A scratch buffer of n bytes, left on the stack. */
static uint8_t *scratch(lua_State *L, size_t n) {
  return (uint8_t *)lua_newuserdatauv(L, n > 0 ? n : 1, 0);
}


static void put_u32(uint8_t *b, uint32_t v) {
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
}


/* t[k], an array of hashes, into l (buffer left on the stack). Lengths
 * are not bounded here: the encoder reports a list over its bound as
 * EMSGSIZE. */
static void get_hashes(lua_State *L, int t, const char *k,
                       lp2p_hash_kind kind, lp2p_shell_list *l,
                       const char *parent) {
  field f, e;
  sub(&f, parent, k);
  lua_Integer n = get_array(L, t, k, 1, parent);
  int arr = lua_gettop(L);
  uint8_t *buf = scratch(L, (size_t)n * LP2P_HASH_BYTES);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arr, i);
    check_hash(L, -1, kind, buf + (i - 1) * LP2P_HASH_BYTES,
               idx(&e, f.path, i));
    lua_pop(L, 1);
  }
  l->p = buf;
  l->len = (size_t)n * LP2P_HASH_BYTES;
  l->count = (size_t)n;
}


/* t[k], an array of strings, as [u32 n][n bytes] elements. */
static void get_blobs(lua_State *L, int t, const char *k, lp2p_shell_list *l,
                      const char *parent) {
  field f, e;
  sub(&f, parent, k);
  lua_Integer n = get_array(L, t, k, 1, parent);
  int arr = lua_gettop(L);
  size_t total = 0, len;
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, arr, i) != LUA_TSTRING)
      type_error(L, idx(&e, f.path, i), "string");
    lua_tolstring(L, -1, &len);
    if (len > UINT32_MAX || total + 4 + len < total)
      field_error(L, idx(&e, f.path, i), "too long");
    total += 4 + len;
    lua_pop(L, 1);
  }
  uint8_t *buf = scratch(L, total), *w = buf;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arr, i);
    const char *s = lua_tolstring(L, -1, &len);
    put_u32(w, (uint32_t)len);
    memcpy(w + 4, s, len);
    w += 4 + len;
    lua_pop(L, 1);
  }
  l->p = buf;
  l->len = total;
  l->count = (size_t)n;
}


/* t[k], a header table, into h. */
static void get_header(lua_State *L, int t, const char *k,
                       lp2p_shell_header *h) {
  if (lua_getfield(L, t, k) != LUA_TTABLE)
    type_error(L, k, "header table");
  int ht = lua_gettop(L);
  h->level = (int32_t)get_int(L, ht, "level", INT32_MIN, INT32_MAX, k);
  h->proto_level = (uint8_t)get_int(L, ht, "proto_level", 0, 255, k);
  get_hash(L, ht, "predecessor", LP2P_HASH_BLOCK, h->predecessor, k);
  h->timestamp = (int64_t)get_int(L, ht, "timestamp", LUA_MININTEGER,
                                  LUA_MAXINTEGER, k);
  h->validation_pass = (uint8_t)get_int(L, ht, "validation_pass", 0, 255, k);
  get_hash(L, ht, "operations_hash", LP2P_HASH_OPERATION_LIST_LIST,
           h->operations_hash, k);
  get_blobs(L, ht, "fitness", &h->fitness, k);
  get_hash(L, ht, "context", LP2P_HASH_CONTEXT, h->context, k);
  h->protocol_data = get_bytes(L, ht, "protocol_data", &h->protocol_data_len,
                               1, k);
}


/* t.operations: an array of {branch, data}. */
static void get_operations(lua_State *L, int t, lp2p_shell_list *l) {
  field e;
  lua_Integer n = get_array(L, t, "operations", 1, NULL);
  int arr = lua_gettop(L);
  size_t total = 0, len;
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, arr, i) != LUA_TTABLE)
      type_error(L, idx(&e, "operations", i), "operation table");
    get_bytes(L, -1, "data", &len, 1, idx(&e, "operations", i));
    if (len > UINT32_MAX - 4 - LP2P_HASH_BYTES ||
        total + 4 + LP2P_HASH_BYTES + len < total)
      field_error(L, idx(&e, "operations", i), "too long");
    total += 4 + LP2P_HASH_BYTES + len;
    lua_pop(L, 2);
  }
  uint8_t *buf = scratch(L, total), *w = buf;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arr, i);
    int op = lua_gettop(L);
    idx(&e, "operations", i);
    const uint8_t *d = get_bytes(L, op, "data", &len, 1, e.path);
    put_u32(w, (uint32_t)(LP2P_HASH_BYTES + len));
    get_hash(L, op, "branch", LP2P_HASH_BLOCK, w + 4, e.path);
    memcpy(w + 4 + LP2P_HASH_BYTES, d, len);
    w += 4 + LP2P_HASH_BYTES + len;
    lua_pop(L, 2);
  }
  l->p = buf;
  l->len = total;
  l->count = (size_t)n;
}


/* t.blocks: an array of {block, validation_pass}, 33-byte pairs. */
static void get_pairs(lua_State *L, int t, lp2p_shell_list *l) {
  field e;
  lua_Integer n = get_array(L, t, "blocks", 1, NULL);
  int arr = lua_gettop(L);
  uint8_t *buf = scratch(L, (size_t)n * (LP2P_HASH_BYTES + 1));
  for (lua_Integer i = 1; i <= n; i++) {
    idx(&e, "blocks", i);
    if (lua_geti(L, arr, i) != LUA_TTABLE)
      type_error(L, e.path, "table");
    uint8_t *w = buf + (i - 1) * (LP2P_HASH_BYTES + 1);
    get_hash(L, -1, "block", LP2P_HASH_BLOCK, w, e.path);
    w[LP2P_HASH_BYTES] =
        (uint8_t)(int8_t)get_int(L, -1, "validation_pass", -128, 127, e.path);
    lua_pop(L, 1);
  }
  l->p = buf;
  l->len = (size_t)n * (LP2P_HASH_BYTES + 1);
  l->count = (size_t)n;
}


/* t.path: an array of {side = "left"|"right", hash}. */
static void get_path(lua_State *L, int t, lp2p_shell_msg *m) {
  field e;
  lua_Integer n = get_array(L, t, "path", 1, NULL);
  int arr = lua_gettop(L);
  if (n > LP2P_SHELL_PATH_MAX) {
    /* Over Octez's bound: let the encoder say so (EMSGSIZE). */
    m->path_len = (size_t)n;
    return;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    idx(&e, "path", i);
    if (lua_geti(L, arr, i) != LUA_TTABLE)
      type_error(L, e.path, "table");
    lua_getfield(L, -1, "side");
    const char *side = lua_tostring(L, -1);
    int left = side != NULL && strcmp(side, "left") == 0;
    if (!left && (side == NULL || strcmp(side, "right") != 0))
      field_error(L, e.path, "side must be \"left\" or \"right\"");
    lua_pop(L, 1);
    m->path[i - 1].left = (uint8_t)left;
    get_hash(L, -1, "hash", LP2P_HASH_OPERATION_LIST_LIST, m->path[i - 1].hash,
             e.path);
    lua_pop(L, 1);
  }
  m->path_len = (size_t)n;
}


static void get_locator(lua_State *L, lp2p_shell_msg *m) {
  get_header(L, 1, "head", &m->header);
  get_hashes(L, 1, "history", LP2P_HASH_BLOCK, &m->list, NULL);
}


/* Read t (index 1) into m for m->tag; everything it points to stays on
 * the stack. */
static void get_fields(lua_State *L, lp2p_shell_msg *m) {
  switch (m->tag) {
  case LP2P_SHELL_GET_CURRENT_BRANCH:
  case LP2P_SHELL_DEACTIVATE:
  case LP2P_SHELL_GET_CURRENT_HEAD:
  case LP2P_SHELL_GET_CHECKPOINT:
    get_hash(L, 1, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id, NULL);
    break;
  case LP2P_SHELL_CURRENT_BRANCH:
    get_hash(L, 1, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id, NULL);
    get_locator(L, m);
    break;
  case LP2P_SHELL_CURRENT_HEAD: {
    get_hash(L, 1, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id, NULL);
    get_header(L, 1, "header", &m->header);
    int ty = lua_getfield(L, 1, "mempool");
    if (ty == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
    } else if (ty != LUA_TTABLE) {
      field_error(L, "mempool", "table expected");
    }
    int mp = lua_gettop(L);
    get_hashes(L, mp, "known_valid", LP2P_HASH_OPERATION, &m->list,
               "mempool");
    get_hashes(L, mp, "pending", LP2P_HASH_OPERATION, &m->pending,
               "mempool");
    break;
  }
  case LP2P_SHELL_GET_BLOCK_HEADERS:
  case LP2P_SHELL_GET_OPERATIONS:
  case LP2P_SHELL_GET_PROTOCOLS:
    get_hashes(L, 1, "hashes", lp2p__shell_request_kind(m->tag), &m->list,
               NULL);
    break;
  case LP2P_SHELL_BLOCK_HEADER:
    get_header(L, 1, "header", &m->header);
    break;
  case LP2P_SHELL_OPERATION:
    get_hash(L, 1, "branch", LP2P_HASH_BLOCK, m->branch, NULL);
    m->data = get_bytes(L, 1, "data", &m->data_len, 1, NULL);
    break;
  case LP2P_SHELL_PROTOCOL:
    m->data = get_bytes(L, 1, "protocol", &m->data_len, 0, NULL);
    break;
  case LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS:
    get_pairs(L, 1, &m->list);
    break;
  case LP2P_SHELL_OPERATIONS_FOR_BLOCKS:
    get_hash(L, 1, "block", LP2P_HASH_BLOCK, m->block, NULL);
    m->validation_pass =
        (int8_t)get_int(L, 1, "validation_pass", -128, 127, NULL);
    get_path(L, 1, m);
    get_operations(L, 1, &m->list);
    break;
  case LP2P_SHELL_CHECKPOINT:
    get_hash(L, 1, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id, NULL);
    get_header(L, 1, "header", &m->header);
    break;
  case LP2P_SHELL_GET_PROTOCOL_BRANCH:
  case LP2P_SHELL_PROTOCOL_BRANCH:
    get_hash(L, 1, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id, NULL);
    m->proto_level = (uint8_t)get_int(L, 1, "proto_level", 0, 255, NULL);
    if (m->tag == LP2P_SHELL_PROTOCOL_BRANCH)
      get_locator(L, m);
    break;
  case LP2P_SHELL_GET_PREDECESSOR_HEADER:
  case LP2P_SHELL_PREDECESSOR_HEADER:
    get_hash(L, 1, "block", LP2P_HASH_BLOCK, m->block, NULL);
    m->offset = (int32_t)get_int(L, 1, "offset", INT32_MIN, INT32_MAX, NULL);
    if (m->tag == LP2P_SHELL_PREDECESSOR_HEADER)
      get_header(L, 1, "header", &m->header);
    break;
  }
}


/*
 * core.shell_encode(t) -> payload, tag | nil, err, code
 * t.type names the message; see push_fields for the fields of each.
 * Runtime failures: EMSGSIZE (a bound exceeded), EPROTO (protocol bytes
 * that do not decode). A bad table raises.
 */
static int core_shell_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "type") != LUA_TSTRING)
    return field_error(L, "type", "string expected");
  const char *type = lua_tostring(L, -1);
  int tag = lp2p_shell_tag(type);
  if (tag < 0)
    return field_error(
        L, "type", lua_pushfstring(L, "unknown shell message type '%s'", type));
  lua_pop(L, 1);
  lp2p_shell_msg m;
  memset(&m, 0, sizeof m);
  m.tag = (uint16_t)tag;
  get_fields(L, &m);

  long total = lp2p_shell_encode(NULL, 0, &m);
  if (total == LP2P_EINVAL)
    return luaL_error(L, "shell_encode: %s", m.why); /* a binding bug */
  if (total < 0)
    return lp2p__shell_push_error(L, (int)total, &m);
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, (size_t)total);
  if (lp2p_shell_encode(out, (size_t)total, &m) != total)
    return luaL_error(L, "shell_encode: size changed"); /* a bug */
  luaL_pushresultsize(&b, (size_t)total);
  lua_pushinteger(L, tag);
  return 2;
}


/* -------------------------------------------------------- Base58Check */

static lp2p_hash_kind check_kind(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (int k = 0; k < LP2P__HASH_KINDS; k++)
    if (strcmp(name, lp2p_hash_kind_name((lp2p_hash_kind)k)) == 0)
      return (lp2p_hash_kind)k;
  luaL_argerror(L, idx, lua_pushfstring(L, "unknown hash kind '%s'", name));
  return LP2P_HASH_BLOCK;
}


/* core.b58_encode(kind, raw) -> text; raw must have the kind's size. */
static int core_b58_encode(lua_State *L) {
  lp2p_hash_kind kind = check_kind(L, 1);
  const uint8_t *raw =
      lp2p__check_bytes(L, 2, lp2p_hash_size(kind), lp2p_hash_kind_name(kind));
  lp2p__shell_push_hash(L, kind, raw);
  return 1;
}


/* core.b58_decode(kind, text) -> raw | nil, "EPROTO: ...", "EPROTO" */
static int core_b58_decode(lua_State *L) {
  lp2p_hash_kind kind = check_kind(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  uint8_t raw[LP2P_HASH_BYTES];
  if (lp2p_hash_of_b58(raw, kind, s, len) != 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "not a Base58Check %s hash (%s...)",
             lp2p_hash_kind_name(kind), hash_letters[kind]);
    return lp2p__push_error_msg(L, LP2P_EPROTO, msg);
  }
  lua_pushlstring(L, (const char *)raw, lp2p_hash_size(kind));
  return 1;
}


static const luaL_Reg shell_encode_functions[] = {
    {"shell_encode", core_shell_encode},
    {"b58_encode", core_b58_encode},
    {"b58_decode", core_b58_decode},
    {NULL, NULL}};


void lp2p__open_shell_encode(lua_State *L) {
  luaL_setfuncs(L, shell_encode_functions, 0);
}
