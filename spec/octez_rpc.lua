-- The JSON shapes of Octez's /network RPCs, written from their
-- Data_encoding definitions in tezos/tezos-mirror:
--   src/lib_base/p2p_stat.ml          P2p_stat.encoding
--   src/lib_base/p2p_connection.ml    P2p_connection.Id / Info.encoding
--   src/lib_base/p2p_peer.ml          P2p_peer.State / Info.encoding
--   src/lib_base/p2p_point.ml         P2p_point.State / Info.encoding
--   src/lib_p2p_services/p2p_services.ml (paths; greylist/ips output)
-- Data_encoding's JSON: int64 -> decimal string, int31/uint16 -> number,
-- Time.System -> RFC 3339 string, obj "opt" fields may be absent, "req"
-- fields must be present, no other field may appear.
--
-- FIXTURES are real Octez outputs, so that the schemas themselves are
-- checked against the real thing:
--   connections: GET /network/connections of a mainnet node, recorded in
--     goat-systems/go-tezos (mocks_test.go, mockConnectionsResp; first
--     entry kept);
--   points: GET /p2p/points/info of an Octez DAL node (same
--     P2p_point.Info encoding), from the Octez documentation's DAL node
--     guide (docs.tezos.com), first entry kept;
--   greylist_ips, peers: the shapes used by airgap-it/tezos-kotlin-sdk's
--     RPC tests (values there are placeholders; peer_metadata trimmed).
local _M = {}

local function is_int(v) return math.type(v) == "integer" or
  (type(v) == "number" and v == math.floor(v)) end

local T = {}
T.bool = function(v) return type(v) == "boolean" end
T.string = function(v) return type(v) == "string" end
T.number = function(v) return type(v) == "number" end
T.uint16 = function(v) return is_int(v) and v >= 0 and v <= 65535 end
T.int31 = function(v) return is_int(v) and v >= -(1 << 30) and
  v < (1 << 30) end
T.int64 = function(v) return type(v) == "string" and
  v:match("^%-?%d+$") ~= nil end
T.peer_id = function(v) return type(v) == "string" and
  v:match("^id[1-9A-HJ-NP-Za-km-z]+$") ~= nil and #v == 30 end
-- RFC 3339 as Octez prints it (also accepts "Z").
T.timestamp = function(v) return type(v) == "string" and
  (v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$") ~= nil or
   v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*[+-]%d%d:%d%d$") ~=
   nil) end
T.point = function(v) return type(v) == "string" and
  (v:match("^%d+%.%d+%.%d+%.%d+:%d+$") or v:match("^%[.+%]:%d+$")) ~= nil
end
T.addr = function(v) return type(v) == "string" and
  v:match("^[%x:%.]+$") ~= nil end
T.object = function(v) return type(v) == "table" end
_M.T = T

