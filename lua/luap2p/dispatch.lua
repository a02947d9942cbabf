-- luap2p.dispatch: how the core's calls reach the policy stack and the
-- listeners: guarded hook calls, verdicts, events (and the node state they
-- keep in step), P2P and application messages. Methods of Node.
local core = require "luap2p.core"
local policy = require "luap2p.policy"
local Conn = require "luap2p.conn"
local shell = require "luap2p.shell"
local task = require "luap2p.task"

local listeners = task.listeners

local io, ipairs, math, os, pairs, string, table, tostring, type =
      io, ipairs, math, os, pairs, string, table, tostring, type

local Node = {}
local _M = { methods = Node, APP_TAG = 0x10 }

-- Safe answers when a verdict hook fails: fail closed at the door,
-- ignore in the answerer.
local SAFE = {
  accept = { false, "policy error" },
  connect = { false, "policy error" },
  authenticated = { "close", "policy error" },
}

-- Verdict shapes: a hook returning anything else is a policy error.
local VALID = {
  accept = function(v) return type(v) == "boolean" end,
  connect = function(v) return type(v) == "boolean" end,
  authenticated = function(v, motive)
    return v == "ack" or v == "close" or
      (v == "nack" and (motive == nil or math.type(motive) == "integer"))
  end,
}

local held = task.held
local guard, entry_limits = policy.guard, policy.entry_limits

-- The end of _call: its results passed through (no table per call).
local function called(self, entry, hook, prev, ok, ...)
  held.n = held.n - 1
  self._current = prev
  if not ok and not self._closed then
    self:_policy_error(entry, hook, (...))
  end
  return ok, ...
end

-- Call hook of one policy entry, guarded. Returns ok, results...
function Node:_call(entry, hook, ...)
  local fn = entry.module[hook]
  local prev = self._current
  self._current = entry
  held.n = held.n + 1 -- hooks answer at once: no waiting (spawn a task)
  return called(self, entry, hook, prev,
    guard(entry_limits(entry, self.config), fn, self, ...))
end

-- Verdict hooks: the first policy with an opinion decides.
function Node:_verdict(hook, ...)
  for _, entry in ipairs(self._stack) do
    if entry.module[hook] then
      local ok, a, b, c = self:_call(entry, hook, ...)
      if not ok then
        local safe = SAFE[hook]
        if safe then return safe[1], safe[2] end
        return nil
      end
      if a ~= nil then
        local valid = VALID[hook]
        if valid and not valid(a, b) then
          self:_policy_error(entry, hook, string.format(
            "bad verdict %s%s", tostring(a), b ~= nil and
            (", " .. tostring(b)) or ""))
          local safe = SAFE[hook]
          return safe[1], safe[2]
        end
        return a, b, c
      end
    end
  end
end

-- "all" hooks: every policy, in stack order.
function Node:_all(hook, ...)
  for _, entry in ipairs(self._stack) do
    if entry.module[hook] then self:_call(entry, hook, ...) end
  end
end

-- The event hook of every policy that takes events of this type (its
-- `events` set, or every type when it has none), in stack order.
function Node:_events(ev)
  local t = ev.type
  for _, entry in ipairs(self._stack) do
    if entry.module.event then
      local evs = entry.events
      if not evs or evs[t] then self:_call(entry, "event", ev) end
    end
  end
end

-- Call the listeners of `kind` with the one event table (protected: a
-- listener that throws is reported on stderr and the others still run).
function Node:_listeners(kind, ev)
  local list = self._on[kind]
  if list then listeners(list, ev, self, "%s listener", kind) end
end

---------------------------------------------------------------- wanted

-- Events of the core that Lua needs whoever listens: the node state that
-- _track keeps. (What it keeps on "authenticated" the authenticated hook
-- keeps too, so that event may stay in C.)
local TRACKED = { connecting = true, connected = true, disconnected = true,
                  auth_failed = true, nacked = true }
_M.TRACKED = TRACKED

-- set with k in it: TRACKED is copied before it grows.
local function with(set, k)
  if set[k] then return set end
  if set == TRACKED then
    set = {}
    for t in pairs(TRACKED) do set[t] = true end
  end
  set[k] = true
  return set
end

-- Tell the core which calls to make into Lua: the events that _track, a
-- listener, a waiting task or a policy's event hook takes (its `events`,
-- or every event when it declares none), and the accept hook when a
-- policy has one. Called whenever one of those changes; self._wanted is
-- the set sent (true: every event; TRACKED itself when nothing more).
function Node:_want()
  local c = self._c
  if not c or self._closed then return end
  local set = TRACKED
  local on = self._on
  local all = on["*"] ~= nil
  for k in pairs(on) do set = with(set, k) end
  for k in pairs(self._waits) do set = with(set, k) end
  local accept = false
  for _, entry in ipairs(self._stack) do
    local m = entry.module
    if m.accept then accept = true end
    if m.event then
      local evs = entry.events
      if evs then
        for k in pairs(evs) do set = with(set, k) end
      else
        all = true
      end
    end
  end
  if all then set = true end
  self._wanted = set
  c:want(set, accept)
