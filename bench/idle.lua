-- Idle connections: resident memory per authenticated idle connection, and
-- policy reload with those connections live.
--
--   lua5.4 bench/idle.lua server n=N reloads=R policy=PATH
--       a stock node (default policy stack) plus the file policy PATH;
--       prints PORT, waits for N connections, measures VmRSS and Lua heap
--       deltas since before the first connection, then calls node:reload()
--       R times (each timed), then counts the connections left
--   lua5.4 bench/idle.lua client port=P n=N conc=K
--       N client nodes (one identity, so one node, per connection: the
--       server refuses a second connection from a peer id), created first
--       and measured, then connected K at a time and measured again
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" ..
  package.path
local B = require "common"
local core = B.core

local role = arg[1]
local a = B.args({ table.unpack(arg, 2) })
local N = a.n or 1000

B.hello()

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
  return B.rss_kib(), collectgarbage("count")
end

local function median(t)
  table.sort(t)
  local n = #t
  if n == 0 then return 0 end
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

if role == "server" then
  local node, err = B.node({ listen = "127.0.0.1:0", default_policies = true,
                             policies = { a.policy } })
  if not node then B.fail(err) end
  local dropped = 0
  node:on("disconnected", function() dropped = dropped + 1 end)
  B.spin(0.05)
  local rss0, lua0 = settle()
  io.stdout:write("PORT ", node.port, "\n")
  io.stdout:flush()
  if not B.wait(function() return B.count(node.conns) >= N end, 90) then
    B.fail("only " .. B.count(node.conns) .. " of " .. N .. " connected")
  end
  B.spin(0.3)
  local rss1, lua1 = settle()
  local conns = B.count(node.conns)
  B.out("conns", conns)
  B.out("rss_delta_kib", rss1 - rss0)
  B.out("bytes_per_conn", (rss1 - rss0) * 1024 / conns)
  B.out("lua_bytes_per_conn", (lua1 - lua0) * 1024 / conns)

  -- Reload with every connection live; the loop runs between reloads so
  -- that anything a reload breaks shows up as a disconnection.
  local times = {}
  local before = dropped
  for _ = 1, a.reloads or 20 do
    local t0 = core.now()
    local ok, rerr = node:reload()
    local dt = core.now() - t0
    if not ok then B.fail("reload: " .. tostring(rerr)) end
    times[#times + 1] = dt
    B.spin(0.02)
  end
  B.spin(0.3)
  B.out("reload_ms", median(times) * 1e3)
  B.out("reload_max_ms", math.max(table.unpack(times)) * 1e3)
  B.out("reload_dropped", (dropped - before) + (conns - B.count(node.conns)))
  -- Baseline: reading, compiling and validating the same files (every
  -- file policy of the stack: reload() reloads them all), which any
  -- reload must do.
  local policy = require "luap2p.policy"
  local paths = {}
  for _, entry in ipairs(node._stack) do
    if entry.path then paths[#paths + 1] = entry.path end
  end
  B.out("reload_files", #paths)
  local lt = {}
  for _ = 1, a.reloads or 20 do
    local t0 = core.now()
    for _, path in ipairs(paths) do assert(policy.load_file(path)) end
    lt[#lt + 1] = core.now() - t0
  end
  B.out("load_ms", median(lt) * 1e3)
  node:close()
  for _ = 1, 20 do core.run("nowait") end
  os.exit(0)
elseif role == "client" then
  local addr = "127.0.0.1:" .. a.port
  local conc = a.conc or 200
  local rss0, lua0 = settle()
  local nodes = {}
  for i = 1, N do
    -- client nodes never accept: the smallest ban and admission tables
    local node, err = B.node({ ban_table_size = 1,
                               admission_table_size = 2 })
    if not node then B.fail(err) end
    nodes[i] = node
  end
  local rss1, lua1 = settle()
  B.out("node_bytes", (rss1 - rss0) * 1024 / N)
  B.out("node_lua_bytes", (lua1 - lua0) * 1024 / N)
  local connected, failed, inflight, nexti = 0, 0, 0, 1
  local down = 0
  for _, node in ipairs(nodes) do
    node:on("connected", function()
      connected = connected + 1
      inflight = inflight - 1
    end)
    node:on("disconnected", function(ev)
      -- an established connection going down, or a dial failing
      if not ev.conn then
        failed = failed + 1
        inflight = inflight - 1
      else
        down = down + 1
      end
    end)
  end
  local deadline = core.now() + 90
  while connected + failed < N and core.now() < deadline do
    while inflight < conc and nexti <= N do
      local ok = nodes[nexti]:connect(addr)
      nexti = nexti + 1
      if ok then inflight = inflight + 1 else failed = failed + 1 end
    end
    core.run("once")
  end
  B.spin(0.3)
  local rss2, lua2 = settle()
  B.out("connected", connected)
  B.out("failed", failed)
  B.out("client_bytes_per_conn", (rss2 - rss1) * 1024 / math.max(connected, 1))
  B.out("client_lua_bytes_per_conn",
    (lua2 - lua1) * 1024 / math.max(connected, 1))
  -- Stay until the server has measured and closed.
  B.wait(function() return down >= connected end, 120)
  os.exit(0)
else
  B.fail("usage: idle.lua server|client key=value...")
end
