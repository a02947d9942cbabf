-- luap2p.points: the node's known points and peers, and trust. Methods
-- of Node; records live in node.points and node.peers.
local check = require "luap2p.check"
local core = require "luap2p.core"

local error, ipairs, math, pairs, table, type =
      error, ipairs, math, pairs, table, type

local Node = {}

-- Both tables are bounded (config.known_points_max, known_peers_max): a
-- new record over the bound first evicts down to 3/4 of it the least
-- useful records, never a trusted one or one in use. Points: learnt only
-- from an incoming connection first, then never connected, then the
-- oldest miss. Peers: the oldest seen first.
local function low_water(max) return max - max // 4 - 1 end

local function point_rank(rec)
  if rec.source == "incoming" then return 0 end
  if not rec.last_established then return 1 end
  return 2
end

-- The known-point record for "ip:port", created on first sight.
-- source: "incoming" for the listening point of an incoming connection
-- (the least useful kind: anyone can make us learn one).
function Node:point(p, create, source)
  check.string("node:point", "point", p)
  local rec = self.points[p]
  if not rec and create ~= false then
    local max = self.config.known_points_max
    if max and self._npoints >= max then
      self:_trim_points(low_water(max))
    end
    rec = { point = p, state = "disconnected", trusted = false,
            delay = 0, first_seen = core.now(), source = source }
    self.points[p] = rec
    self._npoints = self._npoints + 1
    if self:_wants("new_point") then
      self:_event({ type = "new_point", point = p })
    end
  end
  return rec
end

function Node:known_count() return self._npoints end

-- Forget a known point (its record and count); false when unknown.
function Node:forget(p)
  if not self.points[p] then return false end
  self.points[p] = nil
  self._npoints = self._npoints - 1
  return true
end

