/*
 * lua_core.c - luaopen_luap2p_core: the module table, error helpers and the
 * constants shared by every binding file.
 */
#include <sodium.h>

#include "lua_lp2p.h"


int lp2p__push_error_msg(lua_State *L, int err, const char *msg) {
  const char *name = lp2p_err_name(err);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", name, msg);
  lua_pushstring(L, name);
  return 3;
}


int lp2p__push_error(lua_State *L, int err) {
  return lp2p__push_error_msg(L, err, lp2p_strerror(err));
}


/* core.strerror(code) -> name, message: for codes met outside the binding. */
static int core_strerror(lua_State *L) {
  int err = (int)luaL_checkinteger(L, 1);
  lua_pushstring(L, lp2p_err_name(err));
  lua_pushstring(L, lp2p_strerror(err));
  return 2;
}


static void set_int(lua_State *L, const char *name, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, name);
}


LP2P_EXPORT int luaopen_luap2p_core(lua_State *L) {
  if (sodium_init() < 0)
    return luaL_error(L, "luap2p.core: libsodium failed to initialise");
  /* Create the loop first: Lua finalizes in reverse order of creation, so
   * every node and handle is closed before the loop itself goes. */
  lp2p__loop(L);
  lua_newtable(L);
  lua_pushliteral(L, LP2P_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, core_strerror);
  lua_setfield(L, -2, "strerror");
  set_int(L, "PK_BYTES", LP2P_PK_BYTES);
  set_int(L, "SK_BYTES", LP2P_SK_BYTES);
  set_int(L, "STAMP_BYTES", LP2P_STAMP_BYTES);
  set_int(L, "NONCE_BYTES", LP2P_NONCE_BYTES);
  set_int(L, "KEY_BYTES", LP2P_KEY_BYTES);
  set_int(L, "PEER_ID_BYTES", LP2P_PEER_ID_BYTES);
  set_int(L, "CHUNK_SIZE_MIN", LP2P_CHUNK_SIZE_MIN);
  set_int(L, "CHUNK_SIZE_MAX", LP2P_CHUNK_SIZE_MAX);
  set_int(L, "CHUNK_PAYLOAD_MAX", LP2P_CHUNK_PAYLOAD_MAX);
  set_int(L, "MSG_MAX", LP2P_MSG_MAX);
  lua_newtable(L); /* errors: name -> code */
#define XX(name, msg) set_int(L, #name, LP2P_##name);
  LP2P_ERRNO_MAP(XX)
#undef XX
  lua_setfield(L, -2, "errors");
  lp2p__open_identity(L);
  lp2p__open_frame(L);
  lp2p__open_handshake(L);
  lp2p__open_node(L);
  lp2p__open_loop(L);
  lp2p__open_admission(L);
  lp2p__open_fs(L);
  lp2p__open_http(L);
  return 1;
}
