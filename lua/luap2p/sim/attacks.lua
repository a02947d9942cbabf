-- luap2p.sim.attacks: what adversary nodes run, as policies stacked
-- before the defaults, and the config they run with. Each builder gets the
-- plan, the attack and the node and returns (config overrides, policies).
--
--   eclipse  dial the target again as soon as a connection to it ends,
--            answer Bootstrap and Swap_request with each other's points
--            only, and advertise them unasked to every peer every 5 s.
--   sybil    many identities from few /24s: dial every known honest point
--            they are not connected to (5 a second), never drop one, and
--            answer Bootstrap with each other's points.
--   poison   bootstrap poisoning: listed as bootstrap points of the honest
--            nodes, accept everyone, and answer Bootstrap (and advertise
--            unasked every 2 s) with points where nothing listens.
--   slow     honest policies, but their process is stopped and resumed
--            (by the coordinator): peers that stall.
local ipairs, math, pairs, require, string =
      ipairs, math, pairs, require, string

local _M = {}

local function others(list, mine)
  local out = {}
  for _, p in ipairs(list) do
    if p ~= mine then out[#out + 1] = p end
  end
  return out
end

-- Up to n random entries of list.
local function sample(list, n)
  local copy = {}
  for i, v in ipairs(list) do copy[i] = v end
  for i = #copy, 2, -1 do
    local j = math.random(i)
    copy[i], copy[j] = copy[j], copy[i]
  end
  for i = #copy, n + 1, -1 do copy[i] = nil end
  return copy
end

local function advertise_all(node, points)
  if #points == 0 then return end
  for _, c in pairs(node.conns) do
    if not c.closed then
      c:send_msg({ type = "advertise", points = sample(points, 50) })
    end
  end
end

local function connected_to(node, point)
  for _, c in pairs(node.conns) do
    if c.point == point then return true end
  end
  return false
end

function _M.eclipse(plan, att, spec)
  local target = plan.nodes[att.target].point
  local friends = others(att.points, spec.point)
  local cfg = { min_connections = 1, max_connections = 200,
                maintenance_interval = 0 }
  local policy = {
    name = "sim_eclipse",
    start = function(node)
      node:connect(target)
      node:every(1, function(n)
        if not connected_to(n, target) then n:connect(target) end
      end)
      node:every(5, function(n) advertise_all(n, friends) end)
    end,
    bootstrap = function() return sample(friends, 50) end,
    advertise = function() return true end,
    swap_request = function(_, conn)
      -- A Swap_ack naming another attacker (any 16 bytes do as its peer
      -- id: the receiver dials the point).
      if #friends > 0 then
        conn:send_msg({ type = "swap_ack",
                        point = friends[math.random(#friends)],
                        peer_id = string.rep("\0", 16) })
      end
      return true
    end,
  }
  return cfg, { policy }, { target }
end

function _M.sybil(plan, att, spec)
  local friends = others(att.points, spec.point)
  local mine = {}
  for _, p in ipairs(att.points) do mine[p] = true end
  local cfg = { min_connections = 1, max_connections = 1000,
                known_points_max = 100000, maintenance_interval = 0 }
  local policy = {
    name = "sim_sybil",
    start = function(node)
      node:every(1, function(n)
        local dialed = 0
        for p, rec in pairs(n.points) do
          if dialed >= 5 then break end
          if not mine[p] and rec.state == "disconnected" then
            if n:connect(p) then dialed = dialed + 1 end
          end
        end
        -- Ask for more points while there are none left to dial.
        if dialed == 0 then
          for _, c in pairs(n.conns) do c:send_msg({ type = "bootstrap" }) end
        end
      end)
    end,
    bootstrap = function() return sample(friends, 50) end,
  }
  return cfg, { policy }, plan.seeds
end

function _M.poison(plan, att, spec)
  local bad = {}
  for j = 1, att.unreachable do
    bad[j] = require("luap2p.sim.scenario").unreachable_point(j, plan.port)
  end
  local cfg = { min_connections = 0, max_connections = 1000,
                maintenance_interval = 0 }
  local policy = {
    name = "sim_poison",
    start = function(node)
      node:every(2, function(n) advertise_all(n, bad) end)
    end,
    bootstrap = function() return sample(bad, 50) end,
    advertise = function() return true end,
    authenticated = function(_, info)
      if info.refusal then return "nack", 0, sample(bad, 50) end
      return "ack"
    end,
  }
  return cfg, { policy }, {}
end

function _M.slow()
  return {}, {}, nil
end

return _M
