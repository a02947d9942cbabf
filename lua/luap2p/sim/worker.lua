-- luap2p.sim.worker: one worker process of a simulation. It runs its
-- share of the plan's nodes on its one loop, each node on its own
-- loopback address, and writes JSON lines on stdout for the coordinator:
--
--   {"type":"ready", ...}    identities made, waiting for SIGUSR1 (go)
--   {"type":"sample", "seq":k, "t":..., "nodes":[[i, nbr, ...], ...],
--    "counters":{...}, "cpu":s, "rss":kB, "alive":n}   every plan.sample s
--   {"type":"end", ...}      after plan.seconds; then the process exits
--
-- Neighbours are node indices (from the socket address of each
-- connection: every node dials from the address it listens on), 0 for an
-- address that is no node's.
local json = require "luap2p.json"
local p2p = require "luap2p"
local attacks = require "luap2p.sim.attacks"
local scenario = require "luap2p.sim.scenario"

local core = p2p.core
local io, ipairs, math, pairs, pcall, string, tonumber, tostring =
      io, ipairs, math, pairs, pcall, string, tonumber, tostring

local START_WAIT = 120 -- s: a worker never told to go gives up
local LAG_TICK = 0.1   -- s between loop-lag probes

local _M = {}

local COUNTED = {
  authenticated = "handshakes", connected = "connections",
  auth_failed = "auth_failed", refused = "refused", nack_sent = "nacks",
  banned = "bans", policy_error = "policy_errors",
  protocol_error = "protocol_errors",
}

-- A line to the coordinator; false once it is gone (EPIPE).
local function emit(obj)
  local ok = io.stdout:write(json.encode(obj), "\n")
  return ok and io.stdout:flush() and true or false
end

-- CPU seconds (user + system) and resident kB of this process.
function _M.usage()
  local cpu, rss = 0, 0
  local f = io.open("/proc/self/stat")
  if f then
    local s = f:read("a")
    f:close()
    -- Fields after the command name (which may hold spaces).
    local rest = s:match("%) (.*)$") or ""
    local fields = {}
    for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
    -- utime and stime are fields 14 and 15, i.e. 12 and 13 after ") ".
    cpu = ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / 100
  end
  f = io.open("/proc/self/status")
  if f then
    local s = f:read("a")
    f:close()
    rss = tonumber(s:match("VmRSS:%s*(%d+)")) or 0
  end
  return cpu, rss
end

