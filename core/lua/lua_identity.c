/*
 * lua_identity.c - Lua binding of identity.c: the luap2p.Identity userdata,
 * peer ids, proof-of-work targets and the glue of the threaded
 * proof-of-work search (core/net/pow_workers.c).
 *
 * An identity is plain bytes, so it lives inside the userdata (no separate
 * allocation); close/__gc/__close wipe it. Binary values cross as Lua
 * strings of raw bytes.
 */
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "lua_lp2p.h"
#include "../net/lp2p_node.h"

#define IDENTITY_MT "luap2p.Identity"

/* Bounds for core.pow_search options. */
#define POW_THREADS_MAX LP2P_POW_THREADS_MAX
#define POW_EVERY_DEFAULT (1u << 16)
#define POW_EVERY_MAX (1u << 24)
#define POW_PROGRESS_PERIOD 0.25 /* seconds between progress calls */

typedef struct lua_identity {
  int open; /* 0 once closed: the keys are wiped */
  lp2p_identity id;
} lua_identity;


/* ------------------------------------------------------------- helpers */

/* Target of the bits argument at idx; raises when outside [0, 256]. */
static void check_target(lua_State *L, int idx, lp2p_pow_target *t) {
  double bits = (double)luaL_checknumber(L, idx);
  if (lp2p_pow_target_make(t, bits) != 0)
    luaL_argerror(L, idx, "bits must be a number between 0 and 256");
}


/* A new Identity userdata, closed (nothing to wipe) until the caller fills
 * it and sets open. Allocated before any key exists so that an allocation
 * error cannot strand a secret key on the C stack. */
static lua_identity *new_identity(lua_State *L) {
  lua_identity *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->open = 0;
  memset(&u->id, 0, sizeof u->id);
  luaL_setmetatable(L, IDENTITY_MT);
  return u;
}


lp2p_identity *lp2p__check_identity(lua_State *L, int idx) {
  lua_identity *u = luaL_checkudata(L, idx, IDENTITY_MT);
  if (!u->open)
    luaL_error(L, "attempt to use a closed " IDENTITY_MT);
  return &u->id;
}


/* ------------------------------------------------------------ Identity */

/* core.identity_generate() -> Identity (stamp all zero: no proof of work) */
static int core_identity_generate(lua_State *L) {
  lua_identity *u = new_identity(L);
  lp2p_identity_generate(&u->id);
  u->open = 1;
  return 1;
}


/* core.identity_from_json(text) -> Identity | nil, "EIDENTITY: ...", name */
static int core_identity_from_json(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  char err[160];
  lua_identity *u = new_identity(L);
  /* On failure the parser leaves u->id wiped and u stays closed. */
  if (lp2p_identity_from_json(&u->id, text, len, err, sizeof err) != 0)
    return lp2p__push_error_msg(L, LP2P_EIDENTITY, err);
  u->open = 1;
  return 1;
}


/* id:peer_id() -> "id..." */
static int identity_peer_id(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, id->peer_id);
  lua_pushstring(L, text);
  return 1;
}


static int identity_peer_id_bytes(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->peer_id, sizeof id->peer_id);
  return 1;
}


static int identity_public_key(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->pk, sizeof id->pk);
  return 1;
}


/* The secret key as a Lua string: it can no longer be wiped, so this is
 * for writing identity files and tests only. */
static int identity_secret_key(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->sk, sizeof id->sk);
  return 1;
}


static int identity_stamp(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->stamp, sizeof id->stamp);
  return 1;
}


/* id:set_stamp(bytes24) -> id */
static int identity_set_stamp(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  const uint8_t *s = lp2p__check_bytes(L, 2, LP2P_STAMP_BYTES, "stamp");
  memcpy(id->stamp, s, LP2P_STAMP_BYTES);
  lua_settop(L, 1);
  return 1;
}


/* id:check_pow(bits) -> boolean */
static int identity_check_pow(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lp2p_pow_target t;
  check_target(L, 2, &t);
  lua_pushboolean(L, lp2p_pow_check(id->pk, id->stamp, &t));
  return 1;
}


