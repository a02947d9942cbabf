-- luap2p.report: where errors of callbacks go, and how often.
--
-- One place for them all, documented in README ("Errors of callbacks"):
--   * a policy hook, check, migration or policy timer that fails: a
--     `policy_error` event of its node;
--   * a listener (node:on, conn:on) or a node timer of no policy that
--     fails: an `error` event of its node (`where`, `message`);
--   * a callback of no node (p2p.after/every, signals, watches, the
--     metrics server, the dispatcher itself), reported by the C core's
--     protected-call funnel: an `error` event of the process,
--     p2p.on("error", fn).
-- Standard error gets the report only when nobody listens for it. Every
-- channel is rate-limited (BURST reports, then RATE per second): what is
-- dropped is counted, and the next report, or a summary WINDOW seconds
-- later, carries `suppressed = n`. node:stat().policy_errors and
-- .errors count every failure, reported or not.
local core = require "luap2p.core"

local error, io, ipairs, math, os, pairs, pcall, setmetatable, string,
      table, tostring, type =
      error, io, ipairs, math, os, pairs, pcall, setmetatable, string,
      table, tostring, type

local _M = {
  BURST = 10,  -- reports let through at once
  RATE = 10,   -- reports per second after the burst
  WINDOW = 1,  -- seconds before a summary of what was suppressed
}

---------------------------------------------------------------- limiter

local Limiter = {}
Limiter.__index = Limiter

-- A token bucket. emit_summary(n) is called once, WINDOW seconds after the
-- first report it suppressed, when reports were suppressed and none got
-- through since to carry the count.
function _M.limiter(emit_summary)
  return setmetatable({ tokens = _M.BURST, last = core.now(),
                        suppressed = 0, emit_summary = emit_summary },
    Limiter)
end

-- take() -> true, n (n reports were suppressed before this one) | false
function Limiter:take()
  local t = core.now()
  self.tokens = math.min(_M.BURST, self.tokens + (t - self.last) * _M.RATE)
  self.last = t
  if self.tokens >= 1 then
    self.tokens = self.tokens - 1
    local n = self.suppressed
    self.suppressed = 0
    return true, n
  end
  self.suppressed = self.suppressed + 1
  if not self.timer then
    -- Unref'd: a pending summary must not keep the loop alive.
    self.timer = core.timer(_M.WINDOW, nil, function()
      self.timer = nil
      self:_summary()
    end)
    self.timer:unref()
  end
  return false
end

-- Stop the summary timer; what was suppressed since the last report is
-- reported now, so a count is never lost (a node closing, the process
-- exiting).
function Limiter:close()
  if self.timer then
    pcall(self.timer.stop, self.timer)
    self.timer = nil
  end
  self:_summary()
end

-- Report what was suppressed, if anything, and start counting again.
function Limiter:_summary()
  local n = self.suppressed
  if n > 0 then
    self.suppressed = 0
    self.emit_summary(n)
  end
end

local function suffix(n)
  if n and n > 0 then
    return string.format(" (%d earlier report%s suppressed)", n,
      n == 1 and "" or "s")
  end
  return ""
end

local function to_stderr(ev)
  local what = ev.type == "policy_error"
    and string.format("policy %s hook %s", tostring(ev.policy),
      tostring(ev.hook))
    or tostring(ev.where)
  -- The count goes on the first line: the message may end in a traceback.
  io.stderr:write("luap2p: ", what, " error",
    ev.summary and "" or suffix(ev.suppressed), ": ", tostring(ev.message),
    "\n")
end

---------------------------------------------------------------- process

local listeners = {}
local in_report = false

local function deliver(ev)
  if #listeners == 0 or in_report then return to_stderr(ev) end
  in_report = true
  for _, fn in ipairs(listeners) do
    local ok, err = pcall(fn, ev)
    if not ok then
      to_stderr({ type = "error", where = "error listener",
                  message = tostring(err) })
    end
  end
  in_report = false
end

local process = _M.limiter(function(n)
  deliver({ type = "error", where = "report", ts = os.time(),
            summary = true, suppressed = n,
            message = n .. " more errors suppressed" })
end)

