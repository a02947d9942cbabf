-- luap2p.policy: loading, validating, calling and swapping policy modules.
--
-- A policy is a Lua module returning a table of optional hook functions.
-- Every hook call goes through guard(): a protected call with limits on
-- VM instructions, wall-clock time and heap growth (core.guard, in
-- core/lua/lua_guard.c), so a hook that errors, runs away or hoards
-- memory yields the safe default and a policy_error event, never a dead
-- node.
local core = require "luap2p.core"

local debug, error, ipairs, loadfile, math, package, pairs, setmetatable,
      string, tostring, type =
      debug, error, ipairs, loadfile, math, package, pairs, setmetatable,
      string, tostring, type

local cguard = core.guard

local _M = {}

-- Hook name -> how the dispatcher combines policies.
--   verdict: the first non-nil result decides
--   all:     every policy is called (events, lifecycle)
_M.HOOKS = {
  accept = "verdict", connect = "verdict", authenticated = "verdict",
  bootstrap = "verdict", advertise = "verdict", swap_request = "verdict",
  swap_ack = "verdict", message = "verdict", shell = "verdict", disconnect = "all",
  event = "all", start = "all", stop = "all",
}
-- Other keys a policy table may carry. events: the event types its event
-- hook takes (a list, or a function(node) returning one or nil for every
-- type, called when the policy is loaded or reloaded); the others never
-- reach it, and the core does not call Lua for a type nobody takes.
local EXTRAS = { name = "string", check = "function", migrate = "function",
                 description = "string", options = "table",
                 limits = "table",
                 events = { table = true, ["function"] = true } }

-- Limits of one hook call (config keys hook_budget, hook_memory and
-- hook_time; a policy's own `limits = {budget =, memory =, time =}` wins
-- for its hooks). 0 turns a limit off.
_M.DEFAULT_BUDGET = 1000000        -- VM instructions
_M.DEFAULT_MEMORY = 64 * 1024 * 1024 -- bytes of heap growth
_M.DEFAULT_TIME = 1                -- seconds of wall clock

local DEFAULT_LIMITS = { budget = _M.DEFAULT_BUDGET,
                         memory = _M.DEFAULT_MEMORY,
                         time = _M.DEFAULT_TIME }
_M.DEFAULT_LIMITS = DEFAULT_LIMITS

local LIMIT_KEYS = { budget = true, memory = true, time = true }

-- Check a limits table; nil or a message.
function _M.check_limits(t)
  for k, v in pairs(t) do
    if not LIMIT_KEYS[k] then
      return string.format("limits: unknown key '%s' (budget, memory, time)",
        tostring(k))
    end
    if type(v) ~= "number" or v < 0 or v ~= v or
       (k ~= "time" and math.type(v) ~= "integer" and v ~= math.huge) then
      return string.format("limits.%s: expected a number >= 0%s", k,
        k ~= "time" and " (an integer)" or "")
    end
  end
end

-- The limits of a node config, with a policy's own on top.
function _M.limits(config, mod)
  local l = {
    budget = config and config.hook_budget or DEFAULT_LIMITS.budget,
    memory = config and config.hook_memory or DEFAULT_LIMITS.memory,
    time = config and config.hook_time or DEFAULT_LIMITS.time,
  }
  local own = mod and mod.limits
  if own then
    for k, v in pairs(own) do l[k] = v end
  end
  for k, v in pairs(l) do
    if v == math.huge then
      l[k] = 0
    elseif k ~= "time" then
      l[k] = math.floor(v)
    end
  end
  return l
end

-- The limits of a stack entry, computed once (and again after a reload,
-- which makes a new entry).
function _M.entry_limits(entry, config)
  if not entry then return _M.limits(config) end
  local l = entry.limits
  if not l then
    l = _M.limits(config, entry.module)
    entry.limits = l
  end
  return l
end

-- Call fn(...) protected and limited. `limits` is a table {budget,
-- memory, time} or a number (an instruction budget, the other limits at
-- their defaults). Returns true, results... or false, message. A guard
-- inside a guarded call only protects: the outer limits keep counting,
-- so a hook cannot escape its budget by calling into the node in a loop.
local function guard(limits, fn, ...)
  if type(limits) == "table" then
    return cguard(limits.budget or 0, limits.memory or 0, limits.time or 0,
      fn, ...)
  end
  return cguard(limits or DEFAULT_LIMITS.budget, DEFAULT_LIMITS.memory,
    DEFAULT_LIMITS.time, fn, ...)
end
_M.guard = guard

-- Check the shape of a loaded policy table: nil or an error message.
function _M.validate(mod)
  if type(mod) ~= "table" then
    return "policy must return a table, got " .. type(mod)
  end
  for k, v in pairs(mod) do
    if _M.HOOKS[k] then
      if type(v) ~= "function" then
        return string.format("hook '%s' must be a function, got %s", k,
          type(v))
      end
    elseif EXTRAS[k] then
      local want = EXTRAS[k]
      if type(want) == "table" then
        if not want[type(v)] then
          return string.format("field '%s' must be a list or a function, "
            .. "got %s", k, type(v))
        end
      elseif type(v) ~= want then
        return string.format("field '%s' must be a %s, got %s", k, want,
          type(v))
      end
      if k == "limits" then
        local bad = _M.check_limits(v)
        if bad then return bad end
      elseif k == "events" and type(v) == "table" then
        local bad = _M.check_events(v)
        if bad then return bad end
      end
    elseif type(k) == "string" and k:sub(1, 1) ~= "_" then
      return string.format("unknown hook '%s' (known: %s)", k,
        _M.known_list())
    end
  end
