-- check-leaks.lua: connect/disconnect cycles between two nodes, run by
-- `make check-leaks` on the ASan build (LeakSanitizer reports at exit).
--
--   lua5.4 scripts/check-leaks.lua [CYCLES=1000]
--
-- Every cycle: b dials a, both see "connected", one message goes each way,
-- then one side closes (alternating), and both see "disconnected". Every
-- tenth cycle the dial fails the handshake instead (wrong expected peer
-- id), so the failure paths are cycled too. Checks, each fatal:
--   - every cycle completes (events counted, nothing left pending);
--   - Lua memory after the cycles is within 1 MiB of the memory after a
--     warm-up (LeakSanitizer only sees unreachable memory; this catches
--     memory kept reachable and growing, on the Lua side);
--   - on the plain build, VmRSS after the cycles is within RSS_BOUND_KB of
--     VmRSS after the warm-up (C side, reachable or not); under ASan
--     (LUAP2P_SANITIZE set) the quarantine and shadow memory make RSS
--     meaningless, so it is printed only and LeakSanitizer judges;
--   - at exit, with the nodes closed and the loop drained, LeakSanitizer
--     finds nothing (the process exit code says so).
-- Then the same with tasks (see below). Prints a summary line for each.
-- Exit 0 when clean.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

local p2p = require "luap2p"
local core = p2p.core

local CYCLES = tonumber(arg[1]) or 1000
local WARMUP = 50
local RSS_BOUND_KB = 512 -- the plain build stays flat: 0 KiB measured
local SANITIZED = os.getenv("LUAP2P_SANITIZE") ~= nil

local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function fail(fmt, ...)
  io.stderr:write("check-leaks: FAILED: ", string.format(fmt, ...), "\n")
  os.exit(1, true)
end

local function new_node()
  return assert(p2p.new{ identity = core.identity_generate(), pow_bits = 0,
                         listen = "127.0.0.1:0", default_policies = false,
                         min_connections = 0, maintenance_interval = 3600,
                         app_messages = "raw" })
end

-- c only makes the failing dials: a node remembers the expected peer id
-- of a point, so b's dials must not carry a wrong one.
local a, b, c = new_node(), new_node(), new_node()
local a_addr = "127.0.0.1:" .. a.port
local count = { connected = 0, disconnected = 0, got_a = 0, got_b = 0,
                auth_failed = 0 }
a:on("connected", function() count.connected = count.connected + 1 end)
a:on("disconnected", function()
  count.disconnected = count.disconnected + 1
end)
-- A refused handshake ends in "disconnected" before "connected" (no
-- connection object): count those on c by their code.
c:on("*", function(ev)
  if ev.type == "disconnected" and ev.code == "EUNEXPECTED" then
    count.auth_failed = count.auth_failed + 1
  end
end)
a:on("message", function(ev)
  count.got_a = count.got_a + 1
  ev.conn:send(ev.payload)
end)
b:on("message", function() count.got_b = count.got_b + 1 end)
local wrong_id = core.identity_generate():peer_id()

local function wait(pred, what, i)
  if not p2p.wait(pred, 5) then fail("cycle %d: timed out: %s", i, what) end
end

local function n(node)
  local k = 0
  for _ in pairs(node.conns) do k = k + 1 end
  return k
end

local function idle(node)
  local s = node:stat()
  return s.pending_incoming == 0 and s.pending_outgoing == 0 and
         s.active == 0
end

local function cycle(i)
  if i % 10 == 0 then
    local failed = count.auth_failed
    assert(c:connect(a_addr, { expected_peer_id = wrong_id }))
    wait(function() return count.auth_failed > failed and idle(a) and
                           idle(c) end, "failed handshake", i)
    return
  end
  local c0, d0, g0 = count.connected, count.disconnected, count.got_b
  assert(b:connect(a_addr))
  wait(function() return count.connected > c0 and n(b) == 1 end,
    "connected", i)
  assert(b:connections()[1]:send("ping " .. i))
  wait(function() return count.got_b > g0 end, "echo", i)
  local closer = (i % 2 == 0) and a or b
  closer:connections()[1]:close("cycle done")
  wait(function() return count.disconnected > d0 and n(a) == 0 and
                         n(b) == 0 end, "disconnected", i)
end

local lua0, rss0
local t0 = core.now()
for i = 1, CYCLES do
  cycle(i)
  if i == WARMUP then
    collectgarbage()
    collectgarbage()
    lua0, rss0 = collectgarbage("count"), rss_kb()
  end
