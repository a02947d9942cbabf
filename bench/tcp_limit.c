/*
 * tcp_limit.c - the transport limits luap2p is judged against: plain TCP on
 * 127.0.0.1 between two processes (fork), no crypto, no framing beyond what
 * is said. Prints "RESULT <name> <value>" lines.
 *
 *   tcp_limit stream SIZE SECS      one connection, SIZE-byte writes, the
 *                                   receiver reads 64 KiB at a time; bytes/s
 *   tcp_limit small SIZE SECS       SIZE-byte messages behind a u32 length,
 *                                   copied into 64 KiB batches, one write per
 *                                   batch; the receiver parses every prefix;
 *                                   messages/s
 *   tcp_limit sealed SIZE SECS [PER_WRITE READ]
 *                                   the same stream sealed as luap2p does it:
 *                                   [u16 len][crypto_box_easy_afternm] chunks
 *                                   of at most 65535 bytes, PER_WRITE chunks
 *                                   per write (default 1, as luap2p); the
 *                                   receiver reads up to READ bytes at a
 *                                   time (default 1 MiB, as luap2p) and
 *                                   opens every chunk; payload bytes/s (what
 *                                   C with libsodium reaches); both sockets
 *                                   get 1 MiB SO_SNDBUF and SO_RCVBUF
 *   tcp_limit connect SECS CONC     libuv: connect, 1 byte each way, close,
 *                                   CONC in flight; connections/s at the
 *                                   server
 *   tcp_limit idle N                libuv server holding N idle accepted
 *                                   connections (reading); VmRSS delta per
 *                                   connection of the server process
 *
 * The receiver is the parent and measures from its first byte (or accept);
 * the child is killed at the end; alarm() bounds both.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#define RBUF 65536

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static void die(const char *what) {
  perror(what);
  exit(1);
}


static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
      break;
  fclose(f);
  return v;
}


/* A listening socket on 127.0.0.1, ephemeral port; *port gets it. */
static int listen_any(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    die("socket");
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0)
    die("bind/listen");
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}


static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    die("socket");
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("connect");
  return fd;
}


static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}


/* Deep socket buffers keep sealing and opening overlapped. */
static void big_buffers(int fd) {
  int v = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}


static void finish_child(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}


/* ------------------------------------------------------------ stream */

/* Write all len bytes; a sender child ends when the receiver goes away. */
static void write_all(int fd, const uint8_t *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w <= 0)
      _exit(0);
    off += (size_t)w;
  }
}


static void sender_stream(int port, size_t size) {
  int fd = connect_to(port);
  nodelay(fd);
  uint8_t *buf = calloc(1, size);
  for (;;) {
    write_all(fd, buf, size);
  }
}


/* Frame SIZE-byte messages [u32 len][payload] into 64 KiB batches: the copy
 * a message queue makes, then one write per batch. */
static void sender_small(int port, size_t size) {
  int fd = connect_to(port);
  nodelay(fd);
  uint8_t msg[4096] = {0}, *batch = malloc(RBUF);
  size_t per = 4 + size;
  if (size > sizeof msg || batch == NULL)
    _exit(1);
  for (uint32_t seq = 0;; ) {
    size_t len = 0;
    while (len + per <= RBUF) {
      batch[len] = 0;
      batch[len + 1] = 0;
      batch[len + 2] = (uint8_t)(size >> 8);
      batch[len + 3] = (uint8_t)size;
      msg[0] = (uint8_t)seq++;
      memcpy(batch + len + 4, msg, size);
      len += per;
    }
    write_all(fd, batch, len);
  }
}


#define CHUNK_PAYLOAD (65535 - 2 - crypto_box_MACBYTES)

/* Seal a SIZE-byte message stream into chunks, per_write chunks per write.
 * Key and nonce are fixed and known to both sides (a benchmark, not a
 * protocol). */