-- Run worker `w` of the plan in file `plan_path`; returns an exit code.
function _M.main(plan_path, w)
  local f = assert(io.open(plan_path))
  local plan = scenario.decode(f:read("a"))
  f:close()
  local by_ip = scenario.index(plan)
  local mine = {}
  for _, spec in ipairs(plan.nodes) do
    if spec.worker == w then
      mine[#mine + 1] = spec
      spec.identity = core.identity_generate()
    end
  end
  local counters = { leaves = 0, joins = 0, resets = 0, failed = 0,
                     disconnections = 0, join_errors = 0 }
  for _, name in pairs(COUNTED) do counters[name] = 0 end
  local gone = { bytes_in = 0, bytes_out = 0, msgs_in = 0, msgs_out = 0 }
  local live = {} -- index -> node
  local causes = {} -- "auth_failed ETIMEDOUT" -> count
  local errors = {}

  -- The probe: counts events into `counters`; first in every stack.
  local probe = {
    name = "sim_probe",
    event = function(_, ev)
      local key = COUNTED[ev.type]
      if key then counters[key] = counters[key] + 1 end
      if ev.type == "auth_failed" or ev.type == "refused" or
         (ev.type == "disconnected" and not ev.conn) then
        local why = ev.type .. " " .. tostring(ev.code or ev.reason)
        causes[why] = (causes[why] or 0) + 1
      end
      if ev.type == "disconnected" then
        if ev.conn then
          counters.disconnections = counters.disconnections + 1
        else
          counters.failed = counters.failed + 1
        end
      end
    end,
  }

  local poisoners = {}
  for _, att in ipairs(plan.attacks) do
    if att.kind == "poison" then
      for _, p in ipairs(att.points) do poisoners[#poisoners + 1] = p end
    end
  end

  local function config_of(spec)
    local cfg = {}
    for k, v in pairs(plan.config) do cfg[k] = v end
    local policies = { probe }
    local peers
    if spec.role == "adversary" then
      local att = plan.attacks[spec.attack]
      local over, pols
      over, pols, peers = attacks[att.kind](plan, att, spec)
      for k, v in pairs(over) do cfg[k] = v end
      for _, p in ipairs(pols) do policies[#policies + 1] = p end
    end
    if not peers then
      peers = {}
      for _, p in ipairs(plan.seeds) do
        if p ~= spec.point then peers[#peers + 1] = p end
      end
      for _, p in ipairs(poisoners) do peers[#peers + 1] = p end
    end
    cfg.identity = spec.identity
    cfg.listen = spec.point
    cfg.bind_address = spec.ip
    cfg.peers = peers
    cfg.policies = policies
    return cfg
  end

  local function join(spec, fresh)
    if live[spec.i] then return end
    if fresh then spec.identity = core.identity_generate() end
    local node, err = p2p.new(config_of(spec))
    if not node then
      counters.join_errors = counters.join_errors + 1
      if #errors < 5 then
        errors[#errors + 1] = string.format("node %d (%s): %s", spec.i,
          spec.point, tostring(err))
      end
      return
    end
    live[spec.i] = node
    counters.joins = counters.joins + 1
  end

  local function leave(spec)
    local node = live[spec.i]
    if not node then return end
    local s = node:stat()
    for k in pairs(gone) do gone[k] = gone[k] + (s[k] or 0) end
    live[spec.i] = nil
    node:close()
    counters.leaves = counters.leaves + 1
  end

  local function reset(spec)
    local node = live[spec.i]
    if not node then return end
    for _, c in pairs(node.conns) do c:close("sim: reset") end
    counters.resets = counters.resets + 1
  end

  local t0
  local seq = 0
  local lag = 0
  local function lag_since()
    local l = lag
    lag = 0
    return l
  end
  local function sample(kind)
    local nodes = {}
    local totals = {}
    for k, v in pairs(gone) do totals[k] = v end
    local alive = 0
    for i, node in pairs(live) do
      alive = alive + 1
      local row = { i }
      for _, c in pairs(node.conns) do
        local ip = c.addr and p2p.split_point(c.addr)
        row[#row + 1] = ip and by_ip[ip] or 0
      end
      nodes[#nodes + 1] = row
      local s = node:stat()
      for k in pairs(gone) do totals[k] = totals[k] + (s[k] or 0) end
    end
    local cpu, rss = _M.usage()
    local c = {}
    for k, v in pairs(counters) do c[k] = v end
    for k, v in pairs(totals) do c[k] = v end
    return emit({ type = kind or "sample", worker = w, seq = seq,
           t = core.now() - t0, nodes = nodes, counters = c, cpu = cpu,
           rss = rss, alive = alive, hosted = #mine, causes = causes,
           lag = lag_since(),
           errors = #errors > 0 and errors or nil })
  end

  local timers = {}
  local function at(t, fn)
    local delay = math.max(0, t - (core.now() - t0))
    timers[#timers + 1] = core.timer(delay, nil, fn)
  end

  local finished = false
  local function finish()
    if finished then return end
    finished = true
    if t0 then sample("end") end
    for _, spec in ipairs(mine) do
      local node = live[spec.i]
      if node then node:close() end
    end
    for _, t in ipairs(timers) do pcall(t.stop, t) end
    -- Let the Disconnects go out, then leave the loop.
    local t = core.timer(0.2, nil, function() p2p.stop() end)
    t:unref()
  end

  local function go()
    if t0 then return end
    t0 = core.now()
    for _, spec in ipairs(mine) do
      at(spec.join, function() join(spec) end)
    end
    for _, a in ipairs(plan.actions) do
      local spec = a.node and plan.nodes[a.node]
      if spec and spec.worker == w then
        if a.kind == "leave" then
          at(a.at, function() leave(spec) end)
        elseif a.kind == "join" then
          at(a.at, function() join(spec, a.fresh) end)
        elseif a.kind == "reset" then
          at(a.at, function() reset(spec) end)
        end
      end
    end
    -- Samples on the sample grid of the run's clock: a process resumed
    -- after SIGSTOP skips the ones it missed.
    local function tick()
      if finished then return end
      local t = core.now() - t0
      seq = math.floor(t / plan.sample + 0.5)
      if not sample() then return finish() end -- the coordinator is gone
      local next_t = (seq + 1) * plan.sample
      timers[#timers + 1] = core.timer(math.max(0.01, next_t - t), nil, tick)
    end
    tick()
    -- Loop lag: how late a 0.1 s timer fires (the largest since the last
    -- sample). A starved process stretches every timeout it runs.
    local last = core.now()
    timers[#timers + 1] = core.timer(LAG_TICK, LAG_TICK, function()
      local now = core.now()
      lag = math.max(lag, now - last - LAG_TICK)
      last = now
    end)
    at(plan.seconds, finish)
  end

  local sigs = {
    core.signal("SIGUSR1", go),
    core.signal("SIGTERM", finish),
    core.signal("SIGINT", finish),
  }
  -- Signals do not keep the loop alive; this timer does, and ends a
  -- worker that was never told to go.
  local keep = core.timer(START_WAIT, START_WAIT, function()
    if not t0 then finish() end
  end)
  emit({ type = "ready", worker = w, nodes = #mine, pid = _M.pid() })
  while not finished do p2p.run() end
  keep:stop()
  for _, s in ipairs(sigs) do s:close() end
  p2p.run() -- the last Disconnects and closes
  emit({ type = "exit", worker = w })
  return 0
end

function _M.pid()
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("n")
  if f then f:close() end
  return pid
end

return _M
