/*
 * lua_shell.c - Lua binding of shell.c and base58.c: the Tezos shell
 * message codec and Base58Check hashes. The public face is
 * lua/luap2p/shell.lua; these are its primitives. Decoding is here,
 * encoding and Base58Check in lua_shell_encode.c.
 *
 * Lua API (added to the module table):
 *   core.shell_decode(payload, tag) -> t | nil, "EPROTO: ...", "EPROTO"
 *                                        | nil, "EMSGSIZE: ...", "EMSGSIZE"
 *   core.shell_encode(t) -> payload, tag | nil, err, code (EMSGSIZE,
 *                           EPROTO for malformed protocol bytes)
 *   core.b58_encode(kind, raw) -> text
 *   core.b58_decode(kind, text) -> raw | nil, "EPROTO: ...", "EPROTO"
 *   core.shell_limits, core.shell_tags (name -> tag)
 * Hashes come out as Base58Check text and go in as either that text or
 * the raw bytes (the two never have the same length). A bad table raises,
 * naming the field ("header.fitness[2]: string expected").
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "lua_lp2p.h"
#include "../wire/shell.h"
#include "lua_shell.h"


/* ------------------------------------------------------------- shared */

lp2p_hash_kind lp2p__shell_request_kind(uint16_t tag) {
  return tag == LP2P_SHELL_GET_OPERATIONS  ? LP2P_HASH_OPERATION
         : tag == LP2P_SHELL_GET_PROTOCOLS ? LP2P_HASH_PROTOCOL
                                           : LP2P_HASH_BLOCK;
}


int lp2p__shell_push_error(lua_State *L, int rc, const lp2p_shell_msg *m) {
  const char *name = lp2p_shell_name(m->tag);
  char msg[160];
  if (name != NULL)
    snprintf(msg, sizeof msg, "%s: %s", name, m->why);
  else
    snprintf(msg, sizeof msg, "%s (tag 0x%04x)", m->why, (unsigned)m->tag);
  return lp2p__push_error_msg(L, rc, msg);
}


void lp2p__shell_push_hash(lua_State *L, lp2p_hash_kind kind,
                           const uint8_t *raw) {
  char text[LP2P_B58_MAX + 1];
  int n = lp2p_hash_to_b58(text, kind, raw);
  lua_pushlstring(L, text, n > 0 ? (size_t)n : 0);
}


static void set_hash(lua_State *L, const char *k, lp2p_hash_kind kind,
                     const uint8_t *raw) {
  lp2p__shell_push_hash(L, kind, raw);
  lua_setfield(L, -2, k);
}


/* t[k] = the Base58Check of BLAKE2b-256(data): block, operation and
 * protocol hashes are the hash of their encoding. */
static void set_digest(lua_State *L, const char *k, lp2p_hash_kind kind,
                       const uint8_t *data, size_t len) {
  uint8_t h[LP2P_HASH_BYTES];
  crypto_generichash(h, sizeof h, data, len, NULL, 0);
  set_hash(L, k, kind, h);
}