static void sender_sealed(int port, size_t size, int per_write) {
  int fd = connect_to(port);
  nodelay(fd);
  big_buffers(fd);
  uint8_t key[crypto_box_BEFORENMBYTES] = {1}, nonce[24] = {0};
  size_t cap = (size_t)per_write * 65535;
  uint8_t *plain = calloc(1, size), *out = malloc(cap);
  if (plain == NULL || out == NULL)
    _exit(1);
  size_t msg_off = 0; /* position inside the current message */
  for (;;) {
    size_t len = 0;
    for (int k = 0; k < per_write; k++) {
      size_t n = size - msg_off < CHUNK_PAYLOAD ? size - msg_off
                                                : CHUNK_PAYLOAD;
      size_t body = n + crypto_box_MACBYTES;
      out[len] = (uint8_t)(body >> 8);
      out[len + 1] = (uint8_t)body;
      crypto_box_easy_afternm(out + len + 2, plain + msg_off, n, nonce, key);
      sodium_increment(nonce, sizeof nonce);
      len += 2 + body;
      msg_off = (msg_off + n) % size;
    }
    write_all(fd, out, len);
  }
}


static void bench_sealed(size_t size, double secs, int per_write,
                         size_t rbuf) {
  if (per_write < 1 || rbuf < 2) {
    fprintf(stderr, "tcp_limit sealed: PER_WRITE >= 1 and READ >= 2\n");
    exit(2);
  }
  int port;
  int lfd = listen_any(&port);
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    close(lfd);
    alarm((unsigned)secs + 10);
    sender_sealed(port, size, per_write);
    _exit(0);
  }
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0)
    die("accept");
  nodelay(fd);
  big_buffers(fd);
  uint8_t key[crypto_box_BEFORENMBYTES] = {1}, nonce[24] = {0};
  uint8_t *buf = malloc(rbuf), *part = malloc(65537), *plain = malloc(65535);
  size_t part_len = 0;
  uint64_t bytes = 0;
  double t0 = 0, t = 0;
  if (buf == NULL || part == NULL || plain == NULL)
    die("malloc");
  for (;;) {
    ssize_t r = read(fd, buf, rbuf);
    if (r <= 0)
      break;
    size_t i = 0, n = (size_t)r;
    while (i < n) {
      /* Whole chunks in place; a chunk cut by the read goes to `part`. */
      const uint8_t *c;
      size_t need;
      if (part_len == 0 && n - i >= 2 &&
          n - i >= 2 + (need = (size_t)buf[i] << 8 | buf[i + 1])) {
        c = buf + i;
        i += 2 + need;
      } else {
        if (part_len < 2) {
          part[part_len++] = buf[i++];
          continue;
        }
        need = (size_t)part[0] << 8 | part[1];
        size_t take = 2 + need - part_len < n - i ? 2 + need - part_len
                                                  : n - i;
        memcpy(part + part_len, buf + i, take);
        part_len += take;
        i += take;
        if (part_len < 2 + need)
          continue;
        c = part;
        part_len = 0;
      }
      if (crypto_box_open_easy_afternm(plain, c + 2, need, nonce, key) != 0)
        die("open");
      sodium_increment(nonce, sizeof nonce);
      bytes += need - crypto_box_MACBYTES;
    }
    t = now();
    if (t0 == 0) {
      t0 = t;
      bytes = 0;
    }
    if (t - t0 >= secs)
      break;
  }
  finish_child(pid);
  if (t <= t0)
    die("no data");
  printf("RESULT sealed_bytes_per_s %.0f\n", (double)bytes / (t - t0));
}


