-- luap2p.conn: a running connection as Lua sees it: its identity and
-- metadata, sending, receiving (listeners or the inbox) and closing.
local check = require "luap2p.check"
local core = require "luap2p.core"
local shell = require "luap2p.shell"
local task = require "luap2p.task"

local string, table, tostring, type, error, setmetatable =
      string, table, tostring, type, error, setmetatable

local APP_TAG = 0x10

local Conn = {}
Conn.__index = Conn

-- A connection object for core connection id on node.
function Conn._new(node, id)
  return setmetatable({ node = node, id = id, _on = {}, inbox = {},
                        _head = 1, _tail = 0, _bytes = 0 }, Conn)
end

function Conn:_refresh()
  -- Several values rather than node:info's table (once per connection).
  local peer_id, point, addr, incoming, p2p, ddb, private_node,
        disable_mempool = self.node._c:facts(self.id)
  if not addr then return end
  self.peer_id = peer_id
  self.point = point
  self.addr = addr
  self.incoming = incoming
  self.direction = incoming and "incoming" or "outgoing"
  self.metadata = { private_node = private_node,
                    disable_mempool = disable_mempool }
  self.version = { p2p = p2p, ddb = ddb }
end

-- Connection listeners get the same event table as node listeners:
-- fn(ev), ev.conn being this connection.
local listeners = task.listeners
local CONN_WHAT, NODE_WHAT = "conn %s handler", "%s listener"

function Conn:_emit(kind, ev)
  local list = self._on[kind]
  if list then listeners(list, ev, self.node, CONN_WHAT, kind) end
end

-- Deliver an application message: handlers, else the inbox. The inbox is
-- a queue (slots _head.._tail) bounded by incoming_app_message_queue_size
-- messages and incoming_app_message_queue_bytes bytes. In pull mode
-- (conn:pull(true), or config.pull_mode) a full inbox pauses reading until
-- recv() drains it; otherwise nobody asked for the messages, and those past
-- the bounds are counted and dropped (a "dropped" event at most once a
-- second per connection), so reading, Disconnect and EOF never stop.
-- Returns pause (true: stop reading), held (bytes now in the inbox).
function Conn:_deliver(payload, tag)
  local node = self.node
  local mine = self._on.message
  if mine or node._on.message or node._on.shell then
    local ev = { type = "message", conn = self, conn_id = self.id,
                 payload = payload, tag = tag }
    -- Conn:_emit and Node:_listeners, inline: this runs per message.
    if mine then listeners(mine, ev, node, CONN_WHAT, "message") end
    local theirs = node._on.message -- a connection listener may add one
    if theirs then listeners(theirs, ev, node, NODE_WHAT, "message") end
    return
  end
  local cfg = node.config
  local n = self._tail - self._head + 1
  local size = #payload
  if n >= cfg.incoming_app_message_queue_size or
     (n > 0 and self._bytes + size > cfg.incoming_app_message_queue_bytes)
  then
    return self:_drop(size)
  end
  self._tail = self._tail + 1
  self.inbox[self._tail] = { payload, tag }
  self._bytes = self._bytes + size
  if self._reader then task.wake(self._reader) end
  if self:_pulling() and
     (n + 1 >= cfg.incoming_app_message_queue_size or
      self._bytes >= cfg.incoming_app_message_queue_bytes) then
    self._paused = true
    return true, size
  end
  return false, size
end

function Conn:_pulling()
  local p = self._pull
  if p == nil then p = self.node.config.pull_mode end
  return p
end

-- A message past the inbox bounds: counted, reported at most once a
-- second (with the count since the last report).
function Conn:_drop(size)
  self.dropped = (self.dropped or 0) + 1
  self.node._dropped = (self.node._dropped or 0) + 1
  self._dropped_since = (self._dropped_since or 0) + 1
  local t = core.now()
  if not self._dropped_at or t - self._dropped_at >= 1 then
    self._dropped_at = t
    local count = self._dropped_since
    self._dropped_since = 0
    self.node:_event({ type = "dropped", conn = self.id, point = self.point,
                       peer_id = self.peer_id, incoming = self.incoming,
                       count = count, total = self.dropped, bytes = size,
                       reason = "inbox full and nobody consumes messages" })
  end
  -- In pull mode the inbox is full only when reading already paused; the
  -- message got in before the pause took effect.
  return self:_pulling() or nil
end

-- conn:pull(on): pull mode for this connection (nil: the node's
-- config.pull_mode). In pull mode a full inbox pauses reading until recv()
-- drains it (TCP pushes back on the peer); otherwise messages nobody
-- consumes are dropped once the inbox is full.
function Conn:pull(on)
  if on ~= nil and type(on) ~= "boolean" then
    check.fail("conn:pull", "on", "a boolean or nil", on)
  end
  self._pull = on
  if not self:_pulling() and self._paused and not self.closed then
    self._paused = false
    self.node._c:pause(self.id, false)
  end
  return self