/* An array of the count hashes of l, each elem bytes apart. */
static void push_hashes(lua_State *L, const lp2p_shell_list *l,
                        lp2p_hash_kind kind) {
  lua_createtable(L, (int)l->count, 0);
  for (size_t i = 0; i < l->count; i++) {
    lp2p__shell_push_hash(L, kind, l->p + i * LP2P_HASH_BYTES);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}


static void push_header(lua_State *L, const lp2p_shell_header *h) {
  lua_createtable(L, 0, 10);
  lp2p__set_int(L, "level", h->level);
  lp2p__set_int(L, "proto_level", h->proto_level);
  set_hash(L, "predecessor", LP2P_HASH_BLOCK, h->predecessor);
  lp2p__set_int(L, "timestamp", h->timestamp);
  lp2p__set_int(L, "validation_pass", h->validation_pass);
  set_hash(L, "operations_hash", LP2P_HASH_OPERATION_LIST_LIST,
           h->operations_hash);
  lua_createtable(L, (int)h->fitness.count, 0);
  size_t pos = 0, n, i = 0;
  const uint8_t *p;
  while (lp2p_shell_next_blob(&h->fitness, &pos, &p, &n)) {
    lua_pushlstring(L, (const char *)p, n);
    lua_rawseti(L, -2, (lua_Integer)++i);
  }
  lua_setfield(L, -2, "fitness");
  set_hash(L, "context", LP2P_HASH_CONTEXT, h->context);
  lp2p__set_lstr(L, "protocol_data", h->protocol_data, h->protocol_data_len);
  set_digest(L, "hash", LP2P_HASH_BLOCK, h->raw, h->raw_len);
}


static void set_header(lua_State *L, const char *k,
                       const lp2p_shell_header *h) {
  push_header(L, h);
  lua_setfield(L, -2, k);
}


/* {branch, data, hash} of one operation's bytes (branch || data). */
static void push_operation(lua_State *L, const uint8_t *op, size_t len) {
  lua_createtable(L, 0, 3);
  set_hash(L, "branch", LP2P_HASH_BLOCK, op);
  lp2p__set_lstr(L, "data", op + LP2P_HASH_BYTES, len - LP2P_HASH_BYTES);
  set_digest(L, "hash", LP2P_HASH_OPERATION, op, len);
}


static void set_chain_id(lua_State *L, const lp2p_shell_msg *m) {
  set_hash(L, "chain_id", LP2P_HASH_CHAIN_ID, m->chain_id);
}


static void set_locator(lua_State *L, const lp2p_shell_msg *m) {
  set_header(L, "head", &m->header);
  push_hashes(L, &m->list, LP2P_HASH_BLOCK);
  lua_setfield(L, -2, "history");
}


/* Fill the table on top of the stack with m's fields. */
static void push_fields(lua_State *L, const lp2p_shell_msg *m) {
  size_t pos = 0, n, i = 0;
  const uint8_t *p;
  switch (m->tag) {
  case LP2P_SHELL_GET_CURRENT_BRANCH:
  case LP2P_SHELL_DEACTIVATE:
  case LP2P_SHELL_GET_CURRENT_HEAD:
  case LP2P_SHELL_GET_CHECKPOINT:
    set_chain_id(L, m);
    break;
  case LP2P_SHELL_CURRENT_BRANCH:
    set_chain_id(L, m);
    set_locator(L, m);
    break;
  case LP2P_SHELL_CURRENT_HEAD:
    set_chain_id(L, m);
    set_header(L, "header", &m->header);
    lua_createtable(L, 0, 2);
    push_hashes(L, &m->list, LP2P_HASH_OPERATION);
    lua_setfield(L, -2, "known_valid");
    push_hashes(L, &m->pending, LP2P_HASH_OPERATION);
    lua_setfield(L, -2, "pending");
    lua_setfield(L, -2, "mempool");
    break;
  case LP2P_SHELL_GET_BLOCK_HEADERS:
  case LP2P_SHELL_GET_OPERATIONS:
  case LP2P_SHELL_GET_PROTOCOLS:
    push_hashes(L, &m->list, lp2p__shell_request_kind(m->tag));
    lua_setfield(L, -2, "hashes");
    break;
  case LP2P_SHELL_BLOCK_HEADER:
    set_header(L, "header", &m->header);
    break;
  case LP2P_SHELL_OPERATION:
    set_hash(L, "branch", LP2P_HASH_BLOCK, m->branch);
    lp2p__set_lstr(L, "data", m->data, m->data_len);
    /* The message body is the operation's own encoding. */
    {
      crypto_generichash_state st;
      uint8_t h[LP2P_HASH_BYTES];
      crypto_generichash_init(&st, NULL, 0, sizeof h);
      crypto_generichash_update(&st, m->branch, LP2P_HASH_BYTES);
      crypto_generichash_update(&st, m->data, m->data_len);
      crypto_generichash_final(&st, h, sizeof h);
      set_hash(L, "hash", LP2P_HASH_OPERATION, h);
    }
    break;
  case LP2P_SHELL_PROTOCOL: {
    lp2p__set_lstr(L, "protocol", m->data, m->data_len);
    set_digest(L, "hash", LP2P_HASH_PROTOCOL, m->data, m->data_len);
    lp2p__set_int(L, "expected_env", m->expected_env);
    lua_createtable(L, (int)m->list.count, 0);
    lp2p_shell_component c;
    while (lp2p_shell_next_component(&m->list, &pos, &c)) {
      lua_createtable(L, 0, 3);
      lp2p__set_lstr(L, "name", c.name, c.name_len);
      if (c.iface != NULL)
        lp2p__set_lstr(L, "interface", c.iface, c.iface_len);
      lp2p__set_lstr(L, "implementation", c.impl, c.impl_len);
      lua_rawseti(L, -2, (lua_Integer)++i);
    }
    lua_setfield(L, -2, "components");
    break;
  }
  case LP2P_SHELL_GET_OPERATIONS_FOR_BLOCKS:
    lua_createtable(L, (int)m->list.count, 0);
    for (i = 0; i < m->list.count; i++) {
      const uint8_t *pair = m->list.p + i * (LP2P_HASH_BYTES + 1);
      lua_createtable(L, 0, 2);
      set_hash(L, "block", LP2P_HASH_BLOCK, pair);
      lp2p__set_int(L, "validation_pass", (int8_t)pair[LP2P_HASH_BYTES]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "blocks");
    break;
  case LP2P_SHELL_OPERATIONS_FOR_BLOCKS:
    set_hash(L, "block", LP2P_HASH_BLOCK, m->block);
    lp2p__set_int(L, "validation_pass", m->validation_pass);
    lua_createtable(L, (int)m->path_len, 0);
    for (i = 0; i < m->path_len; i++) {
      lua_createtable(L, 0, 2);
      lp2p__set_str(L, "side", m->path[i].left ? "left" : "right");
      set_hash(L, "hash", LP2P_HASH_OPERATION_LIST_LIST, m->path[i].hash);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "path");
    lua_createtable(L, (int)m->list.count, 0);
    i = 0;
    while (lp2p_shell_next_blob(&m->list, &pos, &p, &n)) {
      push_operation(L, p, n);
      lua_rawseti(L, -2, (lua_Integer)++i);
    }
    lua_setfield(L, -2, "operations");
    break;
  case LP2P_SHELL_CHECKPOINT:
    set_chain_id(L, m);
    set_header(L, "header", &m->header);
    break;
  case LP2P_SHELL_GET_PROTOCOL_BRANCH:
  case LP2P_SHELL_PROTOCOL_BRANCH:
    set_chain_id(L, m);
    lp2p__set_int(L, "proto_level", m->proto_level);
    if (m->tag == LP2P_SHELL_PROTOCOL_BRANCH)
      set_locator(L, m);
    break;
  case LP2P_SHELL_GET_PREDECESSOR_HEADER:
  case LP2P_SHELL_PREDECESSOR_HEADER:
    set_hash(L, "block", LP2P_HASH_BLOCK, m->block);
    lp2p__set_int(L, "offset", m->offset);
    if (m->tag == LP2P_SHELL_PREDECESSOR_HEADER)
      set_header(L, "header", &m->header);
    break;
  }
}


/*
 * core.shell_decode(payload, tag) -> t | nil, err, code
 * t.type is the snake-case name, t.tag the tag; the other fields are those
 * core.shell_encode reads, plus the hashes of what the message carries
 * (header.hash, operation hash, protocol hash).
 */
static int core_shell_decode(lua_State *L) {
  size_t len;
  const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 1, &len);
  lua_Integer tag = luaL_checkinteger(L, 2);
  luaL_argcheck(L, tag >= 0 && tag <= 0xffff, 2, "tag in 0..65535 expected");
  lp2p_shell_msg m;
  int rc = lp2p_shell_decode(&m, (uint16_t)tag, s, len);
  if (rc != 0)
    return lp2p__shell_push_error(L, rc, &m);
  lua_createtable(L, 0, 8);
  lp2p__set_str(L, "type", lp2p_shell_name(m.tag));
  lp2p__set_int(L, "tag", m.tag);
  push_fields(L, &m);
  return 1;
}


static const luaL_Reg shell_functions[] = {
    {"shell_decode", core_shell_decode},
    {NULL, NULL}};


void lp2p__open_shell(lua_State *L) {
  luaL_setfuncs(L, shell_functions, 0);
  lp2p__open_shell_encode(L);
  lua_createtable(L, 0, 10);
  lp2p__set_int(L, "request", LP2P_SHELL_REQUEST_MAX);
  lp2p__set_int(L, "header", LP2P_SHELL_HEADER_MAX);
  lp2p__set_int(L, "locator", LP2P_SHELL_LOCATOR_MAX);
  lp2p__set_int(L, "operation", LP2P_SHELL_OPERATION_MAX);
  lp2p__set_int(L, "operations", LP2P_SHELL_OPERATIONS_MAX);
  lp2p__set_int(L, "protocol", LP2P_SHELL_PROTOCOL_MAX);
  lp2p__set_int(L, "mempool", LP2P_SHELL_MEMPOOL_MAX);
  lp2p__set_int(L, "path", LP2P_SHELL_PATH_MAX);
  lua_setfield(L, -2, "shell_limits");
  lua_newtable(L);
  for (int tag = LP2P_MSG_APP_MIN; tag <= 0xff; tag++) {
    const char *name = lp2p_shell_name((uint16_t)tag);
    if (name != NULL)
      lp2p__set_int(L, name, tag);
  }
  lua_setfield(L, -2, "shell_tags");
}
