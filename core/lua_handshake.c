/* lua_handshake.c - Lua binding of handshake (placeholder until written). */
#include "lua_lp2p.h"


void lp2p__open_handshake(lua_State *L) {
  (void)L;
}
