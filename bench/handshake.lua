-- Handshake benchmark: full connections per second (TCP connect + Octez
-- handshake + Ack both ways), pow_bits 0, a fresh client identity (so a
-- fresh node) per connection, both ends on this machine.
--
--   lua5.4 bench/handshake.lua server secs=S defaults=0|1 [workers=N]
--       prints PORT; counts "connected" events for S seconds from the
--       first one; defaults=1 runs the default policy stack (the Lua hooks
--       of a stock node), defaults=0 none (default_policies = false);
--       workers: crypto_workers of the server (default: one per CPU)
--   lua5.4 bench/handshake.lua client port=P secs=S conc=K [workers=N]
--       keeps K connections in the handshake at once; each client node is
--       closed as soon as it is connected, then a new one starts;
--       workers: crypto_workers of the client nodes (default: one per CPU)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" ..
  package.path
local B = require "common"
local core = B.core

local role = arg[1]
local a = B.args({ table.unpack(arg, 2) })
local secs = a.secs or 2

B.hello()

if role == "server" then
  local node, err = B.node({ listen = "127.0.0.1:0",
                             default_policies = a.defaults == 1,
                             crypto_workers = a.workers })
  if not node then B.fail(err) end
  io.stdout:write("PORT ", node.port, "\n")
  io.stdout:flush()
  local done, failed = 0, 0
  node:on("connected", function() done = done + 1 end)
  node:on("auth_failed", function() failed = failed + 1 end)
  node:on("refused", function() failed = failed + 1 end)
  if not B.wait(function() return done > 0 end, 20) then
    B.fail("no connection within 20 s")
  end
  -- Calls from the core into Lua (hooks and events), per handshake.
  local function lua_calls()
    local c = node._c:calls()
    local n = c.accept + c.authenticated + c.message
    for _, k in pairs(c.events) do n = n + k end
    return n
  end
  local t0, d0, f0, c0 = core.now(), done, failed, B.cpu_seconds()
  local l0 = lua_calls()
  local t
  B.wait(function()
    t = core.now()
    return t - t0 >= secs
  end, secs + 5)
  B.out("hs_per_s", (done - d0) / (t - t0))
  -- The server's share of the machine: its CPU time per handshake.
  B.out("cpu_per_hs", (B.cpu_seconds() - c0) / math.max(done - d0, 1))
  B.out("lua_calls_per_hs", (lua_calls() - l0) / math.max(done - d0, 1))
  B.out("failed", failed - f0)
  -- Every handshake of this process (for per-handshake syscall counts of
  -- a tracer attached after PORT).
  B.out("hs_total", done)
  B.out("policies", #node:policies())
  node:close()
  for _ = 1, 10 do core.run("nowait") end
  os.exit(0)
elseif role == "client" then
  local addr = "127.0.0.1:" .. a.port
  local conc = a.conc or 16
  local deadline = core.now() + secs
  local done, failed, live, streak = 0, 0, 0, 0
  -- Nodes are collected (and closed) when unreferenced: hold the live ones.
  local nodes = {}
  local start
  -- One client node per connection: its identity is fresh. The node closes
  -- itself once connected (or failed) and a new one takes its place.
  local function finish(node, ok)
    if node._bench_done then return end
    node._bench_done = true
    if ok then
      done, streak = done + 1, 0
    else
      failed, streak = failed + 1, streak + 1
    end
    live = live - 1
    node:close()
    nodes[node] = nil
  end
  function start()
    -- client nodes never accept: the smallest ban and admission tables
    local node, err = B.node({ ban_table_size = 1,
                               admission_table_size = 2,
                               crypto_workers = a.workers })
    if not node then B.fail(err) end
    live = live + 1
    nodes[node] = true
    node:on("connected", function() finish(node, true) end)
    node:on("disconnected", function() finish(node, false) end)
    local ok = node:connect(addr)
    if not ok then finish(node, false) end
  end
  local stop = false
  local c0 = B.cpu_seconds()
  while not stop do
    while live < conc and streak <= 100 do start() end
    core.run("once")
    -- The server is gone (it closes when it has measured).
    stop = core.now() > deadline or streak > 100
  end
  B.out("client_done", done)
  B.out("client_failed", failed)
  -- The client's share: CPU per handshake, a fresh identity and node
  -- included.
  B.out("client_cpu_per_hs", (B.cpu_seconds() - c0) / math.max(done, 1))
  os.exit(0)
else
  B.fail("usage: handshake.lua server|client key=value...")
end
