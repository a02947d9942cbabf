-- luap2p.check: argument checks of the public API (node, conn, p2p).
-- Misuse raises (STYLE: runtime failures return nil, err, ENAME; misuse
-- raises) with one message shape, "<function>: <argument>: expected
-- <form>, got <value>", as p2p.new's "p2p.new: config.<key>: ...", and
-- at the position of the code that called the API function, not inside
-- luap2p. Every checker takes `level` counted from the API function: 1
-- when the API function calls the checker itself. An API function must
-- not reach its checks through a tail call (`return check...` is fine;
-- `return other_api(...)` from a wrapper is not: the wrapper's frame is
-- gone and the level would point one frame too high).
local error, ipairs, math, string, tonumber, tostring, type =
      error, ipairs, math, string, tonumber, tostring, type

local _M = {}

-- A value as the messages show it: strings quoted, tables by type.
function _M.show(v)
  if type(v) == "string" then return string.format("'%s'", v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then
    return tostring(v)
  end
  return "a " .. type(v)
end

-- Raise "<who>: <arg>: expected <form>, got <value>" at the caller of the
-- API function `level` frames up (1: the function that calls fail).
function _M.fail(who, arg, form, v, level)
  error(string.format("%s: %s: expected %s, got %s", who, arg, form,
    _M.show(v)), (level or 1) + 2)
end

-- Levenshtein distance.
local function distance(a, b)
  local row = {}
  for j = 0, #b do row[j] = j end
  for i = 1, #a do
    local diag = row[0]
    row[0] = i
    for j = 1, #b do
      local up = row[j]
      local best = diag + (a:byte(i) == b:byte(j) and 0 or 1)
      if up + 1 < best then best = up + 1 end
      if row[j - 1] + 1 < best then best = row[j - 1] + 1 end
      row[j] = best
      diag = up
    end
  end
  return row[#b]
end

-- The name of `names` nearest to word (within two edits, or one of whose
-- '_'-separated words it is: "port" of "advertised_port"), or nil.
function _M.nearest(word, names)
  local best, name = 3, nil
  for _, n in ipairs(names) do
    local d = distance(word, n)
    if d < best then best, name = d, n end
  end
  if name then return name end
  for _, n in ipairs(names) do
    if #word < #n and (("_" .. n .. "_"):find("_" .. word .. "_", 1, true))
    then
      return n
    end
  end
  return nil
end

-- The types of events a node emits (README, Events), in that order.
_M.EVENT_TYPES = {
  "accepted", "refused", "connecting", "authenticated", "auth_failed",
  "nack_sent", "nacked", "connected", "message", "bootstrap", "advertise",
  "swap_request", "swap_ack", "rate_exceeded", "dropped", "decoding_error",
  "shell", "disconnected", "too_few_connections", "too_many_connections",
  "under_load", "load_normal", "new_point", "new_peer", "banned",
  "unbanned", "policy_error", "reloaded", "error",
}
local EVENT_TYPE = {}
for _, t in ipairs(_M.EVENT_TYPES) do EVENT_TYPE[t] = true end

-- An event type a node emits ("*": all, when any is true); a typo would
-- wait or listen for ever.
function _M.event_type(who, arg, v, any, level)
  _M.string(who, arg, v, (level or 1) + 1)
  if EVENT_TYPE[v] or (any and v == "*") then return end
  local near = _M.nearest(v, _M.EVENT_TYPES)
  error(string.format("%s: %s: unknown event type %s%s", who, arg, _M.show(v),
    near and " (did you mean '" .. near .. "'?)" or ""), (level or 1) + 2)
end

function _M.func(who, arg, v, level)
  if type(v) ~= "function" then
    _M.fail(who, arg, "a function", v, (level or 1) + 1)
  end
end

function _M.string(who, arg, v, level)
  if type(v) ~= "string" then
    _M.fail(who, arg, "a string", v, (level or 1) + 1)
  end
end

-- nil or a table (an options table).
function _M.opts(who, arg, v, level)
  if v ~= nil and type(v) ~= "table" then
    _M.fail(who, arg, "a table or nil", v, (level or 1) + 1)
  end
end

-- Seconds: a finite number >= 0 (at most 1e13, the timers' bound);
-- optional: nil passes.
function _M.seconds(who, arg, v, level, optional)
  if optional and v == nil then return end
  if type(v) ~= "number" or not (v >= 0 and v <= 1e13) then
    _M.fail(who, arg, "a number of seconds in 0..1e13" ..
      (optional and " or nil" or ""), v, (level or 1) + 1)
  end
end

-- A point "HOST:PORT" ("[v6]:PORT"), by shape (the core parses it).
function _M.point(who, arg, v, level)
  if type(v) ~= "string" or not (v:match("^%[.+%]:%d+$") or
                                 v:match("^[^:]+:%d+$")) then
    _M.fail(who, arg, "a point 'HOST:PORT'", v, (level or 1) + 1)
  end
end

-- Re-raise an error raised by the C core (luaL_argerror: "<position>:
-- bad argument #n to 'f' (text)") at the caller of the API function,
-- naming the API function and the argument. The C method was called
-- through pcall(method, cself, ...), so #n counts cself: names[n - 1]
-- names argument #n.
function _M.reraise(who, names, err, level)
  local msg = tostring(err):gsub("^[^\n]-:%d+: ", "")
  local n, text = msg:match("^bad argument #(%d+) to '[^']*' %((.*)%)$")
  if n then
    local name = names[math.tointeger(tonumber(n)) - 1] or ("#" .. n)
    -- "string expected, got nil" (luaL_checktype) reads better turned.
    local want, got = text:match("^(%w+) expected, got (.*)$")
    if want then
      msg = string.format("%s: %s: expected a %s, got %s", who, name, want,
        got)
    else
      msg = string.format("%s: %s: %s", who, name, text)
    end
  elseif not msg:find("^" .. who:gsub("%p", "%%%0") .. ": ") then
    msg = who .. ": " .. msg
  end
  error(msg, (level or 1) + 2)
end

return _M
