-- luap2p.luv: drive luap2p's loop from a luv program.
--
--   local bridge = require("luap2p.luv").attach(require "luv")
--   ... create nodes, connect ...
--   bridge:pump()          -- after creating nodes, connections or timers
--   uv.run()
--   bridge:close()
--
-- luap2p runs its own libuv loop; a host loop embeds it the way libuv
-- documents: a poll handle on the loop's backend fd (readable when luap2p
-- has I/O pending) runs luap2p once without blocking, and a timer is kept
-- armed for luap2p's next deadline (p2p.backend_timeout()). A timeout of 0
-- (work already pending) goes through an idle handle: a 0 ms luv timer
-- re-armed from its own callback would run again before luv ever polls.
-- When luap2p's loop has nothing left, its timeout means nothing: the next
-- pump() (after new nodes, connections or timers) starts it again.
local p2p = require "luap2p"

local _M = {}
local Bridge = {}
Bridge.__index = Bridge

function _M.attach(uv)
  local b = setmetatable({ pumps = 0, poll = uv.new_poll(p2p.backend_fd()),
                           timer = uv.new_timer(), idle = uv.new_idle() },
                         Bridge)
  b._pump = function() b:pump() end
  b.poll:start("r", b._pump)
  return b
end

-- Run luap2p once without blocking and re-arm for its next deadline.
function Bridge:pump()
  self.pumps = self.pumps + 1
  local alive = p2p.run_nowait()
  self.timer:stop()
  self.idle:stop()
  if not alive then return end
  local ms = p2p.backend_timeout()
  if ms == 0 then
    self.idle:start(self._pump)
  elseif ms > 0 then
    self.timer:start(ms, 0, self._pump)
  end
end

function Bridge:stop() self.poll:stop() end

-- Close the bridge's luv handles (luap2p's loop is left as it is).
function Bridge:close()
  for _, handle in ipairs{ self.poll, self.timer, self.idle } do
    if not handle:is_closing() then handle:close() end
  end
end

return _M
