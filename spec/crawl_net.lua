-- A process of the crawl spec's network (spec/crawl_spec.lua), all on
-- 127.0.0.1:
--   lua5.4 spec/crawl_net.lua seed ROLE:N ...         the seed, then nodes
--   lua5.4 spec/crawl_net.lua SEED_POINT SEED_ID ROLE:N ...
-- Roles: plain (default policies, dial the seed), private (private mode,
-- trusts the seed only), full (max_connections 1: Nacks everyone once
-- connected to the seed), chain (examples/chain_policy.lua, a block every
-- 0.5 s). Prints "seed POINT PEER_ID" (seed process), then one
-- "node ROLE POINT" per node, then "ready" once every node runs a
-- connection to the seed; runs until killed (run it under timeout).
local p2p = require "luap2p"
local core = p2p.core

local args = { ... }
local seed_point, seed_id, first
if args[1] == "seed" then
  first = 2
else
  seed_point, seed_id, first = args[1], args[2], 3
end

local function out(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function base(cfg)
  local c = { identity = core.identity_generate(), pow_bits = 0,
              listen = "127.0.0.1:0", maintenance_interval = 2,
              min_connections = 2, expected_connections = 3,
              max_connections = 40, -- room for the crawler
              swap_linger = 0 } -- no swaps: a stable graph to crawl
  for k, v in pairs(cfg) do c[k] = v end
  return assert(p2p.new(c))
end

local nodes = {}
if not seed_point then
  local seed = base{ min_connections = 0, expected_connections = 0,
                     max_connections = 200,
                     max_incoming_connections = 100 } -- 50 dial at once
  seed_point = "127.0.0.1:" .. seed.port
  seed_id = seed.peer_id
  out("seed", seed_point, seed_id)
end

-- Every node trusts the seed: maintenance never prunes that connection
-- (only the others, when over max_threshold).
local ROLES = {
  plain = function()
    return base{ peers = { seed_point }, trusted = { seed_point } }
  end,
  private = function()
    return base{ private_mode = true, trusted = { seed_point },
                 peers = { seed_point } }
  end,
  full = function()
    return base{ peers = { seed_point }, trusted = { seed_point },
                 min_connections = 1,
                 expected_connections = 1, max_connections = 1,
                 too_many_rule = "threshold" }
  end,
  chain = function()
    local chain = dofile("examples/chain_policy.lua")._new{ interval = 0.5 }
    return base{ peers = { seed_point }, trusted = { seed_point },
                 policies = { chain } }
  end,
}

for i = first, #args do
  local role, n = args[i]:match("^(%a+):(%d+)$")
  assert(role and ROLES[role], "bad role " .. tostring(args[i]))
  for _ = 1, tonumber(n) do
    local node = ROLES[role]()
    nodes[#nodes + 1] = node
    out("node", role, "127.0.0.1:" .. node.port)
  end
end

-- What happened between each node and the seed (reported on failure).
local trail = {}
for _, node in ipairs(nodes) do
  local t = {}
  trail[node] = t
  node:on("*", function(ev)
    if ev.point == seed_point or ev.peer_id == seed_id then
      t[#t + 1] = ev.type .. ":" .. tostring(ev.code or ev.motive or "") ..
        ":" .. tostring(ev.reason or "")
    end
  end)
end
if not p2p.wait(function()
  for _, node in ipairs(nodes) do
    if not node:connection(seed_id) then return false end
  end
  return true
end, 30) then
  for _, node in ipairs(nodes) do
    if not node:connection(seed_id) then
      io.stderr:write("not at the seed: 127.0.0.1:", node.port, " (",
        #node:connections(), " connections): ",
        table.concat(trail[node], " "), "\n")
    end
  end
  error("nodes did not all reach the seed")
end
out("ready")
-- SIGTERM (the spec is done): close every node and end quietly.
local stop = core.signal("SIGTERM", function()
  for _, node in ipairs(nodes) do node:close() end
  p2p.stop()
end)
p2p.run()
stop:close()
