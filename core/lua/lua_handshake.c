/*
 * lua_handshake.c - Lua binding of the handshake state machine
 * (luap2p.Handshake) and of the connection message helpers.
 *
 *   core.handshake{identity=, incoming=, message_nonce=, and the keys of
 *                  p2p.new it shares (chain, pow_bits, advertised_port,
 *                  p2p_versions, ddb_versions, private_mode,
 *                  disable_mempool, max_connection_message), read with
 *                  the same names, meaning, ranges and defaults}
 *     -> Handshake
 *   hs:output() -> bytes queued for the remote (maybe "")
 *   hs:feed(bytes) -> event, consumed | nil, "ENAME: msg", "ENAME"
 *   hs:ack() / hs:nack(motive[, {points}]) -> true | nil, err, ENAME
 *   hs:remote() -> table | nil (before the remote connection message)
 *   hs:channel() -> Channel | nil, err, ENAME (before Ack)
 *   hs:close()
 *   core.conn_msg_decode(body) -> table | nil, err, ENAME
 *   core.conn_msg_encode(t) -> whole message with its u16 prefix
 *   core.nonces(init_msg, resp_msg) -> n_ir, n_ri
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lua_config.h"

#define HS_MT "luap2p.Handshake"
#define IDENTITY_MT "luap2p.Identity"
#define CONN_MSG_MAX (2 + 90 + LP2P_CHAIN_NAME_MAX)

/* The userdata: the state machine is malloc'd by lp2p_hs_new; NULL once
 * closed. The flags remember which parts of the remote info are valid. */
typedef struct hs_box {
  lp2p_hs *hs;
  int incoming;
  int got_meta, nacked, acked;
} hs_box;

static const char *const event_names[] = {
  [LP2P_HS_NEED_MORE] = "need_more",
  [LP2P_HS_CONN_MSG] = "conn_msg",
  [LP2P_HS_METADATA] = "metadata",
  [LP2P_HS_ACKED] = "acked",
  [LP2P_HS_NACKED] = "nacked",
  [LP2P_HS_KEY_NEEDED] = "key_needed",
};

/* The node's keys a handshake reads (lua_config.c), then its own. */
static const char *const shared_keys[] = {
  "chain", "pow_bits", "advertised_port", "p2p_versions", "ddb_versions",
  "private_mode", "disable_mempool", "max_connection_message", NULL
};

static const char *const option_names[] = {
  "chain", "pow_bits", "advertised_port", "p2p_versions", "ddb_versions",
  "private_mode", "disable_mempool", "max_connection_message",
  "identity", "incoming", "message_nonce", "defer_key", NULL
};


static hs_box *check_box(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, HS_MT);
}


/* The open state machine, or raise. */
static lp2p_hs *check_hs(lua_State *L, int idx) {
  hs_box *b = check_box(L, idx);
  if (b->hs == NULL)
    luaL_error(L, "attempt to use a closed Handshake");
  return b->hs;
}


/* ----------------------------------------------------------- options */

/* Raise "core.handshake: config.name: expected ...". Never returns. */
static int bad_option(lua_State *L, const char *name, const char *what) {
  return luaL_error(L, "core.handshake: config.%s: expected %s", name, what);
}


/* Push opts[name] (nil when absent); returns its type. */
static int get_option(lua_State *L, int opts, const char *name) {
  return lua_getfield(L, opts, name);
}


/*
 * core.handshake(opts) -> Handshake. Every option is validated before
 * anything is allocated, so a raise leaks nothing. The identity's keys are
 * copied by lp2p_hs_new: the Identity may be closed afterwards.
 */
