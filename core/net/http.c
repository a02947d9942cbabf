/*
 * http.c - GNU libmicrohttpd on the node's libuv loop (see lp2p_http.h).
 *
 * libmicrohttpd parses HTTP/1.1 (keep-alive, chunked bodies, pipelining),
 * enforces the connection limits (total and per client IP), the idle
 * timeout and the request-head bound (its per-connection memory pool); we
 * add a body bound and the loop integration:
 *
 *   - MHD_USE_EPOLL without an internal thread: MHD keeps its sockets in an
 *     epoll set of its own; that descriptor is readable whenever any of
 *     them is ready, so one uv_poll_t on it wakes us, and MHD_run()
 *     processes what is ready without blocking;
 *   - MHD_get_timeout() after each run arms one uv_timer_t: it fires for
 *     idle timeouts and for work MHD left pending (0 ms).
 *
 * We bind and listen ourselves (MHD_OPTION_LISTEN_SOCKET) so that a failure
 * has its errno (EADDRINUSE, EACCES), which MHD_start_daemon() does not
 * report. The listening socket belongs to MHD from then on.
 *
 * libmicrohttpd is loaded with dlopen() on the first lp2p_http_start(), not
 * linked: Debian's build pulls in GnuTLS and p11-kit, and p11-kit's
 * destructor deadlocks at exit under AddressSanitizer in any process that
 * called setlocale() (timeout, bash, cat...). The sanitizer runs preload
 * the core into every child process, so linking would hang them all;
 * loading on use maps those libraries only into processes that serve HTTP.
 * The handle is process-wide (like libsodium's init) and never closed.
 *
 * Memory: lp2p_http is malloc'd and freed once both libuv handles have run
 * their close callbacks; requests are freed in MHD's completion callback.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "lp2p_http.h"

#define HTTP_BACKLOG 128
#define HTTP_HEAD_SLACK 4096 /* pool room for the response head */

/* ------------------------------------------------------------ loading */

#define MHD_FUNCTIONS(X)                                                  \
  X(MHD_add_response_header)                                              \
  X(MHD_create_response_from_buffer)                                      \
  X(MHD_destroy_response)                                                 \
  X(MHD_get_connection_values)                                            \
  X(MHD_get_daemon_info)                                                  \
  X(MHD_get_timeout)                                                      \
  X(MHD_lookup_connection_value)                                          \
  X(MHD_queue_response)                                                   \
  X(MHD_run)                                                              \
  X(MHD_start_daemon)                                                     \
  X(MHD_stop_daemon)

#define MHD_FIELD(f) __typeof__(&f) f;
static struct {
  MHD_FUNCTIONS(MHD_FIELD)
} mhd;
#undef MHD_FIELD

static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;
static int mhd_loaded; /* 1 once every symbol resolved */

