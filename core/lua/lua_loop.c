/*
 * lua_loop.c - the libuv loop of a Lua state and its small handles: run,
 * run_nowait, backend_fd (embedding in luv/cqueues/copas), timers, signals
 * and file watches; and lp2p__pcall, the one funnel for every C->Lua call.
 *
 * One loop per lua_State, kept in a userdata in the registry (never a C
 * global): its __gc closes every handle and the loop when the state closes.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_lp2p.h"
#include "../net/lp2p_node.h"

static const char LOOP_KEY = 'L';   /* registry key: the loop box */
#define LOOP_MT "luap2p.Loop"
#define TIMER_MT "luap2p.Timer"
#define SIGNAL_MT "luap2p.Signal"
#define WATCH_MT "luap2p.Watch"
static const char ERRFN_KEY = 'E';  /* registry key: error reporter */

typedef struct loop_box {
  uv_loop_t *loop;
  /* C->Lua calls in progress (lp2p__pcall): while > 0, running the loop
   * again would re-enter libuv under a callback that still holds a
   * connection and the node's shared read buffers. */
  int depth;
} loop_box;


static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL); /* memory of our handles is freed in their own cbs */
}


static int loop_gc(lua_State *L) {
  loop_box *b = luaL_checkudata(L, 1, LOOP_MT);
  if (b->loop == NULL)
    return 0;
  /* Nodes first, with their own close callbacks so their memory goes;
   * then anything left. */
  lp2p_loop_close_nodes(b->loop);
  uv_walk(b->loop, close_walk, NULL);
  /* A pending core.stop() makes the first uv_run return at once (it only
   * clears the flag): run again while handles are still closing. */
  for (int i = 0; i < 4; i++) {
    uv_run(b->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(b->loop) != UV_EBUSY)
      break;
  }
  free(b->loop);
  b->loop = NULL;
  return 0;
}


static loop_box *get_box(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &LOOP_KEY);
  loop_box *b = luaL_testudata(L, -1, LOOP_MT);
  lua_pop(L, 1);
  return b;
}


uv_loop_t *lp2p__loop(lua_State *L) {
  loop_box *b = get_box(L);
  if (b != NULL && b->loop != NULL)
    return b->loop;
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->loop = NULL;
  b->depth = 0;
  if (luaL_newmetatable(L, LOOP_MT)) {
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  /* calloc: uv_loop_init keeps loop->data, our list of nodes. */
  uv_loop_t *loop = calloc(1, sizeof *loop);
  if (loop == NULL || uv_loop_init(loop) != 0) {
    free(loop);
    luaL_error(L, "luap2p: cannot create the event loop");
  }
  b->loop = loop;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LOOP_KEY);
  return loop;
}


/* ---------------------------------------------------------- pcall funnel */

int lp2p__traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}


/*
 * Call the function below nargs arguments on the main thread's stack, with
 * a traceback. On error, report "<where> error: <msg>" through the error
 * reporter (core.on_error, default stderr) and return -1 with nothing
 * pushed; on success leave nresults values and return 0. Never raises, so
 * no Lua error longjmps through a libuv frame.
 */
int lp2p__pcall(lua_State *L, int nargs, int nresults, const char *where) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, lp2p__traceback);
  lua_insert(L, base);
  loop_box *box = get_box(L);
  if (box != NULL)
    box->depth++;
  int rc = lua_pcall(L, nargs, nresults, base);
  if (box != NULL)
    box->depth--;
  lua_remove(L, base);
  if (rc == LUA_OK)
    return 0;
  const char *msg = lua_tostring(L, -1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERRFN_KEY);
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, where);
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      fprintf(stderr, "luap2p: error reporter failed: %s\n",
              lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    lua_pop(L, 1);
    fprintf(stderr, "luap2p: %s error: %s\n", where, msg ? msg : "?");
  }
  lua_pop(L, 1); /* the error message */
  return -1;
}


lua_State *lp2p__main_thread(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return main;
}


/* core.on_error(fn | nil) -> the previous reporter (nil: stderr). */
static int core_on_error(lua_State *L) {
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERRFN_KEY);
  lua_pushvalue(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRFN_KEY);
  return 1;
}


/* ------------------------------------------------------------------ run */

/* Is a C->Lua call (listener, hook, timer) in progress on this state? */
int lp2p__in_callback(lua_State *L) {
  loop_box *b = get_box(L);
  return b != NULL && b->depth > 0;
}


/* core.run([mode[, who]]): `who` names the caller in the error raised
 * when called from inside a callback (default "core.run"). */
static int core_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode uvmodes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                        UV_RUN_NOWAIT};
  int mode = luaL_checkoption(L, 1, "default", modes);
  if (lp2p__in_callback(L)) {
    /* No position prefix: the message is the contract. */
    lua_pushfstring(L, "%s: cannot run the loop from inside a callback "
                    "(listener, hook or timer); use p2p.spawn for "
                    "sequential code", luaL_optstring(L, 2, "core.run"));
    return lua_error(L);
  }
  int alive = uv_run(lp2p__loop(L), uvmodes[mode]);
  lua_pushboolean(L, alive);
  return 1;
}


