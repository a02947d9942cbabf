-- luap2p benchmarks against the physical limits.
--
--   lua5.4 bench/run.lua [--quick] [--runs N] [--only NAME,...] [--json FILE]
--
-- Every figure is measured next to its baseline in the same run, both
-- repeated (baseline and luap2p interleaved, so that the load other people
-- put on the machine hits both), and the medians are compared. luap2p
-- figures come from real processes (bench/*.lua children talking over
-- 127.0.0.1); baselines from C programs against libsodium and plain sockets
-- or libuv (bench/*.c, built here into build/bench/). Every child runs under
-- timeout(1) and is killed at the end. Not part of `make test`.
--
-- Figures (names for --only): stream, small, handshake, syscalls, workers,
-- idle, pow, crypto, flood.
local ROOT do
  local dir = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
  local p = io.popen('cd "' .. dir .. '" && pwd')
  ROOT = p:read("*l")
  p:close()
end
local BENCH = ROOT .. "/bench"
local BIN = ROOT .. "/build/bench"
local LOGDIR = BIN .. "/logs"

---------------------------------------------------------------- options

local opt = { quick = false, only = nil, json = nil, peers = false }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then opt.quick = true
    elseif a == "--runs" then i = i + 1; opt.runs = tonumber(arg[i])
    elseif a == "--only" then
      i = i + 1
      opt.only = {}
      for w in arg[i]:gmatch("[^,]+") do opt.only[w] = true end
    elseif a == "--json" then i = i + 1; opt.json = arg[i]
    elseif a == "--peers" then opt.peers = true
    else
      io.stderr:write("usage: lua5.4 bench/run.lua [--quick] [--peers] ",
        "[--runs N] ",
        "[--only stream,small,handshake,syscalls,workers,idle,pow,crypto," ..
        "flood] " ..
        "[--json FILE]\n")
      os.exit(2)
    end
    i = i + 1
  end
end

-- Durations: a full run stays under 5 minutes, --quick under 1.
local P = opt.quick and {
  runs = 3, secs = 0.5, hs_secs = 0.6, idle_n = 2000, idle_runs = 1,
  reloads = 10, crypto_secs = 0.2, pow_secs = 0.5, flood_runs = 1,
} or {
  runs = 5, secs = 2, hs_secs = 2, idle_n = 10000, idle_runs = 2,
  reloads = 30, crypto_secs = 0.5, pow_secs = 1.5, flood_runs = 3,
}
P.runs = opt.runs or P.runs
local function want(name) return opt.only == nil or opt.only[name] end

---------------------------------------------------------------- parts

-- The process runner (run/proc.lua), the results and their table
-- (run/report.lua), the figures (run/figures.lua).
package.path = BENCH .. "/?.lua;" .. package.path
local proc = require "run.proc"
local report = require "run.report"
local fig = require "run.figures"
do
  local E = { root = ROOT, bench = BENCH, bin = BIN, logdir = LOGDIR, P = P }
  proc.init(E)
  report.init(E)
  fig.init(E)
end
local now, build, cleanup = proc.now, proc.build, proc.cleanup
local machine, loadavg = proc.machine, proc.loadavg
local S, notes = report.S, report.notes
local build_table, print_table = report.build_table, report.print_table
local guarded = fig.guarded

---------------------------------------------------------------- main

-- make bench-peers: luap2p and js-libp2p interleaved in one run.
local function main_peers()
  local t0 = now()
  local load0 = loadavg()
  build()
  local ok, why = fig.peers_ready()
  if not ok then
    print("bench-peers: skipped: " .. why)
    return 0
  end
  io.stderr:write(string.format("bench-peers: %d runs, luap2p and " ..
    "js-libp2p interleaved\n", P.runs))
  for r = 1, P.runs do
    io.stderr:write(string.format("bench-peers: run %d/%d\n", r, P.runs))
    guarded("stream", fig.peers_stream)
    guarded("handshake", fig.peers_handshake)
  end
  report.peers_table(fig.PEER_MSG)
  print()
  print(string.format("luap2p vs js-libp2p (TCP + Noise + Yamux, " ..
    "bench/peers/package.json): medians of %d runs, interleaved", P.runs))
  print("machine: " .. machine() .. "; node " ..
    (io.popen("node --version"):read("*l") or "?"))
  print()
  print_table({ "figure", "luap2p", "js-libp2p", "luap2p / js-libp2p",
                "", "" })
  print()
  print("js-libp2p handshake clients: one node per 16 workers, each dialling " ..
    "again once its connection is closed (a full Noise XX handshake each); " ..
    "luap2p clients: a fresh identity and node per handshake")
  for _, s in ipairs(notes) do print("note: " .. s) end
  print(string.format("load average before / after: %s / %s (other " ..
    "people's work shares these cores)", load0, loadavg()))
  print(string.format("elapsed: %.0f s; child logs in %s", now() - t0,
    LOGDIR))
  return P.runs
end

local function main()
  if opt.peers then return main_peers() end
  local t0 = now()
  local load0 = loadavg()
  build()
  io.stderr:write(string.format("bench: %s, %d runs x %.1f s per figure%s\n",
    opt.quick and "quick" or "full", P.runs, P.secs,
    opt.quick and "" or " (about 2 minutes)"))
  for r = 1, P.runs do
    io.stderr:write(string.format("bench: run %d/%d\n", r, P.runs))
    if want("stream") then guarded("stream", fig.stream) end
    if want("small") then guarded("small", fig.small) end
    if want("handshake") then guarded("handshake", fig.handshake) end
    if want("crypto") or want("handshake") then
      guarded("crypto", fig.crypto)
    end
    if want("syscalls") and r == 1 then guarded("syscalls", fig.syscalls) end
    if want("workers") then guarded("workers", fig.workers) end
    if want("pow") then guarded("pow", fig.pow) end
    if want("idle") and r <= P.idle_runs then guarded("idle", fig.idle) end
    if want("flood") and r <= P.flood_runs then
      guarded("flood", fig.flood)
    end
  end
  local M, n = build_table()
  print()
  print(string.format("luap2p benchmarks (%s): medians of %d runs; " ..
    "baselines measured in the same run", opt.quick and "--quick" or "full",
    P.runs))
  print("machine: " .. machine())
  print()
  print_table()
  print()
  for _, s in ipairs(notes) do print("note: " .. s) end
  print(string.format("load average before / after: %s / %s (other " ..
    "people's work shares these cores)", load0, loadavg()))
  print(string.format("elapsed: %.0f s; child logs in %s", now() - t0,
    LOGDIR))
  if opt.json then
    local f = assert(io.open(opt.json, "w"))
    local parts = {}
    for k, v in pairs(S) do
      local xs = {}
      for i, x in ipairs(v) do xs[i] = string.format("%.6g", x) end
      parts[#parts + 1] = string.format('"%s":[%s]', k, table.concat(xs, ","))
    end
    table.sort(parts)
    f:write("{", table.concat(parts, ","), "}\n")
    f:close()
  end
  return n
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
