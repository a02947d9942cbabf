-- luap2p.stack: the node's policy stack: building it, reloading policy
-- files (by hand or on change) and the timers policies own. Methods of
-- Node.
local check = require "luap2p.check"
local core = require "luap2p.core"
local policy = require "luap2p.policy"

local ipairs, pairs, pcall, setmetatable, string =
      ipairs, pairs, pcall, setmetatable, string

local Node = {}
local _M = { methods = Node }

-- The default policy stack, after any user policies.
_M.DEFAULT_POLICIES = {
  "luap2p.policies.private_mode",
  "luap2p.policies.acl",
  "luap2p.policies.answerer",
  "luap2p.policies.maintenance",
  "luap2p.policies.log",
}

local DEFAULT = {}
for _, s in ipairs(_M.DEFAULT_POLICIES) do DEFAULT[s] = true end

-- Build the stack from config.policies then the defaults (those compiled
-- once per process: luap2p.policy's cache).
function Node:_load_stack()
  local specs = {}
  for _, s in ipairs(self.config.policies or {}) do specs[#specs + 1] = s end
  if self.config.default_policies then
    for _, s in ipairs(_M.DEFAULT_POLICIES) do specs[#specs + 1] = s end
  end
  local stack = {}
  local load_limits = #specs > 0 and policy.limits(self.config)
  for _, spec in ipairs(specs) do
    local entry, err = policy._resolve(spec, load_limits, DEFAULT[spec])
    if not entry then return nil, err end
    local limits = policy.entry_limits(entry, self.config)
    local bad = policy.run_check(entry, self, limits)
    if bad then
      return nil, string.format("%s: check failed: %s", entry.name, bad)
    end
    local evs, eerr = policy.run_events(entry, self, limits)
    if evs == false then
      return nil, string.format("%s: events failed: %s", entry.name, eerr)
    end
    entry.events = evs
    entry.spec = spec
    entry.timers = setmetatable({}, { __mode = "k" })
    stack[#stack + 1] = entry
  end
  return stack
end

function Node:_stop_entry(entry)
  if entry.module.stop then self:_call(entry, "stop") end
  for t in pairs(entry.timers) do pcall(t.stop, t) end
end

function Node:_start_entry(entry)
  if entry.module.start then self:_call(entry, "start") end
end

-- Reload every policy that came from a file (or only `path`): load,
-- validate, check(), then swap each one between two callbacks. A failure
-- keeps the old policy and emits policy_error. Returns true, or nil, msg,
-- ENAME (ENOENT when `path` is not the path of any of its policies, as
-- given in config.policies: a typo reloads nothing and says so).
function Node:reload(path)
  if path ~= nil and type(path) ~= "string" then
    check.fail("node:reload", "path", "a string or nil", path)
  end
  local failed, found
  for i, old in ipairs(self._stack) do
    if old.path and (path == nil or old.path == path) then
      found = true
      local entry, err = policy._resolve(old.path, policy.limits(self.config))
      if entry then
        local limits = policy.entry_limits(entry, self.config)
        err = policy.run_check(entry, self, limits)
        if err then
          err = entry.name .. ": check failed: " .. err
        else
          local evs, eerr = policy.run_events(entry, self, limits)
          if evs == false then
            err = entry.name .. ": events failed: " .. eerr
          else
            entry.events = evs
          end
        end
      end
      if not entry or err then
        failed = err
        self:_policy_error(old, "load", err)
      else
        entry.spec = old.spec
        entry.timers = setmetatable({}, { __mode = "k" })
        if entry.module.migrate then
          local ok = self:_call(entry, "migrate", old.module)
          if not ok then entry = nil end
        end
        if entry then
          if DEFAULT[old.spec] then policy._cache_put(old.spec, entry) end
          self:_stop_entry(old)
          self._stack[i] = entry
          self:_want()
          self._counters.reloads = self._counters.reloads + 1
          self:_start_entry(entry)
          self:_event({ type = "reloaded", policy = entry.name,
                        path = entry.path })
        else
          failed = "migrate failed"
        end
      end
    end
  end
  if failed then return nil, "EPOLICY: " .. failed, "EPOLICY" end
  if path ~= nil and not found then
    return nil, "ENOENT: node:reload: no policy of this node came from " ..
      path, "ENOENT"
  end
  return true
end

-- Watch policy files; a change reloads that file after a short debounce.
-- Directories are watched, since editors replace files by renaming.
function Node:_watch()
  local dirs = {}
  for _, entry in ipairs(self._stack) do
    if entry.path then
      local dir, base = entry.path:match("^(.*)/([^/]+)$")
      dir, base = dir or ".", base or entry.path
      dirs[dir] = dirs[dir] or {}
      dirs[dir][base] = entry.path
    end
  end
  self._watches = {}
  for dir, files in pairs(dirs) do
    local w = core.watch(dir, function(name)
      local path = files[name]
      if not path or self._closed then return end
      if self._debounce[path] then self._debounce[path]:stop() end
      self._debounce[path] = core.timer(0.05, nil, function()
        self._debounce[path] = nil
        if not self._closed then self:reload(path) end
      end)
    end)
    if w then self._watches[#self._watches + 1] = w end
  end
end

-- node:after(seconds, fn) / node:every(seconds, fn): timers whose errors
-- are policy errors; a policy's timers stop when it is swapped out.
function Node:_timer(after, every, fn)
  local owner = self._current
  local weak = setmetatable({ node = self }, { __mode = "v" })
  local t
  t = core.timer(after, every, function()
    local node = weak.node
    if not node or node._closed then
      t:unref() -- never calls back again: it must not hold the loop
      return
    end
    -- Timers made inside this one belong to the same policy.
    local prev = node._current
    node._current = owner
    local ok, err = policy.guard(policy.entry_limits(owner, node.config),
      fn, node)
    node._current = prev
    if not ok then
      if owner then
        node:_policy_error(owner, "timer", err)
      else
        node:_error("timer", err)
      end
    end
  end)
  -- Made on a closed node (by code that still holds it): it will not
  -- call back, so it does not keep the loop alive (unref, not stop: the
  -- caller may still stop it).
  if self._closed then t:unref() end
  self._timers[t] = true
  if owner then owner.timers[t] = true end
  return t
end

function Node:after(seconds, fn)
  check.seconds("node:after", "seconds", seconds)
  check.func("node:after", "fn", fn)
  return self:_timer(seconds, nil, fn)
end

function Node:every(seconds, fn)
  -- A period of 0 would be a one-shot timer (libuv's repeat 0).
  if type(seconds) ~= "number" or not (seconds > 0 and seconds <= 1e13) then
    check.fail("node:every", "seconds", "a period in seconds > 0 and <= 1e13",
      seconds)
  end
  check.func("node:every", "fn", fn)
  return self:_timer(seconds, seconds, fn)
end

return _M