end
-- Let the last closes finish their handles.
p2p.wait(function() return idle(a) and idle(b) end, 5)
for _ = 1, 20 do p2p.run_nowait() end
collectgarbage()
collectgarbage()
local lua1, rss1 = collectgarbage("count"), rss_kb()
if not (idle(a) and idle(b)) then fail("connections left after the cycles") end
local expect_conn = CYCLES - CYCLES // 10
if count.connected ~= expect_conn or count.disconnected < expect_conn then
  fail("connected %d, disconnected %d, expected %d each", count.connected,
    count.disconnected, expect_conn)
end
if lua0 and lua1 - lua0 > 1024 then
  fail("Lua memory grew by %.0f KiB over %d cycles", lua1 - lua0,
    CYCLES - WARMUP)
end
if rss0 and not SANITIZED and (rss1 - rss0) > RSS_BOUND_KB then
  fail("VmRSS grew by %d KiB over %d cycles (bound %d KiB)", rss1 - rss0,
    CYCLES - WARMUP, RSS_BOUND_KB)
end

---------------------------------------------------------------- tasks

-- The same with tasks, CYCLES / 4 times: a task of e dials a and makes a
-- request (a echoes), a task blocked on receive and one on wait_for are
-- canceled, the connection closes; every tenth cycle a node is closed
-- under its own waiting tasks and another task waiting on it. Nothing may
-- stay behind: no task, waiter or connection, and the heap stays flat.
local task = require "luap2p.task"
local TASK_CYCLES = math.max(100, CYCLES // 4)
local e = new_node()

local function task_cycle(i)
  local ok
  local t = e:spawn(function()
    local conn = assert(e:dial(a_addr, { timeout = 5 }))
    assert(conn:request("ping " .. i, nil, 5) == "ping " .. i)
    local blocked = e:spawn(function() conn:receive() end)
    local waiter = e:spawn(function() e:wait_for("banned") end)
    p2p.sleep(0) -- both start and wait
    assert(blocked.status == "waiting" and waiter.status == "waiting")
    blocked:cancel()
    waiter:cancel()
    conn:close("cycle done")
    ok = true
  end)
  wait(function() return t:done() end, "task cycle", i)
  if not ok then fail("task cycle %d: %s", i, tostring(select(2,
    t:result()))) end
  if i % 10 == 0 then
    local f = new_node()
    f:spawn(function() f:wait_for("connected") end)
    f:spawn(function() p2p.sleep(60) end)
    local other = p2p.spawn(function() return f:wait_for("banned") end)
    for _ = 1, 3 do p2p.run_nowait() end
    f:close()
    wait(function() return other:done() end, "a closed node's waiters", i)
  end
  wait(function() return idle(a) and idle(e) end, "task cycle closed", i)
end

local tlua0, trss0
local t1 = core.now()
for i = 1, TASK_CYCLES do
  task_cycle(i)
  if i == WARMUP then
    collectgarbage()
    collectgarbage()
    tlua0, trss0 = collectgarbage("count"), rss_kb()
  end
end
for _ = 1, 20 do p2p.run_nowait() end
collectgarbage()
collectgarbage()
local tlua1, trss1 = collectgarbage("count"), rss_kb()
if task.count() ~= 0 then fail("%d tasks left", task.count()) end
if next(e._waits) or next(e._tasks) or next(a._waits) then
  fail("waiters or tasks left on the nodes")
end
if tlua0 and tlua1 - tlua0 > 1024 then
  fail("Lua memory grew by %.0f KiB over %d task cycles", tlua1 - tlua0,
    TASK_CYCLES - WARMUP)
end
if trss0 and not SANITIZED and (trss1 - trss0) > RSS_BOUND_KB then
  fail("VmRSS grew by %d KiB over %d task cycles (bound %d KiB)",
    trss1 - trss0, TASK_CYCLES - WARMUP, RSS_BOUND_KB)
end

a:close()
b:close()
c:close()
e:close()
-- Drain: every handle's close callback runs and frees its memory.
for _ = 1, 50 do p2p.run_nowait() end
print(string.format("check-leaks (%s): %d cycles (%d handshakes failed " ..
  "on purpose) in %.1f s; after warm-up: Lua heap %+.0f KiB, VmRSS %+d KiB%s",
  SANITIZED and "ASan" or "plain", CYCLES, count.auth_failed,
  core.now() - t0, (lua1 - (lua0 or lua1)), rss1 - (rss0 or rss1),
  SANITIZED and "; LeakSanitizer reports at exit" or ""))
print(string.format("check-leaks (%s): %d task cycles in %.1f s, 0 tasks " ..
  "left; after warm-up: Lua heap %+.0f KiB, VmRSS %+d KiB",
  SANITIZED and "ASan" or "plain", TASK_CYCLES, core.now() - t1,
  (tlua1 - (tlua0 or tlua1)), trss1 - (trss0 or trss1)))
os.exit(0, true) -- close the state: every __gc runs before LSan looks
