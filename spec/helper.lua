-- Shared helpers for network specs: fresh identities, nodes on 127.0.0.1
-- with an ephemeral port, and loop-driving waits bounded in time.
local p2p = require "luap2p"
local core = p2p.core

local _M = {}

-- A fresh identity without proof of work (specs run with pow_bits = 0).
function _M.identity()
  return core.identity_generate()
end

-- A node listening on 127.0.0.1:0 with test-friendly defaults; extra
-- config keys override. Returns the node (asserting it started).
function _M.node(cfg)
  -- Specs send arbitrary payloads: raw application messages unless a
  -- spec asks for the shell (the default on Tezos chains).
  local c = { identity = _M.identity(), pow_bits = 0, listen = "127.0.0.1:0",
              min_connections = 0, maintenance_interval = 3600,
              app_messages = "raw" }
  for k, v in pairs(cfg or {}) do c[k] = v end
  local node = assert(p2p.new(c))
  node.addr = "127.0.0.1:" .. node.port
  return node
end

-- A node with maintenance and swaps off, so that nothing but the test
-- talks on the wire.
function _M.quiet(cfg)
  local c = { maintenance_interval = 0, swap_linger = 0 }
  for k, v in pairs(cfg or {}) do c[k] = v end
  return _M.node(c)
end

-- keep(...) returns its nodes and closes them after the current test.
-- Call at describe level with busted's before_each and after_each.
function _M.keeper(before_each, after_each)
  local nodes
  before_each(function() nodes = {} end)
  after_each(function() _M.close(table.unpack(nodes)) end)
  return function(...)
    for i = 1, select("#", ...) do nodes[#nodes + 1] = select(i, ...) end
    return ...
  end
end

-- Drive the loop until pred() holds; fail the spec after `timeout` s.
function _M.wait(pred, timeout, what)
  local ok = p2p.wait(pred, timeout or 5)
  assert(ok, "timed out waiting for " .. (what or "condition"))
end

-- Count of running connections of a node.
function _M.nconns(node)
  local n = 0
  for _ in pairs(node.conns) do n = n + 1 end
  return n
end

-- Record every event of a node by type: returns a table type -> list.
function _M.record(node)
  local seen = setmetatable({}, { __index = function(t, k)
    local l = {}
    rawset(t, k, l)
    return l
  end })
  node:on("*", function(ev) table.insert(seen[ev.type], ev) end)
  return seen
end

-- Close nodes and let the loop finish their handles.
function _M.close(...)
  for i = 1, select("#", ...) do
    local n = select(i, ...)
    if n then n:close() end
  end
  for _ = 1, 20 do core.run("nowait") end
  collectgarbage()
  collectgarbage()
end

-- A raw TCP client (LuaSocket, non-blocking) to play a hostile or broken
-- peer: c:send(bytes), c:poll() reads what is there, c.data holds every
-- byte received, c.closed is set once the other side closed.
function _M.raw(addr)
  local socket = require "socket"
  local host, port = p2p.split_point(addr)
  local s = assert(socket.tcp())
  s:settimeout(2)
  assert(s:connect(host, port))
  s:settimeout(0)
  local c = { sock = s, data = "", closed = false }
  function c:poll()
    if self.closed then return end
    local chunk, err, partial = self.sock:receive(65536)
    local got = chunk or partial
    if got and #got > 0 then self.data = self.data .. got end
    if err == "closed" then self.closed = true end
  end
  function c:send(bytes)
    self.sock:settimeout(2)
    local ok, err = self.sock:send(bytes)
    self.sock:settimeout(0)
    return ok, err
  end
  function c:close() self.sock:close(); self.closed = true end
  return c
end

-- Drive the loop and poll raw clients until pred() holds.
function _M.wait_raw(clients, pred, timeout, what)
  -- Raw sockets are outside the loop: a ticking timer keeps it polling.
  local tick = p2p.core.timer(0.005, 0.005, function() end)
  local ok, err = pcall(_M.wait, function()
    for _, c in ipairs(clients) do c:poll() end
    return pred()
  end, timeout, what)
  tick:stop()
  assert(ok, err)
end

-- Drive the loop for `seconds` (timers, sockets), whatever happens.
function _M.sleep(seconds)
  local done = false
  local t = core.timer(seconds, nil, function() done = true end)
  while not done do core.run("once") end
  t:stop()
end

-- Count the entries of a table.
function _M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- A fresh empty directory under the system temp dir; removed by rmdir().
function _M.tmpdir()
  local p = io.popen("mktemp -d 2>/dev/null")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end

function _M.rmdir(dir)
  if dir and dir:match("^/tmp/") then os.execute("rm -rf '" .. dir .. "'") end
end

-- Write `text` to `path` (replacing it).
function _M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- The node's policy entry named `name` (its module table is .module).
function _M.policy(node, name)
  for _, e in ipairs(node._stack) do
    if e.name == name then return e end
  end
end

-- Run a shell command without the sanitizers' LD_PRELOAD (under `make
-- sanitize` it carries libasan and the sanitized core: a compiler or a
-- plain C program would run with them, and LeakSanitizer would report
-- the compiler's own leaks). Returns its output (stderr too) and exit
-- code.
function _M.plain_sh(cmd)
  local f = assert(io.popen("env -u LD_PRELOAD " .. cmd ..
    " 2>&1; echo \"rc=$?\""))
  local out = f:read("a")
  f:close()
  return out, tonumber(out:match("rc=(%d+)\n$"))
end

-- gcc's libasan.so, for a child process to preload (LeakSanitizer at its
-- exit sees the plain build's allocations too), or nil when gcc has none.
function _M.asan_runtime()
  local p = io.popen("unset LD_PRELOAD; gcc -print-file-name=libasan.so " ..
    "2>/dev/null")
  local path = p and p:read("l")
  if p then p:close() end
  if path and path:sub(1, 1) == "/" and io.open(path) then return path end
end

return _M
