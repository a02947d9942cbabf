/*
 * handler_open.c - how connections come to a node (handler.c): listening
 * and accepting, with the admission checks before any byte (bans, rates
 * and caps, the pending cap, the accept hook); adopting a connected
 * socket; dialling.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "node_internal.h"


/* --------------------------------------------------------------- points */

static void point_from_sockaddr(lp2p_point *p, const struct sockaddr *sa) {
  memset(p, 0, sizeof *p);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    p->family = 4;
    memcpy(p->addr, &in->sin_addr, 4);
    p->port = ntohs(in->sin_port);
  } else {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&in6->sin6_addr, mapped, 12) == 0) {
      /* An IPv4 peer on a dual-stack socket is an IPv4 point. */
      p->family = 4;
      memcpy(p->addr, (const uint8_t *)&in6->sin6_addr + 12, 4);
    } else {
      p->family = 6;
      memcpy(p->addr, &in6->sin6_addr, 16);
    }
    p->port = ntohs(in6->sin6_port);
  }
}


static void sockaddr_from_point(struct sockaddr_storage *ss,
                                const lp2p_point *p) {
  memset(ss, 0, sizeof *ss);
  if (p->family == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, p->addr, 4);
    in->sin_port = htons(p->port);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, p->addr, 16);
    in6->sin6_port = htons(p->port);
  }
}


static int same_ip(const lp2p_point *a, const lp2p_point *b) {
  return a->family == b->family &&
         memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}


/* ---------------------------------------------------------- connections */

/* A connection of n: the node counts it until it is freed
 * (LP2P_REPORT_FREED), and stays until then. */
static lp2p_conn *new_conn(lp2p_node *n, int incoming) {
  lp2p_conn *c = lp2p__conn_new(n, incoming);
  if (c != NULL)
    n->nconns++;
  return c;
}


/* The handshake of c starts, with its connection message's nonce from
 * the loop's random buffer. */
static void start_handshake(lp2p_conn *c) {
  uint8_t nonce[LP2P_NONCE_BYTES];
  lp2p__node_random(c->node, nonce, sizeof nonce);
  lp2p__conn_start_handshake(c, nonce);
  sodium_memzero(nonce, sizeof nonce);
}


/* --------------------------------------------------------------- accept */

/*
 * The checks at TCP accept, cheapest first, before any byte is read or any
 * crypto is done: the ban table, per-IP and per-prefix admission, the
 * pending-handshake cap, then the policy hook. 0, or the refusal code
 * with its reason in `reason`.
 */
static int admit(lp2p_node *n, const lp2p_point *addr, uint64_t now,
                 char *reason, size_t cap) {
  if (lp2p_bans_addr(n->bans, addr, now)) {
    snprintf(reason, cap, "banned");
    return LP2P_EBANNED;
  }
  int rc = lp2p_admission_check(n->admission, addr, now, n->pending_incoming);
  if (rc < 0) {
    snprintf(reason, cap, "%s", lp2p_admission_reason(n->admission));
    return rc;
  }
  if (n->pending_incoming >= n->cfg.max_incoming_connections) {
    snprintf(reason, cap, "too many incoming connections");
    return LP2P_ETOOMANY;
  }
  snprintf(reason, cap, "refused by policy");
  if (!n->hooks.accept(n->hooks.ud, addr, reason, cap))
    return LP2P_EREFUSED;
  return 0;
}


static void on_connection(uv_stream_t *server, int status) {
  lp2p_node *n = server->data;
  if (status < 0 || n->closing)
    return;
  lp2p_conn *c = new_conn(n, 1);
  if (c == NULL)
    return;
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) < 0) {
    lp2p_conn_close(c, LP2P_ECLOSED, NULL, 0);
    return;
  }
  point_from_sockaddr(&c->addr, (struct sockaddr *)&ss);
  char reason[128];
  uint64_t now = uv_now(n->loop);
  int code = admit(n, &c->addr, now, reason, sizeof reason);
  if (code == 0 && n->closing) /* the hook closed the node */
    code = LP2P_ECLOSED;
  if (code < 0) {
    lp2p_event ev = {.type = LP2P_EV_REFUSED};
    ev.u.refused.addr = &c->addr;
    ev.u.refused.code = code;
    ev.u.refused.reason = reason;
    lp2p__node_emit(n, &ev);
    lp2p_conn_close(c, code, reason, 0);
    return;
  }
  if (lp2p__node_slot_assign(n, c) < 0) {
    lp2p_conn_close(c, LP2P_ENOMEM, NULL, 0);
    return;
  }
#ifndef __linux__
  uv_tcp_nodelay(&c->tcp, 1); /* Linux: inherited from the listener */
#endif
  lp2p_admission_opened(n->admission, &c->addr, now);
  c->counted_admission = 1;
  c->counted_pending = 1;
  n->pending_incoming++;
  lp2p__node_emit_conn(n, c, LP2P_EV_ACCEPTED);
  lp2p__conn_arm_timeout(c, n->cfg.authentication_timeout_ms);
  start_handshake(c);
}


