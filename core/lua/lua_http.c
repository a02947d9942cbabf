/*
 * lua_http.c - a minimal HTTP/1.0 server on the state's libuv loop, enough
 * for `luap2p node --metrics` (Prometheus scrapes) and nothing more: GET and
 * HEAD only, one request per connection, the request head bounded in size
 * and time, the answer computed by one Lua function.
 *
 *   local srv, port = core.http_serve("127.0.0.1", 9100, function(path,
 *                                     method) return 200, ctype, body end)
 *   srv:close()
 *
 * Memory follows luv: the userdata holds only a pointer to a malloc'd
 * server; clients are malloc'd too and freed in their close callbacks. The
 * server struct is reference-counted (listener + live clients) because a
 * client may still be writing when the server is closed.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_lp2p.h"

#define HTTP_MT "luap2p.HttpServer"
#define HTTP_REQ_MAX 8192         /* request head, bytes */
#define HTTP_CLIENTS_MAX 64       /* more are accepted and closed at once */
#define HTTP_TIMEOUT_MS 10000     /* whole exchange, per client */
#define HTTP_BACKLOG 64
#define HTTP_CTYPE_DEFAULT "text/plain; charset=utf-8"

typedef struct http_server {
  uv_tcp_t tcp;
  lua_State *L;  /* main thread: callbacks never run on a coroutine */
  int fn_ref;    /* LUA_NOREF once closed */
  int self_ref;  /* keeps the userdata while open */
  int refs;      /* the listener + each client not yet freed */
  int clients;
  int port;
  int closed;
} http_server;

typedef struct http_client {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  http_server *srv;
  int handles;   /* libuv handles not yet closed: freed at 0 */
  int closing;
  int answered;  /* input after the head is read and dropped */
  size_t len;
  char *response;
  char scratch[256]; /* read target once the head is complete */
  char buf[HTTP_REQ_MAX];
} http_client;

typedef struct http_box {
  http_server *srv;
} http_box;


/* ------------------------------------------------------------ lifetime */

static void server_unref(http_server *srv) {
  if (--srv->refs == 0)
    free(srv);
}


static void server_closed(uv_handle_t *h) {
  server_unref(h->data);
}


static void client_closed(uv_handle_t *h) {
  http_client *c = h->data;
  if (--c->handles > 0)
    return;
  http_server *srv = c->srv;
  srv->clients--;
  free(c->response);
  free(c);
  server_unref(srv);
}


/* Close both handles; pending write/shutdown callbacks run (canceled)
 * before the close callbacks, so c stays valid for them. Idempotent. */
static void client_close(http_client *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, client_closed);
  uv_close((uv_handle_t *)&c->timer, client_closed);
}


/* ------------------------------------------------------------ response */

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Status";
  }
}


static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  client_close(req->data);
}


static void on_write(uv_write_t *req, int status) {
  http_client *c = req->data;
  if (status < 0 || c->closing ||
      uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
                  on_shutdown) != 0)
    client_close(c);
}


/* True when s[0..len) is safe inside a header line (no CR, LF or NUL). */
static int header_safe(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
      return 0;
  return 1;
}


/* Send status, content type and body (copied), then shut down and close.
 * HTTP/1.0 with Content-Length and Connection: close. */
static void send_response(http_client *c, int status, const char *ctype,
                          size_t ctlen, const char *body, size_t blen,
                          int head_only) {
  char head[512];
  c->answered = 1; /* whatever arrives from now on is dropped */
  if (ctype == NULL || ctlen > 200 || !header_safe(ctype, ctlen)) {
    ctype = HTTP_CTYPE_DEFAULT;
    ctlen = strlen(ctype);
  }
  int n = snprintf(head, sizeof head,
                   "HTTP/1.0 %d %s\r\nContent-Type: %.*s\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, reason_phrase(status), (int)ctlen, ctype, blen);
  if (n < 0 || (size_t)n >= sizeof head) {
    client_close(c);
    return;
  }
  size_t total = (size_t)n + (head_only ? 0 : blen);
  c->response = malloc(total ? total : 1);
  if (c->response == NULL) {
    client_close(c);
    return;
  }
  memcpy(c->response, head, (size_t)n);
  if (!head_only && blen > 0)
    memcpy(c->response + n, body, blen);
  uv_buf_t b = uv_buf_init(c->response, (unsigned)total);
  c->write_req.data = c;
  c->shutdown_req.data = c;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0)
    client_close(c);
}


