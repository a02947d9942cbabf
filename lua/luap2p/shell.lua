-- luap2p.shell: the Tezos shell messages (Octez Distributed_db_message),
-- the application messages peers exchange after the Ack.
--
--   local shell = require "luap2p.shell"
--   local payload, tag = assert(shell.encode{ type = "get_current_head",
--                                             chain_id = "NetXdQprcVkpaWU" })
--   conn:send(payload, tag)
--   node:on("message", function(ev)
--     local msg, err = shell.decode(ev.payload, ev.tag)
--   end)
--
-- The codec is C (core/wire/shell.c); this module names it and adds the
-- protocol builder. Hashes are Base58Check text on the way out and text or
-- raw bytes on the way in. Runtime failures return nil, "ENAME: message",
-- "ENAME" (EPROTO: Octez would not decode it; EMSGSIZE: over a bound of
-- Octez); a malformed table raises, naming the field. See README.md,
-- "Shell messages", for every message's fields.
local core = require "luap2p.core"

local error, ipairs, math, pairs, string, table, type =
      error, ipairs, math, pairs, string, table, type

local _M = {
  -- name -> tag ("current_head" -> 0x14) and tag -> name.
  TAGS = {},
  NAMES = {},
  -- Octez's bounds: request lists (10 items), header (8 MiB), locator
  -- history (1000 hashes), operation (128 KiB), operations of one
  -- Operations_for_blocks (1 MiB), protocol (2 MiB), mempool (128008
  -- bytes), operation path (3 steps).
  LIMITS = {},
  -- Hash kinds of to_b58check / of_b58check.
  KINDS = { "block", "operation", "operation_list", "operation_list_list",
            "protocol", "context", "chain_id" },
}

for name, tag in pairs(core.shell_tags) do
  _M.TAGS[name] = tag
  _M.NAMES[tag] = name
end
for k, v in pairs(core.shell_limits) do _M.LIMITS[k] = v end


-- The protocol encoding of { expected_env = n, components = { { name,
-- interface (optional), implementation }, ... } }.
function _M.protocol_bytes(p)
  if type(p) ~= "table" then
    error("shell.protocol_bytes: table expected, got " .. type(p), 2)
  end
  local env = p.expected_env
  if math.type(env) ~= "integer" or env < 0 or env > 0xffff then
    error("shell.protocol_bytes: expected_env: integer in 0..65535 expected",
      2)
  end
  if type(p.components) ~= "table" then
    error("shell.protocol_bytes: components: array expected", 2)
  end
  local parts = {}
  for i, c in ipairs(p.components) do
    local where = "shell.protocol_bytes: components[" .. i .. "]"
    if type(c) ~= "table" or type(c.name) ~= "string" or
       type(c.implementation) ~= "string" or
       (c.interface ~= nil and type(c.interface) ~= "string") then
      error(where .. ": { name = string, interface = string or nil, "
        .. "implementation = string } expected", 2)
    end
    parts[#parts + 1] = string.pack(">s4", c.name)
      .. (c.interface and "\255" .. string.pack(">s4", c.interface) or "\0")
      .. string.pack(">s4", c.implementation)
  end
  return string.pack(">I2s4", env, table.concat(parts))
end


-- shell.encode(t) -> payload, tag | nil, err, code
-- t.type is a message name (TAGS). A "protocol" message takes either the
-- protocol's bytes (t.protocol) or t.expected_env and t.components.
function _M.encode(t)
  if type(t) ~= "table" then
    error("shell.encode: table expected, got " .. type(t), 2)
  end
  if t.type == "protocol" and t.protocol == nil and t.components ~= nil then
    local copy = {}
    for k, v in pairs(t) do copy[k] = v end
    copy.protocol = _M.protocol_bytes(t)
    t = copy
  end
  return core.shell_encode(t)
end


-- shell.decode(payload, tag) -> t | nil, err, code
-- t has type, tag and the message's fields (the same as encode takes),
-- plus the hashes of what it carries: header.hash (block), an operation's
-- hash, a protocol's hash.
function _M.decode(payload, tag)
  return core.shell_decode(payload, tag)
end


-- shell.to_b58check(kind, raw) -> text ("B...", "Net...", ...)
function _M.to_b58check(kind, raw)
  return core.b58_encode(kind, raw)
end


-- shell.of_b58check(kind, text) -> raw | nil, "EPROTO: ...", "EPROTO"
function _M.of_b58check(kind, text)
  return core.b58_decode(kind, text)
end


return _M
