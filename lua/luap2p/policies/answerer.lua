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
-- Swap bookkeeping lives in node.state.swap (shared with maintenance).
local p2p = require "luap2p"
local core = p2p.core

local math, pairs, pcall, table, type = math, pairs, pcall, table, type

local now = p2p.now

local ADVERTISE_SIZE = 50
local BOOTSTRAP_SPACING = 0.1
local SWAP_SPACING = 60

local _M = {
  name = "answerer",
  description = "Octez default answerer: Bootstrap, Advertise, Swap",
}

---------------------------------------------------------------- state

local function swap_state(node)
  local s = node.state.swap
  if not s then
    s = { sent = {}, latest_accepted = -math.huge,
          latest_successful = -math.huge, pending = {} }
    node.state.swap = s
  end
  return s
end

-- Per-connection throttle state of this instance (a reload forgets it,
-- which only lets one message through early).
local throttle = {}

local function discovery_off(node)
  return node.config.private_mode or node.config.disable_peer_discovery
end

---------------------------------------------------------------- points

-- Up to `size` known public points (node:known_points: the best ranked
-- 3/5, then 2/5 picked at random among the rest).
function _M._advertisable(node, size, exclude)
  return node:known_points(size or ADVERTISE_SIZE, { exclude = exclude })
end

-- Forget disconnected, untrusted points (oldest miss first) until the
-- table holds `target` points (node:_trim_points).
function _M._trim_points(node, target) return node:_trim_points(target) end

---------------------------------------------------------------- throttle

-- Run fn now, or once `spacing` s after the previous run on this
-- connection; calls arriving in between coalesce into that one run
-- (with the latest arguments).
local function spaced(node, conn, kind, spacing, fn, ...)
  local per = throttle[conn.id]
  if not per then
    per = {}
    throttle[conn.id] = per
  end
  local e = per[kind]
  if not e then
    e = { last = -math.huge }
    per[kind] = e
  end
  local t = now()
  local args = table.pack(...)
  if e.timer then
    e.args = args
    return
  end
  local wait = e.last + spacing - t
  if wait <= 0 then
    e.last = t
    return fn(node, conn, table.unpack(args, 1, args.n))
  end
  e.args = args
  e.timer = node:after(wait, function()
    e.timer = nil
    e.last = now()
    if not conn.closed then
      fn(node, conn, table.unpack(e.args, 1, e.args.n))
    end
  end)
end

---------------------------------------------------------------- bootstrap

local function answer_bootstrap(node, conn)
  if discovery_off(node) then return end
  if conn.metadata and conn.metadata.private_node then return end
  local pts = _M._advertisable(node, ADVERTISE_SIZE, conn.point)
  if #pts == 0 then return end
  conn:send_msg({ type = "advertise", points = pts })
end

function _M.bootstrap(node, conn)
  spaced(node, conn, "bootstrap", BOOTSTRAP_SPACING, answer_bootstrap)
  return true
end

function _M.advertise(node, conn, points)
  if discovery_off(node) then return true end
  if type(points) == "table" then node:add_points(points) end
  return true
end

---------------------------------------------------------------- swap

local function swap_enabled(node)
  local l = node.config.swap_linger
  return not node.config.private_mode and type(l) == "number" and l > 0
end

local function conn_by_point(node, point)
  for _, c in pairs(node.conns) do
    if c.point == point then return c end
  end
end

-- A random running connection, public and with a listening point, other
-- than `except`.
function _M._random_addr(node, except)
  local cands = {}
  for _, c in pairs(node.conns) do
    if c ~= except and c.point and c.peer_id and not c.closed and
       not (c.metadata and c.metadata.private_node) then
      cands[#cands + 1] = c
    end
  end
  if #cands == 0 then return nil end
  return cands[math.random(#cands)]
end

-- Dial new_point; when it runs, drop our connection to drop_peer.
local function swap(node, new_point, drop_peer)
  local s = swap_state(node)
  s.latest_accepted = now()
  local id = node:connect(new_point)
  if not id then
    s.latest_accepted = s.latest_successful
    return
  end
  s.pending[id] = { point = new_point, drop = drop_peer }
end

local function handle_swap_request(node, conn, point)
  if not swap_enabled(node) then return end
  local s = swap_state(node)
  local t = now()
  if t - math.max(s.latest_successful, s.latest_accepted) <
     node.config.swap_linger then
    return
  end
  local rec = node.points[point]
  if rec and rec.state ~= "disconnected" then return end
  if conn_by_point(node, point) or node:banned(point) then return end
  local proposed = _M._random_addr(node, conn)
  if not proposed then return end
  local raw = core.peer_id_decode(proposed.peer_id)
  if not raw then return end
  if not conn:send_msg({ type = "swap_ack", point = proposed.point,
                         peer_id = raw }) then
    return
  end
  swap(node, point, proposed.peer_id)
end

local function handle_swap_ack(node, conn, point)
  if not swap_enabled(node) then return end
  local s = swap_state(node)
  local sent = s.sent[conn.id]
  if not sent then return end
  s.sent[conn.id] = nil
  if conn_by_point(node, point) or node:banned(point) then return end
  swap(node, point, sent.peer_id)
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
  local s = node.state.swap
  if not s or not ev.conn then return end
  local p = s.pending[ev.conn]
  if not p then return end
  if ev.type == "connected" then
    s.pending[ev.conn] = nil
    s.latest_successful = now()
    if p.drop then node:disconnect(p.drop, "swapped") end
  elseif ev.type == "disconnected" then
    s.pending[ev.conn] = nil
    s.latest_accepted = s.latest_successful
  end
end

function _M.disconnect(node, conn)
  local per = throttle[conn.id]
  if per then
    for _, e in pairs(per) do
      if e.timer then pcall(e.timer.stop, e.timer) end
    end
    throttle[conn.id] = nil
  end
  local s = node.state.swap
  if s then s.sent[conn.id] = nil end
end

return _M