static int l_handshake(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lp2p__config_check_names(L, 1, "core.handshake", option_names);
  lp2p_node_config nc;
  lp2p__config_read(L, 1, "core.handshake", &nc, shared_keys);
  lp2p_hs_config cfg;
  memset(&cfg, 0, sizeof cfg);

  get_option(L, 1, "identity");
  if (luaL_testudata(L, -1, IDENTITY_MT) == NULL)
    bad_option(L, "identity", "a luap2p.Identity");
  cfg.identity = lp2p__check_identity(L, lua_gettop(L));
  /* Stays on the stack: the pointer is valid until lp2p_hs_new copied. */

  if (get_option(L, 1, "incoming") != LUA_TBOOLEAN)
    bad_option(L, "incoming", "a boolean (required)");
  cfg.incoming = lua_toboolean(L, -1);
  lua_pop(L, 1);

  cfg.chain_name = nc.chain;
  cfg.chain_name_len = nc.chain_len;
  cfg.target = nc.target;
  cfg.advertised_port = nc.advertised_port;
  cfg.p2p = nc.p2p;
  cfg.ddb = nc.ddb;
  cfg.private_node = (uint8_t)nc.private_mode;
  cfg.disable_mempool = (uint8_t)nc.disable_mempool;
  cfg.max_conn_msg_len = nc.max_conn_msg_len;

  int t = get_option(L, 1, "defer_key");
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    bad_option(L, "defer_key", "a boolean");
  cfg.defer_key = lua_toboolean(L, -1);
  lua_pop(L, 1);

  uint8_t nonce[LP2P_NONCE_BYTES];
  t = get_option(L, 1, "message_nonce");
  if (t != LUA_TNIL) {
    size_t n = 0;
    const char *s = lua_tolstring(L, -1, &n);
    if (t != LUA_TSTRING || n != LP2P_NONCE_BYTES)
      bad_option(L, "message_nonce", "a 24-byte string");
    memcpy(nonce, s, n);
    cfg.message_nonce = nonce;
  }
  lua_pop(L, 1);

  /* Closed box first, then the resource (liolib newprefile). */
  hs_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, HS_MT);
  int err = 0;
  b->hs = lp2p_hs_new(&cfg, &err);
  b->incoming = cfg.incoming;
  if (b->hs == NULL)
    return lp2p__push_error(L, err);
  return 1;
}


/* ---------------------------------------------------------- methods */

static int hs_close(lua_State *L) {
  hs_box *b = check_box(L, 1);
  lp2p_hs_free(b->hs); /* wipes the keys */
  b->hs = NULL;
  return 0;
}


static int hs_tostring(lua_State *L) {
  hs_box *b = check_box(L, 1);
  if (b->hs == NULL)
    lua_pushliteral(L, "luap2p.Handshake (closed)");
  else
    lua_pushfstring(L, "luap2p.Handshake (%s, %p)",
                    b->incoming ? "incoming" : "outgoing", (void *)b->hs);
  return 1;
}


/* hs:output() -> the bytes queued for the remote since the last call. */
static int hs_output(lua_State *L) {
  lp2p_hs *hs = check_hs(L, 1);
  uint8_t *out = NULL;
  size_t len = lp2p_hs_take_output(hs, &out);
  lua_pushlstring(L, len ? (const char *)out : "", len);
  free(out);
  return 1;
}


/* hs:feed(bytes) -> event name, bytes consumed; or the error triple. */
static int hs_feed(lua_State *L) {
  hs_box *b = check_box(L, 1);
  lp2p_hs *hs = check_hs(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  size_t used = 0;
  int ev = lp2p_hs_feed(hs, (const uint8_t *)data, len, &used);
  if (ev < 0)
    return lp2p__push_error(L, ev);
  if (ev == LP2P_HS_METADATA)
    b->got_meta = 1;
  else if (ev == LP2P_HS_NACKED)
    b->nacked = 1;
  else if (ev == LP2P_HS_ACKED)
    b->acked = 1;
  lua_pushstring(L, event_names[ev]);
  lua_pushinteger(L, (lua_Integer)used);
  return 2;
}


/* hs:key() after "key_needed" (defer_key): run the key job here (the
 * node runs it on a worker thread) -> "conn_msg"; or the error triple
 * (EPOW, EPROTO; ESTATE at any other time). */
static int hs_key(lua_State *L) {
  lp2p_hs *hs = check_hs(L, 1);
  lp2p_hs_keyjob job;
  int rc = lp2p_hs_key_job(hs, &job);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  lp2p_hs_keyjob_run(&job);
  rc = lp2p_hs_key_done(hs, &job);
  if (rc < 0)
    return lp2p__push_error(L, rc);
  lua_pushstring(L, event_names[rc]);
  return 1;
}


static int hs_ack(lua_State *L) {
  int rc = lp2p_hs_ack(check_hs(L, 1));
  if (rc != 0)
    return lp2p__push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}


/* hs:nack(motive[, {"a.b.c.d:port", ...}]): a bad motive or point raises
 * (caller's mistake); calling it at the wrong time returns ESTATE. */
static int hs_nack(lua_State *L) {
  lp2p_hs *hs = check_hs(L, 1);
  lua_Integer motive = luaL_checkinteger(L, 2);
  luaL_argcheck(L, motive >= INT16_MIN && motive <= INT16_MAX, 2,
                "motive must fit a signed 16-bit integer");
  lp2p_point points[LP2P_NACK_POINTS_MAX];
  size_t n = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer len = (lua_Integer)lua_rawlen(L, 3);
    luaL_argcheck(L, len <= LP2P_NACK_POINTS_MAX, 3,
                  "at most 100 points");
    for (lua_Integer i = 1; i <= len; i++) {
      lua_rawgeti(L, 3, i);
      size_t sl;
      const char *s = lua_tolstring(L, -1, &sl);
      if (lua_type(L, -1) != LUA_TSTRING ||
          lp2p_point_parse(&points[n], s, sl) != 0) {
        lua_pushfstring(L, "bad point #%I", i);
        return luaL_argerror(L, 3, lua_tostring(L, -1));
      }
      lua_pop(L, 1);
      n++;
    }
  }
  int rc = lp2p_hs_nack(hs, (int)motive, points, n);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}


