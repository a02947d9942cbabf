-- luap2p.rpc.network: the Octez /network resources of the RPC, their
-- paths and JSON shapes as the Octez node has them (tezos/tezos-mirror,
-- src/lib_p2p_services/p2p_services.ml, encodings in src/lib_base/
-- p2p_stat.ml, p2p_connection.ml, p2p_peer.ml, p2p_point.ml).
-- luap2p.rpc routes requests to the handlers of ROUTES.
--
-- Octez's Data_encoding conventions: int64 values are JSON strings
-- ("total_sent": "1234"), int31 are numbers, timestamps are RFC 3339
-- strings, an IP address is its IPv6 text ("::ffff:127.0.0.1"), a point
-- is "ip:port" ("[v6]:port"), "empty" outputs are {}.
local core = require "luap2p.core"
local json = require "luap2p.json"
local reply = require "luap2p.rpc.reply"

local ipairs, math, os, pairs, string, table, tonumber, tostring, type =
      ipairs, math, os, pairs, string, table, tonumber, tostring, type

local _M = {}

local json_reply, fail, not_found, read_body =
      reply.json, reply.fail, reply.not_found, reply.body

---------------------------------------------------------------- values

-- Monotonic core.now() seconds -> wall-clock seconds.
local function wall(t)
  if not t then return nil end
  return os.time() + (t - core.now())
end
_M.wall = wall

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
_M.split_point = split_point

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
_M.acl = acl

-- Seconds (monotonic) until which the IP or peer id is greylisted.
local function greylisted_until(node, key)
  local s = acl(node)
  if not s or not key then return nil end
  for _, l in ipairs({ s.ips, s.peers }) do
    local n = l and l.map[key]
    if n and n.expires > core.now() then return n.expires end
  end
end

---------------------------------------------------------------- encoders

-- P2p_connection.Info of a running connection.
local function connection_json(self, conn)
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
  return json.array({ conn_id(pair[1]) or { addr = "::" },
                      stamp(wall(pair[2])) })
end

-- P2p_peer.Info of a peer id (nil when never met).
local function peer_json(self, id)
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
  return json.array({ id, stamp(wall(t)) })
end

-- P2p_point.Info of a known point (nil when unknown).
local function point_json(self, p)
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

---------------------------------------------------------------- acl

local function is_peer_id(s)
  return type(s) == "string" and s:match("^id[1-9A-HJ-NP-Za-km-z]+$") ~= nil
end

-- PATCH .../peers/<id> and .../points/<point> bodies: {"acl": "ban" |
-- "trust" | "open"} (Octez semantics: ban removes the trust, trust lifts
-- the ban, open lifts both).
-- A point's ban is its IP's (Octez ignores the port: P2p_pool.Points).
local function set_acl(self, target, what, ban_target)
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

-- Unban every greylist entry (Octez: DELETE /network/greylist). Admin
-- bans stay.
function _M.clear_greylist(self)
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

