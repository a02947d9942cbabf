-- luap2p.policy: loading, validating, calling and swapping policy modules.
--
-- A policy is a Lua module returning a table of optional hook functions.
-- Every hook call goes through guard(): pcall plus an instruction budget,
-- so a hook that errors or runs away yields the safe default and a
-- policy_error event, never a dead node.
local debug, error, loadfile, pairs, setmetatable, string, tostring, type,
      xpcall =
      debug, error, loadfile, pairs, setmetatable, string, tostring, type,
      xpcall

local _M = {}

-- Hook name -> how the dispatcher combines policies.
--   verdict: the first non-nil result decides
--   all:     every policy is called (events, lifecycle)
_M.HOOKS = {
  accept = "verdict", connect = "verdict", authenticated = "verdict",
  bootstrap = "verdict", advertise = "verdict", swap_request = "verdict",
  swap_ack = "verdict", message = "verdict", disconnect = "all",
  event = "all", start = "all", stop = "all",
}
-- Other keys a policy table may carry.
local EXTRAS = { name = "string", check = "function", migrate = "function",
                 description = "string", options = "table" }

_M.DEFAULT_BUDGET = 1000000 -- VM instructions per hook call

local BUDGET_MSG = "instruction budget exceeded"
local guard

local function budget_hook()
  -- Back in guard itself (the call has returned): let it restore hooks.
  if debug.getinfo(2, "f").func == guard then return end
  -- Fire on every instruction from now on, so a pcall loop inside the
  -- hook cannot swallow the error forever.
  debug.sethook(budget_hook, "", 1)
  error(BUDGET_MSG, 2)
end

local depth = 0

-- Call fn(...) protected, at most `budget` VM instructions. Returns
-- true, results... or false, message. A guard inside a guarded call only
-- protects: the outer budget keeps counting, so a hook cannot escape its
-- budget by calling into the node in a loop.
function guard(budget, fn, ...)
  local res
  if depth > 0 then
    depth = depth + 1
    res = table.pack(xpcall(fn, debug.traceback, ...))
    depth = depth - 1
  else
    local old_fn, old_mask, old_count = debug.gethook()
    depth = 1
    debug.sethook(budget_hook, "", budget)
    res = table.pack(xpcall(fn, debug.traceback, ...))
    debug.sethook(old_fn, old_mask, old_count)
    depth = 0
  end
  if not res[1] then
    local msg = tostring(res[2])
    if msg:find(BUDGET_MSG, 1, true) then
      msg = BUDGET_MSG .. " (" .. budget .. " instructions)"
    end
    return false, msg
  end
  return table.unpack(res, 1, res.n)
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
      if type(v) ~= EXTRAS[k] then
        return string.format("field '%s' must be a %s, got %s", k,
          EXTRAS[k], type(v))
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

-- Load a policy file in a fresh environment (reads globals, writes stay
-- local to the policy). Returns the module table or nil, message.
function _M.load_file(path, budget)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then return nil, err end
  local ok, mod = _M.guard(budget or _M.DEFAULT_BUDGET, chunk)
  if not ok then return nil, path .. ": " .. mod end
  local bad = _M.validate(mod)
  if bad then return nil, path .. ": " .. bad end
  return mod
end

-- Resolve a policy spec: a file path, a module name ("luap2p.policies.x")
-- or a table. Returns entry {name, path, module} or nil, message.
function _M.resolve(spec, budget)
  if type(spec) == "table" then
    local bad = _M.validate(spec)
    if bad then return nil, bad end
    return { name = spec.name or tostring(spec), module = spec }
  end
  if type(spec) ~= "string" then
    return nil, "policy must be a file path, module name or table"
  end
  local path = spec
  if not spec:find("[/\\]") and not spec:find("%.lua$") then
    local found, err = package.searchpath(spec, package.path)
    if not found then return nil, "policy module not found: " .. err end
    path = found
  end
  local mod, err = _M.load_file(path, budget)
  if not mod then return nil, err end
  return { name = mod.name or spec, path = path, module = mod }
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