static int core_in_callback(lua_State *L) {
  lua_pushboolean(L, lp2p__in_callback(L));
  return 1;
}


static int core_stop(lua_State *L) {
  uv_stop(lp2p__loop(L));
  return 0;
}


static int core_backend_fd(lua_State *L) {
  lua_pushinteger(L, uv_backend_fd(lp2p__loop(L)));
  return 1;
}


static int core_backend_timeout(lua_State *L) {
  lua_pushinteger(L, uv_backend_timeout(lp2p__loop(L)));
  return 1;
}


static int core_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}


/* core.walltime() -> seconds since the epoch, with microseconds (for
 * times written to files: os.time() has whole seconds only). */
static int core_walltime(lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return luaL_error(L, "luap2p: gettimeofday failed");
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}


/* -------------------------------------------------------------- handles */

typedef struct lhandle {
  union {
    uv_handle_t handle;
    uv_timer_t timer;
    uv_signal_t signal;
    uv_fs_event_t fs_event;
  } u;
  lua_State *L;
  int cb_ref, self_ref;
} lhandle;

typedef struct lhandle_box {
  lhandle *h;
} lhandle_box;


static void lhandle_closed(uv_handle_t *uh) {
  free(uh->data);
}


/* Close the box at idx (its type already checked): unref callback and
 * self, close the libuv handle. Idempotent. */
static void close_box(lua_State *L, int idx) {
  lhandle_box *b = lua_touserdata(L, idx);
  lhandle *h = b->h;
  if (h == NULL)
    return;
  b->h = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->self_ref);
  h->cb_ref = h->self_ref = LUA_NOREF;
  if (!uv_is_closing(&h->u.handle))
    uv_close(&h->u.handle, lhandle_closed);
}


/* close, __gc and __close of each type: a box of another type (a Timer
 * given to Signal.close) is misuse and raises. */
static int timer_close(lua_State *L) {
  luaL_checkudata(L, 1, TIMER_MT);
  close_box(L, 1);
  return 0;
}


static int signal_close(lua_State *L) {
  luaL_checkudata(L, 1, SIGNAL_MT);
  close_box(L, 1);
  return 0;
}


static int watch_close(lua_State *L) {
  luaL_checkudata(L, 1, WATCH_MT);
  close_box(L, 1);
  return 0;
}


/* __tostring; upvalue 1: the type name, so that it checks its own type. */
static int lhandle_tostring(lua_State *L) {
  const char *tname = lua_tostring(L, lua_upvalueindex(1));
  lhandle_box *b = luaL_checkudata(L, 1, tname);
  if (b->h == NULL)
    lua_pushfstring(L, "%s (closed)", tname);
  else
    lua_pushfstring(L, "%s (%p)", tname, (void *)b->h);
  return 1;
}


/*
 * New handle box of metatable tname with callback at stack index cbidx.
 * Pushes the userdata. The handle keeps a reference to its own userdata
 * while active, so a running timer is not collected.
 */
static lhandle *lhandle_new(lua_State *L, const char *tname, int cbidx) {
  luaL_checktype(L, cbidx, LUA_TFUNCTION);
  lhandle_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->h = NULL; /* closed until its resources are acquired */
  luaL_setmetatable(L, tname);
  lhandle *h = calloc(1, sizeof *h);
  if (h == NULL)
    luaL_error(L, "luap2p: out of memory");
  h->L = lp2p__main_thread(L);
  lua_pushvalue(L, cbidx);
  h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->u.handle.data = h;
  b->h = h;
  return h;
}


static void lhandle_call(lhandle *h, int nargs, const char *where) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  lua_insert(L, -1 - nargs);
  lp2p__pcall(L, nargs, 0, where);
}


static void on_timer(uv_timer_t *t) {
  lhandle *h = t->data;
  lua_State *L = h->L;
  int once = uv_timer_get_repeat(t) == 0;
  int cb = h->cb_ref;
  if (once) {
    /* A one-shot timer is done: release it before its callback runs. */
    h->cb_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, h->self_ref);
    h->self_ref = LUA_NOREF;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, cb);
  if (once)
    luaL_unref(L, LUA_REGISTRYINDEX, cb);
  lp2p__pcall(L, 0, 0, "timer");
}


/* Seconds to libuv milliseconds. A repeating period is at least 1 ms:
 * libuv reads a repeat of 0 as "no repeat", so every(0.0005) would fire
 * once. Past about 292 million years the cast would be undefined. */
#define TIMER_MAX_SECONDS 1e13

static uint64_t timer_ms(lua_Number s, int repeat) {
  uint64_t ms = (uint64_t)(s * 1000);
  return repeat && s > 0 && ms == 0 ? 1 : ms;
}


