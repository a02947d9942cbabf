/*
 * lua_message.c - Lua binding of message.c and point.c: the P2P message
 * codec, points and nonces.
 *
 * Lua API (added to the module table):
 *   core.msg_encode(t) -> envelope bytes (raises on a bad table)
 *   core.msg_decode(tag_and_payload) -> t | nil, err, code
 *   core.point_parse(text) -> canonical, family, address, port
 *                            | nil, "EPOINT: ...", "EPOINT"
 *   core.nonce_increment(nonce24) -> nonce24
 *   core.ADVERTISE_MAX, core.POINT_TEXT_MAX
 */
#include <stdio.h>
#include <string.h>

#include "lua_lp2p.h"


/* -------------------------------------------------------- message codec */

static const struct {
  const char *name;
  uint16_t tag;
} msg_types[] = {
    {"disconnect", LP2P_MSG_DISCONNECT},
    {"bootstrap", LP2P_MSG_BOOTSTRAP},
    {"advertise", LP2P_MSG_ADVERTISE},
    {"swap_request", LP2P_MSG_SWAP_REQUEST},
    {"swap_ack", LP2P_MSG_SWAP_ACK},
};
#define N_MSG_TYPES (sizeof msg_types / sizeof msg_types[0])


/* Raise "bad argument #1 to 'msg_encode' (<field>: <why>)". */
static int field_error(lua_State *L, const char *field, const char *why) {
  return luaL_argerror(L, 1, lua_pushfstring(L, "%s: %s", field, why));
}


/* Parse the string at the top of the stack as a point for `field`; pops
 * it. Raises on anything but a valid point string. */
static void field_point(lua_State *L, lp2p_point *p, const char *field) {
  size_t len;
  if (lua_type(L, -1) != LUA_TSTRING)
    field_error(L, field,
                lua_pushfstring(L, "point string expected, got %s",
                                luaL_typename(L, -1)));
  const char *s = lua_tolstring(L, -1, &len);
  const char *why = NULL;
  if (lp2p__point_parse_why(p, s, len, &why) != 0)
    field_error(L, field, lua_pushfstring(L, "EPOINT: %s", why));
  lua_pop(L, 1);
}


/*
 * core.msg_encode(t) -> [u32 length][u16 tag][body]
 * t.type: "disconnect" | "bootstrap" | "advertise" (t.points: array of at
 * most 100 point strings) | "swap_request" | "swap_ack" (t.point, and
 * t.peer_id of 16 bytes) | "message" (t.tag in 16..65535, t.payload bytes,
 * default ""). A bad table raises, naming the field. The only runtime
 * failure is EMSGSIZE (envelope over 100 MiB): nil, err, code.
 * Stack: the payload string stays referenced by t while m.body points
 * into it.
 */
static int core_msg_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lp2p_msg m;
  memset(&m, 0, sizeof m);
  if (lua_getfield(L, 1, "type") != LUA_TSTRING)
    return field_error(L, "type", "string expected");
  const char *type = lua_tostring(L, -1);
  int found = 0;
  for (size_t i = 0; i < N_MSG_TYPES; i++)
    if (strcmp(type, msg_types[i].name) == 0) {
      m.tag = msg_types[i].tag;
      found = 1;
    }
  if (!found && strcmp(type, "message") != 0)
    return field_error(
        L, "type",
        lua_pushfstring(L, "unknown message type '%s'", type));
  lua_pop(L, 1);

  if (m.tag == LP2P_MSG_ADVERTISE) {
    if (lua_getfield(L, 1, "points") != LUA_TTABLE)
      return field_error(L, "points", "array of point strings expected");
    lua_Integer n = luaL_len(L, -1);
    if (n > LP2P_ADVERTISE_MAX)
      return field_error(
          L, "points",
          lua_pushfstring(L, "at most 100 points, got %d", (int)n));
    for (lua_Integer i = 1; i <= n; i++) {
      char field[32];
      snprintf(field, sizeof field, "points[%d]", (int)i);
      lua_geti(L, -1, i);
      field_point(L, &m.points[i - 1], field);
    }
    m.npoints = (size_t)n;
    lua_pop(L, 1);
  } else if (m.tag == LP2P_MSG_SWAP_REQUEST || m.tag == LP2P_MSG_SWAP_ACK) {
    lua_getfield(L, 1, "point");
    field_point(L, &m.point, "point");
    size_t len;
    if (lua_getfield(L, 1, "peer_id") != LUA_TSTRING)
      return field_error(L, "peer_id", "16-byte string expected");
    const char *id = lua_tolstring(L, -1, &len);
    if (len != LP2P_PEER_ID_BYTES)
      return field_error(
          L, "peer_id",
          lua_pushfstring(L, "16 bytes expected, got %d", (int)len));
    memcpy(m.peer_id, id, LP2P_PEER_ID_BYTES);
    lua_pop(L, 1);
  } else if (!found) {
    int isint;
    lua_getfield(L, 1, "tag");
    lua_Integer tag = lua_tointegerx(L, -1, &isint);
    if (!isint || tag < LP2P_MSG_APP_MIN || tag > 0xffff)
      return field_error(L, "tag", "integer in 16..65535 expected");
    m.tag = (uint16_t)tag;
    lua_pop(L, 1);
    int t = lua_getfield(L, 1, "payload"); /* left on the stack */
    if (t == LUA_TSTRING)
      m.body = (const uint8_t *)lua_tolstring(L, -1, &m.body_len);
    else if (t != LUA_TNIL)
      return field_error(L, "payload", "string expected");
  }

  long total = lp2p_msg_encode(NULL, 0, &m);
  if (total < 0)
    return lp2p__push_error(L, (int)total);
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, (size_t)total);
  long n = lp2p_msg_encode(out, (size_t)total, &m);
  if (n != total)
    return luaL_error(L, "msg_encode: size changed"); /* a bug */
  luaL_pushresultsize(&b, (size_t)total);
  return 1;
}


