/*
 * crypto_limit.c - the crypto limits luap2p is judged against, measured with
 * libsodium directly (no luap2p code). Prints "RESULT <name> <value>" lines.
 *
 *   crypto_limit box SIZE SECS       crypto_box_easy_afternm, bytes/s, 1 core
 *   crypto_limit open SIZE SECS      crypto_box_open_easy_afternm, bytes/s
 *   crypto_limit pair SIZE SECS      seal on one thread and open on another
 *                                    at the same time (both ends of a
 *                                    stream on one machine); the slower
 *                                    one's bytes/s
 *   crypto_limit beforenm SECS       crypto_box_beforenm ops/s, 1 core
 *   crypto_limit keypair SECS        crypto_box_keypair ops/s, 1 core
 *   crypto_limit blake2b SECS THREADS
 *                                    BLAKE2b-256 of 56 bytes/s, THREADS
 *                                    threads at once (the PoW bound)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


/* Seal (or open) SIZE-byte chunks with one key and a counting nonce, as
 * frame.c does per chunk. */
static void bench_box(size_t size, double secs, int open) {
  uint8_t key[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES] = {0};
  uint8_t *plain = malloc(size), *sealed = malloc(size + crypto_box_MACBYTES);
  if (plain == NULL || sealed == NULL)
    exit(1);
  randombytes_buf(key, sizeof key);
  randombytes_buf(plain, size);
  if (crypto_box_easy_afternm(sealed, plain, size, nonce, key) != 0)
    exit(1);
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 16; i++) {
      if (open) {
        /* The same chunk each time: the MAC check and decryption still run
         * in full; a failure here would be a bug. */
        if (crypto_box_open_easy_afternm(plain, sealed,
                                         size + crypto_box_MACBYTES, nonce,
                                         key) != 0)
          exit(2);
      } else {
        crypto_box_easy_afternm(sealed, plain, size, nonce, key);
        sodium_increment(nonce, sizeof nonce);
      }
      n++;
    }
    t = now();
  } while (t - t0 < secs);
  printf("RESULT %s_bytes_per_s %.0f\n", open ? "open" : "box",
         (double)n * (double)size / (t - t0));
  free(plain);
  free(sealed);
}


typedef struct box_job {
  size_t size;
  double secs, rate;
  int open;
  pthread_t th;
} box_job;

static void *box_main(void *arg) {
  box_job *j = arg;
  uint8_t key[crypto_box_BEFORENMBYTES] = {1}, nonce[crypto_box_NONCEBYTES];
  uint8_t *plain = calloc(1, j->size);
  uint8_t *sealed = malloc(j->size + crypto_box_MACBYTES);
  if (plain == NULL || sealed == NULL)
    exit(1);
  memset(nonce, 0, sizeof nonce);
  crypto_box_easy_afternm(sealed, plain, j->size, nonce, key);
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 16; i++, n++) {
      if (j->open) {
        if (crypto_box_open_easy_afternm(plain, sealed,
                                         j->size + crypto_box_MACBYTES,
                                         nonce, key) != 0)
          exit(2);
      } else {
        crypto_box_easy_afternm(sealed, plain, j->size, nonce, key);
      }
    }
    t = now();
  } while (t - t0 < j->secs);
  j->rate = (double)n * (double)j->size / (t - t0);
  free(plain);
  free(sealed);
  return NULL;
}


static void bench_pair(size_t size, double secs) {
  box_job j[2] = {{size, secs, 0, 0, 0}, {size, secs, 0, 1, 0}};
  for (int i = 0; i < 2; i++)
    if (pthread_create(&j[i].th, NULL, box_main, &j[i]) != 0)
      exit(1);
  for (int i = 0; i < 2; i++)
    pthread_join(j[i].th, NULL);
  printf("RESULT pair_seal_bytes_per_s %.0f\nRESULT pair_open_bytes_per_s "
         "%.0f\nRESULT pair_bytes_per_s %.0f\n", j[0].rate, j[1].rate,
         j[0].rate < j[1].rate ? j[0].rate : j[1].rate);
}


static void bench_beforenm(double secs) {
  uint8_t pk[32], sk[32], k[32];
  crypto_box_keypair(pk, sk);
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 64; i++, n++)
      if (crypto_box_beforenm(k, pk, sk) != 0)
        exit(2);
    t = now();
  } while (t - t0 < secs);
  printf("RESULT beforenm_per_s %.0f\n", (double)n / (t - t0));
}


static void bench_keypair(double secs) {
  uint8_t pk[32], sk[32];
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 64; i++, n++)
      crypto_box_keypair(pk, sk);
    t = now();
  } while (t - t0 < secs);
  printf("RESULT keypair_per_s %.0f\n", (double)n / (t - t0));
}


typedef struct hash_job {
  double secs;
  uint64_t n;
  double elapsed;
  pthread_t th;
} hash_job;

/* The proof-of-work try: BLAKE2b-256 of pk (32) || stamp (24), the stamp a
 * counter, as lp2p_pow_search does; here one-shot (the simplest way). */
static void *hash_main(void *arg) {
  hash_job *j = arg;
  uint8_t in[56], h[32];
  uint64_t n = 0;
  randombytes_buf(in, sizeof in);
  double t0 = now(), t;
  do {
    for (int i = 0; i < 4096; i++, n++) {
      for (int b = 55; b >= 32; b--)
        if (++in[b] != 0)
          break;
      crypto_generichash(h, sizeof h, in, sizeof in, NULL, 0);
    }
    t = now();
  } while (t - t0 < j->secs);
  j->n = n;
  j->elapsed = t - t0;
  return NULL;
}


static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static void bench_blake2b(double secs, int threads) {
  hash_job *jobs = calloc((size_t)threads, sizeof *jobs);
  if (jobs == NULL)
    exit(1);
  double c0 = cpu_now();
  for (int i = 0; i < threads; i++) {
    jobs[i].secs = secs;
    if (pthread_create(&jobs[i].th, NULL, hash_main, &jobs[i]) != 0)
      exit(1);
  }
  double rate = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(jobs[i].th, NULL);
    rate += (double)jobs[i].n / jobs[i].elapsed;
  }
  uint64_t total = 0;
  for (int i = 0; i < threads; i++)
    total += jobs[i].n;
  printf("RESULT blake2b56_per_s %.0f\n", rate);
  /* Per CPU-second: the cost of a hash, whatever else runs on the box. */
  printf("RESULT blake2b56_per_cpu_s %.0f\n", (double)total /
         (cpu_now() - c0));
  free(jobs);
}


int main(int argc, char **argv) {
  if (sodium_init() < 0)
    return 1;
  if (argc >= 4 && strcmp(argv[1], "box") == 0)
    bench_box((size_t)atol(argv[2]), atof(argv[3]), 0);
  else if (argc >= 4 && strcmp(argv[1], "open") == 0)
    bench_box((size_t)atol(argv[2]), atof(argv[3]), 1);
  else if (argc >= 4 && strcmp(argv[1], "pair") == 0)
    bench_pair((size_t)atol(argv[2]), atof(argv[3]));
  else if (argc >= 3 && strcmp(argv[1], "beforenm") == 0)
    bench_beforenm(atof(argv[2]));
  else if (argc >= 3 && strcmp(argv[1], "keypair") == 0)
    bench_keypair(atof(argv[2]));
  else if (argc >= 4 && strcmp(argv[1], "blake2b") == 0)
    bench_blake2b(atof(argv[2]), atoi(argv[3]));
  else {
    fprintf(stderr, "usage: see the comment at the top of crypto_limit.c\n");
    return 2;
  }
  return 0;
}