/* id:check_keys() -> true | nil, "EIDENTITY: ...", "EIDENTITY" */
static int identity_check_keys(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  if (lp2p_identity_check_keys(id) != 0)
    return lp2p__push_error_msg(L, LP2P_EIDENTITY,
                                "secret_key does not match public_key");
  lua_pushboolean(L, 1);
  return 1;
}


/* id:to_json() -> text (Octez identity.json layout) */
static int identity_to_json(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  char buf[LP2P_IDENTITY_JSON_MAX];
  int n = lp2p_identity_to_json(buf, sizeof buf, id);
  if (n < 0)
    return luaL_error(L, "identity_to_json: buffer too small"); /* a bug */
  lua_pushlstring(L, buf, (size_t)n);
  sodium_memzero(buf, sizeof buf);
  return 1;
}


/* close, __gc and __close: wipe once; later calls do nothing. */
static int identity_close(lua_State *L) {
  lua_identity *u = luaL_checkudata(L, 1, IDENTITY_MT);
  if (u->open) {
    lp2p_identity_wipe(&u->id);
    u->open = 0;
  }
  return 0;
}


static int identity_tostring(lua_State *L) {
  lua_identity *u = luaL_checkudata(L, 1, IDENTITY_MT);
  if (!u->open) {
    lua_pushliteral(L, IDENTITY_MT " (closed)");
    return 1;
  }
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, u->id.peer_id);
  lua_pushfstring(L, IDENTITY_MT " (%s)", text);
  return 1;
}


/* ------------------------------------------------------------ peer ids */

/* core.peer_id(pk32) -> 16 bytes */
static int core_peer_id(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  uint8_t id[LP2P_PEER_ID_BYTES];
  lp2p_peer_id(id, pk);
  lua_pushlstring(L, (const char *)id, sizeof id);
  return 1;
}


/* core.peer_id_encode(id16) -> "id..." */
static int core_peer_id_encode(lua_State *L) {
  const uint8_t *id = lp2p__check_bytes(L, 1, LP2P_PEER_ID_BYTES, "peer id");
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, id);
  lua_pushstring(L, text);
  return 1;
}


/* core.peer_id_decode(text) -> 16 bytes | nil, "EPEERID: ...", "EPEERID" */
static int core_peer_id_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  uint8_t id[LP2P_PEER_ID_BYTES];
  if (len != LP2P_PEER_ID_B58_LEN)
    return lp2p__push_error_msg(L, LP2P_EPEERID,
                                "expected 30 characters (\"id...\")");
  if (lp2p_peer_id_decode(id, text, len) != 0)
    return lp2p__push_error_msg(L, LP2P_EPEERID,
                                "bad base58 character, prefix or checksum");
  lua_pushlstring(L, (const char *)id, sizeof id);
  return 1;
}


/* -------------------------------------------------------- proof of work */

/* core.pow_target(bits) -> 32 bytes, little-endian */
static int core_pow_target(lua_State *L) {
  lp2p_pow_target t;
  check_target(L, 1, &t);
  lua_pushlstring(L, (const char *)t.le, sizeof t.le);
  return 1;
}


/* core.pow_check(pk32, stamp24, bits) -> boolean */
static int core_pow_check(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  const uint8_t *stamp = lp2p__check_bytes(L, 2, LP2P_STAMP_BYTES, "stamp");
  lp2p_pow_target t;
  check_target(L, 3, &t);
  lua_pushboolean(L, lp2p_pow_check(pk, stamp, &t));
  return 1;
}


/* The progress callback of a search: calls the Lua function at
 * ctx->fn with (tries, elapsed) in a protected call. A Lua error cancels
 * the search and stays on the stack, re-raised once the workers are
 * joined (a raise here would leave them running). */
typedef struct pow_ctx {
  lua_State *L;
  int fn;     /* stack index of the progress function */
  int failed; /* the error object is on top of the stack */
} pow_ctx;


static int pow_progress(void *ud, uint64_t tries, double elapsed) {
  pow_ctx *ctx = ud;
  lua_State *L = ctx->L;
  lua_pushvalue(L, ctx->fn);
  lua_pushinteger(L, (lua_Integer)tries);
  lua_pushnumber(L, (lua_Number)elapsed);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    ctx->failed = 1;
    return 1;
  }
  int cancel = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return cancel;
}


