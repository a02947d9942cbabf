-- luap2p.cli.metrics: Prometheus text exposition (format 0.0.4) of a node,
-- served at /metrics by the node's RPC server (luap2p.rpc; `luap2p node
-- --rpc-addr HOST:PORT`, or `--metrics HOST:PORT` for /metrics alone).
--
-- Counters come from the node's event stream (node:on("*")), gauges and
-- byte counts from node:stat() and node:connections() at scrape time.
-- Label values that come from policies (refusal reasons) are free text, so
-- each labelled counter keeps at most MAX_LABELS distinct values; later
-- ones are counted under "other" (a scrape must stay small).
local core = require "luap2p.core"

local ipairs, math, pairs, setmetatable, string, table, tostring =
      ipairs, math, pairs, setmetatable, string, table, tostring

local _M = {}
local mt = { __index = _M }

local MAX_LABELS = 64

_M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

local MOTIVES = { [0] = "no_motive", "too_many_connections",
  "unknown_chain_name", "deprecated_p2p_version",
  "deprecated_distributed_db_version", "already_connected" }

local function motive_name(m)
  return MOTIVES[m] or ("motive_" .. tostring(m))
end

local function nonempty(s, default)
  if s == nil or s == "" then return default end
  return s
end

-- Counter families: name -> { help, label name (or nil) }.
local FAMILIES = {
  { "luap2p_events_total", "Node events by type.", "type" },
  { "luap2p_refusals_total",
    "Connections this node refused, by stage and reason.", "reason",
    "stage" },
  { "luap2p_nacks_received_total",
    "Nacks received from peers, by motive.", "motive" },
  { "luap2p_handshake_failures_total",
    "Failed handshakes, by error name.", "reason" },
  { "luap2p_disconnections_total",
    "Closed connections, by error name (none: closed cleanly).", "reason" },
  { "luap2p_bans_total", "Bans applied (greylist and policies).", nil },
}

function _M.new(node)
  local self = setmetatable({ node = node, counters = {}, nacked = {},
                             started = core.now() }, mt)
  for _, f in ipairs(FAMILIES) do self.counters[f[1]] = { n = 0, v = {} } end
  node:on("*", function(ev) self:observe(ev) end)
  return self
end

-- Add 1 to family name at the label set key (a string, already joined).
function _M:inc(name, key)
  local c = self.counters[name]
  key = key or ""
  if c.v[key] == nil then
    if c.n >= MAX_LABELS then key = "other" end
    if c.v[key] == nil then
      c.v[key] = 0
      c.n = c.n + 1
    end
  end
  c.v[key] = c.v[key] + 1
end

function _M:observe(ev)
  local t = ev.type
  self:inc("luap2p_events_total", t)
  if t == "refused" then
    self:inc("luap2p_refusals_total", "accept\0" .. nonempty(ev.reason, "?"))
  elseif t == "nack_sent" then
    -- The Nack is followed by a "disconnected" of the same connection:
    -- one refusal, not two.
    if ev.conn_id then self.nacked[ev.conn_id] = true end
    self:inc("luap2p_refusals_total", "handshake\0" ..
      nonempty(ev.reason, motive_name(ev.motive)))
  elseif t == "disconnected" and ev.code == "EREFUSED" and
         not ev.conn and not self.nacked[ev.conn_id] then
    -- Closed by a policy's "close" verdict after authentication.
    self:inc("luap2p_refusals_total", "handshake\0" ..
      nonempty(ev.reason, "refused"))
  elseif t == "nacked" then
    self:inc("luap2p_nacks_received_total", motive_name(ev.motive))
  elseif t == "auth_failed" then
    self:inc("luap2p_handshake_failures_total", ev.code or "unknown")
  elseif t == "banned" then
    self:inc("luap2p_bans_total")
  end
  if t == "disconnected" then
    if ev.conn_id then self.nacked[ev.conn_id] = nil end
    self:inc("luap2p_disconnections_total", ev.code or "none")
  end
end

local function escape(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"',
    ["\n"] = "\\n" }))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function num(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "NaN" end
  return string.format("%.17g", v)
end

-- The whole exposition text.
function _M:render()
  local out = {}
  local function header(name, help, kind)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
  end
  local function sample(name, labels, v)
    out[#out + 1] = name .. (labels or "") .. " " .. num(v)
  end
  local node = self.node
  local s = node:stat()

  header("luap2p_info", "Node identity and library version.", "gauge")
  sample("luap2p_info", string.format('{peer_id="%s",chain="%s",' ..
    'version="%s"}', escape(node.peer_id),
    escape(node.config.chain or "TEZOS_MAINNET"), escape(core.version)), 1)

  header("luap2p_connections", "Connections by state and direction.",
    "gauge")
  local running = { incoming = 0, outgoing = 0 }
  for _, c in ipairs(node:connections()) do
    local d = c.direction or (c.incoming and "incoming" or "outgoing")
    running[d] = (running[d] or 0) + 1
  end
  sample("luap2p_connections", '{state="running",direction="incoming"}',
    running.incoming)
  sample("luap2p_connections", '{state="running",direction="outgoing"}',
    running.outgoing)
  sample("luap2p_connections", '{state="pending",direction="incoming"}',
    s.pending_incoming or 0)
  sample("luap2p_connections", '{state="pending",direction="outgoing"}',
    s.pending_outgoing or 0)

  for _, f in ipairs(FAMILIES) do
    local name, help, label, label2 = f[1], f[2], f[3], f[4]
    header(name, help, "counter")
    local c = self.counters[name]
    if not label then
      sample(name, nil, c.v[""] or 0)
    else
      for _, key in ipairs(sorted_keys(c.v)) do
        local labels
        if label2 then
          local a, b = key:match("^([^%z]*)%z(.*)$")
          if not a then a, b = "other", key end
          labels = string.format('{%s="%s",%s="%s"}', label2, escape(a),
            label, escape(b))
        else
          labels = string.format('{%s="%s"}', label, escape(key))
        end
        sample(name, labels, c.v[key])
      end
    end
  end

  local simple = {
    { "luap2p_bytes_in_total", "Bytes received on all connections.",
      "counter", s.bytes_in },
    { "luap2p_bytes_out_total", "Bytes sent on all connections.", "counter",
      s.bytes_out },
    { "luap2p_messages_in_total", "Messages received.", "counter",
      s.msgs_in },
    { "luap2p_messages_out_total", "Messages sent.", "counter", s.msgs_out },
    { "luap2p_policy_errors_total",
      "Policy hooks that failed or went over a limit.", "counter",
      s.policy_errors },
    { "luap2p_errors_total",
      "Listeners and node timers that failed.", "counter", s.errors },
    { "luap2p_reloads_total", "Policy modules reloaded successfully.",
      "counter", s.reloads },
    { "luap2p_known_points", "Points in the known-point table.", "gauge",
      s.known_points },
    { "luap2p_bans", "Entries in the ban table.", "gauge", s.bans },
    { "luap2p_uptime_seconds", "Seconds since the node started.", "gauge",
      core.now() - self.started },
  }
  for _, m in ipairs(simple) do
    header(m[1], m[2], m[3])
    sample(m[1], nil, m[4] or 0)
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

return _M
