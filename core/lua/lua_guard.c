/*
 * lua_guard.c - core.guard: a protected call with limits, for policy hooks
 * (lua/luap2p/policy.lua). Three limits, each giving a Lua error that the
 * guard turns into false, message:
 *
 *   instructions  a count hook, set with lua_sethook from C. Unlike a hook
 *                 set by debug.sethook (whose Lua function is looked up
 *                 per thread), a C hook is copied by lua_newthread into
 *                 every coroutine created while the guard runs, so a hook
 *                 cannot escape its budget inside coroutine.wrap(...)().
 *                 The instructions of every thread are added to one count.
 *   time          wall-clock, checked from the same hook every GUARD_STEP
 *                 instructions and once more at the end: a long C call
 *                 (string.rep of 1 GiB) is caught when it returns, not
 *                 interrupted.
 *   memory        net growth of the Lua heap during the call, enforced by
 *                 the state's allocator (lua_setallocf, installed when the
 *                 core is loaded): an allocation that would go over the
 *                 limit fails before anything is allocated. Lua then runs
 *                 an emergency full collection and retries, so garbage does
 *                 not count, only what the call keeps alive; if the retry
 *                 fails too, the call gets a memory error. A check of
 *                 collectgarbage("count") from the hook would only see
 *                 64 MiB after they were allocated, and a single
 *                 string.rep(s, 2^34) would have taken the process down.
 *
 * A guard inside a guarded call (a hook calling into the node) only
 * protects: the outermost guard's limits and counts go on.
 */
#include <stdlib.h>
#include <string.h>

#include "lua_lp2p.h"

#define GUARD_MT "luap2p.GuardState"
#define GUARD_STEP 1000 /* instructions between two looks at the limits */

static const char GUARD_KEY = 'G'; /* registry key: the state's box */

enum { TRIP_NONE, TRIP_BUDGET, TRIP_TIME };

typedef struct guard_state {
  lua_Alloc base_f; /* the allocator we wrap, and its ud */
  void *base_ud;
  long long total;  /* bytes held through this allocator */
  int depth;        /* guards running; the outermost owns the limits */
  int tripped;      /* TRIP_* once a limit was hit in this call */
  int mem_tripped;  /* an allocation was refused in this call */
  long long mem_base, mem_limit; /* limit 0: none */
  lua_Integer budget, used;      /* budget 0: none */
  uint64_t start_ns, time_ns;    /* time_ns 0: none */
} guard_state;

typedef struct guard_box {
  guard_state *g;
} guard_box;


static void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  guard_state *g = ud;
  /* With ptr NULL, osize is the kind of object, not a size. */
  long long old = ptr != NULL ? (long long)osize : 0;
  if (nsize > (size_t)old && g->depth > 0 && g->mem_limit > 0 &&
      g->total - old + (long long)nsize > g->mem_base + g->mem_limit) {
    g->mem_tripped = 1;
    return NULL; /* growth only: Lua never sees a failed shrink */
  }
  void *p = g->base_f(g->base_ud, ptr, osize, nsize);
  if (nsize == 0 || p != NULL)
    g->total += (long long)nsize - old;
  return p;
}


/* The guard state of L's allocator, or NULL when ours is not installed
 * (another library replaced it after us). */
static guard_state *state_of(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) != guard_alloc)
    return NULL;
  return ud;
}


/* __gc of the box in the registry, at lua_close: hand the allocator back
 * (blocks we counted are freed by it directly from now on), then free. */
static int guard_box_gc(lua_State *L) {
  guard_box *b = luaL_checkudata(L, 1, GUARD_MT);
  if (b->g == NULL)
    return 0;
  void *ud;
  if (lua_getallocf(L, &ud) == guard_alloc && ud == b->g)
    lua_setallocf(L, b->g->base_f, b->g->base_ud);
  free(b->g);
  b->g = NULL;
  return 0;
}


static const char *trip_message(lua_State *L, guard_state *g) {
  if (g->tripped == TRIP_TIME)
    return lua_pushfstring(L, "time limit exceeded (%f s)",
                           (lua_Number)g->time_ns / 1e9);
  return lua_pushfstring(L, "instruction budget exceeded (%I instructions)",
                         g->budget);
}


static void guard_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  guard_state *g = state_of(L);
  if (g == NULL)
    return;
  if (g->depth == 0) {
    /* A coroutine born in a guarded call, resumed outside one: back to
     * the normal period (it may have been left firing every instruction). */
    if (lua_gethookcount(L) != GUARD_STEP)
      lua_sethook(L, guard_hook, LUA_MASKCOUNT, GUARD_STEP);
    return;
  }
  if (g->tripped == TRIP_NONE) {
    g->used += lua_gethookcount(L);
    if (g->budget > 0 && g->used >= g->budget)
      g->tripped = TRIP_BUDGET;
    else if (g->time_ns > 0 && uv_hrtime() - g->start_ns > g->time_ns)
      g->tripped = TRIP_TIME;
  }
  if (g->tripped != TRIP_NONE) {
    /* Every instruction raises from now on, so that a pcall inside the
     * call cannot swallow the error and carry on. */
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
    trip_message(L, g);
    lua_error(L);
  }
}


