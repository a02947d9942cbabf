-- luap2p.config: the one schema of p2p.new(config), and its checks.
--
-- Every key is one row of SCHEMA: name, type, range, default, who reads
-- it ("core": the C core, through core/lua/lua_config.c; "lua": the Lua
-- layer or a default policy) and a one-line doc. p2p.new checks a config
-- against it and passes the complete table (defaults filled) to core.node;
-- core.handshake reads the core keys it shares with the same names and
-- meaning; the `luap2p node` flags that set a key take their range,
-- default and help from here; the README's config table is generated
-- from it (`make readme-config`). Adding a key: a row here, and for a
-- "core" key the field and its line in core/lua/lua_config.c (a spec
-- checks that the core's fallback defaults and ranges equal these).
local check = require "luap2p.check"
local policy = require "luap2p.policy"

local error, io, ipairs, math, pairs, string, table, tonumber, tostring, type =
      error, io, ipairs, math, pairs, string, table, tonumber, tostring, type

local _M = {}

local BIG = 1 << 20
local INF = math.huge

-- Types: integer, number (ranges are inclusive), boolean, string, list (a
-- table used as an array), versions (a list of consecutive integers),
-- enum (one of `values`), identity (an Identity or a file path), file (an
-- open Lua file). `shown` replaces the default in the README table.
-- luacheck: push no max line length
_M.SCHEMA = {
  -- the node and its peers
  { "identity", "identity", nil, read = "lua", required = true, doc = "an Identity (`p2p.core.identity_generate()`, `p2p.core.identity_from_json(text)`) or a path to an `identity.json`" },
  { "identity_check_mode", "boolean", true, read = "lua", doc = "refuse an identity file that group or others may access (`EPERM`, as ssh does); false loads it anyway" },
  { "listen", "string", nil, read = "lua", doc = "`\"HOST:PORT\"` to listen on (`\"[::1]:0\"` for IPv6; port 0 = any)" },
  { "peers", "list", nil, read = "lua", doc = "points to dial at start" },
  { "trusted", "list", nil, read = "lua", doc = "points or peer ids to trust" },
  { "chain", "string", "TEZOS_MAINNET", min = 1, max = 255, read = "core", cli = "--chain", doc = "chain name announced in the connection message and required of peers" },
  { "pow_bits", "number", 26, min = 0, max = 256, read = "core", cli = "--pow", doc = "proof-of-work bits required of peers" },
  { "p2p_versions", "versions", { 0, 1 }, read = "core", doc = "supported p2p versions, consecutive; the largest is announced" },
  { "ddb_versions", "versions", { 0, 1, 2 }, read = "core", doc = "supported distributed-db versions, consecutive; the largest is announced" },
  { "advertised_port", "integer", 0, min = 0, max = 65535, read = "core", doc = "port announced in the connection message (0: the first port listened on)" },
  { "private_mode", "boolean", false, read = "core", cli = "--private", doc = "only trusted points and peers; the metadata asks peers not to advertise us" },
  { "disable_mempool", "boolean", false, read = "core", doc = "metadata flag: we do not relay operations" },
  { "disable_peer_discovery", "boolean", false, read = "core", doc = "no points in Nack and Advertise" },
  -- connection counts and timeouts
  { "min_connections", "integer", 10, min = 0, max = BIG, read = "core", cli = "--min-connections", doc = "maintenance dials below this" },
  { "expected_connections", "integer", nil, min = 0, max = BIG, read = "lua", shown = "50 (within min..max)", doc = "maintenance target; with min and max it gives Octez's bounds (10/50/100 -> 23/36/68/84)" },
  { "max_connections", "integer", 100, min = 0, max = BIG, read = "core", cli = "--max-connections", doc = "authenticated connections above this get a Nack (see `too_many_rule`)" },
  { "too_many_rule", "enum", "random_extra", values = { "random_extra", "threshold" }, read = "lua", doc = "when a new peer gets Too_many_connections: `\"random_extra\"` (Octez up to v24.2: unless `max_connections` + random(0,1) > active) or `\"threshold\"` (Octez from v24.3: when active >= the maintenance `max_threshold`, 84 by default, or `max_connections` without maintenance)" },
  { "connections_threshold", "integer", 0, min = 0, max = BIG, read = "core", derived = true, doc = "set by p2p.new from `too_many_rule` (0: the random_extra rule)" },
  { "max_incoming_connections", "integer", 20, min = 0, max = BIG, read = "core", cli = "--max-incoming", doc = "cap on not-yet-authenticated incoming connections" },
  { "connection_timeout", "number", 10, min = 0, max = 1e9, read = "core", doc = "seconds for an outgoing connect and handshake" },
  { "authentication_timeout", "number", 5, min = 0, max = 1e9, read = "core", doc = "seconds for an incoming handshake" },
  { "backlog", "integer", 20, min = 1, max = 65535, read = "core", doc = "listen(2) backlog" },
  { "bind_address", "string", nil, read = "core", doc = "local IP address outgoing connections are bound to (a node listening on one of several addresses dials from it)" },
  { "crypto_workers", "integer", -1, min = -1, max = 64, read = "core", shown = "-1 (one per CPU)", doc = "threads running the handshake's key computation (crypto_box_beforenm, proof-of-work check) off the event loop, one pool per loop (kept while the loop lives, for its next node); a loop pass with one such job runs it itself, of k the threads take k*n/(n+1); 0: always on the loop" },
  -- sizes and queues
  { "binary_chunks_size", "integer", 65535, min = 19, max = 65535, read = "core", doc = "size of the chunks we send" },
  { "max_message_size", "integer", 104857596, min = 2, max = 104857596, read = "core", shown = "100 MiB - 4", doc = "cap on one P2P message" },
  { "max_connection_message", "integer", 1024, min = 90, max = 65535, read = "core", doc = "cap on a connection message's length prefix (a real one is < 350 B)" },
  { "outgoing_message_queue_size", "integer", 1000, min = 1, max = 1 << 24, read = "core", doc = "messages queued for sending per connection (`send` returns `EQUEUEFULL`)" },
  { "outgoing_queue_bytes", "integer", 8 << 20, min = 1024, max = 1 << 40, read = "core", shown = "8 MiB", doc = "bytes queued for sending per connection" },
  { "incoming_app_message_queue_size", "integer", 1000, min = 1, max = 1 << 24, read = "lua", doc = "inbox bound per connection in messages: past it, messages nobody consumes are dropped (a `dropped` event), or in pull mode reading pauses" },
  { "incoming_app_message_queue_bytes", "integer", 16 << 20, min = 1, max = INF, read = "lua", shown = "16 MiB", doc = "the same bound in bytes" },
  { "pull_mode", "boolean", false, read = "lua", doc = "every connection starts in pull mode (`conn:pull(true)`): a full inbox pauses reading until `recv()` drains it" },
  -- incoming memory and fairness (per node, per connection)
  { "incoming_buffer_bytes", "integer", 256 << 20, min = 64 * 1024, max = 1 << 44, read = "core", shown = "256 MiB", doc = "node budget for every buffered incoming byte (partial chunks and messages, held-back input, inboxes); over it the largest holders are closed (`ENOBUFS`)" },
  { "partial_message_min_rate", "number", 1024, min = 0, max = 1e12, read = "core", doc = "bytes/s a connection holding a partial message must receive..." },
  { "partial_message_timeout", "number", 10, min = 0, max = 1e9, read = "core", doc = "...or be closed after this many seconds (`ETIMEDOUT`; 0 = never)" },
  { "read_pass_bytes", "integer", 1 << 20, min = 1, max = 1 << 30, read = "core", shown = "1 MiB", doc = "bytes read per connection per loop pass before the others get their turn" },
  { "read_pass_messages", "integer", 256, min = 1, max = 1 << 24, read = "core", doc = "messages dispatched per connection per loop pass" },
  { "p2p_message_rate", "number", 10, min = 0, max = 1e9, read = "core", doc = "Bootstrap, Advertise and Swap messages per second per connection (0 = no limit); past the burst reading pauses and a `rate_exceeded` event is emitted (the acl greylists)" },
  { "p2p_message_burst", "number", 100, min = 1, max = 1e9, read = "core", doc = "burst of that bucket" },
  { "app_message_rate", "number", 20000, min = 0, max = 1e9, read = "core", doc = "application messages per second per connection (0 = no limit), as above" },
  { "app_message_burst", "number", 40000, min = 1, max = 1e9, read = "core", doc = "burst of that bucket" },
  -- admission, before any cryptography
  { "ban_table_size", "integer", 65536, min = 1, max = 1 << 24, read = "core", doc = "C ban table capacity (the oldest entry is evicted)" },
  { "admission_rate", "number", 20, min = 0, max = 1e9, read = "core", doc = "accepts per second per IP (token bucket)" },
  { "admission_burst", "number", 5, min = 0, max = 1e9, read = "core", doc = "burst of that bucket" },
  { "admission_prefix_rate", "number", 80, min = 0, max = 1e9, read = "core", doc = "accepts per second per /24 (IPv4) or /64 (IPv6)" },
  { "admission_prefix_burst", "number", 20, min = 0, max = 1e9, read = "core", doc = "burst of that bucket" },
  { "max_connections_per_ip", "integer", 8, min = 0, max = BIG, read = "core", doc = "concurrent connections per IP (0 = no cap)" },
  { "max_connections_per_prefix", "integer", 32, min = 0, max = BIG, read = "core", doc = "concurrent connections per prefix (0 = no cap)" },
  { "admission_table_size", "integer", 4096, min = 2, max = 1 << 24, read = "core", doc = "admission table entries (LRU)" },
  { "admission_exempt_loopback", "boolean", true, read = "core", doc = "loopback addresses skip the rates and caps" },
  { "load_threshold", "integer", 10, min = 0, max = BIG, read = "core", doc = "pending handshakes that switch to \"under load\" (rates halved; 0 = off)" },
  -- the RPC server (luap2p.rpc, `luap2p node --rpc-addr`)
  { "rpc_max_clients", "integer", 256, min = 1, max = 65535, read = "lua", doc = "RPC clients connected at once, all IPs (more wait in the kernel's backlog)" },
  { "rpc_max_clients_per_ip", "integer", 16, min = 1, max = 65535, read = "lua", doc = "RPC clients connected at once from one IP" },
  { "rpc_idle_timeout", "integer", 10, min = 1, max = 86400, read = "lua", doc = "seconds an RPC client may stay silent before it is closed" },
  { "rpc_request_timeout", "integer", 10, min = 1, max = 86400, read = "lua", cli = "--rpc-request-timeout", doc = "seconds an RPC client has to send a whole request (head and body), from its connect or the end of its previous answer; past them it gets a 408 and is closed, however steadily it sends (so clients dripping bytes from many IPs cannot hold every slot)" },
  { "rpc_max_head", "integer", 16384, min = 1, max = 1 << 20, read = "lua", shown = "16 KiB", doc = "bytes of an RPC request line and headers (431 above it plus the 4 KiB kept for the answer's head)" },
  { "rpc_max_body", "integer", 65536, min = 1, max = 64 << 20, read = "lua", shown = "64 KiB", doc = "bytes of an RPC request body (413 above)" },
  -- application messages
  { "app_messages", "enum", nil, values = { "shell", "raw" }, read = "lua", shown = "`\"shell\"` on `TEZOS*` chains, else `\"raw\"`", doc = "application messages: `\"shell\"` = Octez's shell messages only (what does not encode is refused before sending, what does not decode is a decoding error, as Octez), `\"raw\"` = any payload (luap2p-only networks)" },
  -- policies
  { "policies", "list", {}, read = "lua", doc = "policy files, module names or tables, stacked before the defaults" },
  { "default_policies", "boolean", true, read = "lua", doc = "stack the default Octez policies" },
  { "hook_budget", "integer", policy.DEFAULT_BUDGET, min = 0, max = INF, read = "lua", doc = "VM instructions per hook call, the coroutines it creates included (0 = no limit)" },
  { "hook_memory", "integer", policy.DEFAULT_MEMORY, min = 0, max = INF, read = "lua", shown = "64 MiB", doc = "bytes of Lua heap growth per hook call, refused before allocating (0 = no limit)" },
  { "hook_time", "number", policy.DEFAULT_TIME, min = 0, max = INF, read = "lua", doc = "wall-clock seconds per hook call, checked between VM instructions and at return (0 = no limit)" },
  { "watch", "boolean", false, read = "lua", doc = "reload policy files when they change" },
  { "log", "enum", nil, values = { "human", "json" }, read = "lua", cli = "--log", doc = "event log format (none: no log)" },
  { "log_level", "enum", "info", values = { "debug", "info", "warn", "error" }, read = "lua", doc = "lowest level logged" },
  { "log_file", "file", nil, read = "lua", shown = "stdout", doc = "an open file the log is written to" },
  { "greylist_timeout", "number", 86400, min = 0, max = INF, read = "lua", cli = "--greylist-timeout", doc = "seconds an IP stays greylisted (acl)" },
  { "greylist_loopback", "boolean", false, read = "lua", doc = "let the acl greylist loopback addresses (127.0.0.0/8, ::1); off, a local test or probe cannot lock the operator out" },
  { "greylist_size", "integer", 4096, min = 1, max = INF, read = "lua", doc = "greylisted IPs at most, oldest evicted (acl)" },
  { "ban_file", "string", nil, read = "lua", doc = "JSON file where admin bans are saved and re-applied at start (acl)" },
  { "known_points_max", "integer", 400, min = 1, max = INF, read = "lua", doc = "known points kept; over it the least useful go first (learnt from an incoming connection, never connected, oldest miss; never trusted or in use)" },
  { "known_peers_max", "integer", 400, min = 1, max = INF, read = "lua", doc = "known peer ids kept; over it the oldest seen go first (never trusted or connected)" },
  { "maintenance_interval", "number", 120, min = 0, max = INF, read = "lua", doc = "seconds between maintenance runs (0 = off)" },
  { "maintenance_eviction", "enum", "diverse", values = { "diverse", "random" }, read = "lua", doc = "connections maintenance closes above its bounds: the newest of the most represented /24 (/64), the older half kept (`diverse`), or random ones (`random`, Octez)" },
  { "swap_linger", "number", 30, min = 0, max = INF, read = "lua", doc = "seconds between swaps (0 = no swaps)" },
}
-- luacheck: pop

-- By name.
_M.KEYS, _M.SCHEMA_NAMES = {}, {}
for i, k in ipairs(_M.SCHEMA) do
  k.name, k.type, k.default = k[1], k[2], k[3]
  _M.KEYS[k.name] = k
  _M.SCHEMA_NAMES[i] = k.name
end

-- Octez's expected_connections default (src/lib_p2p_services/p2p_limits.ml).
_M.EXPECTED_CONNECTIONS = 50

-- The maintenance bounds from min/expected/max connections, as Octez's
-- make_maintenance_bounds (src/lib_p2p/p2p_connect_handler.ml):
-- 10/50/100 -> 23/36/68/84.
function _M.bounds(min, expected, max)
  local step_min = (expected - min) // 3
  local step_max = (max - expected) // 3
  return {
    min_threshold = min + step_min,
    min_target = min + 2 * step_min,
    max_target = max - 2 * step_max,
    max_threshold = max - step_max,
  }
end

-- "HOST:PORT" or "[v6]:PORT" -> host, port (nil when malformed).
function _M.split_point(s)
  local host, port = s:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  return host, tonumber(port)
end

-- The known key nearest to k (within two edits, or a whole word of a
-- key: "port" of "advertised_port"), or nil.
function _M.nearest(k)
  return check.nearest(k, _M.SCHEMA_NAMES)
end

local function range_text(k, what)
  if k.max == INF then
    return string.format("%s >= %s", what, tostring(k.min))
  end
  return string.format("%s in [%s, %s]", what, tostring(k.min),
    tostring(k.max))
end

-- What a key expects, as in "config.<key>: expected <this>".
function _M.expects(k)
  local t = k.type
  if t == "integer" then return range_text(k, "an integer") end
  if t == "number" then return range_text(k, "a number") end
  if t == "string" and k.max then
    return string.format("a string of %d..%d bytes", k.min, k.max)
  end
  if t == "versions" then
    return "a non-empty list of consecutive versions in [0, 65535], " ..
      "e.g. {0, 1}"
  end
  if t == "enum" then
    return "one of '" .. table.concat(k.values, "', '") .. "'"
  end
  if t == "identity" then return "an Identity or a file path" end
  if t == "file" then return "an open file" end
  if t == "list" then return "a list" end
  return "a " .. t
end

-- Whether v fits k.
local function fits(k, v)
  local t = k.type
  if t == "integer" then
    v = math.tointeger(v)
    return v ~= nil and v >= k.min and v <= k.max
  elseif t == "number" then
    return type(v) == "number" and v >= k.min and v <= k.max
  elseif t == "string" then
    return type(v) == "string" and (not k.max or (#v >= k.min and
      #v <= k.max))
  elseif t == "versions" then
    if type(v) ~= "table" or #v == 0 then return false end
    for i, x in ipairs(v) do
      x = math.tointeger(x)
      if not x or x < 0 or x > 65535 or x ~= math.tointeger(v[1]) + i - 1
      then
        return false
      end
    end
    return true
  elseif t == "enum" then
    for _, x in ipairs(k.values) do if v == x then return true end end
    return false
  elseif t == "identity" then
    return type(v) == "userdata" or type(v) == "string"
  elseif t == "file" then
    return io.type(v) == "file"
  elseif t == "list" then
    return type(v) == "table"
  end
  return type(v) == t
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Check one value; raises "<who>: config.<key>: expected ..., got ..."
-- at `level`.
function _M.check_value(who, name, v, level)
  local k = _M.KEYS[name]
  if not fits(k, v) then
    error(string.format("%s: config.%s: expected %s, got %s", who, name,
      _M.expects(k), type(v) == "table" and "a table" or show(v)),
      level + 1)
  end
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for i, x in pairs(v) do t[i] = x end
  return t
end

-- The defaults of the schema as one table constructor, compiled once:
-- every p2p.new gets its table made at its full size in one step (every
-- key, then those given), and its own copy of each list default.
local defaults do
  local src, D = { "local D, copy = ...\nreturn function() return {\n" }, {}
  for i, k in ipairs(_M.SCHEMA) do
    D[i] = k.default
    if type(k.default) == "table" then
      src[#src + 1] = string.format("  [%q] = copy(D[%d]),\n", k.name, i)
    else
      src[#src + 1] = string.format("  [%q] = D[%d],\n", k.name, i)
    end
  end
  src[#src + 1] = "} end\n"
  defaults = assert(load(table.concat(src), "=config defaults", "t", {}))(
    D, copy)
end

-- The keys p2p.new requires.
local REQUIRED = {}
for _, k in ipairs(_M.SCHEMA) do
  if k.required then REQUIRED[#REQUIRED + 1] = k.name end
end

-- Check cfg against the schema; returns a copy with every default filled.
-- Misuse raises at the caller of p2p.new.
function _M.check(cfg)
  if type(cfg) ~= "table" then
    error("p2p.new: expected a config table, got " .. type(cfg), 3)
  end
  local keys = _M.KEYS
  local c = defaults()
  for name, v in pairs(cfg) do
    local k = type(name) == "string" and keys[name]
    if not k or k.derived then
      local near = type(name) == "string" and _M.nearest(name)
      error(string.format("p2p.new: unknown config key '%s'%s",
        tostring(name), near and " (did you mean '" .. near .. "'?)" or ""),
        3)
    end
    if not fits(k, v) then _M.check_value("p2p.new", name, v, 3) end
    c[name] = v
  end
  for _, name in ipairs(REQUIRED) do
    if cfg[name] == nil then
      error("p2p.new: config." .. name .. " is required", 3)
    end
  end
  if c.min_connections > c.max_connections then
    error(string.format(
      "p2p.new: config.min_connections (%d) > max_connections (%d)",
      c.min_connections, c.max_connections), 3)
  end
  -- Octez's 50, brought into [min, max] when those are set lower/higher.
  c.expected_connections = c.expected_connections or
    math.max(c.min_connections,
      math.min(_M.EXPECTED_CONNECTIONS, c.max_connections))
  if c.expected_connections < c.min_connections or
     c.expected_connections > c.max_connections then
    error("p2p.new: config.expected_connections must lie between " ..
      "min_connections and max_connections", 3)
  end
  -- Application messages: the shell's on Tezos chains, raw elsewhere.
  if c.app_messages == nil then
    c.app_messages = c.chain:match("^TEZOS") and "shell" or "raw"
  end
  -- "threshold" (Octez from v24.3): refuse when active >= the
  -- maintenance max_threshold, or max_connections when no maintenance
  -- runs; the core applies it when connections_threshold is set.
  if c.too_many_rule == "threshold" then
    local maintained = c.default_policies and c.maintenance_interval > 0
    c.connections_threshold = maintained and
      _M.bounds(c.min_connections, c.expected_connections,
        c.max_connections).max_threshold or c.max_connections
  else
    c.connections_threshold = nil
  end
  return c
end

-- A README value.
local function cell(v)
  if v == nil then return "none" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return "`{" .. table.concat(parts, ", ") .. "}`"
  end
  if type(v) == "string" then return "`\"" .. v .. "\"`" end
  if math.type(v) == "float" and v == math.floor(v) and v < 2^53 then
    v = math.tointeger(v)
  end
  if math.type(v) == "integer" and v >= 10000 then
    local s = tostring(v):reverse():gsub("(%d%d%d)", "%1 "):reverse()
    return (s:gsub("^ ", ""))
  end
  return tostring(v)
end

-- The README's config table (Markdown), generated from the schema.
function _M.markdown()
  local out = { "| key | default | range | read by | meaning |",
                "|---|---|---|---|---|" }
  for _, k in ipairs(_M.SCHEMA) do
    if k.derived then goto next end
    local default = k.required and "required" or k.shown or cell(k.default)
    local range = ""
    if k.type == "integer" or k.type == "number" then
      range = k.max == INF and string.format(">= %s", cell(k.min)) or
        string.format("%s..%s", cell(k.min), cell(k.max))
    elseif k.type == "enum" then
      range = "`" .. table.concat(k.values, "`, `") .. "`"
    end
    out[#out + 1] = string.format("| `%s` | %s | %s | %s | %s |", k.name,
      default, range, k.read, k.doc)
    ::next::
  end
  return table.concat(out, "\n") .. "\n"
end

return _M
