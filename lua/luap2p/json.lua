-- luap2p.json: the one JSON writer of luap2p (RPC answers, the JSON log,
-- CLI output, ban files, simulation files) and a checked reader.
--
--   local json = require "luap2p.json"
--   json.encode({ peers = json.array({}), n = 3 })  --> {"n":3,"peers":[]}
--   json.decode('{"a":[1]}')  --> { a = { 1 } } | nil, "EPROTO: ...", "EPROTO"
--
-- Writing is in Lua rather than lua-cjson's encoder because cjson (2.1.0)
-- cannot tell an empty array from an empty object and prints numbers with
-- 14 significant digits (an int64 counter such as 2^53 + 1 came out as
-- 9.007199254741e+15). Here:
--   - a table marked with json.array(t) is an array, even when empty; an
--     unmarked table is an array when its keys are exactly 1..n (n > 0),
--     otherwise an object (so an unmarked empty table is {});
--   - integers are printed exactly, floats with the fewest digits that
--     read back to the same float, integral floats without a fraction;
--   - object keys are sorted (the same value gives the same text);
--   - strings are escaped as RFC 8259 requires (", \ and control
--     characters); a string that is not valid UTF-8 has its bytes 0x80
--     and above written as \u0080..\u00ff so the output stays JSON;
--   - nil and json.null are null.
-- What JSON cannot say raises (misuse): NaN and infinities, functions,
-- userdata, threads, keys that are neither strings nor numbers, arrays
-- with more holes than values, nesting past MAX_DEPTH (a cycle). The
-- message names the place: "json: cannot encode NaN at $.stat.rate[2]".
--
-- Reading is lua-cjson's decoder: every JSON number comes back as a Lua
-- float, and null as json.null.
local cjson = require "cjson"

local error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tonumber, tostring, type, utf8 =
      error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tonumber, tostring, type, utf8

local _M = {}

_M.null = cjson.null
_M.MAX_DEPTH = 1000

local ARRAY = setmetatable({}, { __mode = "k" })

-- Mark t to be written as an array (even when empty). Returns t.
function _M.array(t)
  ARRAY[t] = true
  return t
end

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_byte(c)
  return ESCAPES[c] or string.format("\\u%04x", c:byte())
end

local function quote(s)
  if not s:find('[%c"\\\128-\255]') then return '"' .. s .. '"' end
  s = s:gsub('[%c"\\]', escape_byte)
  if not utf8.len(s) then s = s:gsub("[\128-\255]", escape_byte) end
  return '"' .. s .. '"'
end

local function number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  if x == math.floor(x) and x >= -2^53 and x <= 2^53 then
    return string.format("%d", x)
  end
  for digits = 15, 17 do
    local s = string.format("%." .. digits .. "g", x)
    if digits == 17 or tonumber(s) == x then return s end
  end
end

-- The path of the value being written, for error messages: a stack of
-- keys kept only while writing, read only on failure.
local function where(path, depth)
  local out = { "$" }
  local first = 1
  if depth > 12 then -- a cycle: its last steps say enough
    first = depth - 7
    out[2] = "..."
  end
  for i = first, depth do
    local k = path[i]
    out[#out + 1] = math.type(k) == "integer" and "[" .. k .. "]" or
      "." .. tostring(k)
  end
  return table.concat(out)
end

local function fail(path, depth, what)
  error("json: cannot encode " .. what .. " at " .. where(path, depth), 0)
end

-- An array's length, or nil for an object. Raises on a sparse array.
local function array_length(t, path, depth)
  if ARRAY[t] then return #t end
  local n, max = 0, 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    n = n + 1
    if k > max then max = k end
  end
  if n == 0 then return nil end
  if max > 2 * n and max > 10 then
    fail(path, depth, "an array with more holes than values")
  end
  return max
end

local write

local function write_table(t, out, path, depth)
  if depth >= _M.MAX_DEPTH then
    fail(path, depth, "tables nested deeper than " .. _M.MAX_DEPTH ..
      " (a cycle?)")
  end
  local n = array_length(t, path, depth)
  if n then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      path[depth + 1] = i
      write(t[i], out, path, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do
    local tk = type(k)
    if tk ~= "string" and tk ~= "number" then
      fail(path, depth, "a " .. tk .. " key")
    end
    keys[#keys + 1] = tk == "string" and k or number(k) or
      fail(path, depth, "the key " .. tostring(k))
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = quote(k)
    out[#out + 1] = ":"
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    path[depth + 1] = k
    write(v, out, path, depth + 1)
  end
  out[#out + 1] = "}"
end

function write(v, out, path, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "number" then
    out[#out + 1] = number(v) or
      fail(path, depth, v ~= v and "NaN" or (v > 0 and "infinity" or
        "-infinity"))
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "table" then
    write_table(v, out, path, depth)
  elseif v == nil or v == cjson.null then
    out[#out + 1] = "null"
  else
    fail(path, depth, "a " .. tv)
  end
end

-- encode(v) -> text (one line, no trailing newline). Raises on a value
-- JSON cannot carry (see above).
function _M.encode(v)
  local out = {}
  local ok, err = pcall(write, v, out, {}, 0)
  if not ok then error(err, 2) end
  return table.concat(out)
end

-- decode(text) -> value | nil, "EPROTO: not JSON: ...", "EPROTO"
function _M.decode(text)
  if type(text) ~= "string" then
    error("json.decode: string expected, got " .. type(text), 2)
  end
  local ok, v = pcall(cjson.decode, text)
  if not ok then
    return nil, "EPROTO: not JSON: " .. tostring(v), "EPROTO"
  end
  return v
end

return _M
