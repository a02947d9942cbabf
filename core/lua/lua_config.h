/*
 * lua_config.h - reading config tables into an lp2p_node_config
 * (lua_config.c). Internal to the binding.
 */
#ifndef LUA_CONFIG_H
#define LUA_CONFIG_H

#include <stdio.h>

#include "lua_lp2p.h"
#include "../net/lp2p_node.h"

/* Fill c with the core's defaults, then copy the keys of the table at t
 * that the core reads (only those named in `only`, a NULL-terminated list,
 * when it is not NULL). A bad value raises "<who>: config.<key>: expected
 * ..." (misuse); nothing is allocated. */
void lp2p__config_read(lua_State *L, int t, const char *who,
                       lp2p_node_config *c, const char *const *only);
/* Raise "<who>: unknown config key 'k' (did you mean 'x'?)" unless every
 * key of the table at t is in names (NULL-terminated). */
void lp2p__config_check_names(lua_State *L, int t, const char *who,
                              const char *const *names);

#endif /* LUA_CONFIG_H */
