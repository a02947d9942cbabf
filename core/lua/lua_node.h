/*
 * lua_node.h - the luap2p.Node userdata (lua_node.c) and its hooks
 * (lua_node_hooks.c). Internal to the binding.
 */
#ifndef LUA_NODE_H
#define LUA_NODE_H

#include "lua_config.h"

/* The userdata: the node (NULL once closed: no hook runs then), the main
 * thread its hooks call Lua on, and its dispatcher in the registry. Only
 * the calls Lua wants cross (node:want): a bit per event type, and the
 * accept hook; everything until told otherwise. calls*: the calls that
 * crossed (node:calls). */
typedef struct lp2p_node_box {
  lp2p_node *node;
  lua_State *L;
  int dispatch_ref;
  uint32_t want_events;
  int want_accept;
  lua_Integer calls[LP2P_EV_COUNT];
  lua_Integer calls_accept, calls_authenticated, calls_message;
} lp2p_node_box;

_Static_assert(LP2P_EV_COUNT <= 32, "one bit per event type in want_events");

/* Fill hooks with the four hooks that call b's dispatcher (ud = b). */
void lp2p__node_hooks(lp2p_node_hooks *hooks, lp2p_node_box *b);

#endif /* LUA_NODE_H */
