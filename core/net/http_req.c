/*
 * http_req.c - one HTTP request of an lp2p_http server (http.c): its head
 * (a declared body over the bound is refused before it is read), its
 * body within the bound, the embedder's callback, and the answer it gives
 * (lp2p_http_respond) or the one given for it (413, 503, 500).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"


/* ------------------------------------------------------------ requests */

static void free_req(lp2p_http_req *req) {
  if (req == NULL)
    return;
  free(req->body);
  free(req);
}


void lp2p__http_on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  lp2p_http_req *req = *con_cls;
  /* The answer is sent: the clock starts for the next request of this
   * keep-alive connection (MHD closes it otherwise, which unlists it). */
  if (req != NULL && req->client != NULL &&
      toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
    lp2p__http_list(req->client);
  free_req(req);
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
enum MHD_Result lp2p__http_on_request(void *cls, struct MHD_Connection *conn,
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
    const union MHD_ConnectionInfo *info = mhd.MHD_get_connection_info(
        conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info != NULL)
      req->client = info->socket_context;
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
  /* Read in full: what is left is ours (answering), not the client's. */
  if (req->client != NULL)
    lp2p__http_unlist(req->client);
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
