-- luap2p.task: tasks, coroutines run by the loop, and the waits they use.
--
--   local t = p2p.spawn(function(a, b) ... p2p.sleep(1) ... end, 1, 2)
--   local conn = assert(node:dial("127.0.0.1:9732"))   -- inside a task
--   t:cancel()   t:join([timeout])
--
-- How it runs. A task starts on the loop, never inside the call that
-- spawned it: spawn() queues it and the queue is drained from a timer
-- callback (the "drain"), so a policy hook that spawns answers at once and
-- the task runs after it, outside the hook's instruction budget. Tasks
-- only ever run inside the drain: a wait registers a waiter and yields; an
-- event, a message or the wait's own timer (one per wait) wakes it by
-- queueing it again, with what it waited for. Wakes are never resumed in
-- place: the task does not run inside the core's read loop, a hook or a
-- listener, and several wakes in one loop iteration cost one drain.
--
-- A task's error is caught (with its traceback), reported (an "error"
-- event of its node or of the process; stderr when nobody listens) and
-- kept for join(); the loop goes on. cancel() releases what the task waits on (waiter, timer,
-- a dial in flight) and closes the coroutine, which runs its <close>
-- variables. Waiting calls raise outside a task, and inside policy hooks
-- and listeners (they run on the caller's stack; spawn a task there).
local core = require "luap2p.core"

local coroutine, debug, error, io, ipairs, next, pairs, pcall, select,
      setmetatable, string, table, tostring, type, xpcall =
      coroutine, debug, error, io, ipairs, next, pairs, pcall, select,
      setmetatable, string, table, tostring, type, xpcall

local _M = {}

local Task = {}
Task.__index = Task
_M.Task = Task

-- Markers passed through wakes and errors (never shown to users).
local CANCEL = setmetatable({}, { __tostring = function()
  return "task canceled"
end })
local TIMEOUT, CLOSED, FAILED = {}, {}, {}
_M.TIMEOUT, _M.CLOSED = TIMEOUT, CLOSED

local by_co = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local live = {}            -- tasks not finished yet (they hold themselves)
local rq, rq_head, rq_tail = {}, 1, 0 -- ready queue
local later = {}           -- yielded with sleep(0): next drain
local drain_timer
local draining = false
-- held.n > 0 while hooks and listeners run (a table, so that the hot
-- listener loop counts inline: see _M.listeners)
local held = { n = 0 }
_M.held = held
local next_id = 0

---------------------------------------------------------------- queue

local drain

local function arm(seconds)
  if not drain_timer then drain_timer = core.timer(seconds, nil, drain) end
end

local function schedule(t)
  rq_tail = rq_tail + 1
  rq[rq_tail] = t
  if not draining then arm(0) end
end

-- The body of every task's coroutine: the function, protected, with its
-- traceback kept apart from its message.
local function handler(e)
  if e == CANCEL then return e end
  return { message = tostring(e), traceback = debug.traceback(tostring(e),
    2) }
end

local function body(t)
  return xpcall(t.fn, handler, table.unpack(t.args, 1, t.args.n))
end

-- Where every callback's error goes (luap2p.report): an "error" event of
-- the task's node, or of the process (p2p.on("error")) for a task of no
-- node; stderr when nobody listens.
local function report(t)
  local msg = t.traceback or t.error
  local node = t.node
  if node and not node._closed then
    node:_error("task", msg)
  else
    require("luap2p.report").process_error("task", msg)
  end
end

-- A task ended (returned, failed or canceled): release and tell joiners.
local function finished(t)
  if t.wait then _M.done(t.wait) end
  live[t] = nil
  if t.node then t.node._tasks[t] = nil end
  if t.co then by_co[t.co] = nil end
  for w in pairs(t.joiners) do _M.wake(w) end
end

local function step(t)
  local args = t.wake_args
  t.wake_args = nil
  t.status = "running"
  local res
  if not t.co then
    t.co = coroutine.create(body)
    by_co[t.co] = t
    res = table.pack(coroutine.resume(t.co, t))
  else
    -- sleep(0) and bare yields come back with nothing
    res = table.pack(coroutine.resume(t.co, table.unpack(args or {}, 1,
      args and args.n or 0)))
  end
  if coroutine.status(t.co) == "dead" then
    if not res[1] then -- not from the task's code: a bug here
      t.status, t.error = "failed", tostring(res[2])
    elseif res[2] then
      t.status = "done"
      t.results = table.pack(select(3, table.unpack(res, 1, res.n)))
    elseif res[3] == CANCEL or t.cancel_requested then
      t.status = "canceled"
    else
      t.status = "failed"
      local e = res[3]
      t.error, t.traceback = e.message, e.traceback
    end
    finished(t)
    if t.status == "failed" then report(t) end
  elseif t.status == "running" then
    -- A bare coroutine.yield() across the task: let the others run.
    t.status = "ready"
    later[#later + 1] = t
  end
end

function drain()
  if drain_timer then
    drain_timer:stop()
    drain_timer = nil
  end
  draining = true
  while rq_head <= rq_tail do
    local t = rq[rq_head]
    rq[rq_head] = nil
    rq_head = rq_head + 1
    if t.status == "ready" then
      local ok, err = pcall(step, t)
      if not ok then
        io.stderr:write("luap2p: task scheduler error: ", tostring(err),
          "\n")
      end
    end
  end
  rq_head, rq_tail = 1, 0
  draining = false
  if #later > 0 then
    for i, t in ipairs(later) do
      rq_tail = rq_tail + 1
      rq[rq_tail] = t
      later[i] = nil
    end
    -- libuv before 1.45 runs a 0 ms timer started inside a timer callback
    -- in the same pass: a task yielding in a loop would starve the I/O.
    arm(0.001)
  end
end

---------------------------------------------------------------- tasks

-- spawn(owner node or nil, fn, ...) -> Task
function _M.spawn(owner, fn, ...)
  if type(fn) ~= "function" then
    error("spawn: expected a function, got " .. type(fn), 3)
  end
  next_id = next_id + 1
  local t = setmetatable({ id = next_id, fn = fn, args = table.pack(...),
                           status = "ready", node = owner, joiners = {} },
                         Task)
  live[t] = true
  if owner then owner._tasks[t] = true end
  schedule(t)
  return t
end

-- The running task (or nil).
function _M.running()
  return by_co[coroutine.running()]
end

-- Number of tasks not finished (the leak checks read it).
function _M.count()
  local n = 0
  for _ in pairs(live) do n = n + 1 end
  return n
end

-- Call fn(...) protected where waiting is forbidden (hooks, listeners,
-- match functions): they run on someone else's stack.
function _M.pcall(fn, ...)
  held.n = held.n + 1
  local ok, a, b, c = pcall(fn, ...)
  held.n = held.n - 1
  return ok, a, b, c
end

function _M.hold(n) held.n = held.n + n end

-- The one listener loop (node and connection listeners): call every
-- function of list with ev, protected and held; a failure is reported as
-- node:_error(what:format(kind), err) and the others still run. Counting
-- inline rather than through _M.pcall spares a call per listener on the
-- per-message path.
function _M.listeners(list, ev, node, what, kind)
  for i = 1, #list do
    held.n = held.n + 1
    local ok, err = pcall(list[i], ev)
    held.n = held.n - 1
    if not ok then node:_error(string.format(what, kind), err) end
  end
end

-- The running task, for a waiting call named `who`; raises elsewhere.
local function current(who)
  if held.n > 0 then
    error(who .. ": cannot wait inside a policy hook or a listener; " ..
      "spawn a task from there (node:spawn(fn))", 3)
  end
  local t = by_co[coroutine.running()]
  if not t then
    error(who .. ": not inside a task; run code that waits with " ..
      "p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)", 3)
  end
  return t
end
_M.current = current

---------------------------------------------------------------- waits

-- A wait of the running task: w = waiter(who, timeout, release). The
-- caller registers w where the wake comes from, then v = suspend(w) as
-- often as needed, then done(w) (also done by cancel and by the end of
-- the task). release(w) unregisters; the timer, when there is one, wakes
-- the task with TIMEOUT.
function _M.waiter(who, timeout, release)
  local t = current(who)
  if t.cancel_requested then error(CANCEL, 0) end
  if t.wait then error(who .. ": the task is already waiting", 3) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error(who .. ": timeout must be a number >= 0 (seconds)", 3)
  end
  local w = { task = t, release = release, who = who, timeout = timeout }
  if timeout then
    -- The task runs from the timer's own callback: a timeout ends its
    -- wait in the loop turn of its deadline, before later timers.
    w.timer = core.timer(timeout, nil, function()
      if _M.wake(w, TIMEOUT) and not draining then drain() end
    end)
  end
  t.wait = w
  return w
end

function _M.suspend(w)
  local t = w.task
  if t.cancel_requested then error(CANCEL, 0) end
  t.status = "waiting"
  return coroutine.yield()
end

function _M.done(w)
  local t = w.task
  if t.wait == w then t.wait = nil end
  if w.timer then
    w.timer:stop()
    w.timer = nil
  end
  local release = w.release
  if release then
    w.release = nil
    release(w)
  end
end

-- Queue the task waiting on w, with the values its suspend returns.
-- False when it no longer waits on w (already woken, ended, canceled).
function _M.wake(w, ...)
  local t = w.task
  if t.wait ~= w or t.status ~= "waiting" then return false end
  t.status = "ready"
  t.wake_args = table.pack(...)
  schedule(t)
  return true
end

-- Wake the waiters of a set (waiter -> match function or true) whose
-- match accepts ev. A match that raises wakes its task with the error.
function _M.notify(waits, ev)
  for w, match in pairs(waits) do
    local t = w.task
    if t.wait == w and t.status == "waiting" then
      if match == true then
        _M.wake(w, ev)
      else
        local ok, yes = _M.pcall(match, ev)
        if not ok then
          _M.wake(w, FAILED, yes)
        elseif yes then
          _M.wake(w, ev)
        end
      end
    end
  end
end

-- Wait for an event of one of `kinds` on node that match(ev) accepts.
-- Returns ev, or nil, "ETIMEDOUT: ..." | "ECLOSED: ...", ENAME.
function _M.wait_event(node, who, kinds, match, timeout, release)
  if node._closed then
    return nil, "ECLOSED: " .. who .. ": node closed", "ECLOSED"
  end
  local w = _M.waiter(who, timeout, function(w)
    for _, k in ipairs(kinds) do
      local ws = node._waits[k]
      if ws then
        ws[w] = nil
        if next(ws) == nil then
          node._waits[k] = nil
          if node._unwant then node:_unwant(k) end
        end
      end
    end
    if release then release(w) end
  end)
  for _, k in ipairs(kinds) do
    local ws = node._waits[k] or {}
    node._waits[k] = ws
    ws[w] = match or true
    if node._wants and not node:_wants(k) then node:_want() end
  end
  local v, e = _M.suspend(w)
  _M.done(w)
  if v == TIMEOUT then
    return nil, string.format("ETIMEDOUT: %s: no %s within %gs", who,
      table.concat(kinds, "/"), timeout), "ETIMEDOUT"
  elseif v == CLOSED then
    return nil, "ECLOSED: " .. who .. ": node closed", "ECLOSED"
  elseif v == FAILED then
    error(e, 0)
  end
  return v
end

-- The node closes: wake every task still waiting on its events.
function _M.close_node(node)
  for t in pairs(node._tasks) do t:cancel() end
  for _, ws in pairs(node._waits) do
    for w in pairs(ws) do _M.wake(w, CLOSED) end
  end
end

---------------------------------------------------------------- API

-- p2p.sleep(seconds): let the loop run for that long (0: one turn).
function _M.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    error("p2p.sleep: expected a number of seconds >= 0", 2)
  end
  -- Here, not in waiter(), so that misuse raises at our caller's line.
  local t = current("p2p.sleep")
  if seconds == 0 then
    if t.cancel_requested then error(CANCEL, 0) end
    t.status = "ready"
    later[#later + 1] = t
    coroutine.yield()
    return
  end
  local w = _M.waiter("p2p.sleep", seconds)
  _M.suspend(w)
  _M.done(w)
end

local function outcome(t)
  if t.status == "done" then
    return true, table.unpack(t.results, 1, t.results.n)
  elseif t.status == "canceled" then
    return nil, "ECANCELED: task canceled", "ECANCELED"
  end
  return nil, "ETASK: " .. tostring(t.error), "ETASK"
end

local ENDED = { done = true, failed = true, canceled = true }

-- task:join([timeout]) -> true, results... | nil, "ETASK: error" |
-- nil, "ECANCELED: ..." | nil, "ETIMEDOUT: ...", ENAME. Inside a task.
function Task:join(timeout)
  if ENDED[self.status] then return outcome(self) end
  current("task:join") -- raises at our caller outside a task
  local w = _M.waiter("task:join", timeout, function(w)
    self.joiners[w] = nil
  end)
  if w.task == self then
    _M.done(w)
    error("task:join: a task cannot join itself", 2)
  end
  self.joiners[w] = true
  local v = _M.suspend(w)
  _M.done(w)
  if v == TIMEOUT then
    return nil, string.format("ETIMEDOUT: task:join: task still running " ..
      "after %gs", timeout), "ETIMEDOUT"
  end
  return outcome(self)
end

-- task:cancel() -> true | false (already ended). A waiting or queued task
-- ends now: what it waits on is released and its <close> variables run.
-- A task canceling itself (or one that is running) ends at its next wait.
function Task:cancel()
  if ENDED[self.status] then return false end
  if self.status == "running" then
    self.cancel_requested = true
    return true
  end
  if self.wait then _M.done(self.wait) end
  self.status = "canceled"
  if self.co then
    local ok, err = coroutine.close(self.co)
    if not ok then
      io.stderr:write("luap2p: task error while canceling: ",
        tostring(err), "\n")
    end
  end
  finished(self)
  return true
end

function Task:done() return ENDED[self.status] == true end

-- task:result() -> what join returns, without waiting (usable anywhere);
-- nil, "ESTATE: task still running", "ESTATE" while it has not ended.
function Task:result()
  if ENDED[self.status] then return outcome(self) end
  return nil, "ESTATE: task still running", "ESTATE"
end

function Task:__tostring()
  return string.format("luap2p.Task(%d %s)", self.id, self.status)
end

return _M
