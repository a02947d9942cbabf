-- luap2p.policies.maintenance: the Octez maintenance (p2p_maintenance.ml)
-- and the point reconnection back-off (p2p_point_state.ml).
--
-- Bounds from config min/expected/max connections:
--   step_min = (expected - min) // 3, step_max = (max - expected) // 3
--   min_threshold = min + step_min, min_target = min + 2 * step_min,
--   max_target = max - 2 * step_max, max_threshold = max - step_max
--   (10/50/100 -> 23/36/68/84).
-- Runs at start, every config.maintenance_interval seconds, on the core's
-- too_few_connections / too_many_connections events, when one of its own
-- dials ends, and (while short of points) on new_point / new_peer and on
-- any connection that starts running (whoever dialled it: config.peers,
-- node:connect), so that a node short of points asks its first peer at
-- once, before that peer may drop it.
--   * below min_threshold: dial known points toward min_target (at most
--     max_target): disconnected, not ours, not banned, not backed off,
--     trusted in private mode; never-failed first, then oldest miss. When
--     that cannot reach min_target, send Bootstrap to the non-private
--     peers (not in private mode) and look again on a new point or peer,
--     or after min(5 s, interval).
--   * above max_threshold: close connections down to max_target, never a
--     trusted point or peer: not at random as Octez (config
--     maintenance_eviction = "random" restores that) but, as Bitcoin
--     Core's eviction, the newest from the most represented /24 (/64),
--     the longest-running half protected (_victims below). Each closed
--     peer is first sent an Advertise of our known points (unless
--     discovery is off): what the Nack it would have had at its
--     handshake says. The newest is usually a newcomer that has not
--     spoken yet (the accepting side runs half a round trip before the
--     dialling one), and without points it is left with no peer to try.
--   * in between: send one Swap_request (not in private mode, and only
--     when config.swap_linger > 0).
-- Back-off, kept in the point records (node.points): a failed dial or a
-- rejection waits `delay` (1 s, then x1.2 each time, capped at 2 days);
-- after a normal disconnection wait 60 s and reset the delay.
-- config.maintenance_interval = 0 turns the policy off.
-- State and shared rules: luap2p.policies.common (node.state.maintenance,
-- node.state.swap, the back-off).
local p2p = require "luap2p"
local common = require "luap2p.policies.common"
local config = require "luap2p.config"
local core = p2p.core

local ipairs, math, pairs, table, type = ipairs, math, pairs, table, type

local now = p2p.now

local LOOK_DELAY = 5 -- Octez time_between_looking_for_peers
local ADVERTISE_SIZE = 50 -- as the answerer's Advertise and a Nack's points

local _M = {
  name = "maintenance",
  description = "Octez maintenance: connection bounds, dials, back-off",
  -- What its event hook reads.
  events = { "connected", "disconnected", "too_few_connections",
             "too_many_connections", "new_point", "new_peer" },
  -- This load's copy of the reconnection delays (tests compress them).
  _RECONNECT = {},
}
for k, v in pairs(common.RECONNECT) do _M._RECONNECT[k] = v end

-- The node's maintenance state (node.state.maintenance): dials in flight
-- the last Bootstrap and when each connection started running (the
-- eviction order) outlive a reload; `run` is the running
-- instance's: start() makes a new one, stop() marks it dead, and a timer
-- of a replaced instance that escaped finds its own run dead.
local function state(node)
  return common.state(node, "maintenance", function()
    return { dials = {}, ndials = 0, looking = false,
             bootstrap = -math.huge, since = {},
             run = { alive = false, scheduled = false, retry = false } }
  end)
end

_M._bounds = config.bounds