/* core.timer(seconds, repeat_seconds|nil, fn) -> Timer */
static int core_timer(lua_State *L) {
  lua_Number after = luaL_checknumber(L, 1);
  lua_Number every = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, after >= 0 && after <= TIMER_MAX_SECONDS, 1,
                "must be >= 0 and <= 1e13");
  luaL_argcheck(L, every >= 0 && every <= TIMER_MAX_SECONDS, 2,
                "must be >= 0 and <= 1e13");
  lhandle *h = lhandle_new(L, TIMER_MT, 3);
  uv_loop_t *loop = lp2p__loop(L);
  /* The loop's cached time is stale when Lua ran long outside it. */
  uv_update_time(loop);
  uv_timer_init(loop, &h->u.timer);
  uv_timer_start(&h->u.timer, on_timer, timer_ms(after, 0),
                 timer_ms(every, 1));
  return 1;
}


static lhandle *check_open(lua_State *L, const char *tname, const char *what) {
  lhandle_box *b = luaL_checkudata(L, 1, tname);
  if (b->h == NULL)
    luaL_error(L, "attempt to use a closed %s", what);
  return b->h;
}


static int timer_stop(lua_State *L) {
  check_open(L, TIMER_MT, "timer");
  close_box(L, 1);
  return 0;
}


static int timer_unref(lua_State *L) {
  lhandle *h = check_open(L, TIMER_MT, "timer");
  uv_unref(&h->u.handle);
  lua_settop(L, 1);
  return 1;
}


static void on_signal(uv_signal_t *s, int signum) {
  lhandle *h = s->data;
  lua_pushinteger(h->L, signum);
  lhandle_call(h, 1, "signal");
}


/* core.signal("SIGHUP"|..., fn) -> Signal; the handle does not keep the
 * loop alive. */
static int core_signal(lua_State *L) {
  static const char *const names[] = {"SIGHUP", "SIGINT", "SIGTERM",
                                      "SIGUSR1", "SIGUSR2", NULL};
  static const int nums[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
  int which = luaL_checkoption(L, 1, NULL, names);
  lhandle *h = lhandle_new(L, SIGNAL_MT, 2);
  uv_signal_init(lp2p__loop(L), &h->u.signal);
  int rc = uv_signal_start(&h->u.signal, on_signal, nums[which]);
  uv_unref(&h->u.handle);
  if (rc < 0) {
    close_box(L, lua_gettop(L));
    return lp2p__push_error(L, rc);
  }
  return 1;
}


static void on_fs_event(uv_fs_event_t *e, const char *name, int events,
                        int status) {
  lhandle *h = e->data;
  lua_pushstring(h->L, name ? name : "");
  lua_pushinteger(h->L, status);
  lhandle_call(h, 2, "watch");
}


/* core.watch(path, fn(name, status)) -> Watch */
static int core_watch(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lhandle *h = lhandle_new(L, WATCH_MT, 2);
  uv_fs_event_init(lp2p__loop(L), &h->u.fs_event);
  int rc = uv_fs_event_start(&h->u.fs_event, on_fs_event, path, 0);
  uv_unref(&h->u.handle);
  if (rc < 0) {
    close_box(L, lua_gettop(L)); /* the new box, not argument 1 */
    return lp2p__push_error_msg(L, rc, path);
  }
  return 1;
}


static void new_handle_type(lua_State *L, const char *tname,
                            lua_CFunction close, const luaL_Reg *methods) {
  const luaL_Reg meta[] = {{"__gc", close}, {"__close", close}, {NULL, NULL}};
  lp2p__new_class(L, tname, meta, methods);
  luaL_getmetatable(L, tname);
  lua_pushstring(L, tname);
  lua_pushcclosure(L, lhandle_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}


void lp2p__open_loop(lua_State *L) {
  static const luaL_Reg timer_methods[] = {
      {"stop", timer_stop}, {"unref", timer_unref}, {NULL, NULL}};
  static const luaL_Reg signal_methods[] = {{"close", signal_close},
                                            {NULL, NULL}};
  static const luaL_Reg watch_methods[] = {{"close", watch_close},
                                           {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"run", core_run},
      {"stop", core_stop},
      {"backend_fd", core_backend_fd},
      {"backend_timeout", core_backend_timeout},
      {"now", core_now},
      {"walltime", core_walltime},
      {"in_callback", core_in_callback},
      {"timer", core_timer},
      {"signal", core_signal},
      {"watch", core_watch},
      {"on_error", core_on_error},
      {NULL, NULL}};
  new_handle_type(L, TIMER_MT, timer_close, timer_methods);
  new_handle_type(L, SIGNAL_MT, signal_close, signal_methods);
  new_handle_type(L, WATCH_MT, watch_close, watch_methods);
  luaL_setfuncs(L, funcs, 0);
}
