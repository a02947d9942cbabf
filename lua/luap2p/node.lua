-- luap2p.node: a node: its construction from a config, listening and
-- dialling, bans, connections, listeners, and closing. The methods of
-- dispatch.lua, points.lua and stack.lua are mixed in.
local check = require "luap2p.check"
local core = require "luap2p.core"
local config = require "luap2p.config"
local dispatch = require "luap2p.dispatch"
local points = require "luap2p.points"
local report = require "luap2p.report"
local stack = require "luap2p.stack"
local task = require "luap2p.task"

local error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tostring, type =
      error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tostring, type

local split_point = config.split_point

local MOTIVE_NAMES = { [0] = "no_motive", "too_many_connections",
  "unknown_chain_name", "deprecated_p2p_version",
  "deprecated_distributed_db_version", "already_connected" }

local Node = {}
Node.__index = Node
for _, methods in ipairs({ dispatch.methods, points, stack.methods,
                          report.methods }) do
  for name, fn in pairs(methods) do Node[name] = fn end
end

-- Nodes that listen or have dialled stay alive until node:close(), like
-- active libuv handles: dropping the last reference must not silently
-- kill a node's connections. A node that never did either may be
-- collected (and is closed by __gc).
local live = {} -- luacheck: ignore (held for its strong references)

-- Identity from a userdata, a JSON string or a file path.
local function resolve_identity(v, check_mode)
  if type(v) == "userdata" then return v end
  if type(v) ~= "string" then
    return nil, "config.identity: expected an Identity or a file path"
  end
  return require("luap2p.identity").load(v, { check_mode = check_mode })
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- p2p.new(config) -> node | nil, "ENAME: message", "ENAME"
function Node.new(cfg)
  local c = config.check(cfg)
  if c.identity == nil then
    error("p2p.new: config.identity is required", 2)
  end
  local id, err, code = resolve_identity(c.identity, c.identity_check_mode)
  if not id then return nil, err, code or "EIDENTITY" end
  local node = setmetatable({
    config = c, identity = id, peer_id = id:peer_id(),
    _shell = c.app_messages == "shell",
    conns = {}, points = {}, peers = {}, state = {}, _npoints = 0,
    _npeers = 0,
    _on = {}, _timers = setmetatable({}, { __mode = "k" }), _debounce = {},
    _counters = { policy_errors = 0, errors = 0, reloads = 0 },
    _tasks = {}, _waits = {},
  }, Node)
  local stack, serr = node:_load_stack()
  if not stack then return nil, "EPOLICY: " .. serr, "EPOLICY" end
  node._stack = stack
  node._c = core.node(c, id,
    dispatch.dispatcher(setmetatable({ node = node }, { __mode = "v" })))
  node:_want()
  for _, entry in ipairs(stack) do node:_start_entry(entry) end
  for _, p in ipairs(c.trusted or {}) do node:trust(p) end
  if c.watch then node:_watch() end
  if c.listen then
    local host, port = split_point(c.listen)
    if not host then
      node:close()
      return nil, "EPOINT: bad listen address '" .. c.listen ..
        "' (expected HOST:PORT)", "EPOINT"
    end
    local ok, lerr, lcode = node:listen(host, port)
    if not ok then
      node:close()
      return nil, lerr, lcode
    end
  end
  for _, p in ipairs(c.peers or {}) do node:connect(p) end
  return node
end

function Node:listen(host, port)
  if port == nil then
    if type(host) ~= "string" or not split_point(host) then
      check.fail("node:listen", "point", "'HOST:PORT' (or host, port)", host)
    end
    host, port = split_point(host)
  end
  check.string("node:listen", "host", host)
  local iport = math.tointeger(port)
  if not iport or iport < 0 or iport > 65535 then
    check.fail("node:listen", "port", "an integer in 0..65535", port)
  end
  local called, bound, err, code = pcall(self._c.listen, self._c, host, port)
  if not called then check.reraise("node:listen", { "host", "port" }, bound) end
  if not bound then return nil, err, code end
  live[self] = true
  self.port = self.port or bound
  self.listen_host = self.listen_host or host
  return bound
end