/*
 * core.msg_decode(bytes) -> t | nil, err, code
 * bytes is one message as r:feed returns it: tag || payload, without the
 * u32 length. t has type and tag, plus points (advertise, canonical point
 * strings), point and peer_id (swap_*), payload (type "message").
 * Errors: EPROTO (tag 0 or 6..15, over 100 points), ETRUNC, EEXTRA, EPOINT.
 */
static int core_msg_decode(lua_State *L) {
  size_t len;
  const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 1, &len);
  lp2p_msg m;
  int rc = lp2p_msg_decode(&m, s, len);
  if (rc != 0) {
    if (len < 2)
      return lp2p__push_error_msg(L, rc, "message shorter than its tag");
    const char *why = rc == LP2P_EPROTO && m.tag == LP2P_MSG_ADVERTISE
                          ? "more than 100 points in Advertise"
                      : rc == LP2P_EPROTO ? "unknown message tag"
                                          : lp2p_strerror(rc);
    char msg[96];
    snprintf(msg, sizeof msg, "%s (tag 0x%04x)", why, (unsigned)m.tag);
    return lp2p__push_error_msg(L, rc, msg);
  }
  lua_createtable(L, 0, 4);
  const char *type = "message";
  for (size_t i = 0; i < N_MSG_TYPES; i++)
    if (msg_types[i].tag == m.tag)
      type = msg_types[i].name;
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, m.tag);
  lua_setfield(L, -2, "tag");
  switch (m.tag) {
  case LP2P_MSG_DISCONNECT:
  case LP2P_MSG_BOOTSTRAP:
    break;
  case LP2P_MSG_ADVERTISE:
    lp2p__push_points(L, m.points, m.npoints);
    lua_setfield(L, -2, "points");
    break;
  case LP2P_MSG_SWAP_REQUEST:
  case LP2P_MSG_SWAP_ACK:
    lp2p__set_point(L, "point", &m.point);
    lua_pushlstring(L, (const char *)m.peer_id, LP2P_PEER_ID_BYTES);
    lua_setfield(L, -2, "peer_id");
    break;
  default:
    lua_pushlstring(L, (const char *)m.body, m.body_len);
    lua_setfield(L, -2, "payload");
    break;
  }
  return 1;
}


/* ---------------------------------------------------- points and nonces */

/* core.point_parse(text) -> canonical, family (4|6), address, port
 *                         | nil, "EPOINT: <why>", "EPOINT" */
static int core_point_parse(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lp2p_point p;
  const char *why = NULL;
  if (lp2p__point_parse_why(&p, s, len, &why) != 0)
    return lp2p__push_error_msg(L, LP2P_EPOINT, why);
  char text[LP2P_POINT_TEXT_MAX + 1];
  int n = lp2p_point_format(text, &p);
  lua_pushlstring(L, text, (size_t)n);
  lua_pushinteger(L, p.family);
  /* The address alone: the canonical text without brackets and port. */
  const char *colon = strrchr(text, ':');
  if (p.family == 6)
    lua_pushlstring(L, text + 1, (size_t)(colon - text) - 2);
  else
    lua_pushlstring(L, text, (size_t)(colon - text));
  lua_pushinteger(L, p.port);
  return 4;
}


/* core.nonce_increment(nonce24) -> nonce24 + 1 (192-bit big-endian) */
static int core_nonce_increment(lua_State *L) {
  uint8_t n[LP2P_NONCE_BYTES];
  memcpy(n, lp2p__check_bytes(L, 1, LP2P_NONCE_BYTES, "nonce"), sizeof n);
  lp2p_nonce_increment(n);
  lua_pushlstring(L, (const char *)n, sizeof n);
  return 1;
}


static const luaL_Reg message_functions[] = {
    {"msg_encode", core_msg_encode},
    {"msg_decode", core_msg_decode},
    {"point_parse", core_point_parse},
    {"nonce_increment", core_nonce_increment},
    {NULL, NULL}};


void lp2p__open_message(lua_State *L) {
  luaL_setfuncs(L, message_functions, 0);
  lua_pushinteger(L, LP2P_ADVERTISE_MAX);
  lua_setfield(L, -2, "ADVERTISE_MAX");
  lua_pushinteger(L, LP2P_POINT_TEXT_MAX);
  lua_setfield(L, -2, "POINT_TEXT_MAX");
}
