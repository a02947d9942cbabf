/*
 * lua_node.c - the luap2p.Node userdata: the C connect handler driven from
 * Lua. core.node(config, identity, dispatch) makes one whose hooks call
 * dispatch (lua_node_hooks.c); its methods listen, dial, send, close,
 * pause, read statistics and edit the ban table. Connections are named by
 * integer ids; Lua never holds a C pointer.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_node.h"

#define NODE_MT "luap2p.Node"


/* ------------------------------------------------------------- methods */

static lp2p_node_box *check_box(lua_State *L) {
  lp2p_node_box *b = luaL_checkudata(L, 1, NODE_MT);
  if (b->node == NULL)
    luaL_error(L, "attempt to use a closed node");
  return b;
}


static int node_close(lua_State *L) {
  lp2p_node_box *b = luaL_checkudata(L, 1, NODE_MT);
  if (b->node == NULL)
    return 0;
  lp2p_node *n = b->node;
  b->node = NULL;
  lp2p_node_close(n); /* no hook runs from here on */
  luaL_unref(L, LUA_REGISTRYINDEX, b->dispatch_ref);
  b->dispatch_ref = LUA_NOREF;
  return 0;
}


static int node_tostring(lua_State *L) {
  lp2p_node_box *b = luaL_checkudata(L, 1, NODE_MT);
  if (b->node == NULL)
    lua_pushliteral(L, "luap2p.Node (closed)");
  else
    lua_pushfstring(L, "luap2p.Node (%p)", (void *)b->node);
  return 1;
}


static void check_point(lua_State *L, int idx, lp2p_point *p) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (lp2p_point_parse(p, s, len) < 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "malformed point '%s'", s));
}


static void check_peer_id(lua_State *L, int idx, uint8_t id[16]) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len == LP2P_PEER_ID_BYTES) {
    memcpy(id, s, len);
  } else if (lp2p_peer_id_decode(id, s, len) < 0) {
    luaL_argerror(L, idx, lua_pushfstring(L, "malformed peer id '%s'", s));
  }
}


/* node:listen(host, port) -> port | nil, err, code */
static int node_listen(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
  int rc = lp2p_node_listen(b->node, host, (int)port);
  if (rc < 0)
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "cannot listen on %s port %d: %s", host,
                               (int)port, lp2p_strerror(rc)));
  lua_pushinteger(L, rc);
  return 1;
}


/* node:connect(point, expected_peer_id|nil, timeout_seconds|nil) -> id */
static int node_connect(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_point p;
  check_point(L, 2, &p);
  uint8_t expected[16];
  int has_expected = !lua_isnoneornil(L, 3);
  if (has_expected)
    check_peer_id(L, 3, expected);
  lua_Number timeout = luaL_optnumber(L, 4, 0);
  uint64_t id = 0;
  int rc = lp2p_node_connect(b->node, &p, has_expected ? expected : NULL,
                             (uint64_t)(timeout * 1000), &id);
  if (rc < 0)
    return lp2p__push_error(L, rc);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}


static lp2p_conn *check_conn(lua_State *L, lp2p_node_box *b, int idx) {
  lua_Integer id = luaL_checkinteger(L, idx);
  return lp2p_node_find(b->node, (uint64_t)id);
}


/* Queue on c (NULL: gone) and push true or the error triple. */
static int push_sent(lua_State *L, lp2p_conn *c, const char *data,
                     size_t len, int with_envelope, uint16_t tag) {
  if (c == NULL)
    return lp2p__push_error(L, LP2P_ECLOSED);
  int rc = lp2p_conn_send(c, (const uint8_t *)data, len, with_envelope, tag);
  if (rc < 0)
    return lp2p__push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}


/* A payload lent to a connection is kept alive by a registry reference
 * until the connection gives it back (sealed, or dropped at a close). ud
 * is the main thread: the release may come from a loop callback. */
static void release_payload(void *ud, uintptr_t token) {
  luaL_unref((lua_State *)ud, LUA_REGISTRYINDEX, (int)token);
}


/* Payloads from this size up are lent, not copied: the core seals them
 * straight from the Lua string (below a chunk it copies them anyway). */
#define LEND_MIN (16 * 1024)

/* node:send(id, payload, tag) -> true | nil, err, code */
static int node_send(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  size_t len;
  const char *payload = luaL_checklstring(L, 3, &len);
  lua_Integer tag = luaL_optinteger(L, 4, LP2P_MSG_APP_MIN);
  luaL_argcheck(L, tag >= 0 && tag <= 0xffff, 4, "tag out of range");
  if (c == NULL || len < LEND_MIN)
    return push_sent(L, c, payload, len, 1, (uint16_t)tag);
  lua_pushvalue(L, 3);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int rc = lp2p_conn_send_lent(c, (const uint8_t *)payload, len,
                               (uint16_t)tag, release_payload, b->L,
                               (uintptr_t)ref);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref); /* not kept */
    return lp2p__push_error(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}