-- The /network routes, { method, pattern, write, handler }, in the
-- order luap2p.rpc tries them (see its route()).
local ROUTES = {}
_M.ROUTES = ROUTES
local function route(method, pattern, write, fn)
  ROUTES[#ROUTES + 1] = { method, pattern, write, fn }
end

route("GET", "/network/self", false, function(self)
  return json_reply(200, self.node.peer_id)
end)

route("GET", "/network/stat", false, function(self)
  return json_reply(200, stat_json(self.node:stat()))
end)

route("GET", "/network/connections", false, function(self)
  local list = json.array({})
  for _, conn in ipairs(self.node:connections()) do
    list[#list + 1] = connection_json(self, conn)
  end
  return json_reply(200, list)
end)

route("GET", "/network/connections/([^/]+)", false, function(self, id)
  local conn = self.node:connection(id)
  if not conn then return not_found("connection", id) end
  return json_reply(200, connection_json(self, conn))
end)

route("DELETE", "/network/connections/([^/]+)", true, function(self, id)
  local conn = self.node:connection(id)
  if not conn then return not_found("connection", id) end
  conn:close("closed by the operator (rpc)")
  return json_reply(200, {})
end)

route("GET", "/network/peers", false, function(self)
  local ids = {}
  local seen = {}
  for id in pairs(self.node.peers) do ids[#ids + 1] = id; seen[id] = true end
  for id in pairs(self.peers) do
    if not seen[id] then ids[#ids + 1] = id end
  end
  table.sort(ids)
  local list = json.array({})
  for _, id in ipairs(ids) do
    local info = peer_json(self, id)
    if info then list[#list + 1] = json.array({ id, info }) end
  end
  return json_reply(200, list)
end)

route("GET", "/network/peers/([^/]+)", false, function(self, id)
  local info = peer_json(self, id)
  if not info then return not_found("peer", id) end
  return json_reply(200, info)
end)

route("GET", "/network/peers/([^/]+)/banned", false, function(self, id)
  return json_reply(200, self.node:banned(id) and true or false)
end)

route("PATCH", "/network/peers/([^/]+)", true, function(self, id, _, body)
  if not is_peer_id(id) then
    return fail(400, "bad_peer_id", "not a peer id: " .. id)
  end
  local v = read_body(body)
  if not v then return fail(400, "bad_body", "expected a JSON object") end
  if v.acl ~= nil then
    local ok, err = set_acl(self, id, v.acl)
    if not ok then return fail(400, "bad_acl", tostring(err)) end
  end
  self.node:peer(id)
  return json_reply(200, peer_json(self, id))
end)

route("GET", "/network/points", false, function(self)
  local pts = {}
  for p in pairs(self.node.points) do pts[#pts + 1] = p end
  table.sort(pts)
  local list = json.array({})
  for _, p in ipairs(pts) do
    list[#list + 1] = json.array({ p, point_json(self, p) })
  end
  return json_reply(200, list)
end)

route("GET", "/network/points/([^/]+)", false, function(self, p)
  local info = point_json(self, p)
  if not info then return not_found("point", p) end
  return json_reply(200, info)
end)

route("GET", "/network/points/([^/]+)/banned", false, function(self, p)
  local host = split_point(p)
  return json_reply(200, (self.node:banned(p) or
    (host and self.node:banned(host))) and true or false)
end)

route("PATCH", "/network/points/([^/]+)", true, function(self, p, _, body)
  local canon = core.point_parse(p)
  if not canon then return fail(400, "bad_point", "not a point: " .. p) end
  local v = read_body(body)
  if not v then return fail(400, "bad_body", "expected a JSON object") end
  local rec = self.node:point(canon)
  if v.peer_id ~= nil then
    if not is_peer_id(v.peer_id) then
      return fail(400, "bad_peer_id", "not a peer id: " .. tostring(v.peer_id))
    end
    rec.expected_peer_id = v.peer_id
  end
  if v.acl ~= nil then
    local ok, err = set_acl(self, canon, v.acl, (split_point(canon)))
    if not ok then return fail(400, "bad_acl", tostring(err)) end
  end
  return json_reply(200, point_json(self, canon))
end)

route("GET", "/network/greylist/ips", false, function(self)
  local ips = json.array({})
  local s = acl(self.node)
  if s then
    for key, n in pairs(s.ips.map) do
      if n.expires > core.now() then ips[#ips + 1] = addr6(key) end
    end
  end
  table.sort(ips)
  -- The greylist is an LRU that never overflows silently (evicted
  -- entries are unbanned), so the list is exact: null.
  return json_reply(200, { ips = ips, not_reliable_since = json.null })
end)

route("GET", "/network/greylist/peers", false, function(self)
  local ids = json.array({})
  local s = acl(self.node)
  if s then
    for key, n in pairs(s.peers.map) do
      if n.expires > core.now() then ids[#ids + 1] = key end
    end
  end
  table.sort(ids)
  return json_reply(200, ids)
end)

route("DELETE", "/network/greylist", true, function(self)
  _M.clear_greylist(self)
  return json_reply(200, {})
end)

return _M
