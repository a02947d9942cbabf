/*
 * lua_lp2p.h - internal header shared by the lua_*.c binding files.
 * Not installed; the only exported symbol is luaopen_luap2p_core.
 */
#ifndef LUA_LP2P_H
#define LUA_LP2P_H

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "../wire/lp2p.h"

/* Push nil, "ENAME: message", "ENAME"; returns 3 (luv_error). */
int lp2p__push_error(lua_State *L, int err);
/* Same, with a more precise message than the code's own. */
int lp2p__push_error_msg(lua_State *L, int err, const char *msg);

/* lua_core.c: helpers shared by the binding files. */
/* Register metatable tname with the meta functions (__gc, __close,
 * __tostring, ...) and `methods` under __index. Stack unchanged. */
void lp2p__new_class(lua_State *L, const char *tname, const luaL_Reg *meta,
                     const luaL_Reg *methods);
/* Raise unless argument idx is a string of exactly n bytes. */
const uint8_t *lp2p__check_bytes(lua_State *L, int idx, size_t n,
                                 const char *what);
/* t[k] = v for the table on top of the stack. */
void lp2p__set_int(lua_State *L, const char *k, lua_Integer v);
void lp2p__set_bool(lua_State *L, const char *k, int v);
void lp2p__set_lstr(lua_State *L, const char *k, const void *p, size_t n);
void lp2p__set_str(lua_State *L, const char *k, const char *v);
void lp2p__set_point(lua_State *L, const char *k, const lp2p_point *p);
/* Push the canonical text of a point; an array of n of them. */
void lp2p__push_point(lua_State *L, const lp2p_point *p);
void lp2p__push_points(lua_State *L, const lp2p_point *pts, size_t n);

/* lua_identity.c: the luap2p.Identity userdata. check raises on a wrong
 * argument; the returned pointer lives as long as the userdata. */
lp2p_identity *lp2p__check_identity(lua_State *L, int idx);

/* lua_frame.c: push a new luap2p.Channel userdata holding a copy of c
 * (key and both nonce counters). */
void lp2p__push_channel(lua_State *L, const lp2p_crypto *c);

/* lua_loop.c: the state's loop (created on first use); the protected-call
 * funnel for every C->Lua call (see its comment); the main thread. */
uv_loop_t *lp2p__loop(lua_State *L);
int lp2p__pcall(lua_State *L, int nargs, int nresults, const char *where);
/* The message handler of every protected call: the error (made a string
 * when it is not one) with a traceback. */
int lp2p__traceback(lua_State *L);
lua_State *lp2p__main_thread(lua_State *L);
/* Non-zero while a C->Lua call through lp2p__pcall is in progress: the
 * loop must not run then (core.run raises). */
int lp2p__in_callback(lua_State *L);

/* Each binding file adds its functions to the module table at the top of
 * the stack (stack unchanged). */
void lp2p__open_identity(lua_State *L);
void lp2p__open_frame(lua_State *L);
void lp2p__open_message(lua_State *L);
void lp2p__open_handshake(lua_State *L);
void lp2p__open_node(lua_State *L);
void lp2p__open_loop(lua_State *L);
void lp2p__open_admission(lua_State *L);
void lp2p__open_fs(lua_State *L);
void lp2p__open_http(lua_State *L);
void lp2p__open_config(lua_State *L);
void lp2p__open_shell(lua_State *L);
/* lua_guard.c: core.guard and the accounting allocator it relies on. */
void lp2p__open_guard(lua_State *L);

#endif /* LUA_LP2P_H */