end

function _M.known_list()
  local names = {}
  for k in pairs(_M.HOOKS) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Run a compiled policy chunk in a fresh environment (reads globals,
-- writes stay local to the policy): the module table, or nil, message.
local function run_chunk(chunk, path, limits)
  local ok, mod = _M.guard(limits or DEFAULT_LIMITS, chunk)
  if not ok then return nil, path .. ": " .. mod end
  local bad = _M.validate(mod)
  if bad then return nil, path .. ": " .. bad end
  return mod
end

-- Load a policy file. The module table and its compiled chunk, or nil,
-- message (internal: the stack puts the message in its own EPOLICY error
-- and policy_error).
local function load_file(path, limits)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then return nil, err end
  local mod, rerr = run_chunk(chunk, path, limits)
  if not mod then return nil, rerr end
  return mod, chunk
end

-- Module-name policies compiled once per process (the default stack's,
-- when a node is made): spec -> { path =, chunk = }. Each node still runs
-- the chunk, so it gets its own module table, locals and environment;
-- only the search along package.path and the compile are saved. A reload
-- reads the file again (and refreshes the entry: _M._cache_put).
local compiled = {}

-- Point the chunk's one upvalue (_ENV) at a fresh environment. The
-- closures of an earlier run keep the one they were made with.
local function fresh_env(chunk)
  local env = setmetatable({}, { __index = _G })
  local function cell() return env end
  debug.upvaluejoin(chunk, 1, cell, 1)
end

local function load_cached(spec, limits)
  local c = compiled[spec]
  if not c or c.busy then
    -- A miss, or a policy whose loading makes a node that loads it.
    local path, err = package.searchpath(spec, package.path)
    if not path then return nil, "policy module not found: " .. err end
    local mod, chunk = load_file(path, limits)
    if not mod then return nil, chunk end
    if not c then compiled[spec] = { path = path, chunk = chunk } end
    return mod, path, chunk
  end
  fresh_env(c.chunk)
  c.busy = true
  local mod, err = run_chunk(c.chunk, c.path, limits)
  c.busy = false
  if not mod then return nil, err end
  return mod, c.path, c.chunk
end

-- A reload compiled spec's file again: later nodes get that version.
function _M._cache_put(spec, entry)
  if compiled[spec] and entry._chunk then
    compiled[spec] = { path = entry.path, chunk = entry._chunk }
  end
end

-- Resolve a policy spec: a file path, a module name ("luap2p.policies.x")
-- or a table. Entry {name, path, module} or nil, message (internal).
-- cached: a module name's compiled chunk may come from the process cache.
function _M._resolve(spec, limits, cached)
  if type(spec) == "table" then
    local bad = _M.validate(spec)
    if bad then return nil, bad end
    return { name = spec.name or tostring(spec), module = spec }
  end
  if type(spec) ~= "string" then
    return nil, "policy must be a file path, module name or table"
  end
  local module_name = not spec:find("[/\\]") and not spec:find("%.lua$")
  if cached and module_name then
    local mod, path, chunk = load_cached(spec, limits)
    if not mod then return nil, path end
    return { name = mod.name or spec, path = path, module = mod,
             _chunk = chunk }
  end
  local path = spec
  if module_name then
    local found, err = package.searchpath(spec, package.path)
    if not found then return nil, "policy module not found: " .. err end
    path = found
  end
  local mod, chunk = load_file(path, limits)
  if not mod then return nil, chunk end
  return { name = mod.name or spec, path = path, module = mod,
           _chunk = chunk }
end

-- p2p.policy.load_file(path[, limits]) -> module
--                                     | nil, "EPOLICY: message", "EPOLICY"
function _M.load_file(path, limits)
  local mod, err = load_file(path, limits)
  if not mod then return nil, "EPOLICY: " .. err, "EPOLICY" end
  return mod
end

-- p2p.policy.resolve(spec[, limits]) -> entry {name, path, module}
--                                     | nil, "EPOLICY: message", "EPOLICY"
function _M.resolve(spec, limits)
  local entry, err = _M._resolve(spec, limits)
  if not entry then return nil, "EPOLICY: " .. err, "EPOLICY" end
  return entry
end

-- Check an events list: nil or a message.
function _M.check_events(list)
  for i, v in pairs(list) do
    if math.type(i) ~= "integer" or type(v) ~= "string" then
      return "events: expected a list of event types (strings)"
    end
  end
end

-- The event types an entry's event hook takes, as a set, or nil for every
-- type; false, message when its events function fails.
function _M.run_events(entry, node, budget)
  local evs = entry.module.events
  if type(evs) == "function" then
    local ok, res = _M.guard(budget, evs, node)
    if not ok then return false, res end
    if res == nil then return nil end
    if type(res) ~= "table" then
      return false, "events() must return a list or nil, got " .. type(res)
    end
    local bad = _M.check_events(res)
    if bad then
      return false, "events() returned a bad list (" .. bad .. ")"
    end
    evs = res
  end
  if evs == nil then return nil end
  local set = {}
  for _, t in ipairs(evs) do set[t] = true end
  return set
end

-- Run the optional check(node) of a candidate: nil or an error message.
function _M.run_check(entry, node, budget)
  local check = entry.module.check
  if not check then return nil end
  local ok, res, why = _M.guard(budget, check, node)
  if not ok then return res end
  if res == false then return why or "check() returned false" end
end

return _M
