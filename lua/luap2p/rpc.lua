-- luap2p.rpc: the operator's RPC of a node, over HTTP (core.http_serve:
-- GNU libmicrohttpd on the node's loop). Paths and JSON shapes follow the
-- Octez node's /network RPCs (tezos/tezos-mirror,
-- src/lib_p2p_services/p2p_services.ml, encodings in src/lib_base/
-- p2p_stat.ml, p2p_connection.ml, p2p_peer.ml, p2p_point.ml); /metrics is
-- the Prometheus text of luap2p.cli.metrics; /luap2p/... are luap2p's own
-- (bans with a duration, the ban list, policy reload, recent events).
-- This file routes requests and keeps what the node does not (per-peer
-- history, recent events); the /network resources and their Octez JSON
-- shapes are luap2p.rpc.network, the answers luap2p.rpc.reply, JSON
-- luap2p.json.
--
--   local rpc = require "luap2p.rpc"
--   local r = rpc.new(node, { allow_write = true, metrics = m })
--   local srv, port = r:serve("127.0.0.1", 8732)
--   ... srv:close()

local core = require "luap2p.core"
local json = require "luap2p.json"
local network = require "luap2p.rpc.network"
local reply = require "luap2p.rpc.reply"
local STATUS_PAGE = require "luap2p.status_page"

local ipairs, math, os, pairs, pcall, setmetatable, table, tonumber,
      tostring, type =
      ipairs, math, os, pairs, pcall, setmetatable, table, tonumber,
      tostring, type

local _M = {}
local mt = { __index = _M }

local acl, stamp, wall = network.acl, network.stamp, network.wall
local json_reply, fail, not_found = reply.json, reply.fail, reply.not_found
_M.fail = fail

---------------------------------------------------------------- history

-- Per-peer history Octez keeps and the node does not: the last times a
-- peer connected, disconnected, failed, was refused, from which point.
local EVENTS_KEPT = 200 -- for /luap2p/events (the status page)

function _M:_observe(ev)
  local t = ev.type
  -- The recent events, numbered, for pollers.
  local n = self.event_seq + 1
  self.event_seq = n
  self.events[n] = {
    seq = n, ts = ev.ts or os.time(), type = t,
    peer_id = type(ev.peer_id) == "string" and ev.peer_id or nil,
    point = type(ev.point) == "string" and ev.point or nil,
    detail = (ev.target or ev.code or ev.reason) and
      tostring(ev.target or ev.code or ev.reason) or nil,
  }
  self.events[n - EVENTS_KEPT] = nil
  local id = ev.peer_id
  if not id then return end
  local h = self.peers[id]
  if not h then
    h = {}
    self.peers[id] = h
  end
  local pt = ev.point or (ev.conn and ev.conn.addr)
  local now = core.now()
  if t == "connected" then
    h.last_established = { pt, now }
    h.last_seen = { pt, now }
    local c = ev.conn
    if c then
      h.reachable_at = c.point
      h.conn_metadata = { disable_mempool = c.metadata.disable_mempool,
                          private_node = c.metadata.private_node }
    end
  elseif t == "disconnected" then
    if ev.conn then
      h.last_disconnection = { pt, now }
      h.last_seen = { pt, now }
    else
      h.last_failed = { pt, now }
      h.last_miss = { pt, now }
    end
  elseif t == "nack_sent" or (t == "refused" and id) then
    h.last_rejected = { pt, now }
  elseif t == "nacked" then
    h.last_rejected = { pt, now }
    h.last_miss = { pt, now }
  elseif t == "auth_failed" then
    h.last_failed = { pt, now }
    h.last_miss = { pt, now }
  end
  if ev.point and t == "disconnected" and not ev.conn then
    self.point_miss[ev.point] = now
  end
end

---------------------------------------------------------------- bans

-- Every ban the acl policy knows: admin bans (operator, policies, ban
-- file) and greylist entries, sorted by target.
function _M:bans()
  local node = self.node
  local out = {}
  local s = acl(node)
  if s then
    local wall_now = os.time()
    for target, b in pairs(s.admin) do
      if not b.until_wall or b.until_wall > wall_now then
        out[#out + 1] = { target = target, kind = "ban",
                          ["until"] = stamp(b.until_wall),
                          reason = b.reason }
      end
    end
    for _, l in ipairs({ s.ips, s.peers }) do
      for key, n in pairs(l.map) do
        if n.expires > core.now() and not s.admin[key] then
          out[#out + 1] = { target = key, kind = "greylist",
                            ["until"] = stamp(wall(n.expires)) }
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.target < b.target end)
  return json.array(out)
end

---------------------------------------------------------------- routes

local WRITE_REFUSED = "write RPCs are disabled on this node; start it " ..
  "with --rpc-allow-write to allow them"

