-- Helpers shared by the benchmark child programs (bench/*.lua): results on
-- stdout as "RESULT key value" lines for bench/run.lua, process facts from
-- /proc, nodes on 127.0.0.1 with benchmark settings, and bounded loops.
local p2p = require "luap2p"
local core = p2p.core

local M = { p2p = p2p, core = core }

-- One line per fact, flushed at once: the parent reads them as they come.
function M.out(key, value)
  io.stdout:write("RESULT ", key, " ", tostring(value), "\n")
  io.stdout:flush()
end

function M.fail(msg)
  io.stdout:write("ERROR ", tostring(msg):gsub("\n", " "), "\n")
  io.stdout:flush()
  os.exit(1)
end

-- Our own pid (the parent kills children by it at the end).
function M.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return tonumber(pid)
end

local function self_status()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Resident set size of this process, KiB.
function M.rss_kib()
  return tonumber(self_status():match("VmRSS:%s*(%d+) kB"))
end

-- CPU seconds (user + system, every thread) this process has used:
-- os.clock() is clock(3), the process CPU-time clock, to the nanosecond.
function M.cpu_seconds()
  return os.clock()
end

-- Times this process has slept (voluntary context switches): on a
-- stream, how often one side waited for the other.
function M.sleeps()
  return tonumber(self_status():match("\nvoluntary_ctxt_switches:%s*(%d+)"))
end

function M.hello()
  io.stdout:write("PID ", M.pid(), "\n")
  io.stdout:flush()
end

-- A node for benchmarks: no proof of work, generous limits so that the
-- limits under test are the machine's, not the config's. Bounds min =
-- expected = 0 keep the maintenance policy (when the default stack runs)
-- between its thresholds: it neither dials nor prunes, so its dialing is
-- not what is measured.
function M.node(cfg)
  local c = { identity = core.identity_generate(), pow_bits = 0,
              min_connections = 0, expected_connections = 0,
              max_connections = 1000000,
              max_incoming_connections = 4096, backlog = 4096,
              maintenance_interval = 3600, default_policies = false,
              app_messages = "raw", -- payloads of any size and content
              app_message_rate = 0 } -- the machine's limit, not the config's
  for k, v in pairs(cfg or {}) do c[k] = v end
  return p2p.new(c)
end

function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Run the loop until pred() holds or `secs` pass; a repeating timer wakes
-- the loop so that the deadline is seen even when nothing happens.
function M.wait(pred, secs)
  local deadline = core.now() + secs
  local tick = core.timer(0.02, 0.02, function() end)
  while not pred() do
    if core.now() > deadline then
      tick:stop()
      return false
    end
    core.run("once")
  end
  tick:stop()
  return true
end

-- Drive the loop for `secs` seconds.
function M.spin(secs)
  M.wait(function() return false end, secs)
end

-- Read arguments key=value into a table (numbers converted).
function M.args(list)
  local a = {}
  for _, s in ipairs(list) do
    local k, v = s:match("^([%w_]+)=(.*)$")
    if k then a[k] = tonumber(v) or v end
  end
  return a
end

return M
