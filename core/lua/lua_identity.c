/*
 * lua_identity.c - Lua binding of identity.c: the luap2p.Identity userdata,
 * peer ids, proof-of-work targets and the threaded proof-of-work search.
 *
 * An identity is plain bytes, so it lives inside the userdata (no separate
 * allocation); close/__gc/__close wipe it. Binary values cross as Lua
 * strings of raw bytes.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lua_lp2p.h"

#define IDENTITY_MT "luap2p.Identity"

/* Bounds for core.pow_search options. */
#define POW_THREADS_MAX 256
#define POW_EVERY_DEFAULT (1u << 16)
#define POW_EVERY_MAX (1u << 24)
#define POW_PROGRESS_PERIOD 0.25 /* seconds between progress calls */

typedef struct lua_identity {
  int open; /* 0 once closed: the keys are wiped */
  lp2p_identity id;
} lua_identity;


/* ------------------------------------------------------------- helpers */

/* Target of the bits argument at idx; raises when outside [0, 256]. */
static void check_target(lua_State *L, int idx, lp2p_pow_target *t) {
  double bits = (double)luaL_checknumber(L, idx);
  if (lp2p_pow_target_make(t, bits) != 0)
    luaL_argerror(L, idx, "bits must be a number between 0 and 256");
}


/* A new Identity userdata, closed (nothing to wipe) until the caller fills
 * it and sets open. Allocated before any key exists so that an allocation
 * error cannot strand a secret key on the C stack. */
static lua_identity *new_identity(lua_State *L) {
  lua_identity *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->open = 0;
  memset(&u->id, 0, sizeof u->id);
  luaL_setmetatable(L, IDENTITY_MT);
  return u;
}


lp2p_identity *lp2p__check_identity(lua_State *L, int idx) {
  lua_identity *u = luaL_checkudata(L, idx, IDENTITY_MT);
  if (!u->open)
    luaL_error(L, "attempt to use a closed " IDENTITY_MT);
  return &u->id;
}


/* ------------------------------------------------------------ Identity */

/* core.identity_generate() -> Identity (stamp all zero: no proof of work) */
static int core_identity_generate(lua_State *L) {
  lua_identity *u = new_identity(L);
  lp2p_identity_generate(&u->id);
  u->open = 1;
  return 1;
}


/* core.identity_from_json(text) -> Identity | nil, "EIDENTITY: ...", name */
static int core_identity_from_json(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  char err[160];
  lua_identity *u = new_identity(L);
  /* On failure the parser leaves u->id wiped and u stays closed. */
  if (lp2p_identity_from_json(&u->id, text, len, err, sizeof err) != 0)
    return lp2p__push_error_msg(L, LP2P_EIDENTITY, err);
  u->open = 1;
  return 1;
}


/* id:peer_id() -> "id..." */
static int identity_peer_id(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, id->peer_id);
  lua_pushstring(L, text);
  return 1;
}


static int identity_peer_id_bytes(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->peer_id, sizeof id->peer_id);
  return 1;
}


static int identity_public_key(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->pk, sizeof id->pk);
  return 1;
}


/* The secret key as a Lua string: it can no longer be wiped, so this is
 * for writing identity files and tests only. */
static int identity_secret_key(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->sk, sizeof id->sk);
  return 1;
}


static int identity_stamp(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lua_pushlstring(L, (const char *)id->stamp, sizeof id->stamp);
  return 1;
}


/* id:set_stamp(bytes24) -> id */
static int identity_set_stamp(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  const uint8_t *s = lp2p__check_bytes(L, 2, LP2P_STAMP_BYTES, "stamp");
  memcpy(id->stamp, s, LP2P_STAMP_BYTES);
  lua_settop(L, 1);
  return 1;
}


/* id:check_pow(bits) -> boolean */
static int identity_check_pow(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  lp2p_pow_target t;
  check_target(L, 2, &t);
  lua_pushboolean(L, lp2p_pow_check(id->pk, id->stamp, &t));
  return 1;
}


/* id:check_keys() -> true | nil, "EIDENTITY: ...", "EIDENTITY" */
static int identity_check_keys(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  if (lp2p_identity_check_keys(id) != 0)
    return lp2p__push_error_msg(L, LP2P_EIDENTITY,
                                "secret_key does not match public_key");
  lua_pushboolean(L, 1);
  return 1;
}