static void bench_stream(size_t size, double secs, int small) {
  int port;
  int lfd = listen_any(&port);
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    close(lfd);
    alarm((unsigned)secs + 10);
    if (small)
      sender_small(port, size);
    else
      sender_stream(port, size);
    _exit(0);
  }
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0)
    die("accept");
  nodelay(fd);
  uint8_t *buf = malloc(RBUF);
  uint64_t bytes = 0, msgs = 0;
  /* parser state for "small": bytes left in the current prefix/payload */
  size_t hdr_have = 0, body_left = 0;
  uint8_t hdr[4];
  uint32_t sum = 0;
  double t0 = 0, t = 0;
  for (;;) {
    ssize_t r = read(fd, buf, RBUF);
    if (r <= 0)
      break;
    t = now();
    if (t0 == 0)
      t0 = t;
    bytes += (uint64_t)r;
    if (small) {
      size_t i = 0, n = (size_t)r;
      while (i < n) {
        if (body_left > 0) {
          size_t take = n - i < body_left ? n - i : body_left;
          sum += buf[i]; /* touch the payload, as a consumer would */
          i += take;
          body_left -= take;
          if (body_left == 0)
            msgs++;
        } else {
          hdr[hdr_have++] = buf[i++];
          if (hdr_have == 4) {
            hdr_have = 0;
            body_left = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
                        (size_t)hdr[2] << 8 | hdr[3];
            if (body_left == 0)
              msgs++;
          }
        }
      }
    }
    if (t - t0 >= secs)
      break;
  }
  finish_child(pid);
  if (t <= t0)
    die("no data");
  if (small)
    printf("RESULT small_msgs_per_s %.0f\nRESULT small_sum %u\n",
           (double)msgs / (t - t0), sum);
  else
    printf("RESULT stream_bytes_per_s %.0f\n", (double)bytes / (t - t0));
}


/* ----------------------------------------------------------- connect */

typedef struct cstate {
  uv_loop_t *loop;
  uv_tcp_t server;
  int port;
  double secs, t0, t;
  uint64_t done;
  int stop;
  char byte;
} cstate;

static cstate S;

static void on_closed_free(uv_handle_t *h) {
  free(h);
}


static void one_byte(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(&S.byte, 1);
}


static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}


static void send_byte(uv_stream_t *s) {
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t b = uv_buf_init("x", 1);
  if (w == NULL || uv_write(w, s, &b, 1, on_written) < 0)
    free(w);
}


/* Server side: the client's byte -> our byte; EOF -> close, count. */
static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n > 0) {
    send_byte(s);
    return;
  }
  if (n == 0)
    return;
  uv_close((uv_handle_t *)s, on_closed_free);
  S.t = now();
  if (S.t0 > 0 && S.t - S.t0 <= S.secs)
    S.done++;
  if (S.t0 > 0 && S.t - S.t0 > S.secs)
    uv_stop(S.loop);
}


static void srv_conn(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(S.loop, c);
  if (uv_accept(server, (uv_stream_t *)c) < 0) {
    uv_close((uv_handle_t *)c, on_closed_free);
    return;
  }
  if (S.t0 == 0)
    S.t0 = now();
  uv_tcp_nodelay(c, 1);
  uv_read_start((uv_stream_t *)c, one_byte, srv_read);
}


static void cli_start(void);

static void cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n == 0)
    return;
  uv_close((uv_handle_t *)s, on_closed_free);
  cli_start();
}


static void cli_connected(uv_connect_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req);
  if (status < 0) {
    uv_close((uv_handle_t *)s, on_closed_free);
    cli_start();
    return;
  }
  uv_tcp_nodelay((uv_tcp_t *)s, 1);
  send_byte(s);
  uv_read_start(s, one_byte, cli_read);
}


static void cli_start(void) {
  uv_tcp_t *c = malloc(sizeof *c);
  uv_connect_t *req = malloc(sizeof *req);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", S.port, &a);
  uv_tcp_init(S.loop, c);
  if (uv_tcp_connect(req, c, (struct sockaddr *)&a, cli_connected) < 0) {
    free(req);
    uv_close((uv_handle_t *)c, on_closed_free);
  }
}