/* Push the text of a peer id. */
static void push_peer_id(lua_State *L, const uint8_t id[LP2P_PEER_ID_BYTES]) {
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, id);
  lua_pushstring(L, text);
}


/* The fields shared by hs:remote() and core.conn_msg_decode(). */
static void push_conn_msg_fields(lua_State *L, const lp2p_conn_msg *m) {
  lp2p__set_int(L, "port", m->port);
  lp2p__set_lstr(L, "public_key", m->pk, LP2P_PK_BYTES);
  lp2p__set_lstr(L, "proof_of_work_stamp", m->stamp, LP2P_STAMP_BYTES);
  lp2p__set_lstr(L, "message_nonce", m->nonce, LP2P_NONCE_BYTES);
  size_t keep = m->chain_len < LP2P_CHAIN_NAME_MAX ? m->chain_len
                                                    : LP2P_CHAIN_NAME_MAX;
  lp2p__set_lstr(L, "chain", m->chain, keep);
  lp2p__set_int(L, "chain_len", (lua_Integer)m->chain_len);
  lp2p__set_int(L, "ddb_version", m->ddb_version);
  lp2p__set_int(L, "p2p_version", m->p2p_version);
  uint8_t id[LP2P_PEER_ID_BYTES];
  lp2p_peer_id(id, m->pk);
  push_peer_id(L, id);
  lua_setfield(L, -2, "peer_id");
  lp2p__set_lstr(L, "peer_id_bytes", id, LP2P_PEER_ID_BYTES);
}


/*
 * hs:remote() -> nil before the remote connection message decoded; then a
 * table: the message's fields, version_status (nil or "ECHAIN" /
 * "EP2PVER" / "EDDBVER"), chosen_p2p_version / chosen_ddb_version (when
 * the versions match), disable_mempool / private_node (after "metadata"),
 * nack_motive / nack_points (after "nacked"; motive -1 for Nack_v_0).
 */
static int hs_remote(lua_State *L) {
  hs_box *b = check_box(L, 1);
  const lp2p_hs_remote *r = lp2p_hs_remote_info(check_hs(L, 1));
  if (r == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 20);
  push_conn_msg_fields(L, &r->msg);
  if (r->version_status != 0) {
    lua_pushstring(L, lp2p_err_name(r->version_status));
    lua_setfield(L, -2, "version_status");
  } else {
    lp2p__set_int(L, "chosen_p2p_version", r->p2p_version);
    lp2p__set_int(L, "chosen_ddb_version", r->ddb_version);
  }
  if (b->got_meta) {
    lp2p__set_bool(L, "disable_mempool", r->disable_mempool);
    lp2p__set_bool(L, "private_node", r->private_node);
  }
  if (b->nacked) {
    lp2p__set_int(L, "nack_motive", r->nack_motive);
    lp2p__push_points(L, r->nack_points, r->nack_npoints);
    lua_setfield(L, -2, "nack_points");
  }
  return 1;
}


/* hs:channel() -> a Channel with the key and both nonce counters as they
 * stand after the handshake chunks; ESTATE before the remote Ack. */
static int hs_channel(lua_State *L) {
  lp2p_crypto c;
  int rc = lp2p_hs_crypto(check_hs(L, 1), &c);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  lp2p__push_channel(L, &c);
  lp2p_crypto_wipe(&c);
  return 1;
}


/* ------------------------------------------- connection message helpers */

/* core.conn_msg_decode(body without its u16 prefix) -> table. */
static int l_conn_msg_decode(lua_State *L) {
  size_t len;
  const char *body = luaL_checklstring(L, 1, &len);
  lp2p_conn_msg m;
  int rc = lp2p_conn_msg_decode(&m, (const uint8_t *)body, len);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  lua_createtable(L, 0, 10);
  push_conn_msg_fields(L, &m);
  return 1;
}


/* Field k of the table at 1: a string of exactly n bytes copied to out. */
static void get_bytes(lua_State *L, const char *k, uint8_t *out, size_t n) {
  size_t len = 0;
  const char *s = NULL;
  if (lua_getfield(L, 1, k) == LUA_TSTRING)
    s = lua_tolstring(L, -1, &len);
  if (s == NULL || len != n) {
    lua_pushfstring(L, "field '%s' must be a %d-byte string", k, (int)n);
    luaL_argerror(L, 1, lua_tostring(L, -1));
  }
  memcpy(out, s, n);
  lua_pop(L, 1);
}