/* node:send_raw(id, envelope): a whole [u32][u16 tag][payload] message. */
static int node_send_raw(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  size_t len;
  const char *msg = luaL_checklstring(L, 3, &len);
  luaL_argcheck(L, len >= 6, 3, "an envelope has at least 6 bytes");
  return push_sent(L, c, msg, len, 0, 0);
}


/* node:disconnect(id, reason, graceful=true) -> true | false */
static int node_disconnect(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  const char *reason = luaL_optstring(L, 3, "closed locally");
  int graceful = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  if (c != NULL)
    lp2p_conn_close(c, 0, reason, graceful);
  lua_pushboolean(L, c != NULL);
  return 1;
}


/* node:release(id, bytes): the inbox gave back bytes of id's messages. */
static int node_release(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0, 3, "must be >= 0");
  if (c != NULL)
    lp2p_conn_hold(c, -(long long)n);
  return 0;
}


static int node_pause(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  if (c != NULL)
    lp2p_conn_pause(c, lua_toboolean(L, 3));
  lua_pushboolean(L, c != NULL);
  return 1;
}


static void push_stat(lua_State *L, const lp2p_stat *s) {
  lp2p__set_int(L, "bytes_in", (lua_Integer)s->bytes_in);
  lp2p__set_int(L, "bytes_out", (lua_Integer)s->bytes_out);
  lp2p__set_int(L, "msgs_in", (lua_Integer)s->msgs_in);
  lp2p__set_int(L, "msgs_out", (lua_Integer)s->msgs_out);
  lua_pushnumber(L, s->rate_in);
  lua_setfield(L, -2, "rate_in");
  lua_pushnumber(L, s->rate_out);
  lua_setfield(L, -2, "rate_out");
}


/* The connection named by argument 2 into *ci: 0 when it is gone. */
static int arg_conn_info(lua_State *L, lp2p_conn_info *ci) {
  lp2p_node_box *b = check_box(L);
  lp2p_conn *c = check_conn(L, b, 2);
  if (c == NULL)
    return 0;
  lp2p_conn_get_info(c, ci);
  return 1;
}


/* node:info(id) -> table | nil */
static int node_info(lua_State *L) {
  static const char *const states[] = {"connecting", "handshake", "running",
                                       "closing"};
  lp2p_conn_info ci;
  if (!arg_conn_info(L, &ci))
    return 0;
  lua_createtable(L, 0, 16);
  lp2p__set_int(L, "id", (lua_Integer)ci.id);
  lp2p__set_str(L, "state", states[ci.state]);
  lp2p__set_bool(L, "incoming", ci.incoming);
  lp2p__set_str(L, "direction", ci.incoming ? "incoming" : "outgoing");
  lp2p__set_point(L, "addr", &ci.addr);
  if (ci.point.port != 0)
    lp2p__set_point(L, "point", &ci.point);
  if (ci.peer_id[0] != '\0')
    lp2p__set_str(L, "peer_id", ci.peer_id);
  lp2p__set_int(L, "p2p_version", ci.p2p_version);
  lp2p__set_int(L, "ddb_version", ci.ddb_version);
  lp2p__set_bool(L, "private_node", ci.private_node);
  lp2p__set_bool(L, "disable_mempool", ci.disable_mempool);
  lp2p__set_int(L, "queued_msgs", (lua_Integer)ci.queued_msgs);
  lp2p__set_int(L, "queued_bytes", (lua_Integer)ci.queued_bytes);
  push_stat(L, &ci.stat);
  return 1;
}


/* node:facts(id) -> peer_id, point|nil, addr, incoming, p2p_version,
 * ddb_version, private_node, disable_mempool | nothing: what a Conn
 * keeps of a connection that starts running, without a table. */
static int node_facts(lua_State *L) {
  lp2p_conn_info ci;
  if (!arg_conn_info(L, &ci))
    return 0;
  if (ci.peer_id[0] != '\0')
    lua_pushstring(L, ci.peer_id);
  else
    lua_pushnil(L);
  if (ci.point.port != 0)
    lp2p__push_point(L, &ci.point);
  else
    lua_pushnil(L);
  lp2p__push_point(L, &ci.addr);
  lua_pushboolean(L, ci.incoming);
  lua_pushinteger(L, ci.p2p_version);
  lua_pushinteger(L, ci.ddb_version);
  lua_pushboolean(L, ci.private_node);
  lua_pushboolean(L, ci.disable_mempool);
  return 8;
}


