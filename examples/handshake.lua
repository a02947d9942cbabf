-- The Octez handshake as a pure state machine: two ends wired back to back
-- in memory, no sockets. Each side feeds what the other wrote, acks on
-- "metadata", and once "acked" the channel seals and opens chunks.
-- Run from a built checkout: lua5.4 examples/handshake.lua
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local core = require "luap2p.core"

local function side(incoming)
  return core.handshake{ identity = core.identity_generate(), pow_bits = 0,
                         incoming = incoming,
                         advertised_port = incoming and 9732 or 0 }
end

local a, b = side(false), side(true) -- a dials, b accepts
local to_a, to_b = "", ""

-- Feed one side everything it has received; return its last event.
local function pump(hs, input)
  local ev = "need_more"
  while #input > 0 do
    local e, used = assert(hs:feed(input))
    input = input:sub(used + 1)
    if e == "metadata" then assert(hs:ack()) end
    if e ~= "need_more" then ev = e end
    if used == 0 then break end
  end
  return ev, input
end

local ev_a, ev_b
repeat
  to_b, to_a = to_b .. a:output(), to_a .. b:output()
  ev_a, to_a = pump(a, to_a)
  ev_b, to_b = pump(b, to_b)
until ev_a == "acked" and ev_b == "acked"

print("a sees " .. a:remote().peer_id .. " on port " .. a:remote().port)
local ca, cb = a:channel(), b:channel()
local chunks = ca:seal(core.msg_encode{ type = "bootstrap" })
local plain = assert(cb:open(chunks))
print("b got " .. core.msg_decode(plain:sub(5)).type)