/* id:to_json() -> text (Octez identity.json layout) */
static int identity_to_json(lua_State *L) {
  lp2p_identity *id = lp2p__check_identity(L, 1);
  char buf[LP2P_IDENTITY_JSON_MAX];
  int n = lp2p_identity_to_json(buf, sizeof buf, id);
  if (n < 0)
    return luaL_error(L, "identity_to_json: buffer too small"); /* a bug */
  lua_pushlstring(L, buf, (size_t)n);
  sodium_memzero(buf, sizeof buf);
  return 1;
}


/* close, __gc and __close: wipe once; later calls do nothing. */
static int identity_close(lua_State *L) {
  lua_identity *u = luaL_checkudata(L, 1, IDENTITY_MT);
  if (u->open) {
    lp2p_identity_wipe(&u->id);
    u->open = 0;
  }
  return 0;
}


static int identity_tostring(lua_State *L) {
  lua_identity *u = luaL_checkudata(L, 1, IDENTITY_MT);
  if (!u->open) {
    lua_pushliteral(L, IDENTITY_MT " (closed)");
    return 1;
  }
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, u->id.peer_id);
  lua_pushfstring(L, IDENTITY_MT " (%s)", text);
  return 1;
}


/* ------------------------------------------------------------ peer ids */

/* core.peer_id(pk32) -> 16 bytes */
static int core_peer_id(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  uint8_t id[LP2P_PEER_ID_BYTES];
  lp2p_peer_id(id, pk);
  lua_pushlstring(L, (const char *)id, sizeof id);
  return 1;
}


/* core.peer_id_encode(id16) -> "id..." */
static int core_peer_id_encode(lua_State *L) {
  const uint8_t *id = lp2p__check_bytes(L, 1, LP2P_PEER_ID_BYTES, "peer id");
  char text[LP2P_PEER_ID_B58_LEN + 1];
  lp2p_peer_id_encode(text, id);
  lua_pushstring(L, text);
  return 1;
}


/* core.peer_id_decode(text) -> 16 bytes | nil, "EPEERID: ...", "EPEERID" */
static int core_peer_id_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  uint8_t id[LP2P_PEER_ID_BYTES];
  if (len != LP2P_PEER_ID_B58_LEN)
    return lp2p__push_error_msg(L, LP2P_EPEERID,
                                "expected 30 characters (\"id...\")");
  if (lp2p_peer_id_decode(id, text, len) != 0)
    return lp2p__push_error_msg(L, LP2P_EPEERID,
                                "bad base58 character, prefix or checksum");
  lua_pushlstring(L, (const char *)id, sizeof id);
  return 1;
}


/* -------------------------------------------------------- proof of work */

/* core.pow_target(bits) -> 32 bytes, little-endian */
static int core_pow_target(lua_State *L) {
  lp2p_pow_target t;
  check_target(L, 1, &t);
  lua_pushlstring(L, (const char *)t.le, sizeof t.le);
  return 1;
}


/* core.pow_check(pk32, stamp24, bits) -> boolean */
static int core_pow_check(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  const uint8_t *stamp = lp2p__check_bytes(L, 2, LP2P_STAMP_BYTES, "stamp");
  lp2p_pow_target t;
  check_target(L, 3, &t);
  lua_pushboolean(L, lp2p_pow_check(pk, stamp, &t));
  return 1;
}


/* The threaded search. Workers only run lp2p_pow_search and touch this
 * shared state; Lua is called from the calling thread alone. */
typedef struct pow_job pow_job;

/* A cache line each (the job is aligned to one too): `seen` is written on
 * every try, and workers sharing a line slowed each other down by a third. */
typedef struct pow_worker {
  _Alignas(64) pow_job *job;
  pthread_t thread;
  uint64_t seen;      /* tries at the last progress callback */
  uint64_t published; /* tries already added to job->tries */
} pow_worker;

struct pow_job {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint8_t pk[LP2P_PK_BYTES];
  lp2p_pow_target target;
  uint64_t every;
  atomic_int stop;                /* found, canceled or error: all stop */
  atomic_uint_least64_t tries;    /* published tries of every worker */
  int running;                    /* under mu: workers not yet finished */
  int found;                      /* under mu */
  uint8_t stamp[LP2P_STAMP_BYTES]; /* under mu, when found */
  int nworkers;
  pow_worker workers[];
};


