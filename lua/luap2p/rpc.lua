-- luap2p.rpc: the operator's RPC of a node, over HTTP (core.http_serve:
-- GNU libmicrohttpd on the node's loop). Paths and JSON shapes follow the
-- Octez node's /network RPCs (tezos/tezos-mirror,
-- src/lib_p2p_services/p2p_services.ml, encodings in src/lib_base/
-- p2p_stat.ml, p2p_connection.ml, p2p_peer.ml, p2p_point.ml); /metrics is
-- the Prometheus text of luap2p.cli.metrics; /luap2p/... are luap2p's own
-- (bans with a duration, the ban list, policy reload).
--
--   local rpc = require "luap2p.rpc"
--   local r = rpc.new(node, { allow_write = true, metrics = m })
--   local srv, port = r:serve("127.0.0.1", 8732)
--   ... srv:close()
--
-- Octez's Data_encoding conventions: int64 values are JSON strings
-- ("total_sent": "1234"), int31 are numbers, timestamps are RFC 3339
-- strings, an IP address is its IPv6 text ("::ffff:127.0.0.1"), a point
-- is "ip:port" ("[v6]:port"), "empty" outputs are {}.
local cjson = require "cjson"
local core = require "luap2p.core"
local STATUS_PAGE = require "luap2p.status_page"

local ipairs, math, next, os, pairs, pcall, setmetatable, string, table,
      tonumber, tostring, type =
      ipairs, math, next, os, pairs, pcall, setmetatable, string, table,
      tonumber, tostring, type

local _M = {}
local mt = { __index = _M }

local JSON = "application/json"
local TEXT = "text/plain; charset=utf-8"

---------------------------------------------------------------- JSON

-- lua-cjson 2.1.0 encodes an empty table as {}: tables marked with
-- array() encode as [] even when empty.
local ARRAY = setmetatable({}, { __mode = "k" })
local function array(t)
  ARRAY[t] = true
  return t
end
_M.array = array

local EMPTY = "\0luap2p-empty-array\0"

local function prepare(v)
  if type(v) ~= "table" then return v end
  if ARRAY[v] and next(v) == nil then return EMPTY end
  local out = {}
  for k, x in pairs(v) do out[k] = prepare(x) end
  return out
end

local function encode(v)
  local text = cjson.encode(prepare(v))
  return (text:gsub('"\\u0000luap2p%-empty%-array\\u0000"', "[]"))
end
_M.encode = encode

---------------------------------------------------------------- values

-- Monotonic core.now() seconds -> wall-clock seconds.
local function wall(t)
  if not t then return nil end
  return os.time() + (t - core.now())
end

-- RFC 3339 in UTC with milliseconds, as Octez prints Time.System values
-- ("2024-10-24T15:02:31.549-00:00").
local function stamp(secs)
  if not secs then return nil end
  local whole = math.floor(secs)
  local ms = math.floor((secs - whole) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) ..
    string.format(".%03d-00:00", ms)
end
_M.stamp = stamp

local function split_point(s)
  if type(s) ~= "string" then return nil end
  local host, port = s:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  return host, tonumber(port)
end

-- An address as Octez's P2p_addr encodes it: IPv6 text, IPv4 mapped.
local function addr6(ip)
  if not ip then return nil end
  if ip:find(":", 1, true) then return ip end
  return "::ffff:" .. ip
end
_M.addr6 = addr6

-- P2p_connection.Id: { "addr": ip6, "port"?: n }
local function conn_id(point)
  local host, port = split_point(point)
  if not host then return nil end
  return { addr = addr6(host), port = port }
end

local function int64(n) return string.format("%d", math.floor(n or 0)) end

-- P2p_stat: { total_sent, total_recv (int64 strings), current_inflow,
-- current_outflow (int31, B/s) }.
local function stat_json(s)
  s = s or {}
  return {
    total_sent = int64(s.bytes_out), total_recv = int64(s.bytes_in),
    current_inflow = math.floor(s.rate_in or 0),
    current_outflow = math.floor(s.rate_out or 0),
  }
end

-- Peer_metadata of Octez counts distributed-db requests and responses;
-- luap2p carries no distributed db, so every counter is zero (the shape
-- is kept so that Octez tooling can read it).
local function zeros(keys)
  local t = {}
  for _, k in ipairs(keys) do t[k] = "0" end
  return t
end
local MSG_KINDS = { "branch", "head", "block_header", "operations",
  "protocols", "operation_hashes_for_block", "operations_for_block",
  "checkpoint", "protocol_branch", "predecessor_header", "other" }