static void send_error(http_client *c, int status) {
  const char *msg = reason_phrase(status);
  char body[80];
  int n = snprintf(body, sizeof body, "%d %s\n", status, msg);
  send_response(c, status, NULL, 0, body, (size_t)n, 0);
}


/* Ask the Lua function for the answer to method target. Runs on the main
 * thread through lp2p__pcall: an error is reported and becomes a 500. */
static void call_handler(http_client *c, const char *method, size_t mlen,
                         const char *target, size_t tlen) {
  http_server *srv = c->srv;
  if (srv->fn_ref == LUA_NOREF) {
    send_error(c, 503);
    return;
  }
  lua_State *L = srv->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) {
    send_error(c, 500);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->fn_ref);
  lua_pushlstring(L, target, tlen);
  lua_pushlstring(L, method, mlen);
  if (lp2p__pcall(L, 2, 3, "http handler") != 0) {
    send_error(c, 500);
    lua_settop(L, top);
    return;
  }
  int status = 200;
  if (!lua_isnil(L, top + 1)) {
    int isint;
    lua_Integer s = lua_tointegerx(L, top + 1, &isint);
    status = isint && s >= 100 && s <= 599 ? (int)s : 500;
  }
  size_t ctlen = 0, blen = 0;
  const char *ctype = lua_type(L, top + 2) == LUA_TSTRING
                          ? lua_tolstring(L, top + 2, &ctlen)
                          : NULL;
  const char *body = lua_type(L, top + 3) == LUA_TSTRING ||
                             lua_type(L, top + 3) == LUA_TNUMBER
                         ? lua_tolstring(L, top + 3, &blen)
                         : "";
  send_response(c, status, ctype, ctlen, body, blen,
                mlen == 4 && memcmp(method, "HEAD", 4) == 0);
  lua_settop(L, top);
}


/* The head c->buf[0..c->len) is complete: parse the request line
 * "METHOD SP target SP HTTP/x.y" and answer. */
static void handle_request(http_client *c) {
  const char *p = c->buf;
  const char *eol = memchr(p, '\n', c->len);
  if (eol == NULL) {
    send_error(c, 400);
    return;
  }
  if (eol > p && eol[-1] == '\r')
    eol--;
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  if (sp1 == NULL || sp1 == p) {
    send_error(c, 400);
    return;
  }
  const char *t = sp1 + 1;
  const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
  if (sp2 == NULL || sp2 == t || *t != '/' ||
      (size_t)(eol - (sp2 + 1)) < 5 || memcmp(sp2 + 1, "HTTP/", 5) != 0) {
    send_error(c, 400);
    return;
  }
  size_t mlen = (size_t)(sp1 - p), tlen = (size_t)(sp2 - t);
  for (size_t i = 0; i < tlen; i++)
    if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f) {
      send_error(c, 400);
      return;
    }
  int get = mlen == 3 && memcmp(p, "GET", 3) == 0;
  int head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
  if (!get && !head) {
    send_error(c, 405);
    return;
  }
  call_handler(c, p, mlen, t, tlen);
}


/* ------------------------------------------------------------- reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  http_client *c = h->data;
  if (c->answered || c->len >= HTTP_REQ_MAX)
    *b = uv_buf_init(c->scratch, sizeof c->scratch);
  else
    *b = uv_buf_init(c->buf + c->len, (unsigned)(HTTP_REQ_MAX - c->len));
}


/* The end of the head: an empty line, CRLF or bare LF style. */
static int head_complete(const http_client *c) {
  for (size_t i = 0; i + 1 < c->len; i++) {
    if (c->buf[i] != '\n')
      continue;
    if (c->buf[i + 1] == '\n')
      return 1;
    if (i + 2 < c->len && c->buf[i + 1] == '\r' && c->buf[i + 2] == '\n')
      return 1;
  }
  return 0;
}


