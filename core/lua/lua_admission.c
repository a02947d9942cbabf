/*
 * lua_admission.c - a Lua test binding of admission.c (luap2p.Admission),
 * so specs can drive the table with their own clock. The node uses the C
 * API directly (handler.c); this binding holds its own table.
 *
 *   core.admission_new{rate=, burst=, prefix_rate=, prefix_burst=,
 *                      max_per_ip=, max_per_prefix=, table_size=,
 *                      exempt_loopback=, load_threshold=, on_load=fn}
 *     -> Admission  (absent keys take the C defaults; a bad value raises)
 *   adm:check(ip, now_ms[, pending = 0]) -> true
 *                                        | nil, "ENAME: reason", "ENAME"
 *   adm:opened(ip[, now_ms = 0]); adm:closed(ip)
 *   adm:open_count(ip) -> n;  adm:under_load() -> boolean
 *   adm:stats() -> { admitted, exempt, refused_ip_rate, ..., entries,
 *                    capacity, under_load }
 *   adm:close()
 * ip: "a.b.c.d", "v6", or a point "a.b.c.d:port" / "[v6]:port".
 * on_load(under_load, pending) is called after check() returns from C
 * when the mode changed, so a Lua error never crosses admission.c.
 */
#include <stdio.h>
#include <string.h>

#include "lua_lp2p.h"
#include "../net/lp2p_node.h"

#define ADMISSION_MT "luap2p.Admission"

typedef struct lua_admission {
  lp2p_admission *a; /* NULL once closed */
  int changed, under_load;
  unsigned pending;
} lua_admission;


static lua_admission *check_adm(lua_State *L) {
  lua_admission *box = luaL_checkudata(L, 1, ADMISSION_MT);
  if (box->a == NULL)
    luaL_error(L, "attempt to use a closed luap2p.Admission");
  return box;
}


/* An IP or a point at idx, as an lp2p_point; raises on bad text. */
static void check_ip(lua_State *L, int idx, lp2p_point *p) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  if (lp2p_point_parse(p, s, len) == 0)
    return;
  char buf[64];
  int n = memchr(s, ':', len) != NULL
              ? snprintf(buf, sizeof buf, "[%.*s]:0", (int)len, s)
              : snprintf(buf, sizeof buf, "%.*s:0", (int)len, s);
  if (len > 45 || n < 0 || (size_t)n >= sizeof buf ||
      lp2p_point_parse(p, buf, (size_t)n) != 0)
    luaL_argerror(L, idx, "expected an IP address or a point");
}


static void on_load(void *ud, int under_load, unsigned pending) {
  lua_admission *box = ud;
  box->changed = 1;
  box->under_load = under_load;
  box->pending = pending;
}


static double opt_number(lua_State *L, const char *k, double def) {
  double v = def;
  if (lua_getfield(L, 1, k) != LUA_TNIL) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "core.admission_new: option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
    if (!(v >= 0))
      luaL_error(L, "core.admission_new: option '%s' must be >= 0", k);
  }
  lua_pop(L, 1);
  return v;
}


static unsigned opt_unsigned(lua_State *L, const char *k, unsigned def) {
  double v = opt_number(L, k, def);
  if (v > 4294967295.0 || v != (double)(unsigned)v)
    luaL_error(L, "core.admission_new: option '%s' must be an integer", k);
  return (unsigned)v;
}


static int core_admission_new(lua_State *L) {
  lp2p_admission_config cfg;
  lp2p_admission_config_defaults(&cfg);
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  cfg.rate = opt_number(L, "rate", cfg.rate);
  cfg.burst = opt_number(L, "burst", cfg.burst);
  cfg.prefix_rate = opt_number(L, "prefix_rate", cfg.prefix_rate);
  cfg.prefix_burst = opt_number(L, "prefix_burst", cfg.prefix_burst);
  cfg.max_per_ip = opt_unsigned(L, "max_per_ip", cfg.max_per_ip);
  cfg.max_per_prefix = opt_unsigned(L, "max_per_prefix", cfg.max_per_prefix);
  cfg.table_size = opt_unsigned(L, "table_size", cfg.table_size);
  cfg.load_threshold = opt_unsigned(L, "load_threshold", cfg.load_threshold);
  if (lua_getfield(L, 1, "exempt_loopback") != LUA_TNIL)
    cfg.exempt_loopback = lua_toboolean(L, -1);
  lua_pop(L, 1);
  int cbtype = lua_getfield(L, 1, "on_load");
  if (cbtype != LUA_TNIL && cbtype != LUA_TFUNCTION)
    luaL_error(L, "core.admission_new: option 'on_load' must be a function");
  if (cfg.table_size < 2)
    luaL_error(L, "core.admission_new: option 'table_size' must be >= 2");
  /* Closed first, then acquire: a failure leaves a consistent object. */
  lua_admission *box = lua_newuserdatauv(L, sizeof *box, 1);
  memset(box, 0, sizeof *box);
  luaL_setmetatable(L, ADMISSION_MT);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1); /* the on_load function (or nil) */
  cfg.on_load = on_load;
  cfg.ud = box;
  box->a = lp2p_admission_new(&cfg);
  if (box->a == NULL)
    return lp2p__push_error(L, LP2P_ENOMEM);
  return 1;
}