static int node_ids(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  size_t n = lp2p_node_conn_ids(b->node, NULL, 0);
  uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (ids == NULL)
    return luaL_error(L, "luap2p: out of memory");
  n = lp2p_node_conn_ids(b->node, ids, n);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(ids);
  return 1;
}


static int node_stat(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lp2p_stat s;
  unsigned counts[4];
  lp2p_node_stat(b->node, &s, counts);
  lua_createtable(L, 0, 12);
  push_stat(L, &s);
  lp2p__set_int(L, "active", counts[0]);
  lp2p__set_int(L, "pending_incoming", counts[1]);
  lp2p__set_int(L, "pending_outgoing", counts[2]);
  lp2p__set_int(L, "bans", counts[3]);
  lp2p_budget bu;
  lp2p_node_budget(b->node, &bu);
  lp2p__set_int(L, "buffered", (lua_Integer)bu.buffered);
  lp2p__set_int(L, "buffered_max", (lua_Integer)bu.buffered_max);
  lp2p__set_int(L, "buffered_partial", (lua_Integer)bu.partial);
  lp2p__set_int(L, "buffered_inbox", (lua_Integer)bu.held);
  lp2p__set_int(L, "buffered_stashed", (lua_Integer)bu.stashed);
  lp2p__set_int(L, "cut_budget", (lua_Integer)bu.cut_budget);
  lp2p__set_int(L, "cut_stalled", (lua_Integer)bu.cut_stalled);
  lp2p__set_int(L, "throttled", (lua_Integer)bu.throttled);
  lp2p__set_int(L, "yields", (lua_Integer)bu.yields);
  return 1;
}


/* node:want(events, accept): which calls cross into Lua. events: true
 * (every event), false (none) or a set { name = true, ... } of event
 * names (the core's are looked up; Lua's own events may be in it too);
 * accept: whether to call the accept hook (false: accept without
 * asking). */
static int node_want(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  uint32_t mask = 0;
  if (lua_isboolean(L, 2)) {
    mask = lua_toboolean(L, 2) ? UINT32_MAX : 0;
  } else if (lua_istable(L, 2)) {
    for (int t = 0; t < LP2P_EV_COUNT; t++) {
      if (lua_getfield(L, 2, lp2p_event_name((lp2p_event_type)t)) !=
              LUA_TNIL &&
          lua_toboolean(L, -1))
        mask |= UINT32_C(1) << t;
      lua_pop(L, 1);
    }
  } else {
    luaL_argerror(L, 2, "expected a boolean or a set of event names");
  }
  b->want_events = mask;
  b->want_accept = lua_toboolean(L, 3);
  return 0;
}


/* node:calls() -> { accept =, authenticated =, message =, events = {
 * name = n, ... } }: how many calls crossed into Lua. */
static int node_calls(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  lua_createtable(L, 0, 4);
  lp2p__set_int(L, "accept", b->calls_accept);
  lp2p__set_int(L, "authenticated", b->calls_authenticated);
  lp2p__set_int(L, "message", b->calls_message);
  lua_createtable(L, 0, LP2P_EV_COUNT);
  for (int t = 0; t < LP2P_EV_COUNT; t++)
    lp2p__set_int(L, lp2p_event_name((lp2p_event_type)t), b->calls[t]);
  lua_setfield(L, -2, "events");
  return 1;
}


/* Parse a ban target: "ip", "ip/bits", "ip:port" (point), or a peer id.
 * Returns the kind; fills p/bits or id. */
typedef struct ban_target {
  int kind; /* LP2P_BAN_IP, LP2P_BAN_POINT or LP2P_BAN_PEER */
  lp2p_point p;
  unsigned bits; /* IP prefix length, 0 = the exact address */
  uint8_t id[LP2P_PEER_ID_BYTES];
} ban_target;

static int parse_target(lua_State *L, int idx, ban_target *t) {
  lp2p_point *p = &t->p;
  unsigned *bits = &t->bits;
  uint8_t *id = t->id;
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  *bits = 0;
  if (lp2p_peer_id_decode(id, s, len) == 0)
    return LP2P_BAN_PEER;
  if (lp2p_point_parse(p, s, len) == 0)
    return LP2P_BAN_POINT;
  /* A bare address, optionally with a prefix length. */
  char buf[64];
  const char *slash = memchr(s, '/', len);
  size_t alen = slash ? (size_t)(slash - s) : len;
  if (alen == 0 || alen >= 48)
    goto bad;
  memcpy(buf, s, alen);
  buf[alen] = '\0';
  memset(p, 0, sizeof *p);
  if (uv_inet_pton(AF_INET, buf, p->addr) == 0)
    p->family = 4;
  else if (uv_inet_pton(AF_INET6, buf, p->addr) == 0)
    p->family = 6;
  else
    goto bad;
  if (slash) {
    char *end;
    unsigned long v = strtoul(slash + 1, &end, 10);
    unsigned width = p->family == 4 ? 32 : 128;
    if (end != s + len || slash + 1 == end || v == 0 || v > width)
      goto bad;
    *bits = (unsigned)v;
  }
  return LP2P_BAN_IP;
bad:
  luaL_argerror(L, idx,
                lua_pushfstring(L,
                                "expected an IP, IP/prefix, IP:port or peer "
                                "id, got '%s'",
                                s));
  return 0;
}