static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  http_client *c = s->data;
  if (nread < 0) {
    /* EOF before an answer, or a reset: nothing more to do. Once the
     * answer is queued, its write and shutdown callbacks close. */
    if (!c->answered || nread != UV_EOF)
      client_close(c);
    else
      uv_read_stop(s);
    return;
  }
  /* Bytes read into scratch (head already answered or full) are dropped;
   * only bytes that landed at the end of the head count. */
  if (nread == 0 || c->answered || c->closing || b->base != c->buf + c->len)
    return;
  c->len += (size_t)nread;
  if (head_complete(c))
    handle_request(c);
  else if (c->len >= HTTP_REQ_MAX)
    send_error(c, 431);
}


static void on_timeout(uv_timer_t *t) {
  client_close(t->data);
}


static void on_connection(uv_stream_t *listener, int status) {
  http_server *srv = listener->data;
  if (status < 0 || srv->closed)
    return;
  http_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  uv_loop_t *loop = listener->loop;
  c->srv = srv;
  srv->refs++;
  srv->clients++;
  c->handles = 2;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      srv->clients > HTTP_CLIENTS_MAX) {
    client_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, HTTP_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    client_close(c);
}


/* ------------------------------------------------------------- Lua API */

/* close, __gc and __close: stop listening, drop the Lua references.
 * Clients mid-answer finish (a request not yet handled gets 503). */
static int server_close(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  http_server *srv = b->srv;
  if (srv == NULL)
    return 0;
  b->srv = NULL;
  srv->closed = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, srv->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
  srv->fn_ref = srv->self_ref = LUA_NOREF;
  uv_close((uv_handle_t *)&srv->tcp, server_closed);
  return 0;
}


static int server_port(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  if (b->srv == NULL)
    return luaL_error(L, "attempt to use a closed " HTTP_MT);
  lua_pushinteger(L, b->srv->port);
  return 1;
}


static int server_tostring(lua_State *L) {
  http_box *b = luaL_checkudata(L, 1, HTTP_MT);
  if (b->srv == NULL)
    lua_pushliteral(L, HTTP_MT " (closed)");
  else
    lua_pushfstring(L, HTTP_MT " (port %d)", b->srv->port);
  return 1;
}


/* core.http_serve(host, port, fn(target, method) -> status, content_type,
 *                 body) -> HttpServer, bound_port
 *                        | nil, "ENAME: message", "ENAME"
 * host is an IPv4 or IPv6 literal; port 0 picks a free port. */
static int core_http_serve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TFUNCTION);
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
  b->srv = NULL; /* closed until the listener is up */
  luaL_setmetatable(L, HTTP_MT);
  http_server *srv = calloc(1, sizeof *srv);
  if (srv == NULL)
    return luaL_error(L, "luap2p: out of memory");
  srv->L = lp2p__main_thread(L);
  srv->fn_ref = srv->self_ref = LUA_NOREF;
  srv->refs = 1;
  uv_tcp_init(loop, &srv->tcp);
  srv->tcp.data = srv;
  int rc = uv_tcp_bind(&srv->tcp, (const struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv->tcp, HTTP_BACKLOG, on_connection);
  if (rc < 0) {
    srv->closed = 1;
    uv_close((uv_handle_t *)&srv->tcp, server_closed);
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "cannot listen on %s port %d: %s", host,
                               (int)port, lp2p_strerror(rc)));
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  srv->port = (int)port;
  if (uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&bound, &blen) == 0)
    srv->port = ntohs(bound.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&bound)->sin6_port
                          : ((struct sockaddr_in *)&bound)->sin_port);
  lua_pushvalue(L, 3);
  srv->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b->srv = srv;
  lua_pushinteger(L, srv->port);
  return 2;
}


void lp2p__open_http(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", server_close},
                                     {"port", server_port},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", server_close},
                                  {"__close", server_close},
                                  {"__tostring", server_tostring},
                                  {NULL, NULL}};
  lp2p__new_class(L, HTTP_MT, meta, methods);
  lua_pushcfunction(L, core_http_serve);
  lua_setfield(L, -2, "http_serve");
}
