/*
 * lua_node_hooks.c - the four hooks of a luap2p.Node (lua_node.c): each
 * calls the node's Lua dispatcher (lua/luap2p/dispatch.lua) through
 * lp2p__pcall:
 *
 *   dispatch("accept", point)                 -> true | false, reason
 *   dispatch("authenticated", info)           -> "ack" | "nack", motive,
 *                                                points | "close", reason
 *   dispatch("message", conn_id, tag, payload) -> pause, held (true to
 *                                                pause reading; bytes the
 *                                                inbox now holds)
 *   dispatch("event", ev)
 *
 * Only the calls Lua wants cross (node:want, lua_node.c): an event type
 * nobody takes, and the accept hook when no policy has one (it accepts),
 * stay in C. The box counts the calls that crossed.
 *
 * A dispatcher that errors or returns garbage gets the safe default:
 * refuse at accept, the handler's own verdict after authentication.
 * Connections are named by integer ids; Lua never holds a C pointer.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_node.h"


/* ------------------------------------------------------------- pushing */

/* Push the dispatcher and the hook name on the node's main thread, which
 * is returned. */
static lua_State *begin(lp2p_node_box *b, const char *hook) {
  lua_State *L = b->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->dispatch_ref);
  lua_pushstring(L, hook);
  return L;
}


/* --------------------------------------------------------------- hooks */

static int hook_accept(void *ud, const lp2p_point *addr, char *reason,
                       size_t cap) {
  lp2p_node_box *b = ud;
  if (!b->want_accept)
    return 1; /* no policy has an accept hook: the dispatcher accepts */
  b->calls_accept++;
  lua_State *L = begin(b, "accept");
  int top = lua_gettop(L) - 2;
  lp2p__push_point(L, addr);
  int ok = 0;
  if (lp2p__pcall(L, 2, 2, "accept hook") == 0) {
    ok = lua_toboolean(L, -2);
    if (!ok)
      snprintf(reason, cap, "%s",
               lua_isstring(L, -1) ? lua_tostring(L, -1) : "refused by policy");
  } else {
    snprintf(reason, cap, "accept hook failed");
  }
  lua_settop(L, top);
  return ok;
}


static void push_auth_info(lua_State *L, const lp2p_auth_info *info) {
  const lp2p_hs_remote *r = info->remote;
  lua_createtable(L, 0, 20);
  lp2p__set_int(L, "conn", (lua_Integer)info->conn);
  lp2p__set_bool(L, "incoming", info->incoming);
  lp2p__set_str(L, "direction", info->incoming ? "incoming" : "outgoing");
  lp2p__set_point(L, "addr", &info->addr);
  if (info->point.port != 0)
    lp2p__set_point(L, "point", &info->point);
  lp2p__set_str(L, "peer_id", info->peer_id);
  lua_pushlstring(L, r->msg.chain, r->msg.chain_len < LP2P_CHAIN_NAME_MAX
                                       ? r->msg.chain_len
                                       : LP2P_CHAIN_NAME_MAX);
  lua_setfield(L, -2, "chain");
  lp2p__set_int(L, "port", r->msg.port);
  lp2p__set_int(L, "p2p_version", r->msg.p2p_version);
  lp2p__set_int(L, "ddb_version", r->msg.ddb_version);
  lp2p__set_bool(L, "private_node", r->private_node);
  lp2p__set_bool(L, "disable_mempool", r->disable_mempool);
  if (info->refusal != 0) {
    lp2p__set_str(L, "refusal", lp2p_err_name(info->refusal));
    if (info->motive >= 0)
      lp2p__set_int(L, "motive", info->motive);
  }
}


/* Read the points table at idx into v (at most the Nack maximum, and the
 * malformed ones skipped: a policy typo must not kill the Nack). */
static void read_points(lua_State *L, int idx, lp2p_verdict *v) {
  v->npoints = 0;
  if (!lua_istable(L, idx))
    return;
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n && v->npoints < 50; i++) {
    lua_rawgeti(L, idx, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s != NULL && lp2p_point_parse(&v->points[v->npoints], s, len) == 0)
      v->npoints++;
    lua_pop(L, 1);
  }
}


static void hook_authenticated(void *ud, const lp2p_auth_info *info,
                               lp2p_verdict *v) {
  lp2p_node_box *b = ud;
  b->calls_authenticated++;
  lua_State *L = begin(b, "authenticated");
  int top = lua_gettop(L) - 2;
  push_auth_info(L, info);
  if (lp2p__pcall(L, 2, 3, "authenticated hook") == 0) {
    const char *kind = lua_tostring(L, -3);
    if (kind != NULL && strcmp(kind, "ack") == 0) {
      v->kind = LP2P_VERDICT_ACK;
    } else if (kind != NULL && strcmp(kind, "nack") == 0) {
      v->kind = LP2P_VERDICT_NACK;
      v->motive = (int)luaL_optinteger(L, -2, 0);
      read_points(L, lua_gettop(L), v);
    } else if (kind != NULL && strcmp(kind, "close") == 0) {
      v->kind = LP2P_VERDICT_CLOSE;
      const char *why = lua_tostring(L, -2);
      snprintf(v->reason, sizeof v->reason, "%s",
               why ? why : "closed by policy");
    }
  }
  lua_settop(L, top);
}


