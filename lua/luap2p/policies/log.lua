-- luap2p.policies.log: every event as one line, human or JSON.
--
-- Active only when node.config.log is "human" or "json". Lines go to
-- node.config.log_file (an open file) or io.stdout, flushed per line.
-- node.config.log_level ("debug" | "info" | "warn" | "error", default
-- "info") drops the events below it. Levels:
--   debug  accepted, connecting, authenticated, new_point, new_peer,
--          bootstrap, advertise, swap_request, swap_ack
--   info   connected, disconnected, nack_sent, nacked, banned, unbanned,
--          reloaded, too_few_connections, too_many_connections, others
--   warn   refused, auth_failed, decoding_error, and a disconnection
--          for misbehaviour (a code the acl greylists)
--   error  policy_error, error (a failed listener or timer)
-- JSON: {"ts":<unix seconds>,"type":"<event>","level":"<level>",...} with
-- the event's scalar fields (and its list of points), keys sorted.
-- Human: 2024-01-31T12:00:00Z INFO  connected conn_id=... peer_id=...
local json = require "luap2p.json"

local io, ipairs, math, os, pairs, string, table, tostring, type =
      io, ipairs, math, os, pairs, string, table, tostring, type

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
local EVENT_LEVEL = {
  accepted = "debug", connecting = "debug", authenticated = "debug",
  new_point = "debug", new_peer = "debug", bootstrap = "debug",
  advertise = "debug", swap_request = "debug", swap_ack = "debug",
  refused = "warn", auth_failed = "warn", decoding_error = "warn",
  policy_error = "error", error = "error",
}
local MISBEHAVIOUR = {
  EPOW = true, EAUTH = true, EMSGSIZE = true, EPROTO = true, EBADLEN = true,
  ETRUNC = true, EEXTRA = true,
}

local _M = {
  name = "log",
  description = "one line per event, human or JSON, with levels",
  -- Every event when it logs, none when it does not.
  events = function(node)
    local f = node.config.log
    if f ~= "human" and f ~= "json" then return {} end
  end,
  _LEVELS = LEVELS,
}

local function level_of(ev)
  local l = EVENT_LEVEL[ev.type]
  if l then return l end
  if ev.type == "disconnected" and ev.code and MISBEHAVIOUR[ev.code] then
    return "warn"
  end
  return "info"
end
_M._level_of = level_of

-- The fields worth printing: scalars, and lists of scalars (points).
local function fields(ev)
  local keys = {}
  for k, v in pairs(ev) do
    if type(k) == "string" and k ~= "ts" and k ~= "type" then
      local tv = type(v)
      if tv == "string" or tv == "number" or tv == "boolean" then
        keys[#keys + 1] = k
      elseif tv == "table" and k ~= "conn" then
        local ok = true
        for i, x in pairs(v) do
          local tx = type(x)
          if type(i) ~= "number" or
             (tx ~= "string" and tx ~= "number" and tx ~= "boolean") then
            ok = false
            break
          end
        end
        if ok then keys[#keys + 1] = k end
      end
    end
  end
  table.sort(keys)
  return keys
end

local function json_line(ev, level)
  local parts = {
    '{"ts":', json.encode(ev.ts or os.time()),
    ',"type":', json.encode(tostring(ev.type)),
    ',"level":', json.encode(level),
  }
  for _, k in ipairs(fields(ev)) do
    local v = ev[k]
    if type(v) == "table" then v = json.array(v) end -- [] when empty
    parts[#parts + 1] = "," .. json.encode(k) .. ":" .. json.encode(v)
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

-- Quote a value for the human format when it would be ambiguous; bytes
-- outside printable ASCII become \xHH so a line stays one line.
local function human_value(v)
  if type(v) == "table" then
    local items = {}
    for i, x in ipairs(v) do items[i] = tostring(x) end
    v = table.concat(items, ",")
  end
  v = tostring(v)
  if v ~= "" and not v:find('[%s"=\\%c\128-\255]') then return v end
  return '"' .. v:gsub('[\\"%c\128-\255]', function(c)
    if c == "\\" or c == '"' then return "\\" .. c end
    return string.format("\\x%02x", c:byte())
  end) .. '"'
end

local function human_line(ev, level)
  local ts = ev.ts or os.time()
  local parts = {
    os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(ts)),
    string.format("%-5s", level:upper()),
    tostring(ev.type),
  }
  for _, k in ipairs(fields(ev)) do
    parts[#parts + 1] = k .. "=" .. human_value(ev[k])
  end
  return table.concat(parts, " ")
end

_M._format = function(ev, format)
  local level = level_of(ev)
  if format == "json" then return json_line(ev, level) end
  return human_line(ev, level)
end

function _M.check(node)
  local c = node.config
  if c.log ~= nil and c.log ~= "human" and c.log ~= "json" then
    return false, "config.log must be \"human\" or \"json\""
  end
  if c.log_level ~= nil and not LEVELS[c.log_level] then
    return false, "config.log_level must be debug, info, warn or error"
  end
  if c.log_file ~= nil and io.type(c.log_file) ~= "file" then
    return false, "config.log_file must be an open file"
  end
  return true
end

function _M.event(node, ev)
  local c = node.config
  local format = c.log
  if format ~= "human" and format ~= "json" then return end
  local level = level_of(ev)
  if LEVELS[level] < (LEVELS[c.log_level or "info"] or 2) then return end
  local line = format == "json" and json_line(ev, level) or
    human_line(ev, level)
  local out = c.log_file or io.stdout
  out:write(line, "\n")
  out:flush()
end

return _M
