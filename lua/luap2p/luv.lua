-- luap2p.luv: drive luap2p's loop from a luv program.
--
--   local uv = require "luv"
--   local bridge = require("luap2p.luv").attach(uv)
--   ... nodes, connections, timers, tasks: from anywhere, at any time ...
--   uv.run()
--   bridge:close()   -- then uv.run() can return
--
-- luap2p runs its own libuv loop; a host loop embeds it the way libuv
-- documents, and the bridge re-arms itself on every luv iteration, so
-- nothing needs to be called after creating nodes, timers or tasks:
--   * a poll handle on p2p.backend_fd() wakes luv when luap2p has I/O;
--   * a prepare handle (before luv blocks) runs p2p.run_nowait(), which
--     also brings luap2p's clock up to date, then reads
--     p2p.backend_timeout() and arms a luv timer for luap2p's next
--     deadline, or an idle handle when luap2p has work now (timeout 0: luv
--     must not block at all; a 0 ms luv timer re-armed from its own
--     callback would run again before luv ever polls);
--   * a check handle (after luv polled) runs p2p.run_nowait() again, so
--     I/O that woke luv is handled in the same iteration.
-- Whatever luv callbacks did meanwhile (a luap2p timer created in a luv
-- timer, a dial from a luv read callback) is seen by the next prepare.
-- The prepare and check handles do not keep luv alive; the poll handle
-- does until bridge:close().
local p2p = require "luap2p"

local ipairs, setmetatable = ipairs, setmetatable

local _M = {}
local Bridge = {}
Bridge.__index = Bridge

local function noop() end

function _M.attach(uv)
  local b = setmetatable({ runs = 0, poll = uv.new_poll(p2p.backend_fd()),
                           timer = uv.new_timer(), idle = uv.new_idle(),
                           prepare = uv.new_prepare(),
                           check = uv.new_check() }, Bridge)
  b.armed = nil -- ms the timer is armed for (nil: stopped)
  b.poll:start("r", noop)
  b.prepare:start(function()
    b:_run()
    b:_arm()
  end)
  b.check:start(function() b:_run() end)
  b.prepare:unref()
  b.check:unref()
  return b
end

-- Before luv blocks: wake up for luap2p's next deadline, or do not block.
function Bridge:_arm()
  local ms = p2p.backend_timeout()
  if ms == 0 then
    if not self.idling then
      self.idle:start(noop)
      self.idling = true
    end
  elseif self.idling then
    self.idle:stop()
    self.idling = false
  end
  if ms > 0 then
    -- Re-armed every iteration: luv's timer then fires at now + ms.
    self.timer:start(ms, 0, noop)
    self.armed = ms
  elseif self.armed then
    self.timer:stop()
    self.armed = nil
  end
end

-- After luv polled: let luap2p run what is due, without blocking.
function Bridge:_run()
  self.runs = self.runs + 1
  p2p.run_nowait()
end

-- Kept for programs written for the earlier bridge: runs luap2p once and
-- re-arms. Never needed.
function Bridge:pump()
  self:_run()
  self:_arm()
end

function Bridge:stop()
  self.poll:stop()
  self.prepare:stop()
  self.check:stop()
  self.timer:stop()
  self.idle:stop()
  self.idling, self.armed = false, nil
end

-- Close the bridge's luv handles (luap2p's loop is left as it is).
function Bridge:close()
  for _, handle in ipairs{ self.poll, self.timer, self.idle, self.prepare,
                           self.check } do
    if not handle:is_closing() then handle:close() end
  end
end

return _M