/* core.pow_search(pk32, bits [, opts]) -> stamp24, tries
 *                                       | nil, "ECANCELED: ...", "ECANCELED"
 * opts.threads (default: online CPUs), opts.every (tries between each
 * worker's looks at the shared counter and stop flag, default 65536),
 * opts.progress(total_tries, elapsed_seconds) called about every 0.25 s from
 * this thread; a true result cancels. The threads are core/net's
 * (pow_workers.c); between starting and joining them nothing here may
 * raise: Lua errors of progress are caught by lua_pcall, the threads
 * stopped and joined, then the error re-raised. */
static int core_pow_search(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  lp2p_pow_target t;
  check_target(L, 2, &t);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  lua_Integer threads = cpus >= 1 ? (lua_Integer)cpus : 1;
  lua_Integer every = POW_EVERY_DEFAULT;
  int progress = 0; /* stack index of the progress function, or 0 */

  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    int isint;
    if (lua_getfield(L, 3, "threads") != LUA_TNIL) {
      threads = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && threads >= 1 &&
                       threads <= POW_THREADS_MAX, 3,
                    "opts.threads must be an integer in 1..256");
    }
    if (lua_getfield(L, 3, "every") != LUA_TNIL) {
      every = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && every >= 1 &&
                       every <= POW_EVERY_MAX, 3,
                    "opts.every must be an integer in 1..2^24");
    }
    if (lua_getfield(L, 3, "progress") != LUA_TNIL) {
      luaL_argcheck(L, lua_isfunction(L, -1), 3,
                    "opts.progress must be a function");
      progress = lua_gettop(L);
    }
  }
  if (threads > POW_THREADS_MAX)
    threads = POW_THREADS_MAX;
  /* Room for the progress call, reserved now: nothing may raise later. */
  luaL_checkstack(L, 8, "pow_search");

  pow_ctx ctx = {L, progress, 0};
  uint8_t stamp[LP2P_STAMP_BYTES];
  uint64_t tries = 0;
  int rc = lp2p_pow_search_workers(stamp, &tries, pk, &t, (int)threads,
                                   (uint64_t)every, POW_PROGRESS_PERIOD,
                                   progress ? pow_progress : NULL, &ctx);
  if (ctx.failed)
    return lua_error(L);
  if (rc == LP2P_ENOMEM)
    return lp2p__push_error_msg(L, rc, "cannot start a thread");
  if (rc < 0)
    return lp2p__push_error_msg(L, rc, "proof-of-work search canceled");
  lua_pushlstring(L, (const char *)stamp, sizeof stamp);
  lua_pushinteger(L, (lua_Integer)tries);
  return 2;
}


/* ------------------------------------------------------------- opening */

static const luaL_Reg identity_methods[] = {
    {"peer_id", identity_peer_id},
    {"peer_id_bytes", identity_peer_id_bytes},
    {"public_key", identity_public_key},
    {"secret_key", identity_secret_key},
    {"stamp", identity_stamp},
    {"set_stamp", identity_set_stamp},
    {"check_pow", identity_check_pow},
    {"check_keys", identity_check_keys},
    {"to_json", identity_to_json},
    {"close", identity_close},
    {NULL, NULL}};

static const luaL_Reg identity_meta[] = {
    {"__gc", identity_close},
    {"__close", identity_close},
    {"__tostring", identity_tostring},
    {NULL, NULL}};

static const luaL_Reg core_functions[] = {
    {"identity_generate", core_identity_generate},
    {"identity_from_json", core_identity_from_json},
    {"peer_id", core_peer_id},
    {"peer_id_encode", core_peer_id_encode},
    {"peer_id_decode", core_peer_id_decode},
    {"pow_target", core_pow_target},
    {"pow_check", core_pow_check},
    {"pow_search", core_pow_search},
    {NULL, NULL}};


void lp2p__open_identity(lua_State *L) {
  lp2p__new_class(L, IDENTITY_MT, identity_meta, identity_methods);
  luaL_setfuncs(L, core_functions, 0);
  lua_pushnumber(L, LP2P_POW_DEFAULT_BITS);
  lua_setfield(L, -2, "POW_DEFAULT_BITS");
}
