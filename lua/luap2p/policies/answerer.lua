-- luap2p.policies.answerer: the Octez default answerer (p2p_protocol.ml).
--
--   Bootstrap    -> one Advertise of up to 50 known public points (the 30
--                   best ranked + 20 at random; never banned, never ours,
--                   never the asker's own point); nothing when the list is
--                   empty, when the asker is a private node, in private
--                   mode or with discovery disabled. Replies on one
--                   connection are spaced >= 0.1 s (later ones wait).
--   Advertise    -> register each new point (not ours); the known points
--                   are capped at config.known_points_max, trimmed to 3/4
--                   of it by forgetting disconnected untrusted points,
--                   oldest miss first.
--   Swap_request -> ignored within config.swap_linger s of the last swap,
--                   or when the proposed point is not idle; otherwise
--                   answer Swap_ack with one of our public running peers,
--                   dial the proposed point, and once it runs drop our
--                   connection to the peer we named.
--   Swap_ack     -> acted on only after we sent a Swap_request on that
--                   connection (maintenance does): dial the point, then
--                   drop the peer we had proposed.
--   Swap messages are spaced >= 60 s per connection. swap_linger = 0
--   disables swapping (Octez: no swap_linger).
--   Message      -> not handled here: application messages go to the
--                   node's message listeners / the connection inbox.
-- State and shared rules: luap2p.policies.common (node.state.swap,
-- node.state.spacing).
local p2p = require "luap2p"
local common = require "luap2p.policies.common"
local core = p2p.core

local math, pairs, type = math, pairs, type

local ADVERTISE_SIZE = 50
local BOOTSTRAP_SPACING = 0.1
local SWAP_SPACING = 60

local spaced = common.spaced

local _M = {
  name = "answerer",
  description = "Octez default answerer: Bootstrap, Advertise, Swap",
  -- What its event hook follows (a swap dial's end).
  events = { "connected", "disconnected" },
}

---------------------------------------------------------------- bootstrap

local function answer_bootstrap(node, conn)
  if common.discovery_off(node) then return end
  if conn.metadata and conn.metadata.private_node then return end
  local pts = node:known_points(ADVERTISE_SIZE, { exclude = conn.point })
  if #pts == 0 then return end
  conn:send_msg({ type = "advertise", points = pts })
end

function _M.bootstrap(node, conn)
  spaced(node, conn, "bootstrap", BOOTSTRAP_SPACING, answer_bootstrap)
  return true
end

function _M.advertise(node, conn, points)
  if common.discovery_off(node) then return true end
  -- From the wire (decoded by the core): unchecked, never raises.
  if type(points) == "table" then node:_add_points(points) end
  return true
end

---------------------------------------------------------------- swap

local function conn_by_point(node, point)
  for _, c in pairs(node.conns) do
    if c.point == point then return c end
  end
end

-- A random running public connection with a listening point, other
-- than `except`.
local function random_public(node, except)
  local cands = common.public_conns(node, except)
  if #cands == 0 then return nil end
  return cands[math.random(#cands)]
end

local function handle_swap_request(node, conn, point)
  if not common.swap_enabled(node) or common.swap_lingering(node) then
    return
  end
  local rec = node.points[point]
  if rec and rec.state ~= "disconnected" then return end
  if conn_by_point(node, point) or node:banned(point) then return end
  local proposed = random_public(node, conn)
  if not proposed then return end
  local raw = core.peer_id_decode(proposed.peer_id)
  if not raw then return end
  if not conn:send_msg({ type = "swap_ack", point = proposed.point,
                         peer_id = raw }) then
    return
  end
  common.swap_dial(node, point, proposed.peer_id)
end

local function handle_swap_ack(node, conn, point)
  if not common.swap_enabled(node) then return end
  local sent = common.swap_acked(node, conn)
  if not sent then return end
  if conn_by_point(node, point) or node:banned(point) then return end
  common.swap_dial(node, point, sent.peer_id)
end

function _M.swap_request(node, conn, point, _peer_id)
  spaced(node, conn, "swap_request", SWAP_SPACING, handle_swap_request, point)
  return true
end

function _M.swap_ack(node, conn, point, _peer_id)
  spaced(node, conn, "swap_ack", SWAP_SPACING, handle_swap_ack, point)
  return true
end

---------------------------------------------------------------- events

function _M.event(node, ev)
  common.swap_event(node, ev)
end

function _M.disconnect(node, conn)
  common.unspace(node, conn.id)
  common.swap_forget(node, conn.id)
end

function _M.stop(node)
  common.stop_spacing(node)
end

return _M