-- Routes: { method, pattern, handler(self, captures..., query, body),
-- write }. Patterns are anchored; the first match wins.
local ROUTES = {}
local function route(method, pattern, write, fn)
  ROUTES[#ROUTES + 1] = { method, "^" .. pattern .. "$", write, fn }
end

for _, r in ipairs(network.ROUTES) do route(table.unpack(r)) end

-- luap2p's own.
route("GET", "/luap2p/bans", false, function(self)
  return json_reply(200, self:bans())
end)

route("POST", "/luap2p/bans", true, function(self, _, body)
  local v = reply.body(body)
  if not v or type(v.target) ~= "string" then
    return fail(400, "bad_body", 'expected {"target": ..., "seconds": ' ..
      '..., "reason": ...}')
  end
  local secs = v.seconds
  -- cjson reads 1e400 as inf and NaN as NaN: both are refused here.
  if secs ~= nil and (type(secs) ~= "number" or not (secs > 0) or
                      secs > 1e13) then
    return fail(400, "bad_seconds", "seconds must be a positive number " ..
      "(at most 1e13)")
  end
  -- node:ban raises on a malformed target (misuse in Lua, a 400 here).
  local called, ok, err = pcall(self.node.ban, self.node, v.target, secs,
    type(v.reason) == "string" and v.reason or "rpc")
  if not called or not ok then
    -- the message without the position in node.lua it was raised at
    local msg = tostring(called and err or ok):gsub("^[^\n]-:%d+: ", "")
    return fail(400, "bad_target", msg)
  end
  return json_reply(200, { target = v.target, seconds = secs })
end)

route("DELETE", "/luap2p/bans/(.+)", true, function(self, target)
  local called, removed = pcall(self.node.unban, self.node, target)
  if not called then return fail(400, "bad_target", tostring(removed)) end
  return json_reply(200, { target = target,
                           removed = removed and true or false })
end)

route("GET", "/luap2p/events", false, function(self, query)
  local since = math.tointeger(tonumber(query.since) or 0) or 0
  local list = json.array({})
  for n = math.max(since + 1, self.event_seq - EVENTS_KEPT + 1),
          self.event_seq do
    list[#list + 1] = self.events[n]
  end
  return json_reply(200, { seq = self.event_seq, events = list })
end)

route("POST", "/luap2p/reload", true, function(self)
  local ok, err = self.node:reload()
  if not ok then return fail(500, "reload_failed", tostring(err)) end
  return json_reply(200, { reloaded = self.node:policies() })
end)

---------------------------------------------------------------- handler

function _M.new(node, opts)
  opts = opts or {}
  local self = setmetatable({
    node = node, allow_write = opts.allow_write or false,
    metrics = opts.metrics, metrics_only = opts.metrics_only or false,
    peers = {}, point_miss = {}, events = {}, event_seq = 0,
  }, mt)
  node:on("*", function(ev) self:_observe(ev) end)
  return self
end

-- handle(method, path, query, body) -> status, headers, body
function _M:handle(method, path, query, body)
  if path == "/metrics" and self.metrics and
     (method == "GET" or method == "HEAD") then
    return 200, { ["Content-Type"] = self.metrics.CONTENT_TYPE },
      self.metrics:render()
  end
  if self.metrics_only then
    return 404, { ["Content-Type"] = reply.TEXT }, "not found; try /metrics\n"
  end
  if path == "/" and (method == "GET" or method == "HEAD") then
    return 200, { ["Content-Type"] = "text/html; charset=utf-8",
                  ["Cache-Control"] = "no-store" },
      STATUS_PAGE
  end
  if #path > 1 and path:sub(-1) == "/" then path = path:sub(1, -2) end
  local allowed = {}
  for _, r in ipairs(ROUTES) do
    local caps = { path:match(r[2]) }
    if caps[1] ~= nil then
      if r[1] == method or (method == "HEAD" and r[1] == "GET") then
        if r[3] and not self.allow_write then
          return fail(403, "write_refused", WRITE_REFUSED)
        end
        if caps[1] == path and not r[2]:find("(", 1, true) then
          caps = {}
        end
        caps[#caps + 1] = query
        caps[#caps + 1] = body
        return r[4](self, table.unpack(caps))
      end
      allowed[#allowed + 1] = r[1]
    end
  end
  if #allowed > 0 then
    local status, headers, text = fail(405, "method_not_allowed",
      method .. " " .. path .. ": allowed " .. table.concat(allowed, ", "))
    headers.Allow = table.concat(allowed, ", ")
    return status, headers, text
  end
  return not_found("RPC", path)
end

-- The limits of core.http_serve from a node config's rpc_* keys.
local LIMIT_KEYS = {
  max_connections = "rpc_max_clients", max_per_ip = "rpc_max_clients_per_ip",
  idle_timeout = "rpc_idle_timeout", request_timeout = "rpc_request_timeout",
  max_head = "rpc_max_head", max_body = "rpc_max_body",
}

-- Serve on host:port (port 0: any). limits (see core.http_serve) default
-- to the node config's rpc_* keys; a field given here wins.
-- Returns the server and its port, or nil, "ENAME: message", "ENAME".
function _M:serve(host, port, limits)
  local lim, config = {}, self.node.config or {}
  for field, key in pairs(LIMIT_KEYS) do lim[field] = config[key] end
  for field, v in pairs(limits or {}) do lim[field] = v end
  return core.http_serve(host, port, function(method, path, query, body)
    return self:handle(method, path, query, body)
  end, lim)
end

_M.ROUTES = ROUTES

return _M
