/* lua_node.c - Lua binding of node (placeholder until written). */
#include "lua_lp2p.h"


void lp2p__open_node(lua_State *L) {
  (void)L;
}
