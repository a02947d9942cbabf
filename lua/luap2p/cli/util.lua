-- luap2p.cli.util: what every subcommand shares: failing with one clear
-- line and the right exit code, HOST:PORT arguments, JSON output, terminals.
local core = require "luap2p.core"
local json = require "luap2p.json"

local error, getmetatable, io, ipairs, math, require, setmetatable, string,
      tonumber, tostring, type =
      error, getmetatable, io, ipairs, math, require, setmetatable, string,
      tonumber, tostring, type

local _M = {}

_M.EXIT_OK, _M.EXIT_RUNTIME, _M.EXIT_USAGE = 0, 1, 2
_M.EXIT_INTERRUPTED = 130 -- 128 + SIGINT, as shells report it

-- A failure raised by a subcommand and turned into one stderr line and an
-- exit code by luap2p.cli.main.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.msg end

function _M.failure(msg, code)
  return setmetatable({ msg = msg, code = code or _M.EXIT_RUNTIME }, Failure)
end

-- Stop the command: runtime failure (exit 1) unless code says otherwise.
function _M.fail(msg, code)
  error(_M.failure(msg, code), 0)
end

-- The error lua5.4 raises in Lua code when SIGINT arrives.
function _M.is_interrupt(e)
  return type(e) == "string" and e:match("interrupted!$") ~= nil
end

-- SIGINT and SIGTERM while the loop runs: remember the signal and stop
-- the loop. Returns trap; trap.signal is set once one came; trap.close().
function _M.trap_signals()
  local trap = { handles = {} }
  for _, name in ipairs({ "SIGINT", "SIGTERM" }) do
    local s = core.signal(name, function()
      trap.signal = name
      core.stop()
    end)
    if s then trap.handles[#trap.handles + 1] = s end
  end
  function trap.close()
    for _, s in ipairs(trap.handles) do s:close() end
    trap.handles = {}
  end
  return trap
end

function _M.usage(msg) _M.fail(msg, _M.EXIT_USAGE) end

function _M.is_failure(e) return getmetatable(e) == Failure end

-- argparse converters: return the value, or nil and a message that
-- argparse reports as a usage error (exit 2).

-- "HOST:PORT" with an IP literal (IPv6 in brackets). any_port allows 0,
-- which means "pick a free port" when listening. `what` names the
-- argument in the message: the option ("--rpc-addr") or, for a positional
-- argument, its form ("HOST:PORT").
local function point_converter(any_port, what)
  what = what or "HOST:PORT"
  return function(s)
    local canon, family, addr, port = core.point_parse(s)
    if not canon then
      local why = family:gsub("^EPOINT: ", "")
      local hint = ""
      if s:match("^[%a][%w%.%-]*:%d+$") then
        hint = "; use an IP address, e.g. 127.0.0.1:9732 (names are not " ..
          "resolved)"
      else
        hint = "; expected HOST:PORT, e.g. 127.0.0.1:9732"
      end
      return nil, string.format("bad %s '%s': %s%s", what, s, why, hint)
    end
    if port == 0 and not any_port then
      return nil, string.format("bad %s '%s': port 0 cannot be " ..
        "dialled; expected HOST:PORT with a port in 1..65535", what, s)
    end
    return { text = canon, host = addr, port = port, family = family }
  end
end
_M.listen_point = point_converter(true)
_M.peer_point = point_converter(false)
-- The same for an option, named in the message.
function _M.listen_option(flag) return point_converter(true, flag) end
function _M.peer_option(flag) return point_converter(false, flag) end

-- A string of lo..hi bytes (a chain name).
function _M.text(lo, hi, flag, what)
  return function(s)
    if #s < lo or #s > hi then
      return nil, string.format("bad %s '%s': expected %s of %d..%d bytes",
        flag, s, what, lo, hi)
    end
    return s
  end
end

-- A chain id in Base58Check ("NetXdQprcVkpaWU"), kept as text.
function _M.chain_id(flag)
  return function(s)
    if not require("luap2p.shell").of_b58check("chain_id", s) then
      return nil, string.format("bad %s '%s': expected a Base58Check " ..
        "chain id, e.g. NetXdQprcVkpaWU (Tezos mainnet)", flag, s)
    end
    return s
  end
end

-- Converters for bounded numbers.
function _M.integer(lo, hi, what)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= math.floor(n) or n < lo or n > hi then
      return nil, string.format("bad %s '%s': expected an integer in " ..
        "%d..%d", what, s, lo, hi)
    end
    return math.tointeger(n)
  end
end

function _M.number(lo, hi, what)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= n or n < lo or n > hi then
      -- Whole bounds print as integers (1e9 is "1000000000", not ".0").
      return nil, string.format("bad %s '%s': expected a number in " ..
        "%s..%s", what, s, tostring(math.tointeger(lo) or lo),
        tostring(math.tointeger(hi) or hi))
    end
    return n
  end
end

---------------------------------------------------------------- JSON

-- luap2p.json: json(v) is one line (no trailing newline); wrap a table
-- with array() to write it as an array even when empty.
_M.array, _M.json, _M.json_decode = json.array, json.encode, json.decode

---------------------------------------------------------------- output

function _M.isatty(f) return core.isatty(f) end

-- Line-buffer stdout: output read through a pipe (tests, `| jq`, log
-- shippers) must appear line by line, not in 4 KiB bursts.
function _M.line_buffered()
  io.stdout:setvbuf("line")
end

-- 12345678 -> "12.3M"
function _M.si(n)
  if n >= 1e9 then return string.format("%.1fG", n / 1e9) end
  if n >= 1e6 then return string.format("%.1fM", n / 1e6) end
  if n >= 1e4 then return string.format("%.1fk", n / 1e3) end
  return tostring(math.floor(n))
end

-- Fail (exit 1) unless path can be opened for reading.
function _M.check_readable(path, what)
  local f, err = io.open(path, "r")
  if not f then
    _M.fail(string.format("cannot read %s: %s", what, err))
  end
  f:close()
  return true
end

-- "ENAME: text" -> "text (ENAME)", the command line's one-line style.
function _M.plain(err)
  local name, text = tostring(err):match("^(E[%u%d]+): (.*)$")
  if not name then return tostring(err) end
  return text .. " (" .. name .. ")"
end

-- Load an identity file for a command, or fail with a hint.
function _M.load_identity(path)
  local id, err, code = require("luap2p.identity").load(path)
  if id then return id end
  if code == "EIDENTITY" then
    _M.fail(_M.plain(err) .. "; is this an Octez identity.json?")
  end
  if code ~= "ENOENT" then _M.fail(_M.plain(err)) end
  _M.fail(_M.plain(err) .. "; create one with 'luap2p identity generate " ..
    "--output " .. path .. "'")
end

-- The identity a client command (probe, crawl, monitor) dials with: the
-- --identity file, else a fresh one of --pow bits.
function _M.dial_identity(args)
  if args.identity then return _M.load_identity(args.identity) end
  local id, err = require("luap2p.identity").generate(args.pow)
  if not id then _M.fail(_M.plain(err)) end
  return id
end

-- Copy of a list, for config tables built from repeated options.
function _M.texts(points)
  local out = {}
  for i, p in ipairs(points or {}) do out[i] = p.text end
  return out
end

return _M
