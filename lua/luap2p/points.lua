-- luap2p.points: the node's known points and peers, and trust. Methods
-- of Node; records live in node.points and node.peers.
local core = require "luap2p.core"

local error, math, pairs, table, type = error, math, pairs, table, type

local Node = {}

-- The known-point record for "ip:port", created on first sight.
function Node:point(p, create)
  local rec = self.points[p]
  if not rec and create ~= false then
    rec = { point = p, state = "disconnected", trusted = false,
            delay = 0, first_seen = core.now() }
    self.points[p] = rec
    self._npoints = self._npoints + 1
    self:_event({ type = "new_point", point = p })
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

function Node:peer(id, create)
  local rec = self.peers[id]
  if not rec and create ~= false then
    rec = { peer_id = id, trusted = false }
    self.peers[id] = rec
    self:_event({ type = "new_peer", peer_id = id })
  end
  return rec
end

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

function Node:trust(target, trusted)
  trusted = trusted ~= false
  if type(target) ~= "string" then
    error("node:trust: expected a point or a peer id", 2)
  end
  if target:match("^id") and not target:find(":") then
    self:peer(target).trusted = trusted
  else
    self:point(target).trusted = trusted
  end
  return true
end

function Node:untrust(target) return self:trust(target, false) end

function Node:trusted(point, peer_id)
  local rec = point and self.points[point]
  local prec = peer_id and self.peers[peer_id]
  return (rec and rec.trusted) or (prec and prec.trusted) or false
end

return Node
