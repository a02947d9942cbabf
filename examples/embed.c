/*
 * embed.c - a luap2p node driven from C, without Lua: the public API of
 * core/net/lp2p_node.h and core/wire/lp2p.h on a libuv loop.
 *
 *   embed                  two nodes in this process: b dials a, sends
 *                          "ping", a answers "pong", both close
 *   embed HOST:PORT        one node dials a running node (a Lua node, e.g.
 *                          `luap2p node --pow 0 ...`, or another embed),
 *                          sends "ping", waits for any answer, closes
 *
 * Build (make embed): cc -Icore/net examples/embed.c build/libluap2p.a
 *   $(pkg-config --libs libuv libsodium) -lpthread -lm
 * Prints one line per step and exits 0 once a message went each way, 1 on
 * an error or after 10 s. spec/embed_c_spec.lua builds and runs it.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "lp2p_node.h"

#define APP_TAG 0x10 /* the first application message tag */

typedef struct side {
  const char *name;
  lp2p_node *node;
  int answer;   /* answer each message with "pong" */
  int got;      /* messages received */
  int is_dialer;
} side;

static side a = {"a", NULL, 1, 0, 0}, b = {"b", NULL, 0, 0, 1};
static uv_timer_t deadline;
static int failed;


/* Close both nodes and the deadline timer: the loop then runs dry. */
static void finish(int error) {
  failed |= error;
  if (a.node != NULL) {
    lp2p_node_close(a.node);
    a.node = NULL;
  }
  if (b.node != NULL) {
    lp2p_node_close(b.node);
    b.node = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&deadline))
    uv_close((uv_handle_t *)&deadline, NULL);
}


static void on_deadline(uv_timer_t *t) {
  fprintf(stderr, "embed: no exchange within 10 s\n");
  finish(1);
}


/* Before any byte of an incoming connection: accept everyone. */
static int hook_accept(void *ud, const lp2p_point *addr, char *reason,
                       size_t cap) {
  return 1;
}


/* After the remote's metadata: keep the core's verdict (an Ack unless a
 * hard limit refused it). */
static void hook_authenticated(void *ud, const lp2p_auth_info *info,
                               lp2p_verdict *v) {
}


static int send_text(lp2p_node *n, uint64_t conn, const char *text) {
  lp2p_conn *c = lp2p_node_find(n, conn);
  if (c == NULL)
    return LP2P_ECLOSED;
  return lp2p_conn_send(c, (const uint8_t *)text, strlen(text), 1, APP_TAG);
}


/* A message: its tag (u16, big-endian) then its payload. Tags below 0x10
 * are P2P messages (Bootstrap, Advertise, Swap: a node's policies answer
 * them; this one ignores them), the others application messages. */
static int hook_message(void *ud, uint64_t conn, const uint8_t *msg,
                        size_t len) {
  side *s = ud;
  if (len < 2)
    return 0;
  unsigned tag = (unsigned)msg[0] << 8 | msg[1];
  if (tag < APP_TAG)
    return 0;
  printf("%s got tag 0x%x: %.*s\n", s->name, tag, (int)(len - 2),
         (const char *)msg + 2);
  s->got++;
  if (s->answer) {
    int rc = send_text(s->node, conn, "pong");
    if (rc < 0)
      fprintf(stderr, "embed: %s cannot answer: %s\n", s->name,
              lp2p_strerror(rc));
  }
  if (s->is_dialer)
    finish(0);
  return 0;
}


/* Every event: its kind, the connection's point (lp2p_event_conn: the
 * part every connection event has) and, for a close or a refusal, its
 * code. Each kind's own fields are in its struct of ev->u (lp2p_node.h). */