local function enabled(node)
  local i = node.config.maintenance_interval
  return type(i) == "number" and i > 0
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function shuffle(t)
  for i = #t, 2, -1 do
    local j = math.random(i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end

---------------------------------------------------------------- dialing

local function last_miss(rec)
  local a, b = rec.last_failed, rec.last_disconnect
  if a and b then return math.max(a, b) end
  return a or b
end

-- Up to n points worth dialing, never-missed first, then oldest miss.
function _M._connectable(node, n)
  local t = now()
  local private = node.config.private_mode
  local connected = {}
  for _, c in pairs(node.conns) do
    if c.peer_id then connected[c.peer_id] = true end
  end
  local list = {}
  for p, rec in pairs(node.points) do
    if rec.state == "disconnected" and not rec.ours and
       not (rec.reconnect_at and rec.reconnect_at > t) and
       not (rec.peer_id and connected[rec.peer_id]) and
       not node:banned(p) and
       not (rec.peer_id and node:banned(rec.peer_id)) and
       (not private or node:trusted(p, rec.peer_id)) then
      list[#list + 1] = { last_miss(rec), p }
    end
  end
  table.sort(list, function(a, b)
    if a[1] == nil then return b[1] ~= nil end
    if b[1] == nil then return false end
    return a[1] < b[1]
  end)
  local out = {}
  for i = 1, math.min(n, #list) do out[i] = list[i][2] end
  return out
end

local maintain

local function schedule(node)
  local run = state(node).run
  if run.scheduled or not run.alive then return end
  run.scheduled = true
  node:after(0, function()
    run.scheduled = false
    if run.alive then maintain(node) end
  end)
end

local function retry_later(node)
  local run = state(node).run
  if run.retry or not run.alive then return end
  run.retry = true
  node:after(math.min(LOOK_DELAY, node.config.maintenance_interval),
    function()
      run.retry = false
      if run.alive then maintain(node) end
    end)
end

-- Returns how many peers were asked.
local function send_bootstrap(node)
  local sent = 0
  for _, c in pairs(node.conns) do
    if not c.closed and not (c.metadata and c.metadata.private_node) then
      if c:send_msg({ type = "bootstrap" }) then sent = sent + 1 end
    end
  end
  return sent
end

local function too_few(node, b, n)
  local inst = state(node)
  local min_to = b.min_target - n - inst.ndials
  local max_to = b.max_target - n - inst.ndials
  if min_to <= 0 then return end -- the dials in flight may do
  local dialed = 0
  for _, p in ipairs(_M._connectable(node, max_to)) do
    local id = node:connect(p)
    if id then
      if not inst.dials[id] then inst.ndials = inst.ndials + 1 end
      inst.dials[id] = p
      dialed = dialed + 1
    else
      local rec = node.points[p]
      if rec then common.failed(rec, now(), _M._RECONNECT) end
    end
  end
  if dialed >= min_to then return end
  -- Not enough candidates: ask the peers for more and look again soon.
  inst.looking = true
  -- The last Bootstrap time lives in the node: a reload must not make
  -- every reload a broadcast to all peers.
  local t = now()
  -- Only a Bootstrap actually sent counts: at start (no peer yet) the
  -- first connection must be asked at once, not LOOK_DELAY later, or a
  -- seed that drops it soon after leaves it with no point to dial.
  if not node.config.private_mode and t - inst.bootstrap >=
     math.min(LOOK_DELAY, node.config.maintenance_interval) and
     send_bootstrap(node) > 0 then
    inst.bootstrap = t
  end
  retry_later(node)
end

-- The network prefix of a socket address: the /24 of an IPv4 address,
-- the /64 of an IPv6 one (the groups before "::" and after it, padded).
function _M._prefix(addr)
  if type(addr) ~= "string" then return "?" end
  local v4 = addr:match("^(%d+%.%d+%.%d+)%.%d+")
  if v4 then return v4 end
  local v6 = addr:match("^%[([^%]]+)%]") or addr
  local head, tail = v6:match("^(.-)::(.*)$")
  local groups = {}
  for g in (head or v6):gmatch("[^:]+") do groups[#groups + 1] = g end
  if head then
    local rest = {}
    for g in tail:gmatch("[^:]+") do rest[#rest + 1] = g end
    for _ = 1, 8 - #groups - #rest do groups[#groups + 1] = "0" end
    for _, g in ipairs(rest) do groups[#groups + 1] = g end
  end
  return table.concat(groups, ":", 1, math.min(4, #groups)):lower()
end

-- Which k of the candidates to close (Octez closes k at random, which
-- lets attackers that redial at once replace every honest peer in a few
-- rounds: an eclipse; see README "Network simulation"). Instead, as
-- Bitcoin Core's inbound eviction: the longest-running half is protected;
-- from the rest, close the newest connection of the most represented
-- network prefix (/24, /64), recounting after each; then, if still
-- short, the newest protected ones. cands: { {conn, prefix, since} }.
function _M._victims(cands, k)
  table.sort(cands, function(a, b)
    if a.since ~= b.since then return a.since < b.since end
    return a.conn.id < b.conn.id
  end)
  local per = {}
  for _, c in ipairs(cands) do per[c.prefix] = (per[c.prefix] or 0) + 1 end
  local pool = {}
  for i = #cands // 2 + 1, #cands do pool[#pool + 1] = cands[i] end
  local out = {}
  while #out < k and #pool > 0 do
    -- The newest member of the largest prefix (pool is oldest first).
    local best
    for i = #pool, 1, -1 do
      if not best or per[pool[i].prefix] > per[pool[best].prefix] then
        best = i
      end
    end
    local v = table.remove(pool, best)
    per[v.prefix] = per[v.prefix] - 1
    out[#out + 1] = v.conn
  end
  for i = #cands // 2, 1, -1 do
    if #out >= k then break end
    out[#out + 1] = cands[i].conn
  end
  return out
end

-- Close a connection for too many connections, telling the peer where
-- else to go first (an Advertise, as the points of a Nack).
local function evict(node, c)
  if not common.discovery_off(node) and
     not (c.metadata and c.metadata.private_node) then
    local pts = node:known_points(ADVERTISE_SIZE, { exclude = c.point })
    if #pts > 0 then c:send_msg({ type = "advertise", points = pts }) end
  end
  c:close("too many connections")
end

local function too_many(node, b, n)
  local since = state(node).since
  local cands = {}
  for id, c in pairs(node.conns) do
    if not c.closed and not node:trusted(c.point, c.peer_id) then
      cands[#cands + 1] = { conn = c, prefix = _M._prefix(c.addr),
                            since = since[id] or 0 }
    end
  end
  if node.config.maintenance_eviction == "random" then
    shuffle(cands)
    for i = 1, math.min(n - b.max_target, #cands) do
      evict(node, cands[i].conn)
    end
    return
  end
  for _, c in ipairs(_M._victims(cands, n - b.max_target)) do
    evict(node, c)
  end
end

local function send_swap_request(node)
  if not common.swap_enabled(node) then return end
  local pub = common.public_conns(node)
  if #pub < 2 then return end
  -- Two distinct random picks, O(1): no shuffle of every connection.
  local recipient = table.remove(pub, math.random(#pub))
  local proposed = pub[math.random(#pub)]
  local raw = core.peer_id_decode(proposed.peer_id)
  if not raw then return end
  if recipient:send_msg({ type = "swap_request", point = proposed.point,
                          peer_id = raw }) then
    common.swap_sent(node, recipient, proposed)
  end
end

function maintain(node)
  local inst = state(node)
  if not inst.run.alive or node._closed or not enabled(node) then return end
  local c = node.config
  local b = _M._bounds(c.min_connections, c.expected_connections,
    c.max_connections)
  local n = count(node.conns)
  if n < b.min_threshold then
    too_few(node, b, n)
  elseif n > b.max_threshold then
    inst.looking = false
    too_many(node, b, n)
  else
    inst.looking = false
    send_swap_request(node)
  end
end

---------------------------------------------------------------- hooks

function _M.check(node)
  local i = node.config.maintenance_interval
  if type(i) ~= "number" or i < 0 then
    return false, "config.maintenance_interval must be a number >= 0"
  end
  return true
end

function _M.start(node)
  local inst = state(node)
  inst.run = { alive = true, scheduled = false, retry = false }
  if not enabled(node) then return end
  node:every(node.config.maintenance_interval, maintain)
  schedule(node)
end

function _M.stop(node)
  state(node).run.alive = false
end

function _M.event(node, ev)
  if not enabled(node) then return end
  local inst = state(node)
  local t = ev.type
  -- When each connection started running, for the eviction order.
  if t == "connected" then
    inst.since[ev.conn_id] = now()
  elseif t == "disconnected" then
    inst.since[ev.conn_id] = nil
  end
  if t == "disconnected" then
    -- Back-off applies whether or not this policy dialed.
    local rec = ev.point and node.points[ev.point]
    if rec then
      if ev.conn then
        common.disconnected(rec, now(), _M._RECONNECT)
      else
        common.failed(rec, now(), _M._RECONNECT)
      end
    end
    if inst.dials[ev.conn_id] then
      inst.dials[ev.conn_id] = nil
      inst.ndials = inst.ndials - 1
      schedule(node)
    end
  elseif t == "connected" then
    if inst.dials[ev.conn_id] then
      inst.dials[ev.conn_id] = nil
      inst.ndials = inst.ndials - 1
      schedule(node)
    elseif inst.looking then
      -- Someone to ask for points (Octez's maintenance, which dials
      -- them all, asks once its dials are established).
      schedule(node)
    end
  elseif t == "too_few_connections" or t == "too_many_connections" then
    schedule(node)
  elseif (t == "new_point" or t == "new_peer") and inst.looking then
    schedule(node)
  end
end

return _M