/*
 * Take an already-connected stream socket (socket activation, a
 * socketpair in tests and fuzzers) as an incoming connection: no
 * admission checks, the accept hook is not asked; the handshake starts at
 * once. A socket that is not IP has an empty address. *id on success; on
 * failure the socket is not closed (it stays the caller's).
 */
int lp2p_node_adopt(lp2p_node *n, uv_os_sock_t sock, uint64_t *id) {
  if (n->closing)
    return LP2P_ECLOSED;
  lp2p_conn *c = new_conn(n, 1);
  if (c == NULL)
    return LP2P_ENOMEM;
  /* The slot first: once uv_tcp_open took the socket, nothing fails. */
  int rc = lp2p__node_slot_assign(n, c);
  if (rc == 0) {
    rc = uv_tcp_open(&c->tcp, sock);
    if (rc < 0)
      lp2p__node_slot_release(n, c);
  }
  if (rc < 0) {
    c->id = 0; /* no "disconnected" for a connection never started */
    lp2p_conn_close(c, rc, NULL, 0);
    return rc;
  }
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0 &&
      (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
    point_from_sockaddr(&c->addr, (struct sockaddr *)&ss);
  c->counted_pending = 1;
  n->pending_incoming++;
  *id = c->id;
  lp2p__node_emit_conn(n, c, LP2P_EV_ACCEPTED);
  lp2p__conn_arm_timeout(c, n->cfg.authentication_timeout_ms);
  start_handshake(c);
  return 0;
}


int lp2p_node_listen(lp2p_node *n, const char *host, int port) {
  if (n->closing)
    return LP2P_ECLOSED;
  if (n->nlisteners == (int)(sizeof n->listeners / sizeof n->listeners[0]))
    return LP2P_EINVAL;
  struct sockaddr_storage ss;
  int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc < 0)
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  if (rc < 0)
    return LP2P_EPOINT;
  uv_tcp_t *t = malloc(sizeof *t);
  if (t == NULL)
    return LP2P_ENOMEM;
  uv_tcp_init(n->loop, t);
  t->data = n;
  n->handles++;
  rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
  /* Sockets accepted on Linux inherit TCP_NODELAY from the listener: one
   * setsockopt here rather than one per connection. */
  if (rc == 0)
    rc = uv_tcp_nodelay(t, 1);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)t, n->cfg.backlog, on_connection);
  int namelen = sizeof ss;
  if (rc == 0)
    rc = uv_tcp_getsockname(t, (struct sockaddr *)&ss, &namelen);
  if (rc < 0) {
    uv_close((uv_handle_t *)t, lp2p__node_on_handle_closed);
    return rc;
  }
  n->listeners[n->nlisteners++] = t;
  lp2p_point bound;
  point_from_sockaddr(&bound, (struct sockaddr *)&ss);
  if (n->cfg.advertised_port == 0)
    n->cfg.advertised_port = bound.port;
  return bound.port;
}


/* -------------------------------------------------------------- connect */

static void on_connect(uv_connect_t *req, int status) {
  lp2p_conn *c = req->data;
  if (c->state == LP2P_CONN_CLOSING)
    return;
  if (status < 0) {
    lp2p_conn_close(c, status, uv_strerror(status), 0);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  start_handshake(c);
}


static int point_busy(lp2p_node *n, const lp2p_point *p) {
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c != NULL && c->state != LP2P_CONN_CLOSING &&
        c->point.port == p->port && same_ip(&c->point, p))
      return 1;
  }
  return 0;
}


int lp2p_node_connect(lp2p_node *n, const lp2p_point *p,
                      const uint8_t *expected_peer_id, uint64_t timeout_ms,
                      uint64_t *id) {
  if (n->closing)
    return LP2P_ECLOSED;
  if (lp2p_bans_addr(n->bans, p, uv_now(n->loop)))
    return LP2P_EBANNED;
  if (n->active > n->cfg.max_connections)
    return LP2P_ETOOMANY;
  if (point_busy(n, p))
    return LP2P_EALREADY;
  lp2p_conn *c = new_conn(n, 0);
  if (c == NULL)
    return LP2P_ENOMEM;
  c->addr = *p;
  c->point = *p;
  if (expected_peer_id != NULL) {
    memcpy(c->expected_peer_id, expected_peer_id, LP2P_PEER_ID_BYTES);
    c->has_expected = 1;
  }
  int rc = lp2p__node_slot_assign(n, c);
  struct sockaddr_storage ss;
  sockaddr_from_point(&ss, p);
  if (rc == 0 && n->cfg.has_bind_addr)
    rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&n->cfg.bind_addr, 0);
  if (rc == 0)
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss,
                        on_connect);
  if (rc < 0) {
    lp2p__node_slot_release(n, c);
    c->id = 0; /* no "disconnected" for a connection never started */
    lp2p_conn_close(c, rc, NULL, 0);
    return rc;
  }
  c->counted_pending = 1;
  n->pending_outgoing++;
  lp2p__conn_arm_timeout(c, timeout_ms ? timeout_ms
                                       : n->cfg.connection_timeout_ms);
  *id = c->id;
  lp2p__node_emit_conn(n, c, LP2P_EV_CONNECTING);
  return 0;
}
