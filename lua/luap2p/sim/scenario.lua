-- luap2p.sim.scenario: a scenario file (a Lua table, see README.md "Network
-- simulation") and the plan made from it: every node with its address,
-- role, worker process, join and leave times, and every timed action. The
-- coordinator makes the plan once, writes it as JSON, and the workers read
-- it: all processes share one plan, no process draws its own.
local json = require "luap2p.json"

local error, ipairs, math, pairs, setmetatable, string, table, tostring,
      type = error, ipairs, math, pairs, setmetatable, string, table,
      tostring, type

local _M = {}

-- What every simulated honest node runs unless the scenario says
-- otherwise: Octez defaults, no proof of work, bounds scaled down for a
-- laptop (Octez's 10/50/100 min/expected/max become 4/8/12: maintenance
-- thresholds 5/6/10/11), and loopback treated as the real network it
-- stands for (admission limits and greylists apply). hook_time = 0: the wall-clock limit of a hook call counts
-- the time its process spends stopped (the stop faults) or waiting for a
-- CPU (hundreds of nodes per process on a busy machine), which would make
-- policy errors of hooks that did nothing wrong; the instruction and
-- memory limits stay.
_M.NODE_DEFAULTS = {
  pow_bits = 0, min_connections = 4, expected_connections = 8,
  max_connections = 12, admission_exempt_loopback = false,
  greylist_loopback = true, hook_time = 0,
}

_M.ATTACKS = { eclipse = true, sybil = true, poison = true, slow = true }
_M.FAULTS = { reset = true, stop = true }

local function fail(msg) error("scenario: " .. msg, 0) end

-- A deterministic generator (xorshift64*): the plan is the same for a
-- given seed, whatever else uses math.random.
function _M.rng(seed)
  local s = (seed or 1) ~ 0x2545F4914F6CDD1D
  if s == 0 then s = 1 end
  return function(a, b)
    s = s ~ (s << 13)
    s = s ~ (s >> 7)
    s = s ~ (s << 17)
    local r = ((s * 0x2545F4914F6CDD1D) >> 11) / 9007199254740992.0
    if a == nil then return r end
    if b == nil then a, b = 1, a end
    return a + math.floor(r * (b - a + 1))
  end
end

-- A count given as a number of nodes (>= 1) or a share of n (< 1).
local function count_of(v, n, what)
  if v == nil then return 0 end
  if type(v) ~= "number" or v < 0 then
    fail(what .. ": expected a count or a share in [0, 1)")
  end
  if v < 1 then return math.floor(v * n + 0.5) end
  return math.floor(v)
end

-- Honest node i (1-based) has a /24 of its own: 127.A.B.1 (A < 200);
-- adversaries share /24s from 127.200.0.0 up; unreachable points (no node
-- listens there) live in 127.199/16.
function _M.honest_ip(i)
  local k = i - 1
  return string.format("127.%d.%d.1", 1 + k // 256, k % 256)
end

-- Adversary j of attack a: attack a owns 127.(199 + a).0.0/16, and its
-- members are dealt over its first `prefixes` /24s.
function _M.adversary_ip(a, j, prefixes)
  local k = j - 1
  local h = k // prefixes
  local net = k % prefixes + (h // 254) * prefixes
  return string.format("127.%d.%d.%d", 199 + a, net % 256, 1 + h % 254)
end

function _M.unreachable_point(j, port)
  local k = j - 1
  return string.format("127.199.%d.%d:%d", k // 254 % 256, 1 + k % 254, port)
end

-- Load a scenario file: a Lua chunk returning a table.
function _M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, "EINVAL: " .. err, "EINVAL" end
  local ok, sc = pcall(chunk)
  if not ok then return nil, "EINVAL: " .. tostring(sc), "EINVAL" end
  if type(sc) ~= "table" then
    return nil, "EINVAL: " .. path .. " must return a table", "EINVAL"
  end
  sc.name = sc.name or path:match("([^/]+)%.lua$") or path
  return sc
end

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- The plan: opts = { nodes, processes, seconds, seed, port } override the
-- scenario's own values. Raises "scenario: ..." on a malformed scenario.
function _M.plan(sc, opts)
  opts = opts or {}
  local rand = _M.rng(opts.seed or sc.seed or 1)
  local n = math.floor(opts.nodes or sc.nodes or 100)
  if n < 2 then fail("at least 2 nodes") end
  if n > 50000 then fail("at most 50000 honest nodes") end
  local seconds = opts.seconds or sc.seconds or 60
  local config = copy(_M.NODE_DEFAULTS)
  for k, v in pairs(sc.config or {}) do config[k] = v end
  local plan = {
    name = sc.name, description = sc.description, seconds = seconds,
    sample = sc.sample or 1, port = opts.port or 9732,
    honest = n, config = config, nodes = {}, actions = {}, attacks = {},
    bounds = { config.min_connections, config.max_connections },
    converge = sc.converge or { within = 0.95, component = 0.99 },
    properties = sc.properties or {}, seed = opts.seed or sc.seed or 1,
  }
  -- seeds: a count, a share, or { share =, min = } (a share, at least
  -- min: seeds that grow with --nodes).
  local nseeds
  if type(sc.seeds) == "table" then
    nseeds = math.max(sc.seeds.min or 1,
      count_of(sc.seeds.share or 0, n, "seeds.share"))
  else
    nseeds = count_of(sc.seeds or 3, n, "seeds")
  end
  nseeds = math.min(math.max(1, nseeds), n)
  local seeds = {}
  local over = sc.join and sc.join.over or 0
  for i = 1, n do
    local ip = _M.honest_ip(i)
    local node = { i = i, ip = ip, point = ip .. ":" .. plan.port,
                   role = i <= nseeds and "seed" or "honest",
                   join = i <= nseeds and 0 or over * rand() }
    plan.nodes[i] = node
    if i <= nseeds then seeds[#seeds + 1] = node.point end
  end
  plan.seeds = seeds

  -- Adversaries: appended after the honest nodes, each attack in its
  -- own /24s.
  if #(sc.attacks or {}) > 50 then fail("at most 50 attacks") end
  for ai, a in ipairs(sc.attacks or {}) do
    if not _M.ATTACKS[a.kind] then
      fail("attacks[" .. ai .. "]: unknown kind " .. tostring(a.kind))
    end
    local na = count_of(a.attackers or a.nodes or 10, n,
      "attacks[" .. ai .. "].attackers")
    local prefixes = math.max(1, a.prefixes or 1)
    local att = { kind = a.kind, at = a.at or 0, members = {},
                  prefixes = prefixes, stop = a.stop, every = a.every,
                  to = a.to, points = {} }
    if a.kind == "eclipse" then
      local t = a.target or "random"
      if t == "random" then t = nseeds + rand(n - nseeds) end
      if type(t) ~= "number" or t < 1 or t > n then
        fail("attacks[" .. ai .. "].target: expected 'random' or 1.." .. n)
      end
      att.target = math.floor(t)
    end
    if a.kind == "poison" then
      att.unreachable = count_of(a.unreachable or 200, n, "unreachable")
    end
    for j = 1, na do
      local ip = _M.adversary_ip(ai, j, prefixes)
      local node = { i = #plan.nodes + 1, ip = ip,
                     point = ip .. ":" .. plan.port, role = "adversary",
                     attack = ai, kind = a.kind,
                     join = att.at + (a.over or 0) * rand() }
      plan.nodes[node.i] = node
      att.members[#att.members + 1] = node.i
      att.points[#att.points + 1] = node.point
    end
    plan.attacks[ai] = att
  end

  -- Workers: honest nodes and most adversaries are dealt round-robin; the
  -- slow peers get a process of their own, which the coordinator stops
  -- and resumes.
  local k = opts.processes or sc.processes
  if not k then
    -- ~24 descriptors per node (a listener, up to max+1 connections,
    -- dials in flight) within 16 000 per process; and at least two
    -- processes from 200 nodes, for the two cores of a laptop.
    local per = 24 + config.max_connections
    k = math.max(n >= 200 and 2 or 1, math.ceil(#plan.nodes * per / 16000))
  end
  k = math.max(1, math.min(math.floor(k), #plan.nodes))
  local w = 0
  local slow_worker
  for _, node in ipairs(plan.nodes) do
    if node.kind == "slow" then
      slow_worker = slow_worker or k + 1
      node.worker = slow_worker
    else
      w = w % k + 1
      node.worker = w
    end
  end
  plan.workers = slow_worker or k

  -- Churn: honest non-seed nodes leave at `rate` (a share of them per
  -- second, or a count when >= 1) between from and to, and come back
  -- after a downtime drawn in [lo, hi] (never, without one).
  local actions = plan.actions
  local c = sc.churn
  if c then
    local pool = n - nseeds
    local per_s = c.rate or 0.01
    if per_s < 1 then per_s = per_s * pool end
    local from, to = c.from or 0, math.min(c.to or seconds, seconds)
    local down_at = {}
    local t = from
    while per_s > 0 do
      t = t - math.log(1 - rand()) / per_s -- Poisson arrivals
      if t >= to then break end
      local i
      for _ = 1, 20 do
        local cand = nseeds + rand(pool)
        if not down_at[cand] or down_at[cand] < t then
          i = cand
          break
        end
      end
      if i and plan.nodes[i].join < t then
        actions[#actions + 1] = { at = t, kind = "leave", node = i }
        local back
        if c.downtime then
          local lo, hi = c.downtime[1] or 5, c.downtime[2] or c.downtime[1]
          back = t + lo + (hi - lo) * rand()
          actions[#actions + 1] = { at = back, kind = "join", node = i,
                                    fresh = c.fresh_identity and true }
        end
        down_at[i] = back or math.huge
      end
    end
  end

  for fi, f in ipairs(sc.faults or {}) do
    if not _M.FAULTS[f.kind] then
      fail("faults[" .. fi .. "]: unknown kind " .. tostring(f.kind))
    end
    if f.kind == "reset" then
      local m = count_of(f.nodes or 0.05, n, "faults[" .. fi .. "].nodes")
      for _ = 1, m do
        actions[#actions + 1] = { at = f.at or 0, kind = "reset",
                                  node = nseeds + rand(n - nseeds) }
      end
    else
      local p = f.process or "random"
      if p == "random" then p = rand(k) end
      actions[#actions + 1] = { at = f.at or 0, kind = "stop", worker = p,
                                seconds = f.seconds or 5 }
    end
  end
  for ai, att in ipairs(plan.attacks) do
    if att.kind == "slow" and slow_worker then
      local every, stop = att.every or 4, att.stop or 2
      local t = att.at
      local to = math.min(att.to or seconds, seconds)
      while t + stop < to do
        actions[#actions + 1] = { at = t, kind = "stop",
                                  worker = slow_worker, seconds = stop,
                                  attack = ai }
        t = t + every
      end
    end
  end
  table.sort(actions, function(a, b) return a.at < b.at end)
  return plan
end

-- Point -> node index, for turning reported neighbours into graph edges.
function _M.index(plan)
  local by_ip = {}
  for _, node in ipairs(plan.nodes) do by_ip[node.ip] = node.i end
  return by_ip
end

function _M.encode(plan) return json.encode(plan) end

function _M.decode(text)
  local plan, err = json.decode(text)
  if not plan then error(err, 2) end
  return setmetatable(plan, nil)
end

return _M
