-- Two nodes in one process: b dials a, they authenticate (the Octez
-- handshake), exchange one message each way and close. Written as tasks:
-- each side reads top to bottom; waits (dial, receive) let the loop run.
--   scripts/luap2p run examples/hello.lua     (from a built checkout)
--   lua5.4 examples/hello.lua                 (luap2p installed)
local p2p = require "luap2p"

local function new_node()
  return assert(p2p.new{
    identity = p2p.core.identity_generate(), -- fresh keys, no proof of work
    pow_bits = 0,                            -- accept peers without it too
    listen = "127.0.0.1:0",                  -- any free port
  })
end

p2p.spawn(function()
  local a <close> = new_node() -- closed when this task ends, even on error
  local b <close> = new_node()

  a:spawn(function() -- a task of a: answer the first peer that connects
    local conn = a:wait_for("connected").conn
    local msg = assert(conn:receive(5))
    print("a got: " .. msg .. " from " .. conn.peer_id)
    conn:send("pong")
  end)

  local conn = assert(b:dial("127.0.0.1:" .. a.port))
  print("b connected to " .. conn.peer_id .. " at " .. conn.point)
  conn:send("ping")
  print("b got: " .. assert(conn:receive(5)))
end)
p2p.run() -- until the nodes are closed and nothing is left to do
