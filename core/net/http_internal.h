/*
 * http_internal.h - what http.c (the server on the loop: loading, driving,
 * deadlines, start) and http_req.c (requests) share. Only core/net
 * includes it.
 */
#ifndef LP2P_HTTP_INTERNAL_H
#define LP2P_HTTP_INTERNAL_H

#include <microhttpd.h>

#include "lp2p_http.h"

#define MHD_FUNCTIONS(X)                                                  \
  X(MHD_add_response_header)                                              \
  X(MHD_create_response_from_buffer)                                      \
  X(MHD_destroy_response)                                                 \
  X(MHD_get_connection_info)                                              \
  X(MHD_get_connection_values)                                            \
  X(MHD_get_daemon_info)                                                  \
  X(MHD_get_timeout)                                                      \
  X(MHD_lookup_connection_value)                                          \
  X(MHD_queue_response)                                                   \
  X(MHD_run)                                                              \
  X(MHD_start_daemon)                                                     \
  X(MHD_stop_daemon)

#define MHD_FIELD(f) __typeof__(&f) f;
struct lp2p__mhd_fns {
  MHD_FUNCTIONS(MHD_FIELD)
};
#undef MHD_FIELD
/* Filled by the first lp2p_http_start (http.c); both files call through
 * it under the short name. */
extern struct lp2p__mhd_fns lp2p__mhd;
#define mhd lp2p__mhd


/* One per client connection (MHD's socket context), from its accept to
 * its close. On srv's deadline list while a request is being read. */
typedef struct http_client {
  lp2p_http *srv;
  struct MHD_Connection *conn;
  uint64_t deadline; /* uv_now() ms; meaningful while listed */
  struct http_client *prev, *next;
  int listed;
} http_client;

struct lp2p_http {
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t deadline_timer;
  struct MHD_Daemon *mhd;
  lp2p_http_cb cb;
  void *data;
  size_t max_body;
  unsigned max_connections;
  int was_full;                 /* at max_connections after the last run */
  uint64_t request_ms;          /* the whole-request deadline */
  http_client *first, *last;    /* deadline list, earliest first */
  int port;
  int handles;  /* libuv handles not yet closed: freed at 0 */
  int in_run;   /* inside MHD_run(): closing waits for its end */
  int closing;
};

struct lp2p_http_req {
  lp2p_http *srv;
  http_client *client; /* NULL if MHD had no socket context for it */
  struct MHD_Connection *conn;
  const char *method;
  const char *path;
  char *body;
  size_t len, cap;
  int too_large;
  int answered;
};

/* http.c: a client's deadline for one request starts now (its place at
 * the end of the server's list), or it is off the list (idempotent). */
void lp2p__http_list(http_client *c);
void lp2p__http_unlist(http_client *c);

/* http_req.c: MHD's request callbacks (MHD_start_daemon's handler and
 * MHD_OPTION_NOTIFY_COMPLETED). */
enum MHD_Result lp2p__http_on_request(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *version,
                                      const char *upload_data,
                                      size_t *upload_data_size,
                                      void **con_cls);
void lp2p__http_on_completed(void *cls, struct MHD_Connection *conn,
                             void **con_cls,
                             enum MHD_RequestTerminationCode toe);

#endif /* LP2P_HTTP_INTERNAL_H */