local function peer_metadata()
  return {
    responses = { sent = zeros(MSG_KINDS), failed = zeros(MSG_KINDS),
                  received = zeros(MSG_KINDS), unexpected = "0",
                  outdated = "0" },
    requests = { sent = zeros(MSG_KINDS), received = zeros(MSG_KINDS),
                 failed = zeros(MSG_KINDS), scheduled = zeros(MSG_KINDS) },
    valid_blocks = "0", old_heads = "0",
    prevalidator_results = zeros({ "cannot_download", "cannot_parse",
      "refused_by_prefilter", "refused_by_postfilter", "applied",
      "branch_delayed", "branch_refused", "refused", "duplicate",
      "outdated" }),
    unactivated_chains = "0", inactive_chains = "0",
    future_blocks_advertised = "0",
    unadvertised = zeros({ "block", "operations", "protocol" }),
    advertisements = { sent = zeros({ "head", "branch" }),
                       received = zeros({ "head", "branch" }) },
  }
end

---------------------------------------------------------------- state

-- The acl policy's state (greylists, admin bans), when it runs.
local function acl(node)
  return node.state and node.state.acl
end

-- Seconds (monotonic) until which the IP or peer id is greylisted.
local function greylisted_until(node, key)
  local s = acl(node)
  if not s or not key then return nil end
  for _, l in ipairs({ s.ips, s.peers }) do
    local n = l and l.map[key]
    if n and n.expires > core.now() then return n.expires end
  end
end

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

---------------------------------------------------------------- encoders

-- P2p_connection.Info of a running connection.
function _M:connection_json(conn)
  local node = self.node
  local cfg = node.config
  local _, sock_port = split_point(conn.addr)
  local host = split_point(conn.addr)
  local _, listen_port = split_point(conn.point)
  return {
    incoming = conn.incoming and true or false,
    peer_id = conn.peer_id,
    id_point = { addr = addr6(host), port = listen_port },
    remote_socket_port = sock_port or 0,
    announced_version = {
      chain_name = cfg.chain or "TEZOS_MAINNET",
      distributed_db_version = conn.version and conn.version.ddb or 0,
      p2p_version = conn.version and conn.version.p2p or 0,
    },
    private = conn.metadata and conn.metadata.private_node or false,
    local_metadata = { disable_mempool = cfg.disable_mempool or false,
                       private_node = cfg.private_mode or false },
    remote_metadata = {
      disable_mempool = conn.metadata and conn.metadata.disable_mempool or
        false,
      private_node = conn.metadata and conn.metadata.private_node or false,
    },
  }
end

local function at(pair)
  if not pair then return nil end
  return array({ conn_id(pair[1]) or { addr = "::" }, stamp(wall(pair[2])) })
end

-- P2p_peer.Info of a peer id (nil when never met).
function _M:peer_json(id)
  local node = self.node
  local rec = node.peers[id]
  local h = self.peers[id]
  if not rec and not h then return nil end
  h = h or {}
  local conn = node:connection(id)
  local stat
  if conn then stat = conn:stat() end
  return {
    score = 0,
    trusted = rec and rec.trusted or false,
    conn_metadata = conn and {
      disable_mempool = conn.metadata.disable_mempool or false,
      private_node = conn.metadata.private_node or false,
    } or h.conn_metadata,
    peer_metadata = peer_metadata(),
    state = conn and "running" or "disconnected",
    reachable_at = conn_id(conn and conn.point or h.reachable_at),
    stat = stat_json(stat),
    last_failed_connection = at(h.last_failed),
    last_rejected_connection = at(h.last_rejected),
    last_established_connection = at(h.last_established),
    last_disconnection = at(h.last_disconnection),
    last_seen = at(h.last_seen),
    last_miss = at(h.last_miss),
  }
end

local function id_at(id, t)
  if not id or not t then return nil end
  return array({ id, stamp(wall(t)) })
end

-- P2p_point.Info of a known point (nil when unknown).
function _M:point_json(p)
  local node = self.node
  local rec = node.points[p]
  if not rec then return nil end
  local state
  local peer = rec.peer_id
  if rec.state == "running" then
    state = { event_kind = "running", p2p_peer_id = peer }
  elseif rec.state == "requested" then
    state = { event_kind = "requested" }
  else
    state = { event_kind = "disconnected" }
  end
  local gl = greylisted_until(node, split_point(p))
  local miss = self.point_miss[p] or rec.last_failed
  return {
    trusted = rec.trusted and true or false,
    greylisted_until = stamp(wall(gl)),
    state = state,
    p2p_peer_id = rec.state == "running" and peer or nil,
    last_failed_connection = stamp(wall(rec.last_failed)),
    last_established_connection = id_at(peer, rec.last_established),
    last_disconnection = id_at(peer, rec.last_disconnect),
    last_seen = id_at(peer, rec.last_disconnect and
      math.max(rec.last_disconnect, rec.last_established or 0) or
      rec.last_established),
    last_miss = stamp(wall(miss)),
    expected_peer_id = rec.expected_peer_id,
  }
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
  return array(out)
