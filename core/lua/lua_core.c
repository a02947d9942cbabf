/*
 * lua_core.c - luaopen_luap2p_core: the module table, error helpers and the
 * constants shared by every binding file.
 */
#include <signal.h>

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


void lp2p__new_class(lua_State *L, const char *tname, const luaL_Reg *meta,
                     const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L); /* luaL_newlib needs an array, not a pointer */
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}


const uint8_t *lp2p__check_bytes(lua_State *L, int idx, size_t n,
                                 const char *what) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len != n)
    luaL_argerror(L, idx,
                  lua_pushfstring(L, "expected a %d-byte %s, got %d bytes",
                                  (int)n, what, (int)len));
  return (const uint8_t *)s;
}


void lp2p__set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}


void lp2p__set_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}


void lp2p__set_lstr(lua_State *L, const char *k, const void *p, size_t n) {
  lua_pushlstring(L, (const char *)p, n);
  lua_setfield(L, -2, k);
}


void lp2p__set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}


void lp2p__push_point(lua_State *L, const lp2p_point *p) {
  char text[LP2P_POINT_TEXT_MAX + 1];
  int n = lp2p_point_format(text, p);
  lua_pushlstring(L, text, n > 0 ? (size_t)n : 0);
}


void lp2p__push_points(lua_State *L, const lp2p_point *pts, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lp2p__push_point(L, &pts[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}


void lp2p__set_point(lua_State *L, const char *k, const lp2p_point *p) {
  lp2p__push_point(L, p);
  lua_setfield(L, -2, k);
}


/* System errors the API passes through from libuv (sockets, files, the
 * file-system calls of identity loading), under libuv's codes: with
 * LP2P_ERRNO_MAP they make p2p.core.errors, every ENAME a function of the
 * Lua API or an event can carry (spec/errors_spec.lua checks the sources
 * and the runtime against it). EUNKNOWN names a code without a name. */
#define SYS_ERRORS(XX)                                                       \
  XX(EOF) XX(EADDRINUSE) XX(EADDRNOTAVAIL) XX(EAFNOSUPPORT)     \
  XX(EACCES) XX(EPERM) XX(ECONNREFUSED) XX(ECONNRESET) XX(ECONNABORTED)      \
  XX(EHOSTUNREACH) XX(ENETUNREACH) XX(ENETDOWN) XX(EPIPE) XX(ENOTCONN)       \
  XX(ENOENT) XX(EEXIST) XX(EISDIR) XX(ENOTDIR) XX(ELOOP) XX(ENAMETOOLONG)    \
  XX(EIO) XX(EFBIG) XX(ENOSPC) XX(EROFS) XX(EMFILE) XX(ENFILE)               \
  XX(EAGAIN) XX(EBUSY) XX(ENODEV) XX(ENOSYS) XX(EPROTONOSUPPORT)


/* core.strerror(code) -> name, message: for codes met outside the binding. */
static int core_strerror(lua_State *L) {
  int err = (int)luaL_checkinteger(L, 1);
  lua_pushstring(L, lp2p_err_name(err));
  lua_pushstring(L, lp2p_strerror(err));
  return 2;
}


LP2P_EXPORT int luaopen_luap2p_core(lua_State *L) {
  if (sodium_init() < 0)
    return luaL_error(L, "luap2p.core: libsodium failed to initialise");
  /* A peer that goes away while we write must be an EPIPE on that
   * connection, not the death of the process; a handler the host set up
   * is left alone. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  /* Create the loop first: Lua finalizes in reverse order of creation, so
   * every node and handle is closed before the loop itself goes. */
  lp2p__loop(L);
  lua_newtable(L);
  lua_pushliteral(L, LP2P_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, core_strerror);
  lua_setfield(L, -2, "strerror");
  lp2p__set_int(L, "PK_BYTES", LP2P_PK_BYTES);
  lp2p__set_int(L, "SK_BYTES", LP2P_SK_BYTES);
  lp2p__set_int(L, "STAMP_BYTES", LP2P_STAMP_BYTES);
  lp2p__set_int(L, "NONCE_BYTES", LP2P_NONCE_BYTES);
  lp2p__set_int(L, "KEY_BYTES", LP2P_KEY_BYTES);
  lp2p__set_int(L, "PEER_ID_BYTES", LP2P_PEER_ID_BYTES);
  lp2p__set_int(L, "CHUNK_SIZE_MIN", LP2P_CHUNK_SIZE_MIN);
  lp2p__set_int(L, "CHUNK_SIZE_MAX", LP2P_CHUNK_SIZE_MAX);
  lp2p__set_int(L, "CHUNK_PAYLOAD_MAX", LP2P_CHUNK_PAYLOAD_MAX);
  lp2p__set_int(L, "MSG_MAX", LP2P_MSG_MAX);
  lua_newtable(L); /* errors: name -> code */
#define XX(name, msg) lp2p__set_int(L, #name, LP2P_##name);
  LP2P_ERRNO_MAP(XX)
#undef XX
#define XX(name) lp2p__set_int(L, #name, UV_##name);
  SYS_ERRORS(XX)
#undef XX
  lp2p__set_int(L, "EUNKNOWN", UV_UNKNOWN);
  lua_setfield(L, -2, "errors");
  lp2p__open_identity(L);
  lp2p__open_frame(L);
  lp2p__open_message(L);
  lp2p__open_handshake(L);
  lp2p__open_node(L);
  lp2p__open_loop(L);
  lp2p__open_admission(L);
  lp2p__open_fs(L);
  lp2p__open_http(L);
  lp2p__open_config(L);
  lp2p__open_shell(L);
  lp2p__open_guard(L);
  return 1;
}
