-- A luap2p node as its own process, for spec/netns_spec.lua (run inside a
-- network namespace with `ip netns exec`).
--
--   lua5.4 spec/netns_node.lua NAME LISTEN_HOST:PORT [PEER_HOST:PORT]
--
-- Dials PEER (if given) and keeps min_connections = 1 through the default
-- maintenance policy, with its reconnection delays shortened so that a
-- spec can watch a recovery (1 s after a disconnection instead of Octez's
-- 60 s; failed dials back off from 0.5 s). Every 100 ms it sends a
-- numbered message on each connection. Writes to stdout, one line each,
-- flushed:
--   EV <type> <code> <reason>       connected, disconnected, auth_failed,
--                                   connecting, nacked
--   STAT <conns> <sent> <recv> <gaps> <time since the last message>
-- every 200 ms. Exits on SIGTERM or SIGINT, or after 120 s.
local p2p = require "luap2p"
local core = p2p.core

local name, listen, peer = arg[1], arg[2], arg[3]
assert(name and listen, "usage: netns_node.lua NAME LISTEN [PEER]")

local node = assert(p2p.new{
  identity = core.identity_generate(), pow_bits = 0, listen = listen,
  peers = peer and { peer } or nil, min_connections = 1,
  expected_connections = 2, max_connections = 4, maintenance_interval = 1,
  connection_timeout = 3, authentication_timeout = 3,
  app_messages = "raw", -- numbered test payloads, not shell messages
  -- Links here are real: never greylist the other side for a broken
  -- connection (EOF/ETIMEDOUT are not greylisted anyway).
})

-- Test-only: compress Octez's reconnection timings in the maintenance
-- instance this node runs (policies are loaded apart from `require`).
for _, entry in ipairs(node._stack) do
  local r = entry.name == "maintenance" and entry.module._RECONNECT
  if r then
    r.disconnection, r.initial, r.factor = 1, 0.5, 1.0
  end
end

local function out(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local WATCH = { connected = true, disconnected = true, auth_failed = true,
                connecting = true, nacked = true }
node:on("*", function(ev)
  if WATCH[ev.type] then
    out("EV", ev.type, tostring(ev.code),
      (tostring(ev.reason):gsub("%s", "_")))
  end
end)

local sent, recv, gaps, last_recv = 0, 0, 0, core.now()
node:on("message", function(ev)
  local conn, payload = ev.conn, ev.payload
  local n = tonumber(payload:match("^n:(%d+)$"))
  if not n then return end
  local want = conn._nexpect or 1
  if n ~= want then gaps = gaps + 1 end
  conn._nexpect = n + 1
  recv = recv + 1
  last_recv = core.now()
end)

-- One sequence per connection, from 1: the receiver checks there is no
-- gap inside a connection (TCP's job, even over a lossy link).
p2p.every(0.1, function()
  for _, conn in pairs(node.conns) do
    conn._nseq = (conn._nseq or 0) + 1
    if conn:send("n:" .. conn._nseq) then sent = sent + 1 end
  end
end)
p2p.every(0.2, function()
  local n = 0
  for _ in pairs(node.conns) do n = n + 1 end
  out("STAT", n, sent, recv, gaps, string.format("%.2f", core.now() -
    last_recv))
end)

local function quit()
  out("EV", "exit", "nil", name)
  node:close()
  p2p.after(0.1, function() p2p.stop() end)
end
core.signal("SIGTERM", quit)
core.signal("SIGINT", quit)
p2p.after(120, quit)
out("EV", "started", "nil", name .. "@" .. listen)
p2p.run()
os.exit(0, true) -- close the state: under ASan, LeakSanitizer then judges
