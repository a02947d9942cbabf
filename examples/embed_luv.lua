-- luap2p inside a luv program: one luv loop drives everything, through
-- the bridge of luap2p.luv (a poll on p2p.backend_fd(), p2p.run_nowait()
-- before and after each luv poll, a timer for p2p.backend_timeout()),
-- which re-arms itself on every luv iteration.
--
--   lua5.4 examples/embed_luv.lua      (from a built checkout; needs luv:
--                                      apt install lua-luv)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local uv = require "luv"
local p2p = require "luap2p"

local bridge = require("luap2p.luv").attach(uv)

-- Two luap2p nodes exchanging a message...
local function new_node()
  return assert(p2p.new{ identity = p2p.core.identity_generate(),
                         pow_bits = 0, listen = "127.0.0.1:0" })
end
local a, b = new_node(), new_node()
local ticks, done = 0, false

a:on("message", function(ev)
  print("a got " .. ev.payload .. " after " .. ticks .. " luv ticks")
  ev.conn:send("pong")
end)
b:on("connected", function(ev)
  -- A luap2p timer: it fires through the bridge's timeout path.
  p2p.after(0.1, function() ev.conn:send("ping") end)
end)

-- ...and the host program's own luv work, running alongside.
local tick = uv.new_timer()
tick:start(10, 10, function() ticks = ticks + 1 end)

local function finish()
  a:close()
  b:close()
  tick:close()
  -- Let luap2p write the Disconnects, then leave both loops.
  local t = uv.new_timer()
  t:start(50, 0, function()
    p2p.run_nowait()
    t:close()
    bridge:close()
  end)
end

b:on("message", function(ev)
  print("b got " .. ev.payload)
  done = true
  finish()
end)

assert(b:connect("127.0.0.1:" .. a.port)) -- the bridge sees it by itself
-- A guard so the example never hangs.
local guard = uv.new_timer()
guard:start(10000, 0, function()
  print("timed out")
  os.exit(1)
end)
guard:unref()

uv.run()
print(done and "done: luap2p ran inside the luv loop" or "not done")
os.exit(done and 0 or 1)
