-- luap2p.points: the node's known points and peers, and trust. Methods
-- of Node; records live in node.points and node.peers.
local core = require "luap2p.core"

local error, math, pairs, type = error, math, pairs, type

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

-- Up to n known points that may be advertised: public, not ours, not
-- banned; random order. opts.exclude: a point to leave out.
function Node:known_points(n, opts)
  local out = {}
  for p, rec in pairs(self.points) do
    if not rec.private and not rec.ours and not p:find(":0$") and
       not self._c:banned(p) and not (opts and opts.exclude == p) then
      out[#out + 1] = p
    end
  end
  for i = #out, 2, -1 do
    local j = math.random(i)
    out[i], out[j] = out[j], out[i]
  end
  for i = #out, (n or #out) + 1, -1 do out[i] = nil end
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