-- Schema forms: a function (leaf), { obj = {req...}, opt = {...} },
-- { list = s }, { tuple = { s1, s2 } }, { enum = { "a", ... } },
-- { union = { s1, s2 } }, { nullable = s }.
local function check(s, v, path, errs)
  if type(s) == "function" then
    if not s(v) then
      errs[#errs + 1] = path .. ": bad value " .. tostring(v)
    end
  elseif s.obj or s.opt then
    if type(v) ~= "table" then
      errs[#errs + 1] = path .. ": expected an object"
      return
    end
    for k, sub in pairs(s.obj or {}) do
      if v[k] == nil then errs[#errs + 1] = path .. "." .. k .. ": missing"
      else check(sub, v[k], path .. "." .. k, errs) end
    end
    for k, sub in pairs(s.opt or {}) do
      if v[k] ~= nil then check(sub, v[k], path .. "." .. k, errs) end
    end
    for k in pairs(v) do
      if not (s.obj and s.obj[k]) and not (s.opt and s.opt[k]) then
        errs[#errs + 1] = path .. "." .. tostring(k) .. ": unknown field"
      end
    end
  elseif s.list then
    if type(v) ~= "table" then
      errs[#errs + 1] = path .. ": expected a list"
      return
    end
    for i, x in ipairs(v) do check(s.list, x, path .. "[" .. i .. "]", errs) end
  elseif s.tuple then
    if type(v) ~= "table" or #v ~= #s.tuple then
      errs[#errs + 1] = path .. ": expected a " .. #s.tuple .. "-tuple"
      return
    end
    for i, sub in ipairs(s.tuple) do
      check(sub, v[i], path .. "[" .. i .. "]", errs)
    end
  elseif s.enum then
    local ok = false
    for _, e in ipairs(s.enum) do if v == e then ok = true end end
    if not ok then errs[#errs + 1] = path .. ": not one of the enum: " ..
      tostring(v) end
  elseif s.union then
    for _, sub in ipairs(s.union) do
      local e = {}
      check(sub, v, path, e)
      if #e == 0 then return end
    end
    errs[#errs + 1] = path .. ": matches no case of the union"
  elseif s.nullable then
    if v ~= _M.null then check(s.nullable, v, path, errs) end
  end
end

-- Returns nil, or a list of problems (strings).
function _M.check(s, v)
  local errs = {}
  check(s, v, "$", errs)
  if #errs == 0 then return nil end
  table.sort(errs)
  return errs
end

_M.null = require("cjson").null

local S = {}
S.stat = { obj = { total_sent = T.int64, total_recv = T.int64,
                   current_inflow = T.int31, current_outflow = T.int31 } }
S.conn_id = { obj = { addr = T.addr }, opt = { port = T.uint16 } }
S.conn_metadata = { obj = { disable_mempool = T.bool,
                            private_node = T.bool } }
S.network_version = { obj = { chain_name = T.string,
  distributed_db_version = T.uint16, p2p_version = T.uint16 } }
S.connection = { obj = {
  incoming = T.bool, peer_id = T.peer_id, id_point = S.conn_id,
  remote_socket_port = T.uint16, announced_version = S.network_version,
  private = T.bool, local_metadata = S.conn_metadata,
  remote_metadata = S.conn_metadata } }
local at = { tuple = { S.conn_id, T.timestamp } }
S.peer = {
  obj = { score = T.number, trusted = T.bool, peer_metadata = T.object,
          state = { enum = { "accepted", "running", "disconnected" } },
          stat = S.stat },
  opt = { conn_metadata = S.conn_metadata, reachable_at = S.conn_id,
          last_failed_connection = at, last_rejected_connection = at,
          last_established_connection = at, last_disconnection = at,
          last_seen = at, last_miss = at } }
local id_at = { tuple = { T.peer_id, T.timestamp } }
S.point_state = { union = {
  { obj = { event_kind = { enum = { "requested", "disconnected" } } } },
  { obj = { event_kind = { enum = { "accepted", "running" } },
            p2p_peer_id = T.peer_id } } } }
S.point = {
  obj = { trusted = T.bool, state = S.point_state },
  opt = { greylisted_until = T.timestamp, p2p_peer_id = T.peer_id,
          last_failed_connection = T.timestamp,
          last_rejected_connection = id_at,
          last_established_connection = id_at,
          last_disconnection = id_at, last_seen = id_at,
          last_miss = T.timestamp, expected_peer_id = T.peer_id } }
S.greylist_ips = { obj = { ips = { list = T.addr },
                           not_reliable_since = { nullable = T.timestamp } } }
S.peer_ids = { list = T.peer_id }
S.connections = { list = S.connection }
S.peers = { list = { tuple = { T.peer_id, S.peer } } }
S.points = { list = { tuple = { T.point, S.point } } }
_M.S = S

_M.FIXTURES = {
  connections = [[
[{"incoming":false,"peer_id":"idsjDeSrQivFbkSmT24cmFn7zaFcHL","id_point":{"addr":"::ffff:51.158.99.28","port":9732},"remote_socket_port":9732,"announced_version":{"chain_name":"TEZOS_MAINNET","distributed_db_version":0,"p2p_version":0},"private":false,"local_metadata":{"disable_mempool":false,"private_node":false},"remote_metadata":{"disable_mempool":false,"private_node":false}}]
]],
  point = [[
{"trusted":true,"state":{"event_kind":"running","p2p_peer_id":"idrpUzezw7VJ4NU6phQYuxh88RiU1t"},"p2p_peer_id":"idrpUzezw7VJ4NU6phQYuxh88RiU1t","last_established_connection":["idrpUzezw7VJ4NU6phQYuxh88RiU1t","2024-10-24T15:02:31.549-00:00"],"last_seen":["idrpUzezw7VJ4NU6phQYuxh88RiU1t","2024-10-24T15:02:31.549-00:00"]}
]],
  greylist_ips = [[
{"ips":["127.0.0.1"],"not_reliable_since":"2022-04-12T13:07:00Z"}
]],
  peer = [[
{"score":0,"trusted":true,"conn_metadata":{"disable_mempool":true,"private_node":true},"peer_metadata":{"valid_blocks":"1073741823"},"state":"running","reachable_at":{"addr":"127.0.0.1","port":65535},"stat":{"total_sent":"9223372036854775807","total_recv":"9223372036854775807","current_inflow":1073741823,"current_outflow":1073741823},"last_established_connection":[{"addr":"127.0.0.1","port":65535},"2022-04-12T13:07:00Z"],"last_seen":[{"addr":"127.0.0.1","port":65535},"2022-04-12T13:07:00Z"]}
]],
}

return _M
