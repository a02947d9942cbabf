-- Round trip under a flood: an honest peer's ping round trip to a node
-- while another peer floods it, in three processes.
--
--   lua5.4 bench/flood.lua victim secs=S        prints PORT; echoes "rtt:"
--   lua5.4 bench/flood.lua flood port=P kind=bootstrap|app|swap secs=S
--   lua5.4 bench/flood.lua ping port=P secs=S [delay=D]
--
-- The victim runs with its default limits but without the default
-- policies, so the flooder is only throttled (the acl would greylist and
-- cut it within a fraction of a second, ending the flood): this measures
-- the harder case, a flood that lasts. The flooder keeps its send queue
-- full of Bootstrap, Swap_request or 1-byte application messages. The
-- pinger waits `delay` s, then sends "rtt:<i>" every 10 ms for S s and
-- reports the median and p99 round trip (ms).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" ..
  package.path
local B = require "common"
local core = B.core

local role = arg[1]
local a = B.args({ table.unpack(arg, 2) })
local secs = a.secs or 2

B.hello()

local function connect(node)
  local ok, cerr = node:connect("127.0.0.1:" .. a.port)
  if not ok then B.fail(cerr) end
  if not B.wait(function() return next(node.conns) ~= nil end, 10) then
    B.fail("not connected")
  end
  local _, conn = next(node.conns)
  return conn
end

if role == "victim" then
  -- The benchmark node's generous limits, but the default per-peer rate
  -- limits and fairness caps (from the config schema): those are what is
  -- measured.
  local default = {}
  for _, row in ipairs(require("luap2p.config").SCHEMA) do
    default[row[1]] = row[3]
  end
  local node, err = B.node({ listen = "127.0.0.1:0",
    app_message_rate = default.app_message_rate,
    app_message_burst = default.app_message_burst })
  if not node then B.fail(err) end
  local dispatched = 0
  node:on("message", function(ev)
    dispatched = dispatched + 1
    if ev.payload:sub(1, 4) == "rtt:" then ev.conn:send(ev.payload) end
  end)
  io.stdout:write("PORT ", node.port, "\n")
  io.stdout:flush()
  B.wait(function() return false end, secs)
  local s = node:stat()
  B.out("throttled", s.throttled)
  B.out("yields", s.yields)
  B.out("msgs_in", s.msgs_in)
  B.out("dispatched", dispatched)
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
elseif role == "flood" then
  local node, err = B.node({})
  if not node then B.fail(err) end
  local conn = connect(node)
  local kind = a.kind or "bootstrap"
  local msg = kind == "swap" and { type = "swap_request",
    point = "127.0.0.9:9732", peer_id = string.rep("\7", 16) } or
    { type = "bootstrap" }
  local deadline = core.now() + secs
  local sent = 0
  while not conn.closed and core.now() < deadline do
    local ok, _, code
    if kind == "app" then
      ok, _, code = conn:send("x")
    else
      ok, _, code = conn:send_msg(msg)
    end
    if ok then
      sent = sent + 1
    elseif code == "EQUEUEFULL" then
      core.run("once")
    else
      break
    end
  end
  B.out("sent", sent)
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
elseif role == "ping" then
  local node, err = B.node({})
  if not node then B.fail(err) end
  local conn = connect(node)
  local sent, rtts = {}, {}
  conn:on("message", function(ev)
    local i = tonumber(ev.payload:match("^rtt:(%d+)$"))
    if i and sent[i] then
      rtts[#rtts + 1] = core.now() - sent[i]
      sent[i] = nil
    end
  end)
  B.wait(function() return false end, a.delay or 0)
  local n = 0
  local t = core.timer(0.01, 0.01, function()
    n = n + 1
    sent[n] = core.now()
    conn:send("rtt:" .. n)
  end)
  B.wait(function() return false end, secs)
  t:stop()
  B.wait(function() return next(sent) == nil end, 2)
  table.sort(rtts)
  local lost = 0
  for _ in pairs(sent) do lost = lost + 1 end
  if #rtts == 0 then B.fail("no round trip") end
  B.out("rtt_med_ms", rtts[(#rtts + 1) // 2] * 1e3)
  B.out("rtt_p99_ms", rtts[math.max(1, math.ceil(#rtts * 0.99))] * 1e3)
  B.out("pings", #rtts)
  B.out("lost", lost)
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
else
  B.fail("usage: flood.lua victim|flood|ping key=value...")
end
