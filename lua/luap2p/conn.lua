-- luap2p.conn: a running connection as Lua sees it: its identity and
-- metadata, sending, receiving (listeners or the inbox) and closing.
local core = require "luap2p.core"
local shell = require "luap2p.shell"

local string, table, tostring, type, ipairs, pcall, error, setmetatable =
      string, table, tostring, type, ipairs, pcall, error, setmetatable

local APP_TAG = 0x10

local Conn = {}
Conn.__index = Conn

-- A connection object for core connection id on node.
function Conn._new(node, id)
  return setmetatable({ node = node, id = id, _on = {}, inbox = {},
                        _head = 1, _tail = 0, _bytes = 0 }, Conn)
end

function Conn:_refresh()
  local info = self.node._c:info(self.id)
  if not info then return end
  self.peer_id = info.peer_id
  self.point = info.point
  self.addr = info.addr
  self.incoming = info.incoming
  self.direction = info.direction
  self.metadata = { private_node = info.private_node,
                    disable_mempool = info.disable_mempool }
  self.version = { p2p = info.p2p_version, ddb = info.ddb_version }
end

function Conn:_emit(kind, ...)
  for _, fn in ipairs(self._on[kind] or {}) do
    local ok, err = pcall(fn, self, ...)
    if not ok then self.node:_error("conn " .. kind .. " handler", err) end
  end
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
  if self._on.message or node._on.message or node._on.shell then
    self:_emit("message", payload, tag)
    node:_listeners("message", self, payload, tag)
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
    error("conn:pull: expected a boolean or nil, got " .. type(on), 2)
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
    error("conn:send: expected a string payload, got " .. type(payload), 2)
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
    error("conn:send_shell: expected a table, got " .. type(t), 2)
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
  if self.closed then return nil, "ECLOSED: connection closed", "ECLOSED" end
  local ok, err, code = self.node._c:send_raw(self.id, core.msg_encode(m))
  if not ok then return nil, err, code end
  return true
end

function Conn:on(kind, fn)
  if kind ~= "message" and kind ~= "close" then
    error("conn:on: expected 'message' or 'close', got " .. tostring(kind), 2)
  end
  if type(fn) ~= "function" then error("conn:on: expected a function", 2) end
  self._on[kind] = self._on[kind] or {}
  table.insert(self._on[kind], fn)
  return self
end

-- conn:close(reason) -> true | nil, "ECLOSED: ...", "ECLOSED" (already
-- closed or closing).
function Conn:close(reason)
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
