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
 *     idle timeouts and for work MHD left pending (0 ms);
 *   - a request deadline MHD does not have: the idle timeout restarts
 *     with every byte, so a client dripping one byte under it holds its
 *     slot for ever, and clients of enough IPs hold them all. Each
 *     connection is on a list ordered by deadline from its accept (or
 *     the end of its previous answer) until its request is read in full;
 *     a second uv_timer_t fires at the earliest, and a connection past it
 *     gets a 408 and a shutdown(2), which MHD sees as the client's EOF
 *     and closes as usual (the descriptor stays MHD's to close).
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
 * their close callbacks; requests (http_req.c) are freed in MHD's
 * completion callback.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"

#define HTTP_BACKLOG 128
#define HTTP_HEAD_SLACK 4096 /* pool room for the response head */

/* ------------------------------------------------------------ loading */

/* The functions of libmicrohttpd (http_internal.h), resolved once. */
struct lp2p__mhd_fns lp2p__mhd;

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
  uv_close((uv_handle_t *)&srv->deadline_timer, handle_closed);
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
 * MHD_run() has returned.
 *
 * At max_connections MHD takes the listening socket out of its epoll set
 * (clients wait in the kernel's backlog) and puts it back only at the
 * start of a later MHD_run(). When a run closes clients of a full server,
 * nothing would call that later run (the epoll descriptor is not readable
 * for a backlog MHD no longer watches), and a server whose clients all
 * timed out would stop accepting for good: run again at once. */
static void run(lp2p_http *srv) {
  srv->in_run = 1;
  mhd.MHD_run(srv->mhd);
  srv->in_run = 0;
  if (srv->closing) {
    finish_close(srv);
    return;
  }
  int full = lp2p_http_clients(srv) >= srv->max_connections;
  int freed = srv->was_full && !full;
  srv->was_full = full;
  MHD_UNSIGNED_LONG_LONG ms;
  if (freed) {
    uv_timer_start(&srv->timer, on_timer, 0, 0);
  } else if (mhd.MHD_get_timeout(srv->mhd, &ms) == MHD_YES) {
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


/* ------------------------------------------------------------ deadlines */

static void on_deadline(uv_timer_t *t);

/* Arm the deadline timer for the earliest listed client, or stop it. */
static void arm_deadline(lp2p_http *srv) {
  if (srv->closing)
    return;
  if (srv->first == NULL) {
    uv_timer_stop(&srv->deadline_timer);
    return;
  }
  uint64_t now = uv_now(srv->timer.loop);
  uint64_t at = srv->first->deadline;
  uv_timer_start(&srv->deadline_timer, on_deadline, at > now ? at - now : 0,
                 0);
}


void lp2p__http_unlist(http_client *c) {
  if (!c->listed)
    return;
  lp2p_http *srv = c->srv;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    srv->first = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  else
    srv->last = c->prev;
  c->prev = c->next = NULL;
  c->listed = 0;
}


/* Start c's clock for one request. Every deadline is now + the same span,
 * so appending keeps the list ordered. */
void lp2p__http_list(http_client *c) {
  lp2p_http *srv = c->srv;
  lp2p__http_unlist(c);
  c->deadline = uv_now(srv->timer.loop) + srv->request_ms;
  c->prev = srv->last;
  c->next = NULL;
  if (srv->last != NULL)
    srv->last->next = c;
  else
    srv->first = c;
  srv->last = c;
  c->listed = 1;
  if (srv->first == c)
    arm_deadline(srv);
}


static const char TIMED_OUT[] =
    "HTTP/1.1 408 Request Timeout\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 20\r\n"
    "Connection: close\r\n"
    "\r\n"
    "408 request timeout\n";

/* Cut every client past its deadline. MHD is reading from them and has
 * written nothing of an answer (a client is listed only until its request
 * is read, and again once the answer is sent), so the 408 cannot land in
 * the middle of one; it is best effort (MSG_DONTWAIT). shutdown() wakes
 * MHD's epoll with an EOF and MHD closes the connection, which unlists
 * it for good (NOTIFY_CLOSED). */
static void on_deadline(uv_timer_t *t) {
  lp2p_http *srv = t->data;
  uint64_t now = uv_now(t->loop);
  while (srv->first != NULL && srv->first->deadline <= now) {
    http_client *c = srv->first;
    lp2p__http_unlist(c);
    const union MHD_ConnectionInfo *info = mhd.MHD_get_connection_info(
        c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info != NULL) {
      ssize_t n = send(info->connect_fd, TIMED_OUT, sizeof TIMED_OUT - 1,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)n;
      shutdown(info->connect_fd, SHUT_RDWR);
    }
  }
  arm_deadline(srv);
}


static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  lp2p_http *srv = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    http_client *c = calloc(1, sizeof *c);
    *socket_context = c;
    if (c == NULL)
      return; /* no deadline for this one rather than no service */
    c->srv = srv;
    c->conn = conn;
    lp2p__http_list(c);
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    http_client *c = *socket_context;
    if (c != NULL) {
      lp2p__http_unlist(c);
      free(c);
    }
    *socket_context = NULL;
  }
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
  if (lim.request_timeout == 0)
    lim.request_timeout = LP2P_HTTP_DEFAULT_REQUEST_TIMEOUT;

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
  srv->max_connections = lim.max_connections;
  srv->request_ms = (uint64_t)lim.request_timeout * 1000;
  srv->port = port;
  unsigned flags = MHD_USE_EPOLL;
  if (addr->sa_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  srv->mhd = mhd.MHD_start_daemon(
      flags, 0, NULL, NULL, lp2p__http_on_request, srv,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)lim.max_connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)lim.max_per_ip,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)lim.idle_timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)(lim.max_head + HTTP_HEAD_SLACK),
      MHD_OPTION_NOTIFY_COMPLETED, lp2p__http_on_completed, (void *)NULL,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, (void *)srv,
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
  uv_timer_init(loop, &srv->deadline_timer);
  srv->poll.data = srv;
  srv->timer.data = srv;
  srv->deadline_timer.data = srv;
  srv->handles = 3;
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