static uint16_t get_u16_field(lua_State *L, const char *k) {
  int ok = 0;
  lua_getfield(L, 1, k);
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (lua_type(L, -1) != LUA_TNUMBER || !ok || v < 0 || v > 65535) {
    lua_pushfstring(L, "field '%s' must be an integer in [0, 65535]", k);
    luaL_argerror(L, 1, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return (uint16_t)v;
}


/* core.conn_msg_encode{port, public_key, proof_of_work_stamp,
 * message_nonce, chain, ddb_version, p2p_version} -> the whole message,
 * u16 length prefix included (as it goes on the wire). */
static int l_conn_msg_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lp2p_conn_msg m;
  memset(&m, 0, sizeof m);
  m.port = get_u16_field(L, "port");
  get_bytes(L, "public_key", m.pk, LP2P_PK_BYTES);
  get_bytes(L, "proof_of_work_stamp", m.stamp, LP2P_STAMP_BYTES);
  get_bytes(L, "message_nonce", m.nonce, LP2P_NONCE_BYTES);
  size_t cl = 0;
  const char *chain = NULL;
  if (lua_getfield(L, 1, "chain") == LUA_TSTRING)
    chain = lua_tolstring(L, -1, &cl);
  luaL_argcheck(L, chain != NULL && cl <= LP2P_CHAIN_NAME_MAX, 1,
                "field 'chain' must be a string of at most 255 bytes");
  memcpy(m.chain, chain, cl);
  m.chain_len = cl;
  lua_pop(L, 1);
  m.ddb_version = get_u16_field(L, "ddb_version");
  m.p2p_version = get_u16_field(L, "p2p_version");
  uint8_t out[CONN_MSG_MAX];
  long n = lp2p_conn_msg_encode(out, sizeof out, &m);
  if (n < 0)
    return lp2p__push_error(L, (int)n);
  lua_pushlstring(L, (const char *)out, (size_t)n);
  return 1;
}


/* core.nonces(init_msg, resp_msg) -> N_ir, N_ri (raw messages, u16 prefix
 * included; init is the side that opened the TCP connection). */
static int l_nonces(lua_State *L) {
  size_t il, rl;
  const char *init = luaL_checklstring(L, 1, &il);
  const char *resp = luaL_checklstring(L, 2, &rl);
  uint8_t ir[LP2P_NONCE_BYTES], ri[LP2P_NONCE_BYTES];
  lp2p_nonces_derive(ir, ri, (const uint8_t *)init, il,
                     (const uint8_t *)resp, rl);
  lua_pushlstring(L, (const char *)ir, sizeof ir);
  lua_pushlstring(L, (const char *)ri, sizeof ri);
  return 2;
}


static const luaL_Reg hs_methods[] = {
  {"output", hs_output},
  {"feed", hs_feed},
  {"key", hs_key},
  {"ack", hs_ack},
  {"nack", hs_nack},
  {"remote", hs_remote},
  {"channel", hs_channel},
  {"close", hs_close},
  {NULL, NULL}
};

static const luaL_Reg hs_meta[] = {
  {"__gc", hs_close},
  {"__close", hs_close},
  {"__tostring", hs_tostring},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"handshake", l_handshake},
  {"conn_msg_decode", l_conn_msg_decode},
  {"conn_msg_encode", l_conn_msg_encode},
  {"nonces", l_nonces},
  {NULL, NULL}
};


void lp2p__open_handshake(lua_State *L) {
  lp2p__new_class(L, HS_MT, hs_meta, hs_methods);
  luaL_setfuncs(L, functions, 0);
  /* Nack motives (P2p_rejection). */
  lp2p__set_int(L, "NACK_NO_MOTIVE", LP2P_NACK_NO_MOTIVE);
  lp2p__set_int(L, "NACK_TOO_MANY_CONNECTIONS", LP2P_NACK_TOO_MANY_CONNECTIONS);
  lp2p__set_int(L, "NACK_UNKNOWN_CHAIN_NAME", LP2P_NACK_UNKNOWN_CHAIN_NAME);
  lp2p__set_int(L, "NACK_DEPRECATED_P2P_VERSION",
          LP2P_NACK_DEPRECATED_P2P_VERSION);
  lp2p__set_int(L, "NACK_DEPRECATED_DDB_VERSION",
          LP2P_NACK_DEPRECATED_DDB_VERSION);
  lp2p__set_int(L, "NACK_ALREADY_CONNECTED", LP2P_NACK_ALREADY_CONNECTED);
}
