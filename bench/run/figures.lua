-- bench/run.lua's figures: each runs its baseline and the luap2p
-- children once and adds their results to the series (run/report.lua);
-- children come from run/proc.lua.
local proc = require "run.proc"
local report = require "run.report"

local _M = {}

local P, ROOT, BENCH, LOGDIR
-- js-libp2p (TCP + Noise + Yamux), installed by `make bench-peers` under
-- build/bench-peers (bench/peers/package.json, pinned versions).
local PEERS
local CPUS, NOFILE = proc.CPUS, proc.NOFILE

-- E: the durations and paths of run.lua (P, root, bench, logdir).
function _M.init(E)
  P, ROOT, BENCH, LOGDIR = E.P, E.root, E.bench, E.logdir
  PEERS = ROOT .. "/build/bench-peers"
end

local sh_quote, spawn, read_until, finish = proc.sh_quote, proc.spawn,
  proc.read_until, proc.finish
local cleanup, lua_child, c_run = proc.cleanup, proc.lua_child, proc.c_run
local pair_with, lua_cmd, pair, have = proc.pair_with, proc.lua_cmd,
  proc.pair, proc.have
local add, note = report.add, report.note

local function guarded(name, fn)
  local ok, err = pcall(fn)
  if not ok then
    note(name .. " failed: " .. tostring(err))
    io.stderr:write("bench: ", name, " failed: ", tostring(err), "\n")
  end
  cleanup()
end

-- luap2p's stream of size-byte messages: rate and CPU per GB per side;
-- returns the receiver's and the sender's results.
local function lp_stream(size)
  local s, c = pair("stream", "stream.lua", "recv secs=" .. P.secs,
    "send size=" .. size .. " secs=" .. (P.secs + 10), P.secs + 25)
  add("lp_stream", s.bytes_per_s)
  add("lp_stream_rx_cpu", s.cpu_s_per_gb)
  add("lp_stream_tx_cpu", c.cpu_s_per_gb)
  return s, c
end

local function fig_stream()
  local r = c_run("tcp_limit", "stream 65536 " .. P.secs, P.secs + 15)
  add("tcp_stream", r.stream_bytes_per_s)
  -- The crypto bound of a stream on this machine: sealing and opening at
  -- once on two threads (the slower side), or one after the other.
  local d = P.crypto_secs
  add("pair", c_run("crypto_limit", "pair 65517 " .. d, 30).pair_bytes_per_s)
  add("box", c_run("crypto_limit", "box 65517 " .. d, 30).box_bytes_per_s)
  add("open", c_run("crypto_limit", "open 65517 " .. d, 30).open_bytes_per_s)
  -- The same framing in C: as luap2p writes and reads (one chunk per
  -- write, reads of up to 1 MiB), and as a first try would (4 chunks per
  -- write, 64 KiB reads).
  add("sealed", c_run("tcp_limit", "sealed 65536 " .. P.secs,
    P.secs + 15).sealed_bytes_per_s)
  add("sealed_4x64k", c_run("tcp_limit", "sealed 65536 " .. P.secs ..
    " 4 65536", P.secs + 15).sealed_bytes_per_s)
  local s, c = lp_stream(65536)
  add("lp_stream_rx_sleeps", s.sleeps_per_mb)
  add("lp_stream_tx_sleeps", c.sleeps_per_mb)
end

local function fig_small()
  local r = c_run("tcp_limit", "small 64 " .. P.secs, P.secs + 15)
  add("tcp_small", r.small_msgs_per_s)
  local s, c = pair("small", "stream.lua", "recv secs=" .. P.secs,
    "send size=64 secs=" .. (P.secs + 10), P.secs + 25)
  add("lp_small", s.msgs_per_s)
  add("lp_small_rx_cpu", s.cpu_s_per_mmsg)
  add("lp_small_tx_cpu", c.cpu_s_per_mmsg)
end