-- Forget the oldest seen peers (then by id) until `target` remain, never
-- a trusted or connected one. The k oldest are found from a sort of their
-- times alone (numbers, compared in C): those strictly older than the
-- k-th go, and of those seen exactly then, the first by id (the order of
-- a full sort by time then id, without a table per peer).
function Node:_evict_peers(target)
  local k = self._npeers - target
  if k <= 0 then return end
  local live = {}
  for _, conn in pairs(self.conns) do
    if conn.peer_id then live[conn.peer_id] = true end
  end
  local peers = self.peers
  local times = {}
  for id, rec in pairs(peers) do
    if not rec.trusted and not live[id] then
      times[#times + 1] = rec.last_seen or 0
    end
  end
  if k > #times then k = #times end
  if k == 0 then return end
  table.sort(times)
  local cut = times[k]
  local older, ties = 0, {}
  for i = 1, k do if times[i] < cut then older = older + 1 end end
  local gone = 0
  for id, rec in pairs(peers) do
    if not rec.trusted and not live[id] then
      local t = rec.last_seen or 0
      if t < cut then
        peers[id] = nil
        gone = gone + 1
      elseif t == cut then
        ties[#ties + 1] = id
      end
    end
  end
  table.sort(ties)
  for i = 1, k - older do
    peers[ties[i]] = nil
    gone = gone + 1
  end
  self._npeers = self._npeers - gone
  self._evicted_peers = (self._evicted_peers or 0) + gone
end

function Node:peer(id, create)
  check.string("node:peer", "peer id", id)
  local rec = self.peers[id]
  if not rec and create ~= false then
    local max = self.config.known_peers_max
    if max and self._npeers >= max then
      self:_evict_peers(low_water(max))
    end
    rec = { peer_id = id, trusted = false }
    self.peers[id] = rec
    self._npeers = self._npeers + 1
    if self:_wants("new_peer") then
      self:_event({ type = "new_peer", peer_id = id })
    end
  end
  if rec then rec.last_seen = core.now() end
  return rec
end

function Node:peer_count() return self._npeers end

local function last_seen(rec)
  local a, b = rec.last_established, rec.last_disconnect
  if a and b then return math.max(a, b) end
  return a or b
end

-- Octez compare_known_point_info (p2p_pool.ml): connected points first,
-- long-standing ones first; then disconnected ones, most recently seen
-- first.
local function rank_before(a, b)
  local da, db = a.state == "disconnected", b.state == "disconnected"
  if da ~= db then return not da end
  local sa, sb = last_seen(a) or -math.huge, last_seen(b) or -math.huge
  if da then return sa > sb end
  return sa < sb
end

-- Up to n (50) known points that may be advertised, as Octez's
-- list_known_points ~ignore_private:true (p2p_pool.ml): only points a
-- real connection showed to be public (metadata private_node = false;
-- a point whose privacy was never learnt may be a private node's), not
-- ours, not banned; the best ranked 3/5 then 2/5 picked at random among
-- the rest. opts.exclude: a point to leave out.
function Node:known_points(n, opts)
  n = n or 50
  if math.type(n) ~= "integer" or n < 0 then
    check.fail("node:known_points", "n", "an integer count >= 0", n)
  end
  check.opts("node:known_points", "opts", opts)
  local exclude = opts and opts.exclude
  local list = {}
  for p, rec in pairs(self.points) do
    if rec.private == false and not rec.ours and not p:find(":0$") and
       p ~= exclude and not self._c:banned(p) then
      list[#list + 1] = rec
    end
  end
  table.sort(list, rank_before)
  local other = n * 2 // 5
  local best = n - other
  local out = {}
  for i = 1, math.min(best, #list) do out[#out + 1] = list[i].point end
  local total = #list
  for i = best + 1, math.min(best + other, total) do
    local j = math.random(i, total)
    list[i], list[j] = list[j], list[i]
    out[#out + 1] = list[i].point
  end
  return out
end

-- Forget disconnected, untrusted points until the table holds `target`
-- points, the least useful first (points learnt only from an incoming
-- connection, then never connected ones, then the oldest miss); returns
-- how many went.
function Node:_trim_points(target)
  if self._npoints <= target then return 0 end
  local victims = {}
  local t = core.now()
  for p, rec in pairs(self.points) do
    if rec.state == "disconnected" and not rec.trusted and
       not self:trusted(p, rec.peer_id) then
      victims[#victims + 1] = { point_rank(rec),
        rec.last_failed or rec.last_disconnect or t, p }
    end
  end
  table.sort(victims, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  local removed = 0
  for _, v in ipairs(victims) do
    if self._npoints <= target then break end
    self:forget(v[3])
    removed = removed + 1
  end
  self._evicted_points = (self._evicted_points or 0) + removed
  return removed
end

-- Register points heard of (an Advertise, a Nack), not ours, keeping the
-- table at config.known_points_max (400): when full, disconnected
-- untrusted points are forgotten down to 3/4 of it, oldest miss first
-- (Octez max_known_points (400, 300)). Returns how many were added.
-- Points of the wire (Advertise, Nack) come decoded by the core: the
-- dispatcher calls _add_points; the public add_points checks its list.
function Node:add_points(list)
  if type(list) ~= "table" then
    check.fail("node:add_points", "points", "a list of 'HOST:PORT' strings",
      list)
  end
  for i, p in ipairs(list) do
    check.point("node:add_points", "points[" .. i .. "]", p)
  end
  return self:_add_points(list)
end

function Node:_add_points(list)
  local max = self.config.known_points_max
  local mine = self.port and
    (self.listen_host or "127.0.0.1") .. ":" .. self.port
  local added = 0
  for _, p in ipairs(list) do
    if not self.points[p] and p ~= mine then
      local n = self._npoints
      if max and n >= max then
        self:_trim_points(max * 3 // 4)
        n = self._npoints
      end
      -- Still full of live or trusted points: drop the rest, as Octez's
      -- GC could not make room either.
      if max and n >= max then return added end
      self:point(p)
      added = added + 1
    end
  end
  return added
end

function Node:trust(target, trusted)
  trusted = trusted ~= false
  if type(target) ~= "string" then
    check.fail("node:trust", "target", "a point or a peer id", target)
  end
  if target:match("^id") and not target:find(":") then
    self:peer(target).trusted = trusted
  else
    self:point(target).trusted = trusted
  end
  return true
end

function Node:untrust(target)
  if type(target) ~= "string" then
    check.fail("node:untrust", "target", "a point or a peer id", target)
  end
  return self:trust(target, false)
end

function Node:trusted(point, peer_id)
  local rec = point and self.points[point]
  local prec = peer_id and self.peers[peer_id]
  return (rec and rec.trusted) or (prec and prec.trusted) or false
end

return Node