static void mhd_load(void) {
  static const char *const names[] = {"libmicrohttpd.so.12",
                                      "libmicrohttpd.so"};
  void *lib = NULL;
  for (size_t i = 0; lib == NULL && i < sizeof names / sizeof *names; i++)
    lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return;
#define MHD_RESOLVE(f)                                                    \
  if ((*(void **)&mhd.f = dlsym(lib, #f)) == NULL)                        \
    return;
  MHD_FUNCTIONS(MHD_RESOLVE)
#undef MHD_RESOLVE
  mhd_loaded = 1;
}


int lp2p_http_available(void) {
  pthread_once(&mhd_once, mhd_load);
  return mhd_loaded;
}


struct lp2p_http {
  uv_poll_t poll;
  uv_timer_t timer;
  struct MHD_Daemon *mhd;
  lp2p_http_cb cb;
  void *data;
  size_t max_body;
  int port;
  int handles;  /* libuv handles not yet closed: freed at 0 */
  int in_run;   /* inside MHD_run(): closing waits for its end */
  int closing;
};

struct lp2p_http_req {
  lp2p_http *srv;
  struct MHD_Connection *conn;
  const char *method;
  const char *path;
  char *body;
  size_t len, cap;
  int too_large;
  int answered;
};


/* ------------------------------------------------------------ lifetime */

static void handle_closed(uv_handle_t *h) {
  lp2p_http *srv = h->data;
  if (--srv->handles == 0)
    free(srv);
}


/* Close the handles, then stop MHD: uv_close stops the poll (and takes the
 * epoll descriptor out of libuv's set) before MHD closes that descriptor. */
static void finish_close(lp2p_http *srv) {
  uv_close((uv_handle_t *)&srv->poll, handle_closed);
  uv_close((uv_handle_t *)&srv->timer, handle_closed);
  if (srv->mhd != NULL) {
    mhd.MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
  }
}


void lp2p_http_close(lp2p_http *srv) {
  if (srv == NULL || srv->closing)
    return;
  srv->closing = 1;
  if (!srv->in_run)
    finish_close(srv);
}


/* -------------------------------------------------------------- driving */

static void on_timer(uv_timer_t *t);

/* Let MHD process whatever is ready, then arm the timer for its next
 * deadline. A close requested by a request callback happens here, once
 * MHD_run() has returned. */
static void run(lp2p_http *srv) {
  srv->in_run = 1;
  mhd.MHD_run(srv->mhd);
  srv->in_run = 0;
  if (srv->closing) {
    finish_close(srv);
    return;
  }
  MHD_UNSIGNED_LONG_LONG ms;
  if (mhd.MHD_get_timeout(srv->mhd, &ms) == MHD_YES) {
    if (ms > 3600000)
      ms = 3600000;
    uv_timer_start(&srv->timer, on_timer, (uint64_t)ms, 0);
  } else {
    uv_timer_stop(&srv->timer);
  }
}


static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  run(p->data);
}


static void on_timer(uv_timer_t *t) {
  run(t->data);
}


/* ------------------------------------------------------------ requests */

static void free_req(lp2p_http_req *req) {
  if (req == NULL)
    return;
  free(req->body);
  free(req);
}


static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  free_req(*con_cls);
  *con_cls = NULL;
}


static enum MHD_Result queue_text(struct MHD_Connection *conn, int status,
                                  const char *text) {
  struct MHD_Response *r = mhd.MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return MHD_NO;
  mhd.MHD_add_response_header(r, "Content-Type",
                              "text/plain; charset=utf-8");
  enum MHD_Result rc = mhd.MHD_queue_response(conn, (unsigned)status, r);
  mhd.MHD_destroy_response(r);
  return rc;
}


static const char TOO_LARGE[] = "413 request body too large\n";

/* Append upload data to req->body within srv->max_body; past it the body
 * is dropped and the request answered 413 once fully read. */
static void take_body(lp2p_http_req *req, const char *data, size_t n) {
  if (req->too_large)
    return;
  if (n > req->srv->max_body - req->len) {
    req->too_large = 1;
    free(req->body);
    req->body = NULL;
    req->len = req->cap = 0;
    return;
  }
  if (req->len + n > req->cap) {
    size_t cap = req->cap ? req->cap : 1024;
    while (cap < req->len + n)
      cap *= 2;
    if (cap > req->srv->max_body)
      cap = req->srv->max_body;
    char *p = realloc(req->body, cap);
    if (p == NULL) {
      req->too_large = 1; /* answered 413: the honest "cannot take it" */
      return;
    }
    req->body = p;
    req->cap = cap;
  }
  memcpy(req->body + req->len, data, n);
  req->len += n;
}


/* MHD calls this at least twice per request: once with the head, once
 * per chunk of body (upload_data), once at the end (*size == 0). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size,
                                  void **con_cls) {
  (void)version;
  lp2p_http *srv = cls;
  lp2p_http_req *req = *con_cls;
  if (req == NULL) {
    req = calloc(1, sizeof *req);
    if (req == NULL)
      return MHD_NO;
    req->srv = srv;
    req->conn = conn;
    *con_cls = req;
    /* A declared length over the bound is refused before reading it. */
    const char *cl = mhd.MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
      char *end;
      errno = 0;
      unsigned long long n = strtoull(cl, &end, 10);
      if (errno != 0 || end == cl || n > srv->max_body) {
        req->answered = 1;
        return queue_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, TOO_LARGE);
      }
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    take_body(req, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (req->answered)
    return MHD_YES;
  if (req->too_large) {
    req->answered = 1;
    return queue_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, TOO_LARGE);
  }
  if (srv->closing) {
    req->answered = 1;
    return queue_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "503 server closing\n");
  }
  req->method = method;
  req->path = url;
  srv->cb(srv->data, req);
  if (!req->answered) {
    req->answered = 1;
    return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                      "500 no answer\n");
  }
  return MHD_YES;
}


const char *lp2p_http_method(const lp2p_http_req *req) {
  return req->method;
}


const char *lp2p_http_path(const lp2p_http_req *req) {
  return req->path;
}


const char *lp2p_http_body(const lp2p_http_req *req, size_t *len) {
  *len = req->len;
  return req->body ? req->body : "";
}


typedef struct arg_walk {
  lp2p_http_arg_fn fn;
  void *data;
} arg_walk;


static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value) {
  (void)kind;
  arg_walk *w = cls;
  w->fn(w->data, key, value);
  return MHD_YES;
}


void lp2p_http_args(const lp2p_http_req *req, lp2p_http_arg_fn fn,
                    void *data) {
  arg_walk w = {fn, data};
  mhd.MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, each_arg,
                                &w);
}


/* No control characters in a header line: a value from Lua must not be
 * able to start a header of its own. */