-- node:connect(point, {trusted, expected_peer_id, timeout}) -> id
function Node:connect(p, opts)
  check.point("node:connect", "point", p)
  check.opts("node:connect", "opts", opts)
  opts = opts or {}
  local rec = self:point(p)
  if opts.trusted then rec.trusted = true end
  if opts.expected_peer_id then rec.expected_peer_id = opts.expected_peer_id end
  local ok, why = self:_verdict("connect", p, opts)
  if ok == false then
    return nil, "EREFUSED: " .. tostring(why or "refused by policy"),
      "EREFUSED"
  end
  local id, err, code = self._c:connect(p, rec.expected_peer_id,
    opts.timeout)
  if id then live[self] = true end
  if not id then
    if code == "ECONNREFUSED" or code == "ENETUNREACH" then
      rec.failures = (rec.failures or 0) + 1
      rec.last_failed = core.now()
    end
    return nil, err, code
  end
  return id
end

---------------------------------------------------------------- tasks

-- node:spawn(fn, ...) -> Task: a task that belongs to the node (it ends
-- when the node closes; its errors are error events of the node).
function Node:spawn(fn, ...)
  if self._closed then error("attempt to use a closed node", 2) end
  check.func("node:spawn", "fn", fn)
  return task.spawn(self, fn, ...)
end

-- node:wait_for(event_type[, pred][, timeout]) -> ev | nil, err, ENAME.
-- Inside a task: the next event of that type for which pred(ev) holds.
function Node:wait_for(kind, pred, timeout)
  check.event_type("node:wait_for", "event type", kind)
  if kind == "message" then -- it reaches listeners and the inbox only
    error("node:wait_for: event type: 'message' is not waited for: use " ..
      "conn:receive() in a task, or node:on('message', fn)", 2)
  end
  if type(pred) == "number" and timeout == nil then
    pred, timeout = nil, pred
  end
  if pred ~= nil then check.func("node:wait_for", "pred", pred) end
  check.seconds("node:wait_for", "timeout", timeout, 1, true)
  task.current("node:wait_for") -- raises at our caller outside a task
  return task.wait_event(self, "node:wait_for", { kind }, pred, timeout)
end

local DIAL_END = { "connected", "nacked", "disconnected" }

-- node:dial(point[, {timeout, expected_peer_id, trusted}]) -> conn, or
-- nil, "ENAME: message", ENAME[, nack] once the handshake ends: after the
-- Ack (the running connection), a Nack (ENACK; nack = {motive,
-- motive_name, points, peer_id}), a failure or the timeout (the dial is
-- dropped).
-- Inside a task.
function Node:dial(p, opts)
  task.current("node:dial")
  check.point("node:dial", "point", p)
  check.opts("node:dial", "opts", opts)
  local id, err, code = self:connect(p, opts)
  if not id then return nil, err, code end
  local timeout = opts and opts.timeout or self.config.connection_timeout or
    10
  local seen -- the end of this dial, as soon as the core reports it
  local ev, werr, wcode = task.wait_event(self, "node:dial", DIAL_END,
    function(e)
      if e.conn_id ~= id then return false end
      seen = seen or e
      return true
    end, timeout, function()
      -- Canceled or timed out: the dial in flight goes too.
      if not seen and not self._closed then
        self._c:disconnect(id, "dial abandoned", false)
      end
    end)
  -- The end may have come in the same loop turn as the timeout.
  ev = ev or (wcode == "ETIMEDOUT" and seen) or nil
  if not ev then
    if wcode == "ETIMEDOUT" then
      werr = string.format("ETIMEDOUT: no answer from %s within %gs", p,
        timeout)
    end
    return nil, werr, wcode
  end
  if ev.type == "connected" then return ev.conn end
  if ev.type == "nacked" then
    local name = MOTIVE_NAMES[ev.motive] or ("motive " .. tostring(ev.motive))
    return nil, "ENACK: " .. p .. " refused us (Nack: " .. name .. ")",
      "ENACK", { motive = ev.motive, motive_name = name,
                 points = ev.points or {}, peer_id = ev.peer_id }
  end
  local c = ev.code or "ECLOSED"
  return nil, c .. ": " .. tostring(ev.reason or "closed"), c
end