local hs_order = 0
local function fig_handshake()
  local r = c_run("tcp_limit", "connect " .. P.hs_secs .. " 16",
    P.hs_secs + 15)
  add("tcp_connect", r.connect_per_s)
  -- Alternate which goes first: each run leaves TIME_WAIT sockets behind.
  hs_order = hs_order + 1
  local order = hs_order % 2 == 1 and { 0, 1 } or { 1, 0 }
  for _, defaults in ipairs(order) do
    -- Two client processes: one cannot keep up with the server, since a
    -- fresh identity means a fresh node per connection on the client side.
    local s, c = pair("handshake" .. defaults, "handshake.lua",
      "server secs=" .. P.hs_secs .. " defaults=" .. defaults,
      "client conc=32 secs=" .. (P.hs_secs + 10), P.hs_secs + 25, 2)
    add(defaults == 1 and "lp_hs_default" or "lp_hs", s.hs_per_s)
    -- The server's CPU and calls into Lua per handshake, both stacks.
    add(defaults == 1 and "lp_hs_cpu_default" or "lp_hs_cpu_nopol",
      s.cpu_per_hs)
    add(defaults == 1 and "lp_hs_calls_default" or "lp_hs_calls",
      s.lua_calls_per_hs)
    if defaults == 0 then
      add("lp_hs_cpu", s.cpu_per_hs)
      add("lp_hs_cpu_client", c.client_cpu_per_hs)
    end
    if (s.failed or 0) > 0 then
      note(string.format("handshake (defaults=%d): %d handshakes failed " ..
        "at the server", defaults, s.failed))
    end
  end
end

-- The handshake's key job off the loop: the same server with its key jobs
-- on the loop (crypto_workers = 0) and on 1 and 2 worker threads, each
-- against the same two client processes (a pair of runs, in turn).
local function fig_workers()
  for _, w in ipairs({ 0, 1, 2 }) do
    local s = pair("workers" .. w, "handshake.lua",
      "server secs=" .. P.hs_secs .. " defaults=0 workers=" .. w,
      "client conc=32 secs=" .. (P.hs_secs + 10), P.hs_secs + 25, 2)
    add("lp_hs_w" .. w, s.hs_per_s)
    add("lp_hs_w" .. w .. "_cpu", s.cpu_per_hs)
  end
end

