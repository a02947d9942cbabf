/*
 * hs_allocs.c - how many heap allocations the library makes per
 * handshake, once warm. Two C nodes share one libuv loop; the client
 * dials the server, and as soon as one handshake ends (connected, or
 * refused by the server's Nack in "nack" mode) it closes that connection
 * and dials again. Allocations are counted between the end of handshake
 * WARM and the end of handshake WARM + COUNT, on both sides together.
 *
 * Linked against build/libluap2p.a with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
 * so that only the calls made by code linked statically (the library and
 * this file) go through the counters below; libuv's and libsodium's own
 * allocations (shared libraries) are not counted. With SHOW=1 in the
 * environment every counted allocation prints its size and a backtrace.
 *
 *   build/hs_allocs [ack|nack] [WARM] [COUNT]
 * prints "handshakes N allocations A per_handshake P" and exits 0, or
 * exits 1 when something failed (the message says what). Built by
 * `make hs-allocs`; spec/handshake_alloc_spec.lua runs it.
 */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "lp2p_node.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static int counting, show;
static unsigned long allocations;


static void counted(const char *fn, size_t bytes) {
  allocations++;
  if (!show)
    return;
  void *frames[8];
  int depth = backtrace(frames, 8);
  fprintf(stderr, "%s(%zu)\n", fn, bytes);
  backtrace_symbols_fd(frames + 1, depth - 1, 2);
}


void *__wrap_malloc(size_t n) {
  if (counting)
    counted("malloc", n);
  return __real_malloc(n);
}


void *__wrap_calloc(size_t n, size_t size) {
  if (counting)
    counted("calloc", n * size);
  return __real_calloc(n, size);
}


void *__wrap_realloc(void *p, size_t n) {
  if (counting)
    counted("realloc", n);
  return __real_realloc(p, n);
}


static lp2p_node *server, *client;
static lp2p_point server_point;
static int nack_mode, warm = 100, count = 200, ended, failed;
static uv_timer_t guard;

#define CLIENT_UD ((void *)1)
#define SERVER_UD ((void *)2)


static void die(const char *what) {
  fprintf(stderr, "hs_allocs: %s\n", what);
  exit(1);
}


static void dial(void) {
  uint64_t id;
  if (lp2p_node_connect(client, &server_point, NULL, 5000, &id) < 0)
    die("connect failed");
}


static int on_accept(void *ud, const lp2p_point *addr, char *reason,
                     size_t cap) {
  return 1;
}


static void on_authenticated(void *ud, const lp2p_auth_info *info,
                             lp2p_verdict *v) {
  if (nack_mode && ud == SERVER_UD)
    v->kind = LP2P_VERDICT_NACK; /* no points: the usual refusal */
}


static int on_message(void *ud, uint64_t conn, const uint8_t *msg,
                      size_t len) {
  return 0;
}


/* One handshake of the client ended: count it, close, dial again. */
static void handshake_ended(uint64_t conn) {
  ended++;
  if (ended == warm)
    counting = 1;
  if (ended == warm + count) {
    counting = 0;
    uv_timer_stop(&guard);
    lp2p_node_close(client);
    lp2p_node_close(server);
    return;
  }
  lp2p_conn *c = lp2p_node_find(client, conn);
  if (c != NULL)
    lp2p_conn_close(c, 0, NULL, 0);
  dial();
}


static void on_event(void *ud, const lp2p_event *ev) {
  if (ud != CLIENT_UD)
    return;
  if (ev->type == (nack_mode ? LP2P_EV_NACKED : LP2P_EV_CONNECTED))
    handshake_ended(ev->conn);
  else if (ev->type == LP2P_EV_AUTH_FAILED)
    failed++;
}


static lp2p_node *start_node(uv_loop_t *loop, void *ud) {
  lp2p_node_config cfg;
  lp2p_node_config_defaults(&cfg);
  lp2p_identity_generate(&cfg.identity);
  cfg.pow_bits = 0;
  if (lp2p_pow_target_make(&cfg.target, 0) != 0)
    die("target");
  lp2p_node_hooks hooks = {ud, on_accept, on_authenticated, on_message,
                           on_event};
  int err = 0;
  lp2p_node *n = lp2p_node_new(loop, &cfg, &hooks, &err);
  if (n == NULL)
    die(lp2p_strerror(err));
  return n;
}


static void on_guard(uv_timer_t *t) {
  fprintf(stderr, "hs_allocs: only %d handshakes in 60 s\n", ended);
  exit(1);
}


int main(int argc, char **argv) {
  if (argc > 1)
    nack_mode = strcmp(argv[1], "nack") == 0;
  if (argc > 2)
    warm = atoi(argv[2]);
  if (argc > 3)
    count = atoi(argv[3]);
  if (warm < 1 || count < 1)
    die("usage: hs_allocs [ack|nack] [WARM>0] [COUNT>0]");
  show = getenv("SHOW") != NULL;
  if (sodium_init() < 0)
    die("sodium_init");
  uv_loop_t *loop = uv_default_loop();
  server = start_node(loop, SERVER_UD);
  client = start_node(loop, CLIENT_UD);
  int port = lp2p_node_listen(server, "127.0.0.1", 0);
  if (port <= 0)
    die("listen");
  char text[32];
  snprintf(text, sizeof text, "127.0.0.1:%d", port);
  if (lp2p_point_parse(&server_point, text, strlen(text)) != 0)
    die("point");
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, on_guard, 60000, 0);
  uv_unref((uv_handle_t *)&guard);
  dial();
  uv_run(loop, UV_RUN_DEFAULT);
  lp2p_loop_close_nodes(loop);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  if (uv_loop_close(loop) != 0)
    die("handles left open on the loop");
  if (ended != warm + count)
    die("the loop ended early");
  if (failed > 0)
    die("a handshake failed");
  printf("handshakes %d allocations %lu per_handshake %.2f\n", count,
         allocations, (double)allocations / count);
  return 0;
}