static int header_ok(const char *s) {
  if (s == NULL || *s == '\0')
    return 0;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 && *s != '\t')
      return 0;
  return 1;
}


int lp2p_http_respond(lp2p_http_req *req, int status,
                      const char *const *headers, size_t nheaders,
                      const char *body, size_t len) {
  if (req->answered)
    return UV_EALREADY;
  if (status < 100 || status > 599)
    return UV_EINVAL;
  for (size_t i = 0; i < nheaders; i++)
    if (!header_ok(headers[2 * i]) || !header_ok(headers[2 * i + 1]))
      return UV_EINVAL;
  struct MHD_Response *r = mhd.MHD_create_response_from_buffer(
      len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < nheaders; i++) {
    if (mhd.MHD_add_response_header(r, headers[2 * i],
                                    headers[2 * i + 1]) != MHD_YES) {
      mhd.MHD_destroy_response(r);
      return UV_EINVAL;
    }
  }
  enum MHD_Result rc =
      mhd.MHD_queue_response(req->conn, (unsigned)status, r);
  mhd.MHD_destroy_response(r);
  if (rc != MHD_YES)
    return UV_ENOMEM;
  req->answered = 1;
  return 0;
}


/* ---------------------------------------------------------------- start */

/* A non-blocking listening socket on addr, or a negative UV_E* code. */
static int listen_on(const struct sockaddr *addr, int *fd_out) {
  socklen_t alen = addr->sa_family == AF_INET6
                       ? sizeof(struct sockaddr_in6)
                       : sizeof(struct sockaddr_in);
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
                  SOCK_CLOEXEC, 0);
  if (fd < 0)
    return (-errno) /* libuv codes are -errno on Unix */;
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (addr->sa_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  if (bind(fd, addr, alen) != 0 || listen(fd, HTTP_BACKLOG) != 0) {
    int err = (-errno) /* libuv codes are -errno on Unix */;
    close(fd);
    return err;
  }
  *fd_out = fd;
  return 0;
}


static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}


int lp2p_http_start(lp2p_http **out, uv_loop_t *loop,
                    const struct sockaddr *addr,
                    const lp2p_http_limits *limits, lp2p_http_cb cb,
                    void *data) {
  *out = NULL;
  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
    return UV_EINVAL;
  if (!lp2p_http_available())
    return UV_ENOSYS;
  lp2p_http_limits lim = *limits;
  if (lim.max_connections == 0)
    lim.max_connections = LP2P_HTTP_DEFAULT_CONNECTIONS;
  if (lim.max_per_ip == 0)
    lim.max_per_ip = LP2P_HTTP_DEFAULT_PER_IP;
  if (lim.idle_timeout == 0)
    lim.idle_timeout = LP2P_HTTP_DEFAULT_TIMEOUT;
  if (lim.max_head == 0)
    lim.max_head = LP2P_HTTP_DEFAULT_HEAD;
  if (lim.max_body == 0)
    lim.max_body = LP2P_HTTP_DEFAULT_BODY;

  int fd = -1;
  int rc = listen_on(addr, &fd);
  if (rc < 0)
    return rc;
  int port = bound_port(fd);

  lp2p_http *srv = calloc(1, sizeof *srv);
  if (srv == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  srv->cb = cb;
  srv->data = data;
  srv->max_body = lim.max_body;
  srv->port = port;
  unsigned flags = MHD_USE_EPOLL;
  if (addr->sa_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  srv->mhd = mhd.MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, srv,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)lim.max_connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)lim.max_per_ip,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)lim.idle_timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)(lim.max_head + HTTP_HEAD_SLACK),
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)NULL,
      MHD_OPTION_END);
  if (srv->mhd == NULL) {
    /* MHD did not take the socket: it is still ours. */
    if (fcntl(fd, F_GETFD) != -1)
      close(fd);
    free(srv);
    return UV_EINVAL;
  }
  const union MHD_DaemonInfo *info =
      mhd.MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL || uv_poll_init(loop, &srv->poll, info->epoll_fd) != 0) {
    mhd.MHD_stop_daemon(srv->mhd);
    free(srv);
    return UV_EINVAL;
  }
  uv_timer_init(loop, &srv->timer);
  srv->poll.data = srv;
  srv->timer.data = srv;
  srv->handles = 2;
  uv_poll_start(&srv->poll, UV_READABLE, on_poll);
  *out = srv;
  return 0;
}


int lp2p_http_port(const lp2p_http *srv) {
  return srv->port;
}


unsigned lp2p_http_clients(const lp2p_http *srv) {
  if (srv->mhd == NULL)
    return 0;
  const union MHD_DaemonInfo *info = mhd.MHD_get_daemon_info(
      srv->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return info ? info->num_connections : 0;
}
