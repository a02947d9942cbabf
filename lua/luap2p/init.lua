-- luap2p: an Octez-compatible peer-to-peer connection handler.
--
--   local p2p = require "luap2p"
--   local node = assert(p2p.new{ identity = id, listen = "127.0.0.1:9732" })
--   node:on("message", function(ev) ... ev.payload ... end)
--   p2p.run()
--
-- The C core (luap2p.core) accepts, connects, authenticates, encrypts and
-- frames; the Lua modules own node state and run the policy stack for
-- every decision: node.lua (a node), conn.lua (a connection), dispatch.lua
-- (hooks, events, messages), points.lua (points, peers, trust), stack.lua
-- (policies, reload, timers), config.lua (the config keys), task.lua
-- (tasks and the waits they use). See README.md.
local core = require "luap2p.core"
local policy = require "luap2p.policy"

local error, string, tostring = error, string, tostring

local REQUIRED_CORE = "0.1.0"
if core.version ~= REQUIRED_CORE then
  error(string.format("luap2p requires core %s, got %s", REQUIRED_CORE,
    tostring(core.version)))
end

local check = require "luap2p.check"
local config = require "luap2p.config"
local dispatch = require "luap2p.dispatch"
local Node = require "luap2p.node"
local stack = require "luap2p.stack"
local report = require "luap2p.report"

local _M = {
  VERSION = "0.1.0",
  APP_TAG = dispatch.APP_TAG, -- default tag of application messages
  core = core,
  policy = policy,
  shell = require "luap2p.shell",
  MOTIVES = { no_motive = 0, too_many_connections = 1,
              unknown_chain_name = 2, deprecated_p2p_version = 3,
              deprecated_distributed_db_version = 4, already_connected = 5 },
  DEFAULT_POLICIES = stack.DEFAULT_POLICIES,
  split_point = config.split_point,
  new = Node.new,
  -- p2p.on("error", fn(ev)) / p2p.off: errors of callbacks of no node.
  on = report.on,
  off = report.off,
}

---------------------------------------------------------------- loop

-- Running the loop from inside a callback (listener, hook, timer) raises:
-- the callback's caller still holds a connection and the read buffers.
local task = require "luap2p.task"

-- Inside a task the loop is already running: say what to use instead.
local function not_in_task(who)
  if task.running() then
    error(who .. ": cannot run the loop inside a task (it runs on the " ..
      "loop); wait with p2p.sleep, node:wait_for or conn:receive", 3)
  end
end

_M.run = function()
  not_in_task("p2p.run")
  return core.run("default", "p2p.run")
end
_M.run_once = function()
  not_in_task("p2p.run_once")
  return core.run("once", "p2p.run_once")
end
_M.run_nowait = function()
  not_in_task("p2p.run_nowait")
  return core.run("nowait", "p2p.run_nowait")
end
_M.stop = core.stop
_M.backend_fd = core.backend_fd
_M.backend_timeout = core.backend_timeout
_M.now = core.now
_M.after = function(seconds, fn)
  check.seconds("p2p.after", "seconds", seconds)
  check.func("p2p.after", "fn", fn)
  return core.timer(seconds, nil, fn)
end
_M.every = function(seconds, fn)
  -- A period of 0 would be a one-shot timer (libuv's repeat 0).
  if type(seconds) ~= "number" or not (seconds > 0 and seconds <= 1e13) then
    check.fail("p2p.every", "seconds", "a period in seconds > 0 and <= 1e13",
      seconds)
  end
  check.func("p2p.every", "fn", fn)
  return core.timer(seconds, seconds, fn)
end

-- Run the loop until pred() is true or `timeout` seconds pass.
-- Returns true, or nil, "ETIMEDOUT: ...", "ETIMEDOUT".
function _M.wait(pred, timeout)
  not_in_task("p2p.wait")
  check.func("p2p.wait", "pred", pred)
  check.seconds("p2p.wait", "timeout", timeout, 1, true)
  if core.in_callback() then core.run("once", "p2p.wait") end -- raises
  local deadline = core.now() + (timeout or 10)
  local expired = false
  local t = core.timer(timeout or 10, nil, function() expired = true end)
  while not pred() do
    if expired or core.now() > deadline then
      t:stop()
      return nil, "ETIMEDOUT: condition not met in time", "ETIMEDOUT"
    end
    core.run("once", "p2p.wait")
  end
  t:stop()
  return true
end

---------------------------------------------------------------- tasks

-- p2p.spawn(fn, ...) -> Task: run fn(...) as a task on the loop (see
-- luap2p.task); node:spawn(fn, ...) makes one that belongs to a node.
_M.spawn = function(fn, ...)
  check.func("p2p.spawn", "fn", fn)
  return task.spawn(nil, fn, ...)
end
_M.sleep = task.sleep
_M.running = task.running

return _M