/* The loop's time, refreshed: Lua may have run long since the loop did. */
static uint64_t loop_now(lua_State *L) {
  uv_loop_t *loop = lp2p__loop(L);
  uv_update_time(loop);
  return uv_now(loop);
}


/* node:ban(target, seconds|nil (permanent)) */
static int node_ban(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  ban_target t;
  t.kind = parse_target(L, 2, &t);
  lua_Number secs = luaL_optnumber(L, 3, 0);
  /* Bounded (NaN, inf or 1e300 would make an undefined cast, and an
   * event, a log line and an RPC answer that JSON cannot carry). */
  luaL_argcheck(L, secs >= 0 && secs <= 1e13, 3, "must be >= 0 and <= 1e13");
  uint64_t now = loop_now(L);
  uint64_t until = secs > 0 ? now + (uint64_t)(secs * 1000) : 0;
  int rc = t.kind == LP2P_BAN_PEER
               ? lp2p_bans_add_peer(lp2p_node_bans(b->node), t.id, until, now)
               : lp2p_bans_add_addr(lp2p_node_bans(b->node), &t.p, t.kind, t.bits,
                                    until, now);
  if (rc < 0)
    return lp2p__push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}


static int node_unban(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  ban_target t;
  t.kind = parse_target(L, 2, &t);
  int removed = t.kind == LP2P_BAN_PEER
                    ? lp2p_bans_remove_peer(lp2p_node_bans(b->node), t.id)
                    : lp2p_bans_remove_addr(lp2p_node_bans(b->node), &t.p, t.kind,
                                            t.bits);
  lua_pushboolean(L, removed);
  return 1;
}


/* node:banned(target) -> boolean (an address: its IP, point or prefix) */
static int node_banned(lua_State *L) {
  lp2p_node_box *b = check_box(L);
  ban_target t;
  t.kind = parse_target(L, 2, &t);
  uint64_t now = loop_now(L);
  lua_pushboolean(L, t.kind == LP2P_BAN_PEER
                         ? lp2p_bans_peer(lp2p_node_bans(b->node), t.id, now)
                         : lp2p_bans_addr(lp2p_node_bans(b->node), &t.p, now));
  return 1;
}


/* core.node(config, identity, dispatch) -> Node */
static int core_node(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lp2p_identity *id = lp2p__check_identity(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lp2p_node_config cfg;
  lp2p__config_read(L, 1, "core.node", &cfg, NULL);
  /* p2p.new sets it only for too_many_rule = "threshold". */
  cfg.threshold_rule =
      lua_getfield(L, 1, "connections_threshold") != LUA_TNIL;
  lua_pop(L, 1);
  cfg.identity = *id;
  lp2p_node_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->node = NULL;
  b->L = lp2p__main_thread(L);
  b->dispatch_ref = LUA_NOREF;
  b->want_events = UINT32_MAX;
  b->want_accept = 1;
  memset(b->calls, 0, sizeof b->calls);
  b->calls_accept = b->calls_authenticated = b->calls_message = 0;
  luaL_setmetatable(L, NODE_MT);
  lp2p_node_hooks hooks;
  lp2p__node_hooks(&hooks, b);
  int err = 0;
  lp2p_node *n = lp2p_node_new(lp2p__loop(L), &cfg, &hooks, &err);
  lp2p_identity_wipe(&cfg.identity);
  if (n == NULL)
    return lp2p__push_error(L, err);
  lua_pushvalue(L, 3);
  b->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b->node = n;
  return 1;
}


void lp2p__open_node(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"listen", node_listen},   {"connect", node_connect},
      {"send", node_send},       {"send_raw", node_send_raw},
      {"disconnect", node_disconnect}, {"pause", node_pause},
      {"release", node_release},
      {"info", node_info},       {"ids", node_ids},
      {"stat", node_stat},       {"ban", node_ban},
      {"unban", node_unban},     {"banned", node_banned},
      {"facts", node_facts},     {"want", node_want},       {"calls", node_calls},
      {"close", node_close},     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", node_close},
                                  {"__close", node_close},
                                  {"__tostring", node_tostring},
                                  {NULL, NULL}};
  lp2p__new_class(L, NODE_MT, meta, methods);
  lua_pushcfunction(L, core_node);
  lua_setfield(L, -2, "node");
}