/* lp2p_pow_search calls this after every try (every = 1, which costs
 * nothing next to a BLAKE2b compression) so that the count stays exact;
 * the shared counter and the stop flag are only touched every job->every
 * tries. */
static int worker_progress(void *ud, uint64_t tries) {
  pow_worker *w = ud;
  w->seen = tries;
  if (tries - w->published < w->job->every)
    return 0;
  atomic_fetch_add_explicit(&w->job->tries, tries - w->published,
                            memory_order_relaxed);
  w->published = tries;
  return atomic_load_explicit(&w->job->stop, memory_order_relaxed);
}


static void *worker_main(void *arg) {
  pow_worker *w = arg;
  pow_job *job = w->job;
  uint8_t stamp[LP2P_STAMP_BYTES];
  int rc = lp2p_pow_search(stamp, job->pk, &job->target, 1, worker_progress,
                           w);
  /* On success the last try never reached the callback. */
  uint64_t mine = rc == 0 ? w->seen + 1 : w->seen;
  pthread_mutex_lock(&job->mu);
  atomic_fetch_add_explicit(&job->tries, mine - w->published,
                            memory_order_relaxed);
  if (rc == 0 && !job->found) {
    job->found = 1;
    memcpy(job->stamp, stamp, sizeof stamp);
  }
  if (rc == 0)
    atomic_store(&job->stop, 1);
  job->running--;
  pthread_cond_signal(&job->cv);
  pthread_mutex_unlock(&job->mu);
  return NULL;
}


