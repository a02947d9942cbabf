-- luap2p.config: the keys of p2p.new(config), their types and defaults,
-- and the checks that run before a node is built.
local policy = require "luap2p.policy"

local error, math, pairs, string, tonumber, tostring, type =
      error, math, pairs, string, tonumber, tostring, type

local _M = {}

-- Config keys: type, and for the Lua-only ones a default.
_M.KEYS = {
  identity = "userdata", listen = "string", peers = "table",
  trusted = "table", policies = "table", default_policies = "boolean",
  watch = "boolean", hook_budget = "number", log = "string",
  log_level = "string", log_file = "userdata", expected_connections = "number",
  incoming_app_message_queue_size = "number", greylist_timeout = "number",
  greylist_size = "number", ban_file = "string", known_points_max = "number",
  maintenance_interval = "number", swap_linger = "number",
  too_many_rule = "string",
  -- read by the C core (lua_node.c)
  chain = "string", pow_bits = "number", p2p_versions = "table",
  ddb_versions = "table", advertised_port = "number", private_mode = "boolean",
  disable_mempool = "boolean", disable_peer_discovery = "boolean",
  min_connections = "number", max_connections = "number",
  max_incoming_connections = "number",
  outgoing_message_queue_size = "number", outgoing_queue_bytes = "number",
  binary_chunks_size = "number", max_message_size = "number",
  connection_timeout = "number", authentication_timeout = "number",
  ban_table_size = "number", backlog = "number",
  admission_rate = "number", admission_burst = "number",
  admission_prefix_rate = "number", admission_prefix_burst = "number",
  max_connections_per_ip = "number", max_connections_per_prefix = "number",
  admission_table_size = "number", admission_exempt_loopback = "boolean",
  load_threshold = "number", max_connection_message = "number",
}

_M.DEFAULTS = {
  hook_budget = policy.DEFAULT_BUDGET, expected_connections = nil,
  incoming_app_message_queue_size = 1000, greylist_timeout = 86400,
  greylist_size = 4096, known_points_max = 400, maintenance_interval = 120,
  swap_linger = 30, min_connections = 10, max_connections = 100,
  default_policies = true, log_level = "info", too_many_rule = "random_extra",
}

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

-- Check cfg against the keys; returns a copy with the defaults filled.
-- Misuse raises at the caller of p2p.new.
function _M.check(cfg)
  if type(cfg) ~= "table" then
    error("p2p.new: expected a config table, got " .. type(cfg), 3)
  end
  for k, v in pairs(cfg) do
    local want = _M.KEYS[k]
    if not want then
      error(string.format("p2p.new: unknown config key '%s'", tostring(k)),
        3)
    end
    if k ~= "identity" and type(v) ~= want then
      error(string.format("p2p.new: config.%s: expected a %s, got %s", k,
        want, type(v)), 3)
    end
  end
  local c = {}
  for k, v in pairs(_M.DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
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
  -- Too_many_connections: "random_extra" (Octez up to v24.2: refuse
  -- unless max_connections + random(0 or 1) > active) or "threshold"
  -- (Octez from v24.3: refuse when active >= the maintenance
  -- max_threshold, or max_connections when no maintenance runs).
  if c.too_many_rule == "threshold" then
    local maintained = c.default_policies and
      (c.maintenance_interval or 0) > 0
    c.connections_threshold = maintained and
      _M.bounds(c.min_connections, c.expected_connections,
        c.max_connections).max_threshold or c.max_connections
  elseif c.too_many_rule ~= "random_extra" then
    error("p2p.new: config.too_many_rule: expected \"random_extra\" or " ..
      "\"threshold\", got \"" .. tostring(c.too_many_rule) .. "\"", 3)
  end
  return c
end

return _M