static void bench_connect(double secs, int conc) {
  struct sockaddr_in a;
  S.secs = secs;
  S.loop = uv_default_loop();
  uv_tcp_init(S.loop, &S.server);
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_bind(&S.server, (struct sockaddr *)&a, 0) < 0 ||
      uv_listen((uv_stream_t *)&S.server, 4096, srv_conn) < 0)
    die("listen");
  int len = sizeof a;
  uv_tcp_getsockname(&S.server, (struct sockaddr *)&a, &len);
  S.port = ntohs(a.sin_port);
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    alarm((unsigned)secs + 10);
    uv_loop_fork(S.loop);
    uv_close((uv_handle_t *)&S.server, NULL);
    for (int i = 0; i < conc; i++)
      cli_start();
    uv_run(S.loop, UV_RUN_DEFAULT);
    _exit(0);
  }
  alarm((unsigned)secs + 10);
  uv_run(S.loop, UV_RUN_DEFAULT);
  finish_child(pid);
  printf("RESULT connect_per_s %.0f\n", (double)S.done / S.secs);
}


/* -------------------------------------------------------------- idle */

static unsigned idle_want, idle_have;

static void idle_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  /* Only on data, which idle connections never get. */
  (void)h;
  *b = uv_buf_init(malloc(hint), (unsigned)hint);
}


static void idle_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s;
  (void)n;
  free(b->base);
}


static void idle_conn(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(S.loop, c);
  if (uv_accept(server, (uv_stream_t *)c) < 0)
    die("accept");
  uv_read_start((uv_stream_t *)c, idle_alloc, idle_read);
  if (++idle_have == idle_want)
    uv_stop(S.loop);
}


static void bench_idle(unsigned n) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < n + 64) {
    fprintf(stderr, "RLIMIT_NOFILE %lu < %u\n", (unsigned long)rl.rlim_cur,
            n + 64);
    exit(3);
  }
  struct sockaddr_in a;
  idle_want = n;
  S.loop = uv_default_loop();
  uv_tcp_init(S.loop, &S.server);
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_bind(&S.server, (struct sockaddr *)&a, 0) < 0 ||
      uv_listen((uv_stream_t *)&S.server, 4096, idle_conn) < 0)
    die("listen");
  int len = sizeof a;
  uv_tcp_getsockname(&S.server, (struct sockaddr *)&a, &len);
  int port = ntohs(a.sin_port);
  long before = rss_kib();
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    alarm(60);
    for (unsigned i = 0; i < n; i++)
      connect_to(port);
    pause();
    _exit(0);
  }
  alarm(60);
  uv_run(S.loop, UV_RUN_DEFAULT);
  long after = rss_kib();
  finish_child(pid);
  printf("RESULT idle_conns %u\nRESULT idle_rss_delta_kib %ld\n"
         "RESULT idle_bytes_per_conn %.0f\n",
         idle_have, after - before,
         (double)(after - before) * 1024.0 / (double)n);
}


int main(int argc, char **argv) {
  if (sodium_init() < 0)
    return 1;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 4 && strcmp(argv[1], "stream") == 0)
    bench_stream((size_t)atol(argv[2]), atof(argv[3]), 0);
  else if (argc >= 4 && strcmp(argv[1], "small") == 0)
    bench_stream((size_t)atol(argv[2]), atof(argv[3]), 1);
  else if (argc >= 4 && strcmp(argv[1], "sealed") == 0)
    bench_sealed((size_t)atol(argv[2]), atof(argv[3]),
                 argc >= 5 ? atoi(argv[4]) : 1,
                 argc >= 6 ? (size_t)atol(argv[5]) : 1024 * 1024);
  else if (argc >= 4 && strcmp(argv[1], "connect") == 0)
    bench_connect(atof(argv[2]), atoi(argv[3]));
  else if (argc >= 3 && strcmp(argv[1], "idle") == 0)
    bench_idle((unsigned)atol(argv[2]));
  else {
    fprintf(stderr, "usage: see the comment at the top of tcp_limit.c\n");
    return 2;
  }
  return 0;
}
