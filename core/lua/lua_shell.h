/*
 * lua_shell.h - shared by the two halves of the shell codec's binding
 * (lua_shell.c, lua_shell_encode.c). Internal to core/lua.
 */
#ifndef LUA_SHELL_H
#define LUA_SHELL_H

#include "lua_lp2p.h"
#include "../wire/shell.h"

/* Push the Base58Check text of a raw hash of `kind`. */
void lp2p__shell_push_hash(lua_State *L, lp2p_hash_kind kind,
                           const uint8_t *raw);
/* The hash kind of a Get_block_headers, Get_operations or Get_protocols
 * list. */
lp2p_hash_kind lp2p__shell_request_kind(uint16_t tag);
/* Push nil, "ENAME: <message name>: <m->why>", "ENAME" for a failure rc
 * of the codec on m; returns 3. */
int lp2p__shell_push_error(lua_State *L, int rc, const lp2p_shell_msg *m);
/* Add shell_encode, b58_encode and b58_decode to the table on top. */
void lp2p__open_shell_encode(lua_State *L);

#endif /* LUA_SHELL_H */
