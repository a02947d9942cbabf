-- bench/run.lua's process runner: shell helpers, the machine's facts,
-- children (spawned under timeout(1), read line by line for RESULT, PID,
-- ERROR, killed by pid at the end), server/client pairs, and the build of
-- the C baselines.
local _M = {}

local ROOT, BENCH, BIN, LOGDIR

-- E: the paths run.lua works with (root, bench, bin, logdir).
function _M.init(E)
  ROOT, BENCH, BIN, LOGDIR = E.root, E.bench, E.bin, E.logdir
end

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

local function have(cmd)
  return run_cmd("command -v " .. cmd .. " >/dev/null 2>&1")
end

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

_M.CPUS = CPUS
_M.NOFILE = NOFILE
_M.sh_quote = sh_quote
_M.run_cmd = run_cmd
_M.now = now
_M.spawn = spawn
_M.read_until = read_until
_M.finish = finish
_M.cleanup = cleanup
_M.lua_child = lua_child
_M.c_run = c_run
_M.pair_with = pair_with
_M.lua_cmd = lua_cmd
_M.pair = pair
_M.build = build
_M.have = have
_M.machine = machine
_M.loadavg = loadavg

return _M