-- p2p.on("error", fn(ev)): errors of callbacks that belong to no node.
function _M.on(kind, fn)
  if kind ~= "error" then
    error("p2p.on: only \"error\" is a process event, got " ..
      tostring(kind), 2)
  end
  if type(fn) ~= "function" then error("p2p.on: expected a function", 2) end
  listeners[#listeners + 1] = fn
end

-- p2p.off("error", fn): remove a listener; true when it was there.
function _M.off(kind, fn)
  for i, f in ipairs(listeners) do
    if f == fn then
      table.remove(listeners, i)
      return true
    end
  end
  return false
end

-- The C core's error reporter (core.on_error): "where", "message".
function _M.process_error(where, message)
  local ok, n = process:take()
  if not ok then return end
  deliver({ type = "error", where = where, message = message,
            ts = os.time(), suppressed = n > 0 and n or nil })
end

core.on_error(_M.process_error)

-- At exit (lua_close), the count of what was suppressed last.
_M._at_exit = setmetatable({}, { __gc = function() process:close() end })

---------------------------------------------------------------- nodes

local Node = {}
_M.methods = Node

-- Does anyone listen for events of this type on the node?
function Node:_listened(kind)
  local on = self._on
  return (on[kind] and #on[kind] > 0) or (on["*"] and #on["*"] > 0) or
    self.config.log ~= nil
end

-- The limiter of node under key (created on first use); summary(n) makes
-- the event that reports n suppressed ones.
local function node_limiter(node, key, summary)
  local all = node._limiters
  if not all then
    all = {}
    node._limiters = all
  end
  local l = all[key]
  if not l then
    local weak = setmetatable({ node = node }, { __mode = "v" })
    l = _M.limiter(function(n)
      local nd = weak.node
      if nd and not nd._closed then
        nd:_report(summary(n))
      else
        to_stderr(summary(n)) -- closing: no more events
      end
    end)
    all[key] = l
  end
  return l
end

-- Emit ev (an error or policy_error) as a node event (policies' event
-- hooks, listeners), and on stderr when no listener nor the log takes it.
-- A report failing while it is delivered goes to stderr, never back.
function Node:_report(ev)
  ev.ts = ev.ts or os.time()
  if self._in_report then return to_stderr(ev) end
  if not self:_listened(ev.type) then to_stderr(ev) end
  self._in_report = true
  local ok, err = pcall(self._event, self, ev)
  self._in_report = false
  if not ok then
    to_stderr({ type = "error", where = "error report",
                message = tostring(err) })
  end
end

-- A failure of a policy (hook, check, migration, timer): counted, then a
-- policy_error event, rate-limited. A failed load (node:reload, a watched
-- file) is an operator's action, answered one by one: never suppressed.
function Node:_policy_error(entry, hook, msg)
  self._counters.policy_errors = self._counters.policy_errors + 1
  if self._closed then return end
  local n = 0
  if hook ~= "load" then
    local name, path = entry and entry.name, entry and entry.path
    local l = node_limiter(self, "policy_error " .. tostring(name) .. " " ..
      hook, function(k)
      return { type = "policy_error", policy = name, path = path,
               hook = hook, summary = true, suppressed = k,
               message = k .. " more errors suppressed" }
    end)
    local ok
    ok, n = l:take()
    if not ok then return end
  end
  self:_report({ type = "policy_error", policy = entry and entry.name,
                 path = entry and entry.path, hook = hook, message = msg,
                 suppressed = n > 0 and n or nil })
end

-- A failure of a listener or a node timer of no policy: counted, then an
-- error event ("where": "message listener", "conn close handler", ...).
function Node:_error(where, msg)
  self._counters.errors = (self._counters.errors or 0) + 1
  if self._closed then return end
  local l = node_limiter(self, "error", function(k)
    return { type = "error", where = "report", summary = true,
             suppressed = k, message = k .. " more errors suppressed" }
  end)
  local ok, n = l:take()
  if not ok then return end
  self:_report({ type = "error", where = where, message = tostring(msg),
                 suppressed = n > 0 and n or nil })
end

function Node:_close_reports()
  for _, l in pairs(self._limiters or {}) do l:close() end
end

return _M