end

-- Unban every greylist entry (Octez: DELETE /network/greylist). Admin
-- bans stay.
function _M:clear_greylist()
  local node = self.node
  local s = acl(node)
  if not s then return 0 end
  local keys = {}
  for _, l in ipairs({ s.ips, s.peers }) do
    for key in pairs(l.map) do
      if not s.admin[key] then keys[#keys + 1] = key end
    end
  end
  for _, key in ipairs(keys) do node:unban(key) end
  return #keys
end

---------------------------------------------------------------- routes

local function json(status, v)
  return status, { ["Content-Type"] = JSON }, encode(v) .. "\n"
end

-- Octez answers errors as a JSON list of { kind, id, ... }; ours carry a
-- human message too.
local function fail(status, id, msg)
  return json(status, array({ { kind = "permanent", id = "luap2p." .. id,
                               msg = msg } }))
end
_M.fail = fail

local function not_found(what, key)
  return fail(404, "not_found", string.format("no such %s: %s", what,
    tostring(key)))
end

local function decode_body(body)
  if body == "" then return {} end
  local ok, v = pcall(cjson.decode, body)
  if not ok or type(v) ~= "table" then return nil end
  return v
end

local function is_peer_id(s)
  return type(s) == "string" and s:match("^id[1-9A-HJ-NP-Za-km-z]+$") ~= nil
end

-- PATCH .../peers/<id> and .../points/<point> bodies: {"acl": "ban" |
-- "trust" | "open"} (Octez semantics: ban removes the trust, trust lifts
-- the ban, open lifts both).
-- A point's ban is its IP's (Octez ignores the port: P2p_pool.Points).
function _M:_acl(target, what, ban_target)
  local node = self.node
  ban_target = ban_target or target
  if what == "ban" then
    node:untrust(target)
    local ok, err = node:ban(ban_target, nil, "rpc: acl ban")
    if not ok then return nil, err end
  elseif what == "trust" then
    if node:banned(ban_target) then node:unban(ban_target) end
    node:trust(target)
  elseif what == "open" then
    node:untrust(target)
    if node:banned(ban_target) then node:unban(ban_target) end
  else
    return nil, "acl must be \"ban\", \"trust\" or \"open\""
  end
  return true
end

local WRITE_REFUSED = "write RPCs are disabled on this node; start it " ..
  "with --rpc-allow-write to allow them"

-- Routes: { method, pattern, handler(self, captures..., query, body),
-- write }. Patterns are anchored; the first match wins.
local ROUTES = {}
local function route(method, pattern, write, fn)
  ROUTES[#ROUTES + 1] = { method, "^" .. pattern .. "$", write, fn }
end

route("GET", "/network/self", false, function(self)
  return json(200, self.node.peer_id)
end)

route("GET", "/network/stat", false, function(self)
  return json(200, stat_json(self.node:stat()))
end)

route("GET", "/network/connections", false, function(self)
  local list = array({})
  for _, conn in ipairs(self.node:connections()) do
    list[#list + 1] = self:connection_json(conn)
  end
  return json(200, list)
end)

route("GET", "/network/connections/([^/]+)", false, function(self, id)
  local conn = self.node:connection(id)
  if not conn then return not_found("connection", id) end
  return json(200, self:connection_json(conn))
end)

route("DELETE", "/network/connections/([^/]+)", true, function(self, id)
  local conn = self.node:connection(id)
  if not conn then return not_found("connection", id) end
  conn:close("closed by the operator (rpc)")
  return json(200, {})
end)

route("GET", "/network/peers", false, function(self)
  local ids = {}
  local seen = {}
  for id in pairs(self.node.peers) do ids[#ids + 1] = id; seen[id] = true end
  for id in pairs(self.peers) do
    if not seen[id] then ids[#ids + 1] = id end
  end
  table.sort(ids)
  local list = array({})
  for _, id in ipairs(ids) do
    local info = self:peer_json(id)
    if info then list[#list + 1] = array({ id, info }) end
  end
  return json(200, list)
end)

route("GET", "/network/peers/([^/]+)", false, function(self, id)
  local info = self:peer_json(id)
  if not info then return not_found("peer", id) end
  return json(200, info)
end)

route("GET", "/network/peers/([^/]+)/banned", false, function(self, id)
  return json(200, self.node:banned(id) and true or false)
end)

route("PATCH", "/network/peers/([^/]+)", true, function(self, id, _, body)
  if not is_peer_id(id) then
    return fail(400, "bad_peer_id", "not a peer id: " .. id)
  end
  local v = decode_body(body)
  if not v then return fail(400, "bad_body", "expected a JSON object") end
  if v.acl ~= nil then
    local ok, err = self:_acl(id, v.acl)
    if not ok then return fail(400, "bad_acl", tostring(err)) end
  end
  self.node:peer(id)
  return json(200, self:peer_json(id))
end)

route("GET", "/network/points", false, function(self)
  local pts = {}
  for p in pairs(self.node.points) do pts[#pts + 1] = p end
  table.sort(pts)
  local list = array({})
  for _, p in ipairs(pts) do
    list[#list + 1] = array({ p, self:point_json(p) })
  end
  return json(200, list)
end)

route("GET", "/network/points/([^/]+)", false, function(self, p)
  local info = self:point_json(p)
  if not info then return not_found("point", p) end
  return json(200, info)
end)

route("GET", "/network/points/([^/]+)/banned", false, function(self, p)
  local host = split_point(p)
  return json(200, (self.node:banned(p) or
    (host and self.node:banned(host))) and true or false)
end)

route("PATCH", "/network/points/([^/]+)", true, function(self, p, _, body)
  local canon = core.point_parse(p)
  if not canon then return fail(400, "bad_point", "not a point: " .. p) end
  local v = decode_body(body)
  if not v then return fail(400, "bad_body", "expected a JSON object") end
  local rec = self.node:point(canon)
  if v.peer_id ~= nil then
    if not is_peer_id(v.peer_id) then
      return fail(400, "bad_peer_id", "not a peer id: " .. tostring(v.peer_id))
    end
    rec.expected_peer_id = v.peer_id
  end
  if v.acl ~= nil then
    local ok, err = self:_acl(canon, v.acl, (split_point(canon)))
    if not ok then return fail(400, "bad_acl", tostring(err)) end
  end
  return json(200, self:point_json(canon))
end)

route("GET", "/network/greylist/ips", false, function(self)
  local ips = array({})
  local s = acl(self.node)
  if s then
    for key, n in pairs(s.ips.map) do
      if n.expires > core.now() then ips[#ips + 1] = addr6(key) end
    end
  end
  table.sort(ips)
  -- The greylist is an LRU that never overflows silently (evicted
  -- entries are unbanned), so the list is exact: null.
  return json(200, { ips = ips, not_reliable_since = cjson.null })
end)

route("GET", "/network/greylist/peers", false, function(self)
  local ids = array({})
  local s = acl(self.node)
  if s then
    for key, n in pairs(s.peers.map) do
      if n.expires > core.now() then ids[#ids + 1] = key end
    end
  end
  table.sort(ids)
  return json(200, ids)
end)

route("DELETE", "/network/greylist", true, function(self)
  self:clear_greylist()
  return json(200, {})
end)

-- luap2p's own.
route("GET", "/luap2p/bans", false, function(self)
  return json(200, self:bans())
end)

route("POST", "/luap2p/bans", true, function(self, _, body)
  local v = decode_body(body)
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
  return json(200, { target = v.target, seconds = secs })
end)

route("DELETE", "/luap2p/bans/(.+)", true, function(self, target)
  local called, removed = pcall(self.node.unban, self.node, target)
  if not called then return fail(400, "bad_target", tostring(removed)) end
  return json(200, { target = target, removed = removed and true or false })
end)

route("GET", "/luap2p/events", false, function(self, query)
  local since = math.tointeger(tonumber(query.since) or 0) or 0
  local list = array({})
  for n = math.max(since + 1, self.event_seq - EVENTS_KEPT + 1),
          self.event_seq do
    list[#list + 1] = self.events[n]
  end
  return json(200, { seq = self.event_seq, events = list })
end)

route("POST", "/luap2p/reload", true, function(self)
  local ok, err = self.node:reload()
  if not ok then return fail(500, "reload_failed", tostring(err)) end
  return json(200, { reloaded = self.node:policies() })
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
    return 404, { ["Content-Type"] = TEXT }, "not found; try /metrics\n"
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
