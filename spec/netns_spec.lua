-- Multi-host faults: two luap2p nodes as separate lua5.4 processes
-- (spec/netns_node.lua) in two network namespaces joined by a veth pair,
-- all made by this spec and removed after it. Needs root and `ip netns`;
-- latency and loss need `tc netem` (sch_netem in the kernel). Whatever the
-- machine does not allow is reported with pending(), never skipped quietly.
--
-- Inside the namespaces (never on the host) TCP gives up sooner:
-- net.ipv4.tcp_retries2 = 3 and tcp_syn_retries = 1, so a cut link turns
-- into a disconnection within seconds instead of Linux's ~15 minutes.
local ROOT = os.getenv("PWD") or "."
-- Under `make sanitize` the node processes keep the sanitizer preload;
-- ip, tc and the shell run without it (they are not ours to check).
local PRELOAD = os.getenv("LD_PRELOAD")

local function sh(cmd)
  local p = io.popen("unset LD_PRELOAD; " .. cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, out, code
end

local function my_pid()
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("n")
  if f then f:close() end
  return pid or math.random(1, 30000)
end

local function now()
  local f = io.open("/proc/uptime")
  local t = f:read("n")
  f:close()
  return t
end

-- nil when namespaces and veth pairs can be made here, else why not.
local function netns_unavailable()
  local ok, out = sh("id -u")
  if not ok or out:match("^%s*(%d+)") ~= "0" then
    return "not root: ip netns needs CAP_SYS_ADMIN"
  end
  if not sh("command -v ip") then return "iproute2 (ip) not installed" end
  local probe = "lp2pprobe" .. my_pid()
  ok, out = sh("ip netns add " .. probe)
  if not ok then
    return "ip netns add failed: " .. (out:gsub("%s+$", ""))
  end
  local vok, vout = sh(string.format(
    "ip link add %sa type veth peer name %sb netns %s",
    probe:sub(1, 12), probe:sub(1, 12), probe))
  sh("ip link del " .. probe:sub(1, 12) .. "a")
  sh("ip netns del " .. probe)
  if not vok then
    return "veth pairs not permitted: " .. (vout:gsub("%s+$", ""))
  end
end

-- nil when tc netem works inside a namespace, else why not.
local function netem_unavailable()
  if not sh("command -v tc") then return "tc (iproute2) not installed" end
  local probe = "lp2pnetem" .. my_pid()
  sh("ip netns add " .. probe)
  local ok, out = sh("ip -n " .. probe ..
    " link set lo up && ip netns exec " .. probe ..
    " tc qdisc add dev lo root netem delay 1ms")
  sh("ip netns del " .. probe)
  if not ok then return (out:gsub("%s+$", "")) end
end

---------------------------------------------------------------- the lab

local Lab = {}
Lab.__index = Lab

-- Two namespaces a and b, veth va <-> vb, 10.231.N.1 and 10.231.N.2.
local function lab()
  local pid = my_pid()
  local self = setmetatable({
    nsa = "lp2p-" .. pid .. "-a", nsb = "lp2p-" .. pid .. "-b",
    va = "lp2p" .. pid .. "a", vb = "lp2p" .. pid .. "b",
    net = "10.231." .. (pid % 250) .. ".", procs = {}, logs = {} }, Lab)
  local cmds = {
    "ip netns add " .. self.nsa,
    "ip netns add " .. self.nsb,
    string.format("ip link add %s netns %s type veth peer name %s netns %s",
      self.va, self.nsa, self.vb, self.nsb),
    string.format("ip -n %s addr add %s1/24 dev %s", self.nsa, self.net,
      self.va),
    string.format("ip -n %s addr add %s2/24 dev %s", self.nsb, self.net,
      self.vb),
  }
  for _, ns in ipairs{ self.nsa, self.nsb } do
    cmds[#cmds + 1] = "ip -n " .. ns .. " link set lo up"
    cmds[#cmds + 1] = "ip netns exec " .. ns ..
      " sysctl -qw net.ipv4.tcp_retries2=3 net.ipv4.tcp_syn_retries=1"
  end
  cmds[#cmds + 1] = "ip -n " .. self.nsa .. " link set " .. self.va .. " up"
  cmds[#cmds + 1] = "ip -n " .. self.nsb .. " link set " .. self.vb .. " up"
  for _, c in ipairs(cmds) do
    local ok, out = sh(c)
    if not ok then
      self:destroy()
      error("lab setup failed: " .. c .. ": " .. out)
    end
  end
  return self
end

-- Run a node in namespace ns; returns its name (its log: self.logs[name]).
function Lab:node(name, ns, listen, peer)
  local log = os.tmpname()
  self.logs[name] = log
  local cmd = string.format(
    "ip netns exec %s env %sLUA_PATH=%q LUA_CPATH=%q lua5.4 %s/spec/" ..
    "netns_node.lua %s %s %s >%s 2>&1 & echo $!", ns,
    PRELOAD and string.format("LD_PRELOAD=%q ", PRELOAD) or "",
    ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;",
    os.getenv("LUA_CPATH") or (ROOT .. "/build/?.so;;"), ROOT, name,
    listen, peer or "", log)
  local ok, out = sh(cmd)
  assert(ok, out)
  self.procs[name] = assert(tonumber(out:match("(%d+)")), out)
  return name
end

-- The node's log so far: events (list of {type, code, reason}) and the
-- last STAT line as {conns, sent, recv, gaps, idle}.
function Lab:read(name)
  local f = io.open(self.logs[name])
  local s = f and f:read("a") or ""
  if f then f:close() end
  local evs, stat = {}, nil
  for line in s:gmatch("[^\n]+") do
    local t, c, r = line:match("^EV (%S+) (%S+) ?(%S*)")
    if t then evs[#evs + 1] = { type = t, code = c, reason = r } end
    local a, b, c2, d, e = line:match("^STAT (%d+) (%d+) (%d+) (%d+) (%S+)")
    if a then
      stat = { conns = tonumber(a), sent = tonumber(b), recv = tonumber(c2),
               gaps = tonumber(d), idle = tonumber(e) }
    end
  end
  return evs, stat or { conns = 0, sent = 0, recv = 0, gaps = 0, idle = 99 },
    s
end

function Lab:count(name, type, from)
  local evs = self:read(name)
  local n = 0
  for i = (from or 0) + 1, #evs do
    if evs[i].type == type then n = n + 1 end
  end
  return n, #evs
end

function Lab:wait(pred, timeout, what)
  local deadline = now() + timeout
  while not pred() do
    if now() > deadline then
      local _, sa, la = self:read("a")
      local _, sb, lb = self:read("b")
      error(string.format("timed out waiting for %s\n-- a: %s\n%s\n-- b: " ..
        "%s\n%s", what, require("cjson").encode(sa), la:sub(-600),
        require("cjson").encode(sb), lb:sub(-600)), 2)
    end
    sh("sleep 0.1")
  end
end

-- Stop the node processes (SIGTERM: they close their nodes and exit) and
-- return what a sanitizer reported in their logs (empty when clean).
function Lab:stop()
  for _, pid in pairs(self.procs) do sh("kill -TERM " .. pid) end
  local deadline = now() + 5
  for name, pid in pairs(self.procs) do
    while sh("kill -0 " .. pid) and now() < deadline do sh("sleep 0.05") end
    self.procs[name] = nil
  end
  local found = {}
  for name in pairs(self.logs) do
    local _, _, text = self:read(name)
    for _, pat in ipairs{ "ERROR: %w+Sanitizer", "runtime error:" } do
      if text:find(pat) then
        found[#found + 1] = name .. ": " .. text:sub(1, 800)
      end
    end
  end
  return found
end

function Lab:destroy()
  for _, pid in pairs(self.procs) do sh("kill -TERM " .. pid) end
  if next(self.procs) then sh("sleep 0.3") end
  for _, pid in pairs(self.procs) do sh("kill -KILL " .. pid) end
  self.procs = {}
  sh("ip netns del " .. self.nsa)
  sh("ip netns del " .. self.nsb)
  for _, log in pairs(self.logs) do os.remove(log) end
end

---------------------------------------------------------------- specs

describe("netns", function()
  local why = netns_unavailable()
  if why then
    pending("network namespaces not available here (" .. why .. "): " ..
      "multi-host faults not tested")
    return
  end

  local L
  after_each(function()
    if L then L:destroy() end
    L = nil
  end)

  local function both_running(min_recv)
    local _, sa = L:read("a")
    local _, sb = L:read("b")
    return sa.conns == 1 and sb.conns == 1 and sa.recv >= min_recv.a and
           sb.recv >= min_recv.b and sa.idle < 1 and sb.idle < 1
  end

  it("recovers its connection through maintenance after a link cut " ..
     "and heal", function()
    L = lab()
    local a_addr, b_addr = L.net .. "1:9732", L.net .. "2:9732"
    L:node("a", L.nsa, a_addr)
    L:node("b", L.nsb, b_addr, a_addr)
    local t0 = now()
    L:wait(function() return both_running{ a = 10, b = 10 } end, 15,
      "a and b connected and exchanging")
    local t_up = now() - t0
    local ea0, eb0 = #L:read("a"), #L:read("b")

    -- Cut: the link goes down in namespace a (both ends lose carrier).
    assert(sh(string.format("ip -n %s link set %s down", L.nsa, L.va)))
    local t_cut = now()
    L:wait(function()
      return L:count("a", "disconnected", ea0) >= 1 and
             L:count("b", "disconnected", eb0) >= 1
    end, 20, "both sides to notice the cut")
    local t_detect = now() - t_cut
    local _, sa_cut = L:read("a")
    local _, sb_cut = L:read("b")
    sh("sleep 1")

    -- Heal, then maintenance must dial again (a dial during the cut fails
    -- and backs off; the next one after the heal succeeds).
    assert(sh(string.format("ip -n %s link set %s up", L.nsa, L.va)))
    local t_heal = now()
    L:wait(function()
      return both_running{ a = sa_cut.recv + 10, b = sb_cut.recv + 10 }
    end, 25, "the connection to come back after the heal")
    local t_recover = now() - t_heal
    local eva, sa = L:read("a")
    local evb, sb = L:read("b")
    -- No message lost or reordered inside any connection.
    assert.are.equal(0, sa.gaps)
    assert.are.equal(0, sb.gaps)
    -- What the nodes did after the cut.
    local function after(evs, from)
      local t = {}
      for i = from + 1, #evs do
        local e = evs[i]
        t[#t + 1] = e.type .. (e.code ~= "nil" and (":" .. e.code) or "")
      end
      return table.concat(t, " ")
    end
    local dials = L:count("a", "connecting", ea0) +
                  L:count("b", "connecting", eb0)
    assert.is_true(dials >= 1, "no dial after the cut")
    -- Both processes exit cleanly (under `make sanitize`: no report).
    assert.are.same({}, L:stop())
    io.stdout:write(string.format("\n  [netns] link cut and heal: " ..
      "connected in %.1f s; cut noticed in %.1f s; recovered %.1f s after " ..
      "the heal through %d maintenance dial(s); a: %s; b: %s; messages " ..
      "received a %d, b %d, 0 gaps\n", t_up, t_detect, t_recover, dials,
      after(eva, ea0), after(evb, eb0), sa.recv, sb.recv))
  end)

  it("keeps exchanging over a link with latency and loss (tc netem)",
    function()
    local no_netem = netem_unavailable()
    if no_netem then
      pending("tc netem is not available here (" .. no_netem .. "; the " ..
        "kernel lacks sch_netem): latency and loss not tested")
      return
    end
    L = lab()
    for _, side in ipairs{ { L.nsa, L.va }, { L.nsb, L.vb } } do
      assert(sh(string.format("ip netns exec %s tc qdisc add dev %s root " ..
        "netem delay 40ms 10ms loss 3%%", side[1], side[2])))
    end
    local a_addr, b_addr = L.net .. "1:9732", L.net .. "2:9732"
    L:node("a", L.nsa, a_addr)
    L:node("b", L.nsb, b_addr, a_addr)
    local t0 = now()
    L:wait(function() return both_running{ a = 30, b = 30 } end, 20,
      "30 messages each way over the lossy link")
    local _, sa = L:read("a")
    local _, sb = L:read("b")
    assert.are.equal(0, sa.gaps)
    assert.are.equal(0, sb.gaps)
    assert.are.equal(0, L:count("a", "disconnected"))
    assert.are.equal(0, L:count("b", "disconnected"))
    assert.are.same({}, L:stop())
    io.stdout:write(string.format("\n  [netns] 40 ms +- 10 ms, 3%% loss: " ..
      "a received %d, b %d in %.1f s, 0 gaps, no disconnection\n", sa.recv,
      sb.recv, now() - t0))
  end)
end)