static int adm_check(lua_State *L) {
  lua_admission *box = check_adm(L);
  lp2p_point p;
  check_ip(L, 2, &p);
  lua_Integer now = luaL_checkinteger(L, 3);
  lua_Integer pending = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, now >= 0, 3, "expected a time >= 0 (ms)");
  luaL_argcheck(L, pending >= 0 && pending <= 0x7fffffff, 4,
                "expected a count >= 0");
  box->changed = 0;
  int rc = lp2p_admission_check(box->a, &p, (uint64_t)now, (unsigned)pending);
  if (box->changed && lua_getiuservalue(L, 1, 1) == LUA_TFUNCTION) {
    lua_pushboolean(L, box->under_load);
    lua_pushinteger(L, box->pending);
    lua_call(L, 2, 0);
  } else if (box->changed) {
    lua_pop(L, 1);
  }
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return lp2p__push_error_msg(L, rc, lp2p_admission_reason(box->a));
}


static int adm_opened(lua_State *L) {
  lua_admission *box = check_adm(L);
  lp2p_point p;
  check_ip(L, 2, &p);
  lua_Integer now = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, now >= 0, 3, "expected a time >= 0 (ms)");
  lp2p_admission_opened(box->a, &p, (uint64_t)now);
  return 0;
}


static int adm_closed(lua_State *L) {
  lua_admission *box = check_adm(L);
  lp2p_point p;
  check_ip(L, 2, &p);
  lp2p_admission_closed(box->a, &p);
  return 0;
}


static int adm_open_count(lua_State *L) {
  lua_admission *box = check_adm(L);
  lp2p_point p;
  check_ip(L, 2, &p);
  lua_pushinteger(L, lp2p_admission_open_count(box->a, &p));
  return 1;
}


static int adm_under_load(lua_State *L) {
  lua_admission *box = check_adm(L);
  lua_pushboolean(L, lp2p_admission_under_load(box->a));
  return 1;
}


static void set_num(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}


static int adm_stats(lua_State *L) {
  lua_admission *box = check_adm(L);
  lp2p_admission_stats s;
  lp2p_admission_get_stats(box->a, &s);
  lua_createtable(L, 0, 13);
  set_num(L, "admitted", (lua_Integer)s.admitted);
  set_num(L, "exempt", (lua_Integer)s.exempt);
  set_num(L, "refused_ip_rate", (lua_Integer)s.refused_ip_rate);
  set_num(L, "refused_prefix_rate", (lua_Integer)s.refused_prefix_rate);
  set_num(L, "refused_ip_cap", (lua_Integer)s.refused_ip_cap);
  set_num(L, "refused_prefix_cap", (lua_Integer)s.refused_prefix_cap);
  set_num(L, "refused_full", (lua_Integer)s.refused_full);
  set_num(L, "evictions", (lua_Integer)s.evictions);
  set_num(L, "uncounted", (lua_Integer)s.uncounted);
  set_num(L, "load_episodes", (lua_Integer)s.load_episodes);
  set_num(L, "entries", s.entries);
  set_num(L, "capacity", s.capacity);
  lua_pushboolean(L, s.under_load);
  lua_setfield(L, -2, "under_load");
  return 1;
}


static int adm_close(lua_State *L) {
  lua_admission *box = luaL_checkudata(L, 1, ADMISSION_MT);
  lp2p_admission_free(box->a);
  box->a = NULL;
  return 0;
}


static int adm_tostring(lua_State *L) {
  lua_admission *box = luaL_checkudata(L, 1, ADMISSION_MT);
  if (box->a == NULL) {
    lua_pushliteral(L, "luap2p.Admission (closed)");
  } else {
    lp2p_admission_stats s;
    lp2p_admission_get_stats(box->a, &s);
    lua_pushfstring(L, "luap2p.Admission (%d/%d entries%s)", (int)s.entries,
                    (int)s.capacity, s.under_load ? ", under load" : "");
  }
  return 1;
}


void lp2p__open_admission(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"check", adm_check},           {"opened", adm_opened},
      {"closed", adm_closed},         {"open_count", adm_open_count},
      {"under_load", adm_under_load}, {"stats", adm_stats},
      {"close", adm_close},           {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", adm_close},
                                  {"__close", adm_close},
                                  {"__tostring", adm_tostring},
                                  {NULL, NULL}};
  luaL_newmetatable(L, ADMISSION_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, core_admission_new);
  lua_setfield(L, -2, "admission_new");
}
