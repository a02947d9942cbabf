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

---------------------------------------------------------------- helpers

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run_cmd(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function now()
  local f = io.popen("date +%s.%N")
  local t = tonumber(f:read("*l"))
  f:close()
  return t
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function ncpus()
  local f = io.popen("nproc")
  local n = tonumber(f:read("*l"))
  f:close()
  return n or 1
end
local CPUS = ncpus()

-- The file-descriptor limit the 10 000-connection figure needs: each
-- process holds one socket per connection, plus a few.
local function hard_nofile()
  local f = io.popen("sh -c 'ulimit -Hn'")
  local v = f:read("*l")
  f:close()
  if v == "unlimited" then return 1048576 end
  return tonumber(v) or 1024
end
local NOFILE = hard_nofile()

---------------------------------------------------------------- children

-- Every child: SIGPIPE ignored (inherited through exec: a peer closing
-- while we write must not kill the process), the soft fd limit raised to
-- the hard one, stderr to a log, a hard time bound. Children print
-- "PID n" first; we kill by that pid at the end.
local children = {}

local function env_prefix()
  return string.format("LUA_PATH=%s LUA_CPATH=%s ",
    sh_quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
    sh_quote(ROOT .. "/build/?.so;;"))
end

local function spawn(name, cmd, limit)
  local log = LOGDIR .. "/" .. name .. ".log"
  local full = string.format(
    "trap '' PIPE; ulimit -n %d 2>/dev/null; cd %s && " ..
    "%sexec timeout -k 2 %d %s 2>>%s",
    NOFILE, sh_quote(ROOT), env_prefix(), math.ceil(limit), cmd,
    sh_quote(log))
  local f = assert(io.popen(full, "r"))
  local child = { name = name, f = f, log = log, res = {}, lines = {} }
  children[#children + 1] = child
  return child
end

-- Read lines until `pattern` matches one (returns its capture) or EOF.
local function read_until(child, pattern)
  for line in child.f:lines() do
    child.lines[#child.lines + 1] = line
    local pid = line:match("^PID (%d+)")
    if pid then child.pid = tonumber(pid) end
    local k, v = line:match("^RESULT (%S+) (%S+)")
    if k then child.res[k] = tonumber(v) or v end
    local err = line:match("^ERROR (.*)")
    if err then child.err = err end
    if pattern then
      local cap = line:match(pattern)
      if cap then return cap end
    end
  end
  child.eof = true
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline")
  if not f then return false end
  local cmd = f:read("*a") or ""
  f:close()
  return cmd:find("lua", 1, true) ~= nil or cmd:find("node", 1, true) ~= nil
end

local function kill(child)
  if child.pid and alive(child.pid) then
    os.execute("kill -9 " .. child.pid .. " 2>/dev/null")
  end
end

-- Wait for a child to finish (reading all it says), then reap it.
local function finish(child)
  if not child.eof then read_until(child, nil) end
  kill(child)
  child.f:close()
  child.closed = true
  return child.res
end

local function cleanup()
  for _, c in ipairs(children) do
    if not c.closed then
      kill(c)
      pcall(c.f.close, c.f)
      c.closed = true
    end
  end
  children = {}
end

local function lua_child(name, script, args, limit)
  return spawn(name, "lua5.4 " .. sh_quote(BENCH .. "/" .. script) .. " " ..
    args, limit)
end

-- Run a C baseline and return its RESULT table.
local function c_run(prog, args, limit)
  local c = spawn(prog, sh_quote(BIN .. "/" .. prog) .. " " .. args, limit)
  local res = finish(c)
  if next(res) == nil then
    error(prog .. " " .. args .. ": no result (see " .. c.log .. ")")
  end
  return res
end

-- A server child that prints PORT (or what `o.ready` matches), then
-- `o.nclients` client children given what it printed (`o.client_args`
-- turns it into arguments). `o.on_ready(srv)` runs before the clients
-- start. Returns the server's results and the first client's.
local function pair_with(o)
  local srv = spawn(o.name .. "-server", o.server, o.limit)
  local ready = read_until(srv, o.ready or "^PORT (%d+)")
  if not ready then
    local why = srv.err or ("no PORT (see " .. srv.log .. ")")
    finish(srv)
    error(o.name .. ": server failed: " .. why)
  end
  if o.on_ready then o.on_ready(srv) end
  local clis = {}
  for i = 1, o.nclients or 1 do
    clis[i] = spawn(o.name .. "-client" .. i, o.client(ready, i), o.limit)
  end
  if o.on_clients then o.on_clients(clis) end
  local sres = finish(srv)
  -- Clients end by themselves once the server is gone; bounded anyway.
  local cli = clis[1]
  local cres = finish(cli)
  for i = 2, #clis do finish(clis[i]) end
  if srv.err or next(sres) == nil then
    error(o.name .. ": " .. (srv.err or ("no result (see " .. srv.log .. ")"))
      .. (cli.err and ("; client: " .. cli.err) or ""))
  end
  return sres, cres
end

local function lua_cmd(script, args)
  return "lua5.4 " .. sh_quote(BENCH .. "/" .. script) .. " " .. args
end

local function pair(name, script, sargs, cargs, limit, nclients)
  return pair_with({
    name = name, server = lua_cmd(script, sargs), limit = limit,
    nclients = nclients,
    client = function(port) return lua_cmd(script, cargs .. " port=" .. port) end,
  })
end

---------------------------------------------------------------- build

local function build()
  run_cmd("mkdir -p " .. sh_quote(LOGDIR))
  os.execute("rm -f " .. sh_quote(LOGDIR) .. "/*.log")
  if not io.open(ROOT .. "/build/luap2p/core.so") then
    error("build/luap2p/core.so missing: run make first (make bench does)")
  end
  for _, prog in ipairs({ "tcp_limit", "crypto_limit" }) do
    local cmd = string.format(
      "cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -o %s %s " ..
      "$(pkg-config --cflags --libs libuv libsodium) -lpthread",
      sh_quote(BIN .. "/" .. prog), sh_quote(BENCH .. "/" .. prog .. ".c"))
    if not run_cmd(cmd) then error("cannot build " .. prog) end
  end
end

---------------------------------------------------------------- figures

local S = {} -- series name -> list of samples
local function add(name, v)
  if v == nil then return end
  S[name] = S[name] or {}
  table.insert(S[name], v)
end

local notes = {}
local function note(s)
  for _, n in ipairs(notes) do if n == s then return end end
  notes[#notes + 1] = s
end

local function guarded(name, fn)
  local ok, err = pcall(fn)
  if not ok then
    note(name .. " failed: " .. tostring(err))
    io.stderr:write("bench: ", name, " failed: ", tostring(err), "\n")
  end
  cleanup()
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
  add("sealed", c_run("tcp_limit", "sealed 65536 " .. P.secs,
    P.secs + 15).sealed_bytes_per_s)
  local s, c = pair("stream", "stream.lua", "recv secs=" .. P.secs,
    "send size=65536 secs=" .. (P.secs + 10), P.secs + 25)
  add("lp_stream", s.bytes_per_s)
  add("lp_stream_rx_cpu", s.cpu_s_per_gb)
  add("lp_stream_tx_cpu", c.cpu_s_per_gb)
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

local function have(cmd)
  return run_cmd("command -v " .. cmd .. " >/dev/null 2>&1")
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

-- js-libp2p (TCP + Noise + Yamux), installed by `make bench-peers` under
-- build/bench-peers (bench/peers/package.json, pinned versions).
local PEERS = ROOT .. "/build/bench-peers"

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
  local s, c = pair("stream", "stream.lua", "recv secs=" .. P.secs,
    "send size=" .. PEER_MSG .. " secs=" .. (P.secs + 10), P.secs + 25)
  add("lp_stream", s.bytes_per_s)
  add("lp_stream_rx_cpu", s.cpu_s_per_gb)
  add("lp_stream_tx_cpu", c.cpu_s_per_gb)
  s, c = pair_with({
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

---------------------------------------------------------------- table

local function si(v, unit)
  if v == nil then return "n/a" end
  local a = math.abs(v)
  if a >= 1e9 then return string.format("%.2f G%s", v / 1e9, unit) end
  if a >= 1e6 then return string.format("%.2f M%s", v / 1e6, unit) end
  if a >= 1e4 then return string.format("%.1f k%s", v / 1e3, unit) end
  return string.format("%.0f %s", v, unit)
end

local function kib(v)
  if v == nil then return "n/a" end
  return string.format("%.2f KiB", v / 1024)
end

local function ms(v)
  if v == nil then return "n/a" end
  return string.format("%.3f ms", v)
end

local function pct(r)
  if r == nil then return "n/a" end
  return string.format("%.1f%%", r * 100)
end

local function yesno(b)
  if b == nil then return "n/a" end
  return b and "yes" or "NO"
end

local rows = {}
local function row(fig, lp, base, ratio, goal, met)
  rows[#rows + 1] = { fig, lp, base, ratio, goal, met }
end

local function div(a, b)
  if a == nil or b == nil or b == 0 then return nil end
  return a / b
end

local function cmp(v, f)
  if v == nil then return nil end
  return f(v)
end

local function build_table()
  local M = {}
  for k, v in pairs(S) do M[k] = median(v) end
  local n = #(S.lp_stream or S.lp_hs or S.lp_pow or {})

  if M.lp_stream or M.tcp_stream then
    -- One connection between two processes: every byte is sealed on one
    -- core (the sender) and crosses the kernel; the receiver opens on the
    -- other. The sender's core does both in turn: 1/(1/seal + 1/raw TCP).
    local bound = M.box and M.tcp_stream and
      1 / (1 / M.box + 1 / M.tcp_stream)
    local r = div(M.lp_stream, bound)
    row("encrypted stream, 64 KiB msgs, 2 processes (payload B/s)",
      si(M.lp_stream, "B/s"),
      si(bound, "B/s") .. " = 1/(1/seal + 1/raw TCP)",
      pct(r), ">= 90%", yesno(cmp(r, function(x) return x >= 0.9 end)))
    row("  ref: raw TCP, 64 KiB writes, 2 processes", "",
      si(M.tcp_stream, "B/s"), pct(div(M.lp_stream, M.tcp_stream)), "", "")
  end
  if M.lp_small or M.tcp_small then
    row("64 B messages/s, end to end, one connection",
      si(M.lp_small, "msg/s"),
      si(M.tcp_small, "msg/s") .. " raw TCP, u32-framed",
      pct(div(M.lp_small, M.tcp_small)), ">= 1 M/s",
      yesno(cmp(M.lp_small, function(x) return x >= 1e6 end)))
  end
  if M.lp_small_rx_cpu then
    row("  ref: 64 B messages: CPU us per message, receiver / sender",
      string.format("%.2f / %.2f", M.lp_small_rx_cpu, M.lp_small_tx_cpu or 0),
      "", "", "", "")
  end
  if M.lp_hs or M.beforenm then
    -- A handshake here is a TCP cycle (connect, a few bytes each way,
    -- close) plus its crypto: 2 beforenm (one per side) and 1 keypair
    -- (the client's fresh identity), on every core:
    -- 1/(1/tcp_cycle + 1/crypto), both in handshakes/s for the machine.
    local crypto = M.beforenm and M.keypair and
      CPUS / (2 / M.beforenm + 1 / M.keypair)
    local bound = crypto and M.tcp_connect and
      1 / (1 / M.tcp_connect + 1 / crypto)
    local r = div(M.lp_hs, bound)
    row("full handshakes/s (TCP + handshake + Ack, fresh client id)",
      si(M.lp_hs, "/s"),
      si(bound, "/s") .. " = 1/(1/tcp_cycle + 1/crypto)",
      pct(r), ">= 60%", yesno(cmp(r, function(x) return x >= 0.6 end)))
    if crypto then
      row(string.format("  ref: crypto per handshake (2 beforenm + " ..
        "1 keypair) on %d cores", CPUS), "", si(crypto, "/s"),
        pct(div(M.lp_hs, crypto)), "", "")
    end
  end
  if M.lp_idle or M.tcp_idle then
    row(string.format("RSS per idle authenticated conn, %d conns " ..
      "(server end)", M.idle_n or P.idle_n),
      kib(M.lp_idle), kib(M.tcp_idle) .. " bare libuv server",
      M.tcp_idle and M.lp_idle and
        string.format("%.1fx", M.lp_idle / M.tcp_idle) or "n/a",
      "<= 16 KiB", yesno(cmp(M.lp_idle, function(x) return x <= 16384 end)))
    if M.lp_idle_client then
      local both = M.lp_idle + M.lp_idle_client
      row("  same, both processes (client: 1 node per conn)",
        kib(both), kib(M.tcp_idle) .. " bare libuv server",
        M.tcp_idle and string.format("%.1fx", both / M.tcp_idle) or "n/a",
        "<= 16 KiB", yesno(both <= 16384))
    end
  end
  if M.lp_hs_default or M.lp_hs then
    local r = div(M.lp_hs_default, M.lp_hs)
    row("accept rate, default Lua hooks vs default_policies=false",
      si(M.lp_hs_default, "/s"), si(M.lp_hs, "/s") .. " no policies",
      pct(r), ">= 85%", yesno(cmp(r, function(x) return x >= 0.85 end)))
  end
  if M.reload_ms then
    row(string.format("policy reload, %d live conns (median; dropped)",
      M.idle_n or P.idle_n),
      string.format("%s; %d dropped", ms(M.reload_ms),
        math.floor(M.reload_dropped or 0)),
      ms(M.load_ms) .. string.format(" load_file x%d", M.reload_files or 0),
      M.load_ms and string.format("%.1fx", M.reload_ms / M.load_ms) or "n/a",
      "< 5 ms, 0 dropped",
      yesno(M.reload_ms < 5 and (M.reload_dropped or 0) == 0))
  end
  for _, kind in ipairs({ "bootstrap", "app" }) do
    local med, p99 = M["rtt_" .. kind .. "_med"], M["rtt_" .. kind .. "_p99"]
    if med then
      local what = kind == "app" and "1-byte application messages" or
        "Bootstrap"
      row(string.format("honest ping RTT while one peer floods %s, " ..
        "median / p99", what),
        string.format("%.2f / %.2f ms", med, p99 or 0),
        string.format("%.2f / %.2f ms without the flood",
          M.rtt_none_med or 0, M.rtt_none_p99 or 0),
        string.format("%.1fx / %.1fx", div(med, M.rtt_none_med) or 0,
          div(p99, M.rtt_none_p99) or 0),
        "p99 < 50 ms, 0 lost",
        yesno(p99 ~= nil and p99 < 50 and
          (M["rtt_" .. kind .. "_lost"] or 0) == 0))
      row(string.format("  ref: %s flood: messages dispatched by the " ..
        "node (rate-limited) / sent by the flooder", kind),
        si(M["flood_" .. kind .. "_dispatched"], "msg"),
        si(M["flood_" .. kind .. "_sent"], "msg"), "", "", "")
    end
  end
  if M.lp_pow or M.blake2b then
    local r = div(M.lp_pow, M.blake2b)
    row(string.format("proof-of-work search rate (threads = %d)", CPUS),
      si(M.lp_pow, "H/s"),
      si(M.blake2b, "H/s") .. string.format(" BLAKE2b-256(56 B) x %d",
        CPUS),
      pct(r), ">= 90%", yesno(cmp(r, function(x) return x >= 0.9 end)))
  end
  if M.lp_pow_cpu and M.blake2b_cpu then
    row("  ref: proof of work per CPU-second (robust to other load)",
      si(M.lp_pow_cpu, "H/cpu-s"), si(M.blake2b_cpu, "H/cpu-s"),
      pct(M.lp_pow_cpu / M.blake2b_cpu), "", "")
  end
  -- Limits shown for reference (no goal).
  if M.box and M.open and M.pair then
    local serial = 1 / (1 / M.box + 1 / M.open)
    local bound = math.max(serial, M.pair)
    row("  ref: crypto bound of a stream here: max(seal & open at once, " ..
      "1/(1/seal + 1/open))", "", si(bound, "B/s"),
      M.lp_stream and pct(M.lp_stream / bound) or "", "", "")
    row("  ref: crypto_box_easy_afternm / open 64 KiB, 1 core alone",
      "", si(M.box, "B/s") .. " / " .. si(M.open, "B/s"), "", "", "")
    row("  ref: seal and open at once on 2 threads (slower side)",
      "", si(M.pair, "B/s"), "", "", "")
  end
  if M.lp_stream_rx_cpu and M.box and M.open then
    row("  ref: CPU s/GB of payload, receiver / sender (crypto alone: " ..
      "open / seal)",
      string.format("%.2f / %.2f", M.lp_stream_rx_cpu, M.lp_stream_tx_cpu or 0),
      string.format("%.2f / %.2f", 1e9 / M.open, 1e9 / M.box), "", "", "")
  end
  if M.sealed then
    row("  ref: C over TCP, sealed chunks, 1 MiB socket buffers, 2 procs",
      "",
      si(M.sealed, "B/s"), M.lp_stream and pct(M.lp_stream / M.sealed) or "",
      "", "")
  end
  if M.beforenm then
    row("  ref: crypto_box_beforenm, 1 core", "", si(M.beforenm, "/s"), "",
      "", "")
  end
  if M.lp_hs_cpu then
    local c = M.beforenm and M.keypair and
      (2 / M.beforenm + 1 / M.keypair) * 1e6
    row("  ref: CPU per handshake, server / client (crypto: beforenm / " ..
      "beforenm + keypair)",
      string.format("%.0f / %.0f us", M.lp_hs_cpu * 1e6,
        (M.lp_hs_cpu_client or 0) * 1e6),
      M.beforenm and M.keypair and string.format("%.0f / %.0f us",
        1e6 / M.beforenm, 1e6 / M.beforenm + 1e6 / M.keypair) or "",
      c and pct(c / 1e6 / (M.lp_hs_cpu + (M.lp_hs_cpu_client or 0))) or "",
      "", "")
  end
  if M.lp_hs_cpu_default and M.lp_hs_cpu_nopol then
    row("  ref: server CPU and calls into Lua per handshake, default " ..
      "policies / none",
      string.format("%.0f / %.0f us", M.lp_hs_cpu_default * 1e6,
        M.lp_hs_cpu_nopol * 1e6),
      M.lp_hs_calls_default and M.lp_hs_calls and
        string.format("%.1f / %.1f calls", M.lp_hs_calls_default,
          M.lp_hs_calls) or "", "", "", "")
  end
  if M.sys_server then
    local top = {}
    for k, v in pairs(M) do
      local name = k:match("^sys_server_(.+)$")
      if name then top[#top + 1] = { name, v } end
    end
    table.sort(top, function(a, b) return a[2] > b[2] end)
    local parts = {}
    for i = 1, math.min(6, #top) do
      parts[i] = string.format("%s %.1f", top[i][1], top[i][2])
    end
    row("  ref: syscalls per handshake, server / client (strace -c)",
      string.format("%.1f / %.1f", M.sys_server, M.sys_client or 0),
      "server: " .. table.concat(parts, ", "), "", "", "")
  end
  if M.lp_hs_w0 then
    row("  ref: server handshakes/s, key jobs on the loop / 1 / 2 workers",
      string.format("%s / %s / %s", si(M.lp_hs_w0, "/s"),
        si(M.lp_hs_w1, "/s"), si(M.lp_hs_w2, "/s")),
      string.format("server CPU %.0f / %.0f / %.0f us per handshake",
        (M.lp_hs_w0_cpu or 0) * 1e6, (M.lp_hs_w1_cpu or 0) * 1e6,
        (M.lp_hs_w2_cpu or 0) * 1e6),
      pct(div(M.lp_hs_w2, M.lp_hs_w0)), "", "")
  end
  if M.tcp_connect then
    row("  ref: TCP connect + 1 B each way + close, libuv, 16 in flight",
      "", si(M.tcp_connect, "/s"),
      M.lp_hs and pct(M.lp_hs / M.tcp_connect) or "", "", "")
  end
  if M.lp_idle_lua then
    row("  ref: of the server RSS per conn, Lua heap", kib(M.lp_idle_lua),
      "", "", "", "")
  end
  if M.lp_node_client then
    row("  ref: client node (identity + node, before connecting), RSS",
      kib(M.lp_node_client), "", "", "", "")
  end
  return M, n
end

local function peers_table()
  local M = {}
  for k, v in pairs(S) do M[k] = median(v) end
  local function ratio(a, b)
    local r = div(a, b)
    return r and string.format("%.1fx", r) or "n/a"
  end
  row(string.format("encrypted stream, %d KiB msgs, 2 processes " ..
    "(payload B/s)", PEER_MSG // 1024),
    si(M.lp_stream, "B/s"), si(M.js_stream, "B/s"),
    ratio(M.lp_stream, M.js_stream), "", "")
  row("  CPU s per GB, receiver / sender",
    string.format("%.2f / %.2f", M.lp_stream_rx_cpu or 0,
      M.lp_stream_tx_cpu or 0),
    string.format("%.2f / %.2f", M.js_stream_rx_cpu or 0,
      M.js_stream_tx_cpu or 0),
    ratio(M.js_stream_tx_cpu, M.lp_stream_tx_cpu) .. " less (sender)", "", "")
  row("full handshakes/s at the server, 2 client processes",
    si(M.lp_hs, "/s"), si(M.js_hs, "/s"), ratio(M.lp_hs, M.js_hs), "", "")
  row("  CPU per handshake, server / client",
    string.format("%.0f / %.0f us", (M.lp_hs_cpu or 0) * 1e6,
      (M.lp_hs_cpu_client or 0) * 1e6),
    string.format("%.0f / %.0f us", (M.js_hs_cpu or 0) * 1e6,
      (M.js_hs_cpu_client or 0) * 1e6),
    ratio(M.js_hs_cpu, M.lp_hs_cpu) .. " less (server)", "", "")
end

local function print_table(head)
  head = head or { "figure", "luap2p", "baseline (same run)", "ratio",
                   "goal", "met?" }
  local w = {}
  for i, h in ipairs(head) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i], #c) end
  end
  local function line(cells)
    local out = {}
    for i, c in ipairs(cells) do
      out[i] = c .. string.rep(" ", w[i] - #c)
    end
    return "| " .. table.concat(out, " | ") .. " |"
  end
  print(line(head))
  local sep = {}
  for i = 1, #head do sep[i] = string.rep("-", w[i]) end
  print("|-" .. table.concat(sep, "-|-") .. "-|")
  for _, r in ipairs(rows) do print(line(r)) end
end

---------------------------------------------------------------- main

local function machine()
  local f = io.popen("sh -c \"grep -m1 'model name' /proc/cpuinfo | " ..
    "cut -d: -f2; uname -sr; lua5.4 -v 2>&1; pkg-config --modversion " ..
    "libuv libsodium\"")
  local s = f:read("*a")
  f:close()
  local l = {}
  for x in s:gmatch("[^\n]+") do l[#l + 1] = x:gsub("^%s+", "") end
  return string.format("%s, %d CPUs; %s; %s; libuv %s, libsodium %s",
    l[1] or "?", CPUS, l[2] or "?", l[3] or "?", l[4] or "?", l[5] or "?")
end

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("*l")
  f:close()
  return s:match("^(%S+ %S+ %S+)") or "?"
end

-- make bench-peers: luap2p and js-libp2p interleaved in one run.
local function main_peers()
  local t0 = now()
  local load0 = loadavg()
  build()
  local ok, why = peers_ready()
  if not ok then
    print("bench-peers: skipped: " .. why)
    return 0
  end
  io.stderr:write(string.format("bench-peers: %d runs, luap2p and " ..
    "js-libp2p interleaved\n", P.runs))
  for r = 1, P.runs do
    io.stderr:write(string.format("bench-peers: run %d/%d\n", r, P.runs))
    guarded("stream", fig_peers_stream)
    guarded("handshake", fig_peers_handshake)
  end
  peers_table()
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
    if want("stream") then guarded("stream", fig_stream) end
    if want("small") then guarded("small", fig_small) end
    if want("handshake") then guarded("handshake", fig_handshake) end
    if want("crypto") or want("handshake") then
      guarded("crypto", fig_crypto)
    end
    if want("syscalls") and r == 1 then guarded("syscalls", fig_syscalls) end
    if want("workers") then guarded("workers", fig_workers) end
    if want("pow") then guarded("pow", fig_pow) end
    if want("idle") and r <= P.idle_runs then guarded("idle", fig_idle) end
    if want("flood") and r <= P.flood_runs then
      guarded("flood", fig_flood)
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
