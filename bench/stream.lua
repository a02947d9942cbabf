-- Stream benchmark: one luap2p connection between two processes, the
-- sender keeping its queue full of `size`-byte application messages.
--
--   lua5.4 bench/stream.lua recv secs=S            prints PORT, then results
--   lua5.4 bench/stream.lua send port=P size=N secs=S
--
-- The receiver measures from its first message for S seconds: messages/s
-- and payload bytes/s (payload only: the envelope, chunk headers and tags
-- are not counted). It then closes, which ends the sender.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" ..
  package.path
local B = require "common"
local core = B.core

local role = arg[1]
local a = B.args({ table.unpack(arg, 2) })
local secs = a.secs or 2

B.hello()

if role == "recv" then
  local node, err = B.node({ listen = "127.0.0.1:0" })
  if not node then B.fail(err) end
  io.stdout:write("PORT ", node.port, "\n")
  io.stdout:flush()
  local msgs, bytes, t0 = 0, 0, nil
  node:on("message", function(ev)
    msgs = msgs + 1
    bytes = bytes + #ev.payload
  end)
  -- The first message starts the clock; count from there.
  if not B.wait(function() return msgs > 0 end, 20) then
    B.fail("no message within 20 s")
  end
  t0 = core.now()
  local m0, b0, c0, z0 = msgs, bytes, B.cpu_seconds(), B.sleeps()
  local t
  B.wait(function()
    t = core.now()
    return t - t0 >= secs
  end, secs + 5)
  B.out("msgs_per_s", (msgs - m0) / (t - t0))
  B.out("bytes_per_s", (bytes - b0) / (t - t0))
  -- CPU cost, robust to other load on the machine: seconds per GB.
  B.out("cpu_s_per_gb", (B.cpu_seconds() - c0) / (bytes - b0) * 1e9)
  B.out("cpu_s_per_mmsg", (B.cpu_seconds() - c0) / (msgs - m0) * 1e6)
  B.out("sleeps_per_mb", (B.sleeps() - z0) / (bytes - b0) * 1e6)
  B.out("rss_kib", B.rss_kib())
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
elseif role == "send" then
  local node, err = B.node({})
  if not node then B.fail(err) end
  local addr = "127.0.0.1:" .. a.port
  local ok, cerr = node:connect(addr)
  if not ok then B.fail(cerr) end
  if not B.wait(function() return next(node.conns) ~= nil end, 10) then
    B.fail("not connected")
  end
  local _, conn = next(node.conns)
  local payload = string.rep("x", a.size or 65536)
  local deadline = core.now() + secs + 10
  local sent, full = 0, 0
  local c0, z0 = B.cpu_seconds(), B.sleeps()
  -- Queue until the queue is full, then let the loop write.
  while not conn.closed do
    local oks, _, code = conn:send(payload)
    if oks then
      sent = sent + 1
    elseif code == "EQUEUEFULL" then
      full = full + 1
      core.run("once")
      if core.now() > deadline then break end
    else
      break
    end
  end
  B.out("sent", sent)
  B.out("cpu_s_per_gb", (B.cpu_seconds() - c0) / (sent * #payload) * 1e9)
  B.out("cpu_s_per_mmsg", (B.cpu_seconds() - c0) / sent * 1e6)
  B.out("sleeps_per_mb", (B.sleeps() - z0) / (sent * #payload) * 1e6)
  B.out("queue_full", full)
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
else
  B.fail("usage: stream.lua recv|send key=value...")
end
