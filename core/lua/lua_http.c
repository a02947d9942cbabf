/*
 * lua_http.c - the Lua binding of the HTTP server (core/net/http.c, GNU
 * libmicrohttpd on the state's libuv loop).
 *
 *   local srv, port = core.http_serve("127.0.0.1", 8732,
 *     function(method, path, query, body)
 *       return 200, { ["Content-Type"] = "application/json" }, "{}"
 *     end,
 *     { max_connections = 256, max_per_ip = 16, idle_timeout = 10,
 *       request_timeout = 10, max_head = 16384,
 *       max_body = 65536 })                            -- all optional
 *   srv:clients()  -- connected clients
 *   srv:close()
 *
 * The handler runs on the main thread through lp2p__pcall: an error is
 * reported and answered 500; a bad answer (status out of 100..599, a
 * header with CR/LF) is answered 500 too. Returning nil as the status means
 * 200.
 *
 * Memory follows luv: the userdata holds only a pointer to a malloc'd
 * binding struct, which holds the lp2p_http. Closing from inside the
 * handler is allowed: the struct is freed once the handler has returned.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_lp2p.h"
#include "../net/lp2p_http.h"

#define HTTP_MT "luap2p.HttpServer"
#define HTTP_MAX_HEADERS 32

typedef struct lhttp {
  lp2p_http *h;
  lua_State *L; /* main thread: handlers never run on a coroutine */
  int fn_ref;   /* LUA_NOREF once closed */
  int self_ref; /* keeps the userdata while open */
  int port;
  int busy;     /* inside the handler */
  int closed;
} lhttp;

typedef struct http_box {
  lhttp *s;
} http_box;


/* query[key] = value (true for a bare "?flag"), on the table at -1. */
static void push_arg(void *data, const char *key, const char *value) {
  lua_State *L = data;
  if (key == NULL)
    return;
  if (value != NULL)
    lua_pushstring(L, value);
  else
    lua_pushboolean(L, 1);
  lua_setfield(L, -2, key);
}


static void answer_500(lp2p_http_req *req) {
  static const char *const hdr[] = {"Content-Type",
                                    "text/plain; charset=utf-8"};
  static const char body[] = "500 internal error\n";
  lp2p_http_respond(req, 500, hdr, 1, body, sizeof body - 1);
}


/* Call fn(method, path, query, body) and answer with its results
 * (status, headers, body). Stack unchanged. */
static void on_request(void *data, lp2p_http_req *req) {
  lhttp *s = data;
  lua_State *L = s->L;
  int top = lua_gettop(L);
  if (s->fn_ref == LUA_NOREF || !lua_checkstack(L, 2 * HTTP_MAX_HEADERS + 8)) {
    answer_500(req);
    return;
  }
  s->busy = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  lua_pushstring(L, lp2p_http_method(req));
  lua_pushstring(L, lp2p_http_path(req));
  lua_newtable(L);
  lp2p_http_args(req, push_arg, L);
  size_t blen;
  const char *body = lp2p_http_body(req, &blen);
  lua_pushlstring(L, body, blen);
  if (lp2p__pcall(L, 4, 3, "http handler") != 0) {
    answer_500(req);
  } else {
    int status = 200;
    if (!lua_isnil(L, top + 1)) {
      int isint;
      lua_Integer st = lua_tointegerx(L, top + 1, &isint);
      status = isint && st >= 100 && st <= 599 ? (int)st : -1;
    }
    const char *hdrs[2 * HTTP_MAX_HEADERS];
    size_t n = 0;
    if (lua_istable(L, top + 2)) {
      lua_pushnil(L);
      while (lua_next(L, top + 2) != 0) {
        /* Only string -> string pairs: both stay alive in the table
         * (held at top + 2) until lua_settop below. */
        if (lua_type(L, -2) == LUA_TSTRING && n < HTTP_MAX_HEADERS &&
            lua_type(L, -1) == LUA_TSTRING) {
          hdrs[2 * n] = lua_tostring(L, -2);
          hdrs[2 * n + 1] = lua_tostring(L, -1);
          n++;
        }
        lua_pop(L, 1);
      }
    }
    size_t len = 0;
    const char *out = "";
    if (lua_type(L, top + 3) == LUA_TSTRING)
      out = lua_tolstring(L, top + 3, &len);
    if (status < 0 ||
        lp2p_http_respond(req, status, hdrs, n, out, len) != 0)
      answer_500(req);
  }
  lua_settop(L, top);
  s->busy = 0;
  if (s->closed)
    free(s);
}