end

-- conn:recv() -> payload, tag | nil when the inbox is empty.
function Conn:recv()
  local head = self._head
  if head > self._tail then return nil end
  local item = self.inbox[head]
  self.inbox[head] = nil
  if head == self._tail then
    self._head, self._tail = 1, 0
  else
    self._head = head + 1
  end
  local size = #item[1]
  self._bytes = self._bytes - size
  if not self.closed then self.node._c:release(self.id, size) end
  if self._paused and not self.closed then
    self._paused = false
    self.node._c:pause(self.id, false)
  end
  return item[1], item[2]
end

-- Messages and bytes waiting in the inbox.
function Conn:pending()
  return self._tail - self._head + 1, self._bytes
end

-- conn:send(payload[, tag]) -> true | nil, "ENAME: message", "ENAME"
-- With app_messages = "shell", a payload that is not the shell message of
-- its tag is refused (EPROTO, EMSGSIZE): Octez would greylist us for it.
function Conn:send(payload, tag)
  if type(payload) ~= "string" then
    check.fail("conn:send", "payload", "a string", payload)
  end
  -- Below 0x10 a tag is a P2P message's (1 is Disconnect, 5 Swap_ack):
  -- sent raw it would close the connection or get us greylisted.
  if tag ~= nil and (math.type(tag) ~= "integer" or tag < APP_TAG or
                     tag > 0xffff) then
    check.fail("conn:send", "tag", "an application message tag in " ..
      "0x10..0xffff (P2P messages go through conn:send_msg)", tag)
  end
  if self.closed then return nil, "ECLOSED: connection closed", "ECLOSED" end
  if self.node._shell then
    local m, err, code = shell.decode(payload, tag or APP_TAG)
    if not m then
      return nil, code .. ": not a shell message (app_messages = " ..
        "\"shell\"): " .. tostring(err):gsub("^%u+: ", ""), code
    end
  end
  local ok, err, code = self.node._c:send(self.id, payload, tag)
  if not ok then return nil, err, code end
  return true
end

-- conn:send_shell{type = "get_current_head", chain_id = ..., ...}: a shell
-- message (luap2p.shell), in either app_messages mode. A table that does
-- not encode returns nil, "EMSGSIZE: ..." / "EPROTO: ..."; a malformed
-- one raises.
function Conn:send_shell(t)
  if type(t) ~= "table" then
    check.fail("conn:send_shell", "message", "a table", t)
  end
  local payload, tag, code = shell.encode(t)
  if not payload then return nil, tag, code end
  if self.closed then return nil, "ECLOSED: connection closed", "ECLOSED" end
  local ok, err, ecode = self.node._c:send(self.id, payload, tag)
  if not ok then return nil, err, ecode end
  return true
end

-- conn:send_msg{type = "bootstrap" | "advertise" | ...}: a P2P message.
function Conn:send_msg(m)
  if type(m) ~= "table" then
    check.fail("conn:send_msg", "message", "a table {type = ...}", m)
  end
  if self.closed then return nil, "ECLOSED: connection closed", "ECLOSED" end
  local ok, err, code = self.node._c:send_raw(self.id, core.msg_encode(m))
  if not ok then return nil, err, code end
  return true
end

---------------------------------------------------------------- tasks

-- conn:receive([timeout]) -> payload, tag | nil, "ETIMEDOUT: ...",
-- "ETIMEDOUT" | nil, "ECLOSED: ...", "ECLOSED". Inside a task, in pull
-- mode (no message listener): the next application message; messages
-- that arrived before the connection closed are still returned.
function Conn:receive(timeout)
  task.current("conn:receive")
  check.seconds("conn:receive", "timeout", timeout, 1, true)
  if self._on.message or self.node._on.message then
    error("conn:receive: this connection's messages go to its message " ..
      "listeners; receive works without conn:on/node:on(\"message\")", 2)
  end
  -- A task reading the connection consumes its messages: a full inbox
  -- pauses reading (pull mode) rather than dropping them.
  if self._pull == nil then self._pull = true end
  local payload, tag = self:recv()
  if payload then return payload, tag end
  if self.closed then
    return nil, "ECLOSED: connection closed (" .. tostring(self.closed) ..
      ")", "ECLOSED"
  end
  if self._reader then
    return nil, "EBUSY: another task is receiving on this connection",
      "EBUSY"
  end
  local w = task.waiter("conn:receive", timeout, function()
    self._reader = nil
  end)
  self._reader = w
  while true do
    local v = task.suspend(w)
    payload, tag = self:recv()
    if payload then
      task.done(w)
      return payload, tag
    elseif v == task.TIMEOUT then
      task.done(w)
      return nil, string.format("ETIMEDOUT: no message within %gs",
        timeout), "ETIMEDOUT"
    elseif self.closed then
      task.done(w)
      return nil, "ECLOSED: connection closed (" .. tostring(self.closed) ..
        ")", "ECLOSED"
    end
  end