/*
 * core.guard(budget, memory, seconds, fn, ...) -> true, results...
 *                                              | false, message
 * budget: VM instructions (0: none), memory: bytes of heap growth (0:
 * none), seconds: wall clock (0: none). Stack: the three limits are
 * removed, fn and its arguments are called; the results follow a boolean.
 */
static int core_guard(lua_State *L) {
  lua_Integer budget = luaL_checkinteger(L, 1);
  lua_Integer memory = luaL_checkinteger(L, 2);
  lua_Number seconds = luaL_checknumber(L, 3);
  luaL_checkany(L, 4);
  luaL_argcheck(L, budget >= 0, 1, "must be >= 0");
  luaL_argcheck(L, memory >= 0, 2, "must be >= 0");
  luaL_argcheck(L, seconds >= 0, 3, "must be >= 0");
  guard_state *g = state_of(L);
  int nargs = lua_gettop(L) - 4;
  lua_pushcfunction(L, lp2p__traceback);
  lua_replace(L, 3); /* msgh at 3, fn at 4 */
  lua_remove(L, 1);  /* msgh at 2, fn at 3 */
  lua_pushboolean(L, 1);
  lua_replace(L, 1); /* the result flag, once it succeeds */
  int outer = g != NULL && g->depth == 0;
  lua_Hook old_hook = NULL;
  int old_mask = 0, old_count = 0;
  if (outer) {
    old_hook = lua_gethook(L);
    old_mask = lua_gethookmask(L);
    old_count = lua_gethookcount(L);
    g->tripped = TRIP_NONE;
    g->mem_tripped = 0;
    g->budget = budget;
    g->used = 0;
    g->mem_base = g->total;
    g->mem_limit = memory;
    g->time_ns = (uint64_t)(seconds * 1e9);
    g->start_ns = uv_hrtime();
    int step = budget > 0 && budget < GUARD_STEP ? (int)budget : GUARD_STEP;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, step);
  }
  if (g != NULL)
    g->depth++;
  int rc = lua_pcall(L, nargs, LUA_MULTRET, 2);
  if (g != NULL)
    g->depth--;
  if (!outer) {
    lua_remove(L, 2);
    if (rc == LUA_OK)
      return lua_gettop(L);
    lua_pushboolean(L, 0);
    lua_replace(L, 1);
    return 2;
  }
  lua_sethook(L, old_hook, old_mask, old_count);
  if (rc == LUA_OK && g->tripped == TRIP_NONE && g->time_ns > 0 &&
      uv_hrtime() - g->start_ns > g->time_ns)
    g->tripped = TRIP_TIME; /* a long C call just before returning */
  if (rc == LUA_OK && g->tripped == TRIP_NONE) {
    lua_remove(L, 2);
    return lua_gettop(L);
  }
  lua_settop(L, rc == LUA_OK ? 2 : 3); /* flag, msgh[, error] */
  if (g->tripped != TRIP_NONE)
    trip_message(L, g);
  else if (g->mem_tripped && rc != LUA_ERRRUN)
    /* LUA_ERRMEM, or LUA_ERRERR: the message handler itself ran out. */
    lua_pushfstring(L, "memory limit exceeded (%I bytes)",
                    (lua_Integer)g->mem_limit);
  else if (lua_type(L, 3) != LUA_TSTRING)
    luaL_tolstring(L, 3, NULL);
  else
    lua_pushvalue(L, 3);
  lua_pushboolean(L, 0);
  lua_pushvalue(L, -2);
  return 2;
}


/* core.guard_stats() -> { heap = bytes through the allocator, depth } */
static int core_guard_stats(lua_State *L) {
  guard_state *g = state_of(L);
  lua_createtable(L, 0, 2);
  if (g != NULL) {
    lp2p__set_int(L, "heap", (lua_Integer)g->total);
    lp2p__set_int(L, "depth", g->depth);
  }
  return 1;
}


/* Install the accounting allocator once per state (a second luaopen, after
 * package.loaded was cleared, finds it in place). */
static void install(lua_State *L) {
  if (state_of(L) != NULL)
    return;
  guard_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->g = NULL;
  if (luaL_newmetatable(L, GUARD_MT)) {
    lua_pushcfunction(L, guard_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  guard_state *g = calloc(1, sizeof *g);
  if (g == NULL)
    luaL_error(L, "luap2p: out of memory");
  g->base_f = lua_getallocf(L, &g->base_ud);
  g->total = (long long)lua_gc(L, LUA_GCCOUNT) * 1024 +
             lua_gc(L, LUA_GCCOUNTB);
  b->g = g;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &GUARD_KEY);
  lua_setallocf(L, guard_alloc, g);
}


void lp2p__open_guard(lua_State *L) {
  install(L);
  lua_pushcfunction(L, core_guard);
  lua_setfield(L, -2, "guard");
  lua_pushcfunction(L, core_guard_stats);
  lua_setfield(L, -2, "guard_stats");
}
