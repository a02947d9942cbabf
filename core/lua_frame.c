/* lua_frame.c - Lua binding of frame (placeholder until written). */
#include "lua_lp2p.h"


void lp2p__open_frame(lua_State *L) {
  (void)L;
}