end

-- conn:request(msg, match, timeout) -> payload, tag | nil, err, ENAME.
-- Send msg (a payload string, or a P2P message table as for send_msg),
-- then receive until match(payload, tag) holds (match nil: the first
-- message), within timeout seconds in all. Messages that do not match are
-- kept, in order, for the next receive/recv. Inside a task.
function Conn:request(msg, match, timeout)
  task.current("conn:request")
  if type(msg) ~= "string" and type(msg) ~= "table" then
    check.fail("conn:request", "msg", "a payload string or a P2P message " ..
      "table", msg)
  end
  if match ~= nil then check.func("conn:request", "match", match) end
  check.seconds("conn:request", "timeout", timeout, 1, true)
  local ok, err, code
  if type(msg) == "table" then
    ok, err, code = self:send_msg(msg)
  else
    ok, err, code = self:send(msg)
  end
  if not ok then return nil, err, code end
  local deadline = timeout and core.now() + timeout
  local kept = {}
  local payload, tag
  while true do
    local left = deadline and deadline - core.now()
    if left and left < 0 then left = 0 end
    payload, tag, code = self:receive(left)
    if not payload or not match or match(payload, tag) then break end
    kept[#kept + 1] = { payload, tag }
  end
  -- Put back what did not match, ahead of anything that came after.
  for i = #kept, 1, -1 do
    self._head = self._head - 1
    self.inbox[self._head] = kept[i]
    self._bytes = self._bytes + #kept[i][1]
  end
  if not payload then
    if code == "ETIMEDOUT" then
      return nil, string.format("ETIMEDOUT: no matching answer within %gs",
        timeout), code
    end
    return nil, tag, code
  end
  return payload, tag
end

-- conn:ask_points([timeout]) -> points | nil, err, ENAME. Inside a task:
-- send Bootstrap and wait for this peer's Advertise (its list of points).
function Conn:ask_points(timeout)
  task.current("conn:ask_points")
  check.seconds("conn:ask_points", "timeout", timeout, 1, true)
  local node = self.node
  local ok, err, code = self:send_msg({ type = "bootstrap" })
  if not ok then return nil, err, code end
  local ev
  ev, err, code = task.wait_event(node, "conn:ask_points",
    { "advertise", "disconnected" },
    function(e) return e.conn_id == self.id end, timeout)
  if not ev then return nil, err, code end
  if ev.type == "disconnected" then
    return nil, "ECLOSED: connection closed (" .. tostring(ev.reason) ..
      ")", "ECLOSED"
  end
  return ev.points or {}
end

-- conn:on("message", fn(ev)) (ev.payload, ev.tag) | conn:on("close",
-- fn(ev)) (its "disconnected" event: ev.code, ev.reason).
function Conn:on(kind, fn)
  if kind ~= "message" and kind ~= "close" then
    check.fail("conn:on", "event type", "'message' or 'close'", kind)
  end
  check.func("conn:on", "fn", fn)
  self._on[kind] = self._on[kind] or {}
  table.insert(self._on[kind], fn)
  return self
end

-- conn:close(reason) -> true | nil, "ECLOSED: ...", "ECLOSED" (already
-- closed or closing).
function Conn:close(reason)
  if reason ~= nil and type(reason) ~= "string" then
    check.fail("conn:close", "reason", "a string or nil", reason)
  end
  if self.closed or
     not self.node._c:disconnect(self.id, reason or "closed locally", true)
  then
    return nil, "ECLOSED: connection closed", "ECLOSED"
  end
  return true
end

function Conn:stat()
  local info = self.node._c:info(self.id)
  if not info then return nil, "ECLOSED: connection closed", "ECLOSED" end
  return { bytes_in = info.bytes_in, bytes_out = info.bytes_out,
           msgs_in = info.msgs_in, msgs_out = info.msgs_out,
           rate_in = info.rate_in, rate_out = info.rate_out,
           queued_msgs = info.queued_msgs, queued_bytes = info.queued_bytes }
end

function Conn:__tostring()
  return string.format("luap2p.Conn(%s %s %s%s)", tostring(self.peer_id),
    self.direction or "?", tostring(self.point or self.addr),
    self.closed and " closed" or "")
end

return Conn