static void hook_event(void *ud, const lp2p_event *ev) {
  side *s = ud;
  char point[LP2P_POINT_TEXT_MAX + 1] = "";
  const lp2p_ev_conn *who = lp2p_event_conn(ev);
  int code = 0;
  if (who != NULL)
    lp2p_point_format(point, who->point);
  switch (ev->type) {
  case LP2P_EV_AUTH_FAILED:
  case LP2P_EV_DECODING_ERROR:
  case LP2P_EV_DISCONNECTED:
    code = ev->u.closed.code;
    break;
  case LP2P_EV_REFUSED:
    lp2p_point_format(point, ev->u.refused.addr);
    code = ev->u.refused.code;
    break;
  default:
    break;
  }
  printf("%s event %s %s%s%s\n", s->name, lp2p_event_name(ev->type), point,
         code ? " " : "", code ? lp2p_err_name(code) : "");
  switch (ev->type) {
  case LP2P_EV_CONNECTED:
    if (s->is_dialer) {
      int rc = send_text(s->node, ev->conn, "ping");
      if (rc < 0) {
        fprintf(stderr, "embed: cannot send: %s\n", lp2p_strerror(rc));
        finish(1);
      }
    }
    break;
  case LP2P_EV_NACKED:
    fprintf(stderr, "embed: %s was Nacked (motive %d)\n", s->name,
            ev->u.nack.motive);
    if (s->is_dialer)
      finish(1);
    break;
  case LP2P_EV_AUTH_FAILED:
    if (s->is_dialer)
      finish(1);
    break;
  default:
    break;
  }
}


static lp2p_node *start(uv_loop_t *loop, side *s) {
  lp2p_node_config cfg;
  lp2p_node_config_defaults(&cfg);
  lp2p_identity_generate(&cfg.identity); /* fresh keys, no proof of work */
  cfg.pow_bits = 0;                      /* and none required of peers */
  if (lp2p_pow_target_make(&cfg.target, cfg.pow_bits) < 0)
    return NULL;
  lp2p_node_hooks hooks = {s, hook_accept, hook_authenticated, hook_message,
                           hook_event};
  int err = 0;
  lp2p_node *n = lp2p_node_new(loop, &cfg, &hooks, &err);
  lp2p_identity_wipe(&cfg.identity); /* the node keeps its own copy */
  if (n == NULL)
    fprintf(stderr, "embed: node: %s\n", lp2p_strerror(err));
  return n;
}


int main(int argc, char **argv) {
  if (sodium_init() < 0)
    return 1;
  uv_loop_t *loop = uv_default_loop();
  lp2p_point target;
  const char *text = argc > 1 ? argv[1] : NULL;

  if (text == NULL) {
    a.node = start(loop, &a);
    if (a.node == NULL)
      return 1;
    int port = lp2p_node_listen(a.node, "127.0.0.1", 0);
    if (port < 0) {
      fprintf(stderr, "embed: listen: %s\n", lp2p_strerror(port));
      return 1;
    }
    printf("a listening on 127.0.0.1:%d\n", port);
    char buf[32];
    snprintf(buf, sizeof buf, "127.0.0.1:%d", port);
    if (lp2p_point_parse(&target, buf, strlen(buf)) < 0)
      return 1;
  } else if (lp2p_point_parse(&target, text, strlen(text)) < 0) {
    fprintf(stderr, "embed: bad point '%s' (expected HOST:PORT)\n", text);
    return 2;
  }

  b.node = start(loop, &b);
  if (b.node == NULL)
    return 1;
  uint64_t id;
  int rc = lp2p_node_connect(b.node, &target, NULL, 5000, &id);
  if (rc < 0) {
    fprintf(stderr, "embed: connect: %s\n", lp2p_strerror(rc));
    return 1;
  }
  uv_timer_init(loop, &deadline);
  uv_timer_start(&deadline, on_deadline, 10000, 0);

  uv_run(loop, UV_RUN_DEFAULT);
  /* The nodes are gone; what they shared (the key-job threads) goes with
   * the loop. */
  lp2p_loop_close_nodes(loop);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  if (failed || b.got == 0)
    return 1;
  printf("embed: done\n");
  return 0;
}
