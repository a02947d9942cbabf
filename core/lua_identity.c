/* lua_identity.c - Lua binding of identity (placeholder until written). */
#include "lua_lp2p.h"


void lp2p__open_identity(lua_State *L) {
  (void)L;
}