static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static void mono_deadline(struct timespec *ts, double at) {
  ts->tv_sec = (time_t)at;
  ts->tv_nsec = (long)((at - (double)ts->tv_sec) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}


/* Start the workers with every signal blocked, so that signals (SIGINT,
 * libuv's handlers) keep going to the calling thread. Returns how many
 * started. */
static int start_workers(pow_job *job) {
  sigset_t all, old;
  int started = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int i = 0; i < job->nworkers; i++) {
    pow_worker *w = &job->workers[started];
    w->job = job;
    w->seen = w->published = 0;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
      break;
    started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return started;
}


/* core.pow_search(pk32, bits [, opts]) -> stamp24, tries
 *                                       | nil, "ECANCELED: ...", "ECANCELED"
 * opts.threads (default: online CPUs), opts.every (tries between each
 * worker's looks at the shared counter and stop flag, default 65536),
 * opts.progress(total_tries, elapsed_seconds) called about every 0.25 s from
 * this thread; a true result cancels. Between starting and joining the
 * threads nothing here may raise: Lua errors of progress are caught by
 * lua_pcall, the threads stopped and joined, then the error re-raised. */
static int core_pow_search(lua_State *L) {
  const uint8_t *pk = lp2p__check_bytes(L, 1, LP2P_PK_BYTES, "public key");
  lp2p_pow_target t;
  check_target(L, 2, &t);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  lua_Integer threads = cpus >= 1 ? (lua_Integer)cpus : 1;
  lua_Integer every = POW_EVERY_DEFAULT;
  int progress = 0; /* stack index of the progress function, or 0 */

  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    int isint;
    if (lua_getfield(L, 3, "threads") != LUA_TNIL) {
      threads = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && threads >= 1 &&
                       threads <= POW_THREADS_MAX, 3,
                    "opts.threads must be an integer in 1..256");
    }
    if (lua_getfield(L, 3, "every") != LUA_TNIL) {
      every = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && every >= 1 &&
                       every <= POW_EVERY_MAX, 3,
                    "opts.every must be an integer in 1..2^24");
    }
    if (lua_getfield(L, 3, "progress") != LUA_TNIL) {
      luaL_argcheck(L, lua_isfunction(L, -1), 3,
                    "opts.progress must be a function");
      progress = lua_gettop(L);
    }
  }
  if (threads > POW_THREADS_MAX)
    threads = POW_THREADS_MAX;
  /* Room for the progress call, reserved now: nothing may raise later. */
  luaL_checkstack(L, 8, "pow_search");

  /* Lua memory, so a raise anywhere before the threads start leaks
   * nothing; no metatable: it dies with this call. */
  size_t size = sizeof(pow_job) + (size_t)threads * sizeof(pow_worker);
  /* Userdata is only 16-byte aligned: over-allocate and align the job to
   * a cache line, so each worker has a line of its own. */
  uintptr_t raw = (uintptr_t)lua_newuserdatauv(L, size + 63, 0);
  pow_job *job = (pow_job *)((raw + 63) & ~(uintptr_t)63);
  memset(job, 0, size);
  memcpy(job->pk, pk, sizeof job->pk);
  job->target = t;
  job->every = (uint64_t)every;
  job->nworkers = (int)threads;
  atomic_init(&job->stop, 0);
  atomic_init(&job->tries, 0);

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (pthread_cond_init(&job->cv, &ca) != 0) {
    pthread_condattr_destroy(&ca);
    return lp2p__push_error_msg(L, LP2P_ENOMEM, "cannot create a condition");
  }
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&job->mu, NULL);

  double start = mono_now();
  pthread_mutex_lock(&job->mu);
  int started = start_workers(job);
  job->running = started;
  int canceled = 0, lua_failed = 0;
  double next = start + POW_PROGRESS_PERIOD;
  while (started > 0 && !job->found && job->running > 0) {
    struct timespec ts;
    mono_deadline(&ts, next);
    pthread_cond_timedwait(&job->cv, &job->mu, &ts);
    if (job->found || job->running == 0)
      break;
    double now = mono_now();
    if (now < next)
      continue;
    next = now + POW_PROGRESS_PERIOD;
    if (progress == 0)
      continue;
    pthread_mutex_unlock(&job->mu);
    lua_pushvalue(L, progress);
    lua_pushinteger(L, (lua_Integer)atomic_load(&job->tries));
    lua_pushnumber(L, (lua_Number)(now - start));
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
      lua_failed = 1; /* the error object stays on top */
    } else {
      canceled = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    pthread_mutex_lock(&job->mu);
    if (lua_failed || canceled)
      break;
  }
  atomic_store(&job->stop, 1);
  int found = job->found;
  pthread_mutex_unlock(&job->mu);
  for (int i = 0; i < started; i++)
    pthread_join(job->workers[i].thread, NULL);
  pthread_mutex_destroy(&job->mu);
  pthread_cond_destroy(&job->cv);

  if (lua_failed)
    return lua_error(L);
  if (started == 0)
    return lp2p__push_error_msg(L, LP2P_ENOMEM, "cannot start a thread");
  if (canceled || !found)
    return lp2p__push_error_msg(L, LP2P_ECANCELED,
                                "proof-of-work search canceled");
  lua_pushlstring(L, (const char *)job->stamp, sizeof job->stamp);
  lua_pushinteger(L, (lua_Integer)atomic_load(&job->tries));
  return 2;
}


/* ------------------------------------------------------------- opening */

static const luaL_Reg identity_methods[] = {
    {"peer_id", identity_peer_id},
    {"peer_id_bytes", identity_peer_id_bytes},
    {"public_key", identity_public_key},
    {"secret_key", identity_secret_key},
    {"stamp", identity_stamp},
    {"set_stamp", identity_set_stamp},
    {"check_pow", identity_check_pow},
    {"check_keys", identity_check_keys},
    {"to_json", identity_to_json},
    {"close", identity_close},
    {NULL, NULL}};

static const luaL_Reg identity_meta[] = {
    {"__gc", identity_close},
    {"__close", identity_close},
    {"__tostring", identity_tostring},
    {NULL, NULL}};

static const luaL_Reg core_functions[] = {
    {"identity_generate", core_identity_generate},
    {"identity_from_json", core_identity_from_json},
    {"peer_id", core_peer_id},
    {"peer_id_encode", core_peer_id_encode},
    {"peer_id_decode", core_peer_id_decode},
    {"pow_target", core_pow_target},
    {"pow_check", core_pow_check},
    {"pow_search", core_pow_search},
    {NULL, NULL}};


void lp2p__open_identity(lua_State *L) {
  lp2p__new_class(L, IDENTITY_MT, identity_meta, identity_methods);
  luaL_setfuncs(L, core_functions, 0);
  lua_pushnumber(L, LP2P_POW_DEFAULT_BITS);
  lua_setfield(L, -2, "POW_DEFAULT_BITS");
}