-- strace -c's summary: { total = n, calls = { name = n } }.
local function strace_counts(file)
  local f = io.open(file)
  if not f then return nil end
  local r = { calls = {} }
  for line in f:lines() do
    local t = {}
    for w in line:gmatch("%S+") do t[#t + 1] = w end
    -- % time, seconds, usecs/call, calls, [errors], syscall
    local n = #t >= 5 and tonumber(t[1]) and tonumber(t[4])
    if n then
      if t[#t] == "total" then r.total = n else r.calls[t[#t]] = n end
    end
  end
  f:close()
  return r.total and r or nil
end

-- Syscalls per handshake, once: strace -c attached to the handshake server
-- (after it listens) and to the first client process, counted until they
-- exit, divided by the handshakes each completed. Tracing slows both down
-- (fewer handshakes share each wake-up), so this is a reference row.
local function fig_syscalls()
  if not have("strace") then
    note("syscalls per handshake: strace is not installed " ..
      "(scripts/install-deps bench installs it)")
    return
  end
  local files = { LOGDIR .. "/strace-server.txt",
                  LOGDIR .. "/strace-client.txt" }
  os.remove(files[1])
  os.remove(files[2])
  local tracers = {}
  local function trace(pid, file)
    tracers[#tracers + 1] = spawn("strace", string.format(
      "strace -c -f -q -o %s -p %d", sh_quote(file), pid), P.hs_secs + 40)
    os.execute("sleep 0.3") -- attached before anything is counted
  end
  local s, c = pair_with({
    name = "syscalls", limit = P.hs_secs + 30, nclients = 2,
    server = lua_cmd("handshake.lua",
      "server secs=" .. P.hs_secs .. " defaults=0"),
    on_ready = function(srv) trace(srv.pid, files[1]) end,
    client = function(port)
      return lua_cmd("handshake.lua", "client conc=32 secs=" ..
        (P.hs_secs + 10) .. " port=" .. port)
    end,
    on_clients = function(clis)
      read_until(clis[1], "^PID (%d+)")
      trace(clis[1].pid, files[2])
    end,
  })
  for _, t in ipairs(tracers) do finish(t) end
  local sc, cc = strace_counts(files[1]), strace_counts(files[2])
  if sc and (s.hs_total or 0) > 0 then
    add("sys_server", sc.total / s.hs_total)
    for name, n in pairs(sc.calls) do
      add("sys_server_" .. name, n / s.hs_total)
    end
  end
  if cc and (c.client_done or 0) > 0 then
    add("sys_client", cc.total / c.client_done)
  end
end

---------------------------------------------------------------- peers

local function node_cmd(args)
  return "node " .. sh_quote(PEERS .. "/libp2p.mjs") .. " " .. args
end

local function peers_ready()
  if not have("node") then
    return nil, "node is not installed (apt-get install nodejs npm)"
  end
  if not io.open(PEERS .. "/node_modules/libp2p/package.json") then
    return nil, "js-libp2p is not installed under build/bench-peers " ..
      "(make bench-peers installs it with npm)"
  end
  return true
end

-- The stream figure of both stacks, one after the other, with messages of
-- PEER_MSG bytes: js-libp2p does best with 16 KiB writes here (64 KiB ones
-- are split across two Noise frames and ran at a quarter of that).
local PEER_MSG = 16384
local function fig_peers_stream()
  lp_stream(PEER_MSG)
  local s, c = pair_with({
    name = "libp2p-stream", limit = P.secs + 30, ready = "^ADDR (%S+)",
    server = node_cmd("stream recv secs=" .. P.secs),
    client = function(addr)
      return node_cmd("stream send size=" .. PEER_MSG .. " secs=" ..
        (P.secs + 10) ..
        " addr=" .. addr)
    end,
  })
  add("js_stream", s.bytes_per_s)
  add("js_stream_rx_cpu", s.cpu_s_per_gb)
  add("js_stream_tx_cpu", c.cpu_s_per_gb)
end

-- Handshakes/s at the server, two client processes each.
local function fig_peers_handshake()
  local s, c = pair("handshake0", "handshake.lua",
    "server secs=" .. P.hs_secs .. " defaults=0",
    "client conc=32 secs=" .. (P.hs_secs + 10), P.hs_secs + 25, 2)
  add("lp_hs", s.hs_per_s)
  add("lp_hs_cpu", s.cpu_per_hs)
  add("lp_hs_cpu_client", c.client_cpu_per_hs)
  s, c = pair_with({
    name = "libp2p-hs", limit = P.hs_secs + 30, ready = "^ADDR (%S+)",
    nclients = 2, server = node_cmd("hs server secs=" .. P.hs_secs),
    client = function(addr)
      return node_cmd("hs client conc=16 fresh=0 secs=" .. (P.hs_secs + 10)
        .. " addr=" .. addr)
    end,
  })
  add("js_hs", s.hs_per_s)
  add("js_hs_cpu", s.cpu_per_hs)
  add("js_hs_cpu_client", c.client_cpu_per_hs)
end

local function fig_crypto()
  local d = P.crypto_secs
  add("beforenm", c_run("crypto_limit", "beforenm " .. d, 30).beforenm_per_s)
  add("keypair", c_run("crypto_limit", "keypair " .. d, 30).keypair_per_s)
end

local function fig_pow()
  local r = c_run("crypto_limit", "blake2b " .. P.pow_secs .. " " .. CPUS,
    P.pow_secs + 15)
  add("blake2b", r.blake2b56_per_s)
  add("blake2b_cpu", r.blake2b56_per_cpu_s)
  local c = finish(lua_child("pow", "pow.lua", "secs=" .. P.pow_secs,
    P.pow_secs + 15))
  add("lp_pow", c.tries_per_s)
  add("lp_pow_cpu", c.tries_per_cpu_s)
end

local function fig_idle()
  local n = P.idle_n
  if NOFILE < n + 100 then
    note(string.format("idle: the hard RLIMIT_NOFILE is %d, below the %d " ..
      "descriptors %d connections need per process; measured with %d",
      NOFILE, n + 100, n, NOFILE - 100))
    n = NOFILE - 100
  end
  local r = c_run("tcp_limit", "idle " .. n, 90)
  add("tcp_idle", r.idle_bytes_per_conn)
  local s, c = pair("idle", "idle.lua",
    string.format("server n=%d reloads=%d policy=%s", n, P.reloads,
      sh_quote(BENCH .. "/policy_sample.lua")),
    string.format("client n=%d conc=200", n), 150)
  add("idle_n", s.conns)
  add("lp_idle", s.bytes_per_conn)
  add("lp_idle_lua", s.lua_bytes_per_conn)
  add("lp_idle_client", c.client_bytes_per_conn)
  add("lp_node_client", c.node_bytes)
  add("reload_ms", s.reload_ms)
  add("reload_max_ms", s.reload_max_ms)
  add("reload_dropped", s.reload_dropped)
  add("load_ms", s.load_ms)
  add("reload_files", s.reload_files)
end

-- An honest peer's ping round trip (every 10 ms) to a node, alone, then
-- while a third process floods the node with Bootstrap or 1-byte
-- application messages (bench/flood.lua; the victim runs without the
-- acl, so the flood lasts the whole measurement, only throttled).
local function fig_flood()
  local d = math.max(P.secs, 1)
  local function victim(name)
    local srv = lua_child(name, "flood.lua", "victim secs=" .. (d + 4),
      d + 20)
    local port = read_until(srv, "^PORT (%d+)")
    if not port then
      finish(srv)
      error("flood: the victim did not start (see " .. srv.log .. ")")
    end
    return srv, port
  end
  local srv, port = victim("flood-victim-none")
  local p = finish(lua_child("flood-ping-none", "flood.lua",
    "ping port=" .. port .. " secs=" .. d .. " delay=0.5", d + 10))
  finish(srv)
  add("rtt_none_med", p.rtt_med_ms)
  add("rtt_none_p99", p.rtt_p99_ms)
  for _, kind in ipairs({ "bootstrap", "app" }) do
    srv, port = victim("flood-victim-" .. kind)
    local fl = lua_child("flood-" .. kind, "flood.lua", "flood port=" ..
      port .. " kind=" .. kind .. " secs=" .. (d + 3), d + 15)
    p = finish(lua_child("flood-ping-" .. kind, "flood.lua",
      "ping port=" .. port .. " secs=" .. d .. " delay=0.5", d + 10))
    local f = finish(fl)
    local v = finish(srv)
    add("rtt_" .. kind .. "_med", p.rtt_med_ms)
    add("rtt_" .. kind .. "_p99", p.rtt_p99_ms)
    add("rtt_" .. kind .. "_lost", p.lost)
    add("flood_" .. kind .. "_sent", f.sent)
    add("flood_" .. kind .. "_dispatched", v.msgs_in)
  end
end

_M.guarded = guarded
_M.PEER_MSG = PEER_MSG
_M.peers_ready = peers_ready
_M.stream = fig_stream
_M.small = fig_small
_M.handshake = fig_handshake
_M.crypto = fig_crypto
_M.syscalls = fig_syscalls
_M.workers = fig_workers
_M.pow = fig_pow
_M.idle = fig_idle
_M.flood = fig_flood
_M.peers_stream = fig_peers_stream
_M.peers_handshake = fig_peers_handshake

return _M