static int hook_message(void *ud, uint64_t conn, const uint8_t *msg,
                        size_t len) {
  lp2p_node_box *b = ud;
  b->calls_message++;
  lua_State *L = begin(b, "message");
  int top = lua_gettop(L) - 2;
  lua_pushinteger(L, (lua_Integer)conn);
  lua_pushinteger(L, msg[0] << 8 | msg[1]);
  lua_pushlstring(L, (const char *)msg + 2, len - 2);
  int pause = 0;
  lua_Integer held = 0;
  if (lp2p__pcall(L, 4, 2, "message hook") == 0) {
    pause = lua_toboolean(L, -2);
    held = lua_tointeger(L, -1);
  }
  lua_settop(L, top);
  /* The inbox's bytes count in the node's budget. The connection is
   * looked up again: the call may have closed it. */
  if (held > 0 && b->node != NULL) {
    lp2p_conn *c = lp2p_node_find(b->node, conn);
    if (c != NULL)
      lp2p_conn_hold(c, held);
  }
  return pause;
}


/* code (its ENAME) and reason (the code's text when NULL), or the reason
 * alone when code is 0. Table on top. */
static void set_code(lua_State *L, int code, const char *reason) {
  if (code != 0) {
    lp2p__set_str(L, "code", lp2p_err_name(code));
    lp2p__set_str(L, "reason", reason ? reason : lp2p_strerror(code));
  } else if (reason != NULL) {
    lp2p__set_str(L, "reason", reason);
  }
}


/* ev as the table dispatch("event", ev) gets: type, conn (the id), then
 * the fields of its kind (lp2p_node.h): point, peer_id and incoming for
 * a connection; code and reason; motive and points of a Nack (theirs
 * always with code ENACK); count and kind (with the reason) of a rate
 * limit; active of a trigger. */
static void push_event(lua_State *L, const lp2p_event *ev) {
  lua_createtable(L, 0, 8);
  lp2p__set_str(L, "type", lp2p_event_name(ev->type));
  if (ev->conn)
    lp2p__set_int(L, "conn", (lua_Integer)ev->conn);
  const lp2p_ev_conn *who = lp2p_event_conn(ev);
  if (who != NULL) {
    lp2p__set_point(L, "point", who->point);
    if (who->peer_id)
      lp2p__set_str(L, "peer_id", who->peer_id);
    lp2p__set_bool(L, "incoming", who->incoming);
  }
  switch (ev->type) {
  case LP2P_EV_AUTH_FAILED:
  case LP2P_EV_DECODING_ERROR:
  case LP2P_EV_DISCONNECTED:
    set_code(L, ev->u.closed.code, ev->u.closed.reason);
    break;
  case LP2P_EV_NACK_SENT:
  case LP2P_EV_NACKED: {
    const lp2p_ev_nack *k = &ev->u.nack;
    if (ev->type == LP2P_EV_NACKED)
      set_code(L, LP2P_ENACK, NULL);
    else
      set_code(L, 0, k->reason);
    if (k->motive >= 0 || ev->type == LP2P_EV_NACKED)
      lp2p__set_int(L, "motive", k->motive);
    lp2p__push_points(L, k->points, k->npoints);
    lua_setfield(L, -2, "points");
    break;
  }
  case LP2P_EV_RATE_EXCEEDED:
    lp2p__set_str(L, "reason", ev->u.rate.app ? "application messages"
                                              : "p2p messages");
    lp2p__set_int(L, "count", (lua_Integer)ev->u.rate.count);
    lp2p__set_str(L, "kind", ev->u.rate.app ? "app" : "p2p");
    break;
  case LP2P_EV_REFUSED:
    lp2p__set_point(L, "point", ev->u.refused.addr);
    set_code(L, ev->u.refused.code, ev->u.refused.reason);
    break;
  case LP2P_EV_TOO_FEW_CONNECTIONS:
  case LP2P_EV_TOO_MANY_CONNECTIONS:
    lp2p__set_int(L, "active", ev->u.trigger.active);
    break;
  case LP2P_EV_UNDER_LOAD:
  case LP2P_EV_LOAD_NORMAL:
    set_code(L, 0, ev->u.load.reason);
    break;
  default:
    break;
  }
}


static void hook_event(void *ud, const lp2p_event *ev) {
  lp2p_node_box *b = ud;
  if (!(b->want_events & (UINT32_C(1) << ev->type)))
    return;
  b->calls[ev->type]++;
  lua_State *L = begin(b, "event");
  int top = lua_gettop(L) - 2;
  push_event(L, ev);
  lp2p__pcall(L, 2, 0, "event hook");
  lua_settop(L, top);
}


void lp2p__node_hooks(lp2p_node_hooks *hooks, lp2p_node_box *b) {
  hooks->ud = b;
  hooks->accept = hook_accept;
  hooks->authenticated = hook_authenticated;
  hooks->message = hook_message;
  hooks->event = hook_event;
}
