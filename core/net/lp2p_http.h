/*
 * lp2p_http.h - an HTTP server (GNU libmicrohttpd) driven by a libuv loop.
 * Internal to luap2p: the net layer (core/net/http.c) and its Lua binding
 * (core/lua/lua_http.c) include it; nothing here knows about Lua.
 *
 * libmicrohttpd runs without threads of its own ("external select" mode
 * with MHD_USE_EPOLL): its epoll descriptor is watched by a uv_poll_t and
 * MHD_get_timeout() drives a uv_timer_t, so every request is parsed and
 * answered on the loop's thread, between two libuv callbacks.
 *
 * Thread-safety: none; every function is called on the loop's thread.
 */
#ifndef LP2P_HTTP_H
#define LP2P_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

typedef struct lp2p_http lp2p_http;
typedef struct lp2p_http_req lp2p_http_req;

/* Bounds. A zero field takes its default (LP2P_HTTP_DEFAULT_*). */
typedef struct lp2p_http_limits {
  unsigned max_connections; /* open client connections, all IPs */
  unsigned max_per_ip;      /* open client connections from one IP */
  unsigned idle_timeout;    /* s without traffic before a client is closed */
  unsigned request_timeout; /* s to read a whole request (head and body)
                               from the accept or the end of the previous
                               answer; past it a 408 and the client is
                               closed, however steadily it sends */
  size_t max_head;          /* request line + headers, bytes (431 above
                               max_head + 4 KiB: the pool's room for the
                               answer's head) */
  size_t max_body;          /* request body, bytes (413 above) */
} lp2p_http_limits;

#define LP2P_HTTP_DEFAULT_CONNECTIONS 256
#define LP2P_HTTP_DEFAULT_PER_IP 16
#define LP2P_HTTP_DEFAULT_TIMEOUT 10
#define LP2P_HTTP_DEFAULT_REQUEST_TIMEOUT 10
#define LP2P_HTTP_DEFAULT_HEAD 16384
#define LP2P_HTTP_DEFAULT_BODY 65536

/* Called once per complete request (head and body read, within limits).
 * It must answer with lp2p_http_respond() before returning; a request left
 * unanswered gets a 500. req is valid only during the call. */
typedef void (*lp2p_http_cb)(void *data, lp2p_http_req *req);

/* True when libmicrohttpd could be loaded (dlopen on first use, see
 * http.c); lp2p_http_start() fails with UV_ENOSYS otherwise. */
int lp2p_http_available(void);

/* Start serving on addr (IPv4 or IPv6; port 0 picks one). *out is owned by
 * the caller until lp2p_http_close(). Returns 0 or a negative UV_E* code
 * (UV_EADDRINUSE, UV_EACCES, UV_EINVAL, UV_ENOMEM, UV_ENOSYS). */
int lp2p_http_start(lp2p_http **out, uv_loop_t *loop,
                    const struct sockaddr *addr,
                    const lp2p_http_limits *limits, lp2p_http_cb cb,
                    void *data);

/* The bound port. */
int lp2p_http_port(const lp2p_http *h);

/* Clients currently connected. */
unsigned lp2p_http_clients(const lp2p_http *h);

/* Stop listening and drop every client; memory goes in libuv's close
 * callbacks. Safe inside the request callback (it then takes effect when
 * the callback returns). Idempotent through the caller's NULLed pointer. */
void lp2p_http_close(lp2p_http *h);

/* The request: method ("GET", ...), path (percent-decoded, without the
 * query), body (may contain NUL bytes). */
const char *lp2p_http_method(const lp2p_http_req *req);
const char *lp2p_http_path(const lp2p_http_req *req);
const char *lp2p_http_body(const lp2p_http_req *req, size_t *len);

/* Call fn for each query argument (decoded; value NULL for "?flag"). */
typedef void (*lp2p_http_arg_fn)(void *data, const char *key,
                                 const char *value);
void lp2p_http_args(const lp2p_http_req *req, lp2p_http_arg_fn fn,
                    void *data);

/* Answer: status, nheaders name/value pairs (names and values without CR
 * or LF, else refused), the body copied. Returns 0, UV_EINVAL (bad status
 * or header), UV_EALREADY (answered already) or UV_ENOMEM. */
int lp2p_http_respond(lp2p_http_req *req, int status,
                      const char *const *headers, size_t nheaders,
                      const char *body, size_t len);

#endif /* LP2P_HTTP_H */
