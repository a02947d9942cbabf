-- luap2p.policies.common: the state and rules the default policies share.
-- It is not a policy (no hooks); answerer, maintenance and acl require it.
--
-- Contract
--   State. Everything a default policy remembers about a node lives in
--   node.state, one key per concern, made by common.state(node, key, init):
--   never in module upvalues. A policy file is loaded afresh for each node
--   and on each reload, so an upvalue would be per load: lost on reload,
--   and a second node would never see it. The keys:
--     node.state.swap         swap bookkeeping (answerer, maintenance):
--                             sent[conn id] = {time, peer_id} for our
--                             Swap_requests; pending[conn id] = {point,
--                             drop} for swap dials; latest_accepted,
--                             latest_successful (times)
--     node.state.spacing      per-connection spacing of replies (answerer):
--                             [conn id][kind] = {last, timer, args}
--     node.state.maintenance  dials in flight (dials[conn id] = point,
--                             ndials), looking (short of points),
--                             bootstrap (time of the last Bootstrap sent),
--                             run (the running instance's timer flags)
--     node.state.acl          greylists (acl.lua)
--   Timers belong to the policy that set them and stop when it is
--   replaced: state that outlives a reload never holds a live timer (a
--   policy's stop hook clears the ones it set: common.stop_spacing).
--   Rules. One function per rule, used by every policy that needs it:
--     advertisable points  node:known_points(n, {exclude}) (points.lua:
--                          ranking and the Octez filters)
--     discovery            common.discovery_off(node)
--     swap                 common.swap_enabled, common.swap_lingering,
--                          common.public_conns, common.swap_sent,
--                          common.swap_acked, common.swap_dial,
--                          common.swap_event, common.swap_forget
--     back-off             common.failed(rec, t[, r]),
--                          common.disconnected(rec, t[, r]) on point
--                          records, with the delays r (default
--                          common.RECONNECT; maintenance passes its own
--                          copy, which tests may compress)
local core = require "luap2p.core"

local math, pairs, pcall, table, type = math, pairs, pcall, table, type

local now = core.now

local _M = {}

-- node.state[key], made by init() the first time.
function _M.state(node, key, init)
  local s = node.state[key]
  if s == nil then
    s = init()
    node.state[key] = s
  end
  return s
end

---------------------------------------------------------------- discovery

-- No points are given away in private mode or with discovery disabled.
function _M.discovery_off(node)
  return node.config.private_mode or node.config.disable_peer_discovery
end

---------------------------------------------------------------- back-off

-- Octez p2p_point_state.ml reconnection delays (s).
_M.RECONNECT = { initial = 1, factor = 1.2, cap = 172800, disconnection = 60 }

-- A dial failed or was rejected: wait the current delay, grow it. r: the
-- delays (default RECONNECT).
function _M.failed(rec, t, r)
  r = r or _M.RECONNECT
  local d = (rec.delay and rec.delay > 0) and rec.delay or r.initial
  rec.reconnect_at = t + d
  rec.delay = math.min(d * r.factor, r.cap)
end

-- A running connection ended: wait 60 s, reset the delay.
function _M.disconnected(rec, t, r)
  rec.reconnect_at = t + (r or _M.RECONNECT).disconnection
  rec.delay = 0
end

---------------------------------------------------------------- swap

local function swap_state(node)
  return _M.state(node, "swap", function()
    return { sent = {}, pending = {}, latest_accepted = -math.huge,
             latest_successful = -math.huge }
  end)
end

-- Swaps run unless in private mode or with swap_linger = 0.
function _M.swap_enabled(node)
  local l = node.config.swap_linger
  return not node.config.private_mode and type(l) == "number" and l > 0
end

-- Within swap_linger s of the last swap (accepted or successful).
function _M.swap_lingering(node)
  local s = swap_state(node)
  return now() - math.max(s.latest_successful, s.latest_accepted) <
    node.config.swap_linger
end

-- Running public connections with a listening point and a peer id,
-- other than `except`.
function _M.public_conns(node, except)
  local out = {}
  for _, c in pairs(node.conns) do
    if c ~= except and c.point and c.peer_id and not c.closed and
       not (c.metadata and c.metadata.private_node) then
      out[#out + 1] = c
    end
  end
  return out
end

-- We sent a Swap_request proposing `proposed` on `recipient`.
function _M.swap_sent(node, recipient, proposed)
  swap_state(node).sent[recipient.id] = { time = now(),
                                          peer_id = proposed.peer_id }
end

-- A Swap_ack arrived on conn: our request there (consumed), or nil.
function _M.swap_acked(node, conn)
  local s = swap_state(node)
  local sent = s.sent[conn.id]
  s.sent[conn.id] = nil
  return sent
end

-- Dial new_point; when it runs, drop our connection to drop_peer.
function _M.swap_dial(node, new_point, drop_peer)
  local s = swap_state(node)
  s.latest_accepted = now()
  local id = node:connect(new_point)
  if not id then
    s.latest_accepted = s.latest_successful
    return
  end
  s.pending[id] = { point = new_point, drop = drop_peer }
end

-- Follow a swap dial to its end (connected or disconnected events).
function _M.swap_event(node, ev)
  local s = node.state.swap
  if not s or not ev.conn_id then return end
  local p = s.pending[ev.conn_id]
  if not p then return end
  if ev.type == "connected" then
    s.pending[ev.conn_id] = nil
    s.latest_successful = now()
    if p.drop then node:disconnect(p.drop, "swapped") end
  elseif ev.type == "disconnected" then
    s.pending[ev.conn_id] = nil
    s.latest_accepted = s.latest_successful
  end
end

-- A connection closed: forget our request on it.
function _M.swap_forget(node, conn_id)
  local s = node.state.swap
  if s then s.sent[conn_id] = nil end
end

---------------------------------------------------------------- spacing

-- Run fn(node, conn, ...) now, or once `spacing` s after the previous run
-- of `kind` on this connection; calls arriving in between coalesce into
-- that one run (with the latest arguments).
function _M.spaced(node, conn, kind, spacing, fn, ...)
  local all = _M.state(node, "spacing", function() return {} end)
  local per = all[conn.id]
  if not per then
    per = {}
    all[conn.id] = per
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

local function stop_timers(per)
  for _, e in pairs(per) do
    if e.timer then
      pcall(e.timer.stop, e.timer)
      e.timer = nil
    end
  end
end

-- A connection closed: drop its spacing state and pending replies.
function _M.unspace(node, conn_id)
  local all = node.state.spacing
  local per = all and all[conn_id]
  if per then
    stop_timers(per)
    all[conn_id] = nil
  end
end

-- The policy that spaced replies stops: its timers stop with it, so the
-- replies they held are dropped (the spacing times are kept).
function _M.stop_spacing(node)
  for _, per in pairs(node.state.spacing or {}) do stop_timers(per) end
end

return _M