end

-- Nothing waits for events of this type any more: the core may stop
-- calling Lua for them (unless something else takes them).
function Node:_unwant(kind)
  if TRACKED[kind] or self._wanted == true or self._on[kind] then return end
  self:_want()
end

-- Whether someone takes events of this type (for the core's, whether it
-- calls Lua for them; Lua's own need not be built when nobody does).
function Node:_wants(kind)
  local w = self._wanted
  return w == nil or w == true or w[kind] == true
end

---------------------------------------------------------------- events

-- Keep node state in step with what the core reports.
function Node:_track(ev)
  local t = ev.type
  if t == "connecting" then
    local rec = self:point(ev.point)
    rec.state = "requested"
  elseif t == "authenticated" then
    self:_authenticated(ev)
  elseif t == "connected" then
    local conn = Conn._new(self, ev.conn_id)
    conn:_refresh()
    self.conns[ev.conn_id] = conn
    if conn.point then
      local rec = self:point(conn.point, true,
        conn.incoming and "incoming" or nil)
      rec.state = "running"
      rec.private = conn.metadata.private_node
      rec.last_established = core.now()
      rec.delay = 0
      rec.peer_id = conn.peer_id
    end
    ev.conn = conn
  elseif t == "disconnected" then
    local conn = ev.conn_id and self.conns[ev.conn_id]
    if conn then self.conns[ev.conn_id] = nil end
    local rec = ev.point and self.points[ev.point]
    if rec and (not conn or rec.state == "running" or
                rec.state == "requested") then
      rec.state = "disconnected"
      rec.last_disconnect = core.now()
      if conn then
        rec.failures = 0
      else
        rec.failures = (rec.failures or 0) + 1
        rec.last_failed = core.now()
      end
    end
    if conn then
      conn.closed = ev.reason or "closed"
      ev.conn = conn
      if conn._reader then task.wake(conn._reader) end
      self:_all("disconnect", conn, ev)
      conn:_emit("close", ev)
    end
  elseif t == "auth_failed" and ev.code == "EMYSELF" and ev.point then
    self:point(ev.point).ours = true
  elseif t == "nacked" and ev.points and
         not self.config.disable_peer_discovery then
    self:_add_points(ev.points)
  end
end

-- A connection authenticated (the event, or the hook right after it when
-- nobody takes the event; twice is the same as once): its peer is known,
-- and the point we dialled has that peer id. An incoming connection's
-- point is known only once it runs (its listening port, from its
-- connection message, when it has one).
function Node:_authenticated(ev)
  if ev.point and not ev.incoming then
    self:point(ev.point).peer_id = ev.peer_id
  end
  self:peer(ev.peer_id)
end

-- Every event has one shape, whoever emits it (the core or Lua): ev.type,
-- ev.ts, ev.conn (the Conn while it runs and in its "disconnected"; nil
-- before it runs or for a dial that failed), ev.conn_id (the connection
-- number whenever the event concerns one), then the event's own fields.
-- Emitters may pass `conn` as a number or a Conn.
--
-- Causal order: an event caused while another is being delivered (the
-- acl's hook closes a connection on rate_exceeded, a listener bans) has
-- its effect on the node's state at once (_track), but reaches the event
-- hooks, listeners and waiting tasks after the event that caused it, in
-- the order they came. Without that, every consumer after the one that
-- acted (the log, last in the stack) saw "disconnected" before the
-- "rate_exceeded" it followed. policy_error and error events are
-- delivered at once (their loop guards rely on it), and so is everything
-- while the node closes (node:close() from a listener).
function Node:_event(ev)
  if self._closed then return end
  local c = ev.conn
  if c ~= nil then
    if type(c) == "table" then
      ev.conn_id = c.id
    else
      ev.conn_id = c
      ev.conn = self.conns[c]
    end
  end
  local t = ev.type
  if t ~= "policy_error" then self:_track(ev) end
  ev.ts = ev.ts or os.time()
  if t == "policy_error" or t == "error" or self._closing then
    return self:_deliver(ev)
  end
  local q = self._queue
  if q then
    q[#q + 1] = ev
    return
  end
  q = { ev, head = 1 }
  self._queue = q
  local ok, err = pcall(self._drain_events, self)
  self._queue = nil
  if not ok then error(err, 0) end
end

-- Deliver the queued events not yet delivered (node:close() calls it
-- first, so that what happened before the close is still heard).
function Node:_drain_events()
  local q = self._queue
  while q do
    local ev = q[q.head]
    if not ev or self._closed then return end
    q.head = q.head + 1
    self:_deliver(ev)
  end
end

-- Hand one event to the event hooks, the listeners and the waiting tasks.
function Node:_deliver(ev)
  if ev.type == "policy_error" then
    -- An event hook that fails on a policy_error must not loop.
    if self._in_policy_error then
      io.stderr:write("luap2p: policy_error while reporting one: ",
        tostring(ev.message), "\n")
      return
    end
    self._in_policy_error = true
    self:_events(ev)
    self._in_policy_error = false
  else
    self:_events(ev)
  end
  self:_listeners(ev.type, ev)
  self:_listeners("*", ev)
  local waits = self._waits[ev.type]
  if waits then task.notify(waits, ev) end
end

---------------------------------------------------------------- messages

local P2P_HOOKS = { bootstrap = true, advertise = true, swap_request = true,
                    swap_ack = true }

function Node:_message(id, tag, payload)
  local conn = self.conns[id]
  if not conn then return end
  if tag < _M.APP_TAG then
    local m, err = core.msg_decode(string.pack(">I2", tag) .. payload)
    if not m then
      self:_event({ type = "decoding_error", conn = id, point = conn.point,
                    peer_id = conn.peer_id, code = "EPROTO", reason = err })
      conn:close("decoding error")
      return
    end
    if P2P_HOOKS[m.type] then
      local arg1 = m.points or m.point
      local answer = self:_verdict(m.type, conn, arg1, m.peer_id)
      -- bootstrap may return the points to advertise.
      if m.type == "bootstrap" and type(answer) == "table" and
         #answer > 0 and not conn.closed then
        conn:send_msg({ type = "advertise", points = answer })
      end
      -- Listeners and tasks see them too, whatever the policies did.
      self:_event({ type = m.type, conn = conn, point = m.point,
                    points = m.points,
                    peer_id = m.peer_id and core.peer_id_encode(m.peer_id) })
    end
    return
  end
  if self._shell and self:_shell_message(conn, tag, payload) then return end
  -- A policy may take an application message (return true).
  if self:_verdict("message", conn, payload, tag) then return end
  return conn:_deliver(payload, tag)
end

-- app_messages = "shell": decode an application message as Octez's shell
-- does. One that does not decode is a decoding error (the acl greylists
-- the peer and its IP, as Octez's p2p_conn.ml) and closes the connection;
-- one that does goes to the shell hook (true = consumed), then to the
-- "shell" event (ev.msg, the decoded table; ev.tag). Returns true when the
-- message goes no further.
function Node:_shell_message(conn, tag, payload)
  local msg, err, code = shell.decode(payload, tag)
  if not msg then
    self:_event({ type = "decoding_error", conn = conn.id,
                  point = conn.point, peer_id = conn.peer_id, tag = tag,
                  code = code, reason = err })
    if not conn.closed then conn:close("decoding error") end
    return true
  end
  if self:_verdict("shell", conn, msg) then return true end
  if conn.closed then return true end
  self:_event({ type = "shell", conn = conn,
                point = conn.point, peer_id = conn.peer_id, msg = msg,
                tag = tag })
  return conn.closed
end

---------------------------------------------------------------- dispatch

-- The dispatcher holds the node weakly: the registry keeps the dispatcher,
-- and a node nobody uses must still be collected (and closed by __gc).
function _M.dispatcher(weak)
  return function(kind, a, b, c)
    local node = weak.node
    if not node then return end
    if kind == "message" then
      return node:_message(a, b, c)
    elseif kind == "event" then
      return node:_event(a)
    elseif kind == "accept" then
      local ok, why = node:_verdict("accept", a)
      if ok == nil then return true end
      return ok, why
    elseif kind == "authenticated" then
      a.conn_id = a.conn -- the events' name for the number
      node:_authenticated(a)
      -- As Octez (p2p_connect_handler.ml, authenticate): the remote's
      -- listening point is registered before the verdict, even if it is
      -- then refused, so that a full node's Nack and Advertise can name
      -- newcomers still looking for peers. Under the known_points_max
      -- cap, like the points of a Nack or an Advertise, and first to go
      -- when learnt this way (source "incoming", as in points.lua).
      if a.point then
        local known = node.points[a.point]
        node:_add_points({ a.point })
        local rec = node.points[a.point]
        if rec then
          rec.private = a.private_node
          if not known and a.incoming then rec.source = "incoming" end
        end
      end
      local v, x, y = node:_verdict("authenticated", a)
      if v == nil then
        -- Octez default: Nack with known points on a hard refusal.
        if a.refusal and a.motive then
          local pts = node.config.disable_peer_discovery and {} or
            node:known_points(50, { exclude = a.point })
          return "nack", a.motive, pts
        end
        return a.refusal and "close" or "ack", a.refusal
      end
      if v == "nack" and y == nil and not node.config.disable_peer_discovery
      then
        y = node:known_points(50, { exclude = a.point })
      end
      return v, x, y
    end
  end
end

return _M
