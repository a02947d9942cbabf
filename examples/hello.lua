-- Two luap2p nodes in one process: b dials a, they authenticate (Octez
-- handshake), exchange one message each way, and close.
-- Run from a built checkout: lua5.4 examples/hello.lua
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local p2p = require "luap2p"

local function new_node()
  return assert(p2p.new{
    identity = p2p.core.identity_generate(), -- fresh keys, no proof of work
    pow_bits = 0,                            -- accept peers without it too
    listen = "127.0.0.1:0",                  -- any free port
  })
end

local a, b = new_node(), new_node()
local done = 0

a:on("message", function(conn, payload)
  print("a got: " .. payload .. " from " .. conn.peer_id)
  conn:send("pong")
end)
b:on("message", function(conn, payload)
  print("b got: " .. payload)
  done = done + 1
end)
b:on("connected", function(conn)
  print("b connected to " .. conn.peer_id .. " at " .. conn.point)
  conn:send("ping")
end)

assert(b:connect("127.0.0.1:" .. a.port))
assert(p2p.wait(function() return done == 1 end, 5))
a:close()
b:close()