-- Trust a point ("ip:port") or a peer id ("id...").
-- Ban an IP, IP/prefix, point or peer id for `seconds` (nil: forever).
-- A ban also drops the matching connections, unless opts.kick == false
-- (a greylist entry only keeps newcomers out, as in Octez).
function Node:ban(target, seconds, reason, opts)
  if reason ~= nil and type(reason) ~= "string" then
    check.fail("node:ban", "reason", "a string or nil", reason)
  end
  check.opts("node:ban", "opts", opts)
  check.string("node:ban", "target", target)
  check.seconds("node:ban", "seconds", seconds, 1, true)
  local called, ok, err, code = pcall(self._c.ban, self._c, target, seconds)
  if not called then
    check.reraise("node:ban", { "target", "seconds" }, ok)
  end
  if not ok then return nil, err, code end
  if not (opts and opts.kick == false) then
    for _, conn in pairs(self.conns) do
      if conn.peer_id == target or self._c:banned(conn.addr) or
         (conn.point and self._c:banned(conn.point)) then
        conn:close("banned")
      end
    end
  end
  self:_event({ type = "banned", target = target, seconds = seconds,
                reason = reason })
  return true
end

function Node:unban(target)
  check.string("node:unban", "target", target)
  local called, removed = pcall(self._c.unban, self._c, target)
  if not called then check.reraise("node:unban", { "target" }, removed) end
  self:_event({ type = "unbanned", target = target })
  return removed
end

function Node:banned(target)
  check.string("node:banned", "target", target)
  local called, yes = pcall(self._c.banned, self._c, target)
  if not called then check.reraise("node:banned", { "target" }, yes) end
  return yes
end

function Node:connections()
  local list = {}
  for _, conn in pairs(self.conns) do list[#list + 1] = conn end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

function Node:connection(peer_id)
  for _, conn in pairs(self.conns) do
    if conn.peer_id == peer_id then return conn end
  end
end

function Node:stat()
  local s = self._c:stat()
  s.connections = count(self.conns)
  s.known_points = self._npoints
  s.known_points_max = self.config.known_points_max
  s.known_peers = self._npeers
  s.known_peers_max = self.config.known_peers_max
  s.evicted_points = self._evicted_points or 0
  s.evicted_peers = self._evicted_peers or 0
  s.dropped = self._dropped or 0
  s.policy_errors = self._counters.policy_errors
  s.errors = self._counters.errors
  s.reloads = self._counters.reloads
  return s
end

-- Disconnect a connection, a peer id or a point: true, or nil,
-- "ENOTCONN: ...", "ENOTCONN" when no running connection matches.
function Node:disconnect(target, reason)
  if type(target) == "table" then return target:close(reason) end
  if type(target) ~= "string" then
    check.fail("node:disconnect", "target",
      "a connection, a peer id or a point", target)
  end
  for _, conn in pairs(self.conns) do
    if conn.peer_id == target or conn.point == target then
      return conn:close(reason)
    end
  end
  return nil, "ENOTCONN: no connection to " .. tostring(target), "ENOTCONN"
end

-- node:on(event_type | "message" | "*", fn)
function Node:on(kind, fn)
  check.event_type("node:on", "event type", kind, true)
  check.func("node:on", "fn", fn)
  self._on[kind] = self._on[kind] or {}
  table.insert(self._on[kind], fn)
  if not self:_wants(kind) then self:_want() end
  return self
end

function Node:policies()
  local names = {}
  for i, e in ipairs(self._stack) do names[i] = e.name end
  return names
end

-- Close every connection (Disconnect sent) and the listeners; end the
-- node's tasks and wake the other tasks waiting on it (ECLOSED).
function Node:close()
  if self._closed then return end
  self:_drain_events() -- what happened before the close is still heard
  self._closing = true -- its events are delivered at once (dispatch.lua)
  task.close_node(self)
  for _, conn in pairs(self.conns) do conn:close("node closing") end
  for _, entry in ipairs(self._stack or {}) do self:_stop_entry(entry) end
  self:_close_reports() -- what was suppressed, while listeners still hear
  self._closed = true
  live[self] = nil
  for t in pairs(self._timers) do pcall(t.stop, t) end
  for _, w in ipairs(self._watches or {}) do w:close() end
  for _, t in pairs(self._debounce) do pcall(t.stop, t) end
  self._c:close()
end
Node.__close = Node.close
Node.__gc = Node.close

return Node