/* close, __gc and __close: stop listening, drop every client. */
static int server_close(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  lhttp *s = b->s;
  if (s == NULL)
    return 0;
  b->s = NULL;
  s->closed = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
  s->fn_ref = s->self_ref = LUA_NOREF;
  lp2p_http_close(s->h);
  s->h = NULL;
  if (!s->busy)
    free(s);
  return 0;
}


static lhttp *check_open(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  if (b->s == NULL)
    luaL_error(L, "attempt to use a closed " HTTP_MT);
  return b->s;
}


static int server_port(lua_State *L) {
  lua_pushinteger(L, check_open(L)->port);
  return 1;
}


static int server_clients(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp2p_http_clients(check_open(L)->h));
  return 1;
}


static int server_tostring(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  if (b->s == NULL)
    lua_pushliteral(L, HTTP_MT " (closed)");
  else
    lua_pushfstring(L, HTTP_MT " (port %d)", b->s->port);
  return 1;
}


/* limits.k as a positive integer, or 0 (the default) when absent. */
static lua_Integer limit_field(lua_State *L, int idx, const char *k,
                               lua_Integer max) {
  if (lua_isnoneornil(L, idx))
    return 0;
  lua_getfield(L, idx, k);
  lua_Integer v = 0;
  if (!lua_isnil(L, -1)) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 1 || v > max)
      luaL_error(L, "http_serve: limits.%s: expected an integer in 1..%d",
                 k, (int)max);
  }
  lua_pop(L, 1);
  return v;
}


/* core.http_serve(host, port, fn[, limits]) -> HttpServer, bound_port
 *                                          | nil, "ENAME: message", "ENAME"
 * host is an IPv4 or IPv6 literal; port 0 picks a free port. */
static int core_http_serve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 4))
    luaL_checktype(L, 4, LUA_TTABLE);
  lp2p_http_limits lim;
  memset(&lim, 0, sizeof lim);
  lim.max_connections = (unsigned)limit_field(L, 4, "max_connections", 65535);
  lim.max_per_ip = (unsigned)limit_field(L, 4, "max_per_ip", 65535);
  lim.idle_timeout = (unsigned)limit_field(L, 4, "idle_timeout", 86400);
  lim.request_timeout =
      (unsigned)limit_field(L, 4, "request_timeout", 86400);
  lim.max_head = (size_t)limit_field(L, 4, "max_head", 1 << 20);
  lim.max_body = (size_t)limit_field(L, 4, "max_body", 64 << 20);

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
    return lp2p__push_error_msg(
        L, UV_EINVAL,
        lua_pushfstring(L, "bad address '%s' (expected an IP address)",
                        host));
  uv_loop_t *loop = lp2p__loop(L);
  http_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL; /* closed until the server is up */
  luaL_setmetatable(L, HTTP_MT);
  lhttp *s = calloc(1, sizeof *s);
  if (s == NULL)
    return luaL_error(L, "luap2p: out of memory");
  s->L = lp2p__main_thread(L);
  s->fn_ref = s->self_ref = LUA_NOREF;
  int rc = lp2p_http_start(&s->h, loop, (const struct sockaddr *)&ss, &lim,
                           on_request, s);
  if (rc == UV_ENOSYS) {
    free(s);
    return lp2p__push_error_msg(L, rc, "cannot serve HTTP: "
                                "libmicrohttpd.so.12 cannot be loaded "
                                "(install libmicrohttpd12)");
  }
  if (rc < 0) {
    free(s);
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "cannot serve HTTP on %s port %d: %s",
                               host, (int)port, lp2p_strerror(rc)));
  }
  s->port = lp2p_http_port(s->h);
  lua_pushvalue(L, 3);
  s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b->s = s;
  lua_pushinteger(L, s->port);
  return 2;
}


void lp2p__open_http(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", server_close},
                                     {"port", server_port},
                                     {"clients", server_clients},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", server_close},
                                  {"__close", server_close},
                                  {"__tostring", server_tostring},
                                  {NULL, NULL}};
  lp2p__new_class(L, HTTP_MT, meta, methods);
  lua_pushcfunction(L, core_http_serve);
  lua_setfield(L, -2, "http_serve");
}
