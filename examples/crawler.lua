-- A crawler: probe a node (one handshake), ask it for more points
-- (Bootstrap -> Advertise), and walk every point learned, breadth first.
-- Nack points count too: a node that refuses us still says where to go.
--
--   lua5.4 examples/crawler.lua                  crawl a local demo network
--                                                started in this process
--   lua5.4 examples/crawler.lua HOST:PORT [MAX]  crawl from HOST:PORT
--
-- Run from a built checkout (or with luap2p installed). Real Octez nodes
-- check our proof of work: load a 26-bit identity there, e.g.
-- identity.load("identity.json") instead of identity.generate(0).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local identity = require "luap2p.identity"
local probe = require "luap2p.cli.probe"

local start, max = arg[1], tonumber(arg[2] or "") or 100
local net
if not start then
  -- No address: start the `luap2p demo` network here and let it settle.
  local p2p = require "luap2p"
  net = require("luap2p.cli.demo").network()
  p2p.wait(function() return false end, 3)
  start = net.by_name.seed.point
  print("crawling a local demo network from its seed " .. start)
end

local id = assert(identity.generate(0))
local queue, seen, head = { start }, { [start] = true }, 1
local answered, peers = 0, {}

local function learn(points)
  local new = 0
  for _, p in ipairs(points or {}) do
    if not seen[p] and not p:match(":0$") then
      seen[p] = true
      queue[#queue + 1] = p
      new = new + 1
    end
  end
  return new
end

while queue[head] and head <= max do
  local point = queue[head]
  head = head + 1
  local learned = 0
  local res = probe.probe(point, id, {
    timeout = 3, linger = 2,
    on_connected = function(conn)
      conn:send_msg({ type = "bootstrap" })
      return true -- keep it open for the Advertise
    end,
    on_advertise = function(conn, points)
      learned = learned + learn(points)
      conn:close("crawler done")
    end,
  })
  if res.ok then
    answered = answered + 1
    peers[res.peer_id] = true
    if res.answer == "nack" then learned = learned + learn(res.points) end
    print(string.format("%-22s %s %-4s %d new point(s)", point, res.peer_id,
      res.answer == "ack" and "Ack" or "Nack", learned))
  else
    print(string.format("%-22s no answer: %s", point, res.error))
  end
end

local npeers = 0
for _ in pairs(peers) do npeers = npeers + 1 end
print(string.format("crawled %d point(s): %d answered, %d distinct peer(s)",
  head - 1, answered, npeers))
if net then net.close() end
