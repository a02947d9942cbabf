-- luap2p ctl: talk to a running node's RPC (`luap2p node --rpc-addr`):
-- its stat, connections and bans, and the operator's actions (ban, unban,
-- trust, kick, reload). Human tables by default, the RPC's JSON with
-- --json. The HTTP client is LuaSocket's socket.http.
local util = require "luap2p.cli.util"

local io, ipairs, math, pcall, require, string, table, tonumber, tostring,
      type =
      io, ipairs, math, pcall, require, string, table, tonumber, tostring,
      type

local _M = {}

local DEFAULT_RPC = "127.0.0.1:8732" -- Octez's default RPC port

local ACTIONS = {
  { "stat", "Totals and rates, connection counts." },
  { "connections", "Running connections." },
  { "bans", "Bans and greylist entries." },
  { "ban", "Ban TARGET: an IP, IP/prefix, IP:port or peer id." },
  { "unban", "Lift a ban or greylist entry on TARGET." },
  { "trust", "Trust TARGET: a point (IP:port) or a peer id." },
  { "kick", "Close the connection to PEER (a Disconnect is sent)." },
  { "reload", "Reload the node's policy files (as SIGHUP)." },
}

function _M.define(parser)
  local cmd = parser:command("ctl",
      "Query and steer a running node through its RPC (--rpc-addr).")
    :epilog("Examples:\n" ..
      "  luap2p ctl stat\n" ..
      "  luap2p ctl --rpc 127.0.0.1:8732 connections --json\n" ..
      "  luap2p ctl ban 203.0.113.0/24 --for 3600\n" ..
      "  luap2p ctl trust idtXZ7CCYTSAn1fwgQTUvsFU3Hv4Ye\n" ..
      "Write actions need the node started with --rpc-allow-write.")
    :command_target("action")
  cmd:option("--rpc", "The node's RPC address.")
    :argname("HOST:PORT"):default(DEFAULT_RPC)
    :convert(util.peer_option("--rpc"))
  cmd:option("--timeout", "Seconds to wait for an answer.")
    :argname("SECONDS"):default("10")
    :convert(util.number(0.1, 3600, "--timeout"))
  for _, a in ipairs(ACTIONS) do
    local sub = cmd:command(a[1], a[2])
    if a[1] == "ban" or a[1] == "unban" or a[1] == "trust" then
      sub:argument("TARGET", "Whom."):target("target")
    elseif a[1] == "kick" then
      sub:argument("PEER", "Peer id."):target("target")
    end
    if a[1] == "ban" then
      sub:option("--for", "Seconds (default: until unbanned).")
        :argname("SECONDS"):target("seconds")
        :convert(util.number(1, 10 * 365 * 86400, "--for"))
      sub:option("--reason", "Why (kept in the ban list).")
        :argname("TEXT")
    end
    sub:flag("--json", "Print the RPC's JSON answer.")
  end
end

-- Percent-encode a path segment (a prefix's "/" must not split it).
local function escape(s)
  return (s:gsub("[^%w%-%._~:%[%]]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- One request; returns status, decoded JSON (or nil), raw body. Fails the
-- command when the node cannot be reached.
local function call(args, method, path, body)
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  http.TIMEOUT = args.timeout
  local chunks = {}
  local headers = { ["Accept"] = "application/json" }
  if body then
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = tostring(#body)
  end
  local url = string.format("http://%s%s", args.rpc.text, path)
  local ok, code = http.request({
    url = url, method = method, headers = headers,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  })
  if not ok then
    local why = tostring(code)
    if why == "connection refused" then
      util.fail(string.format("cannot reach the node's RPC at %s: " ..
        "connection refused; is the node running with --rpc-addr %s?",
        args.rpc.text, args.rpc.text))
    end
    util.fail(string.format("cannot reach the node's RPC at %s: %s",
      args.rpc.text, why))
  end
  local text = table.concat(chunks)
  local decoded_ok, v = pcall(util.json_decode, text)
  return code, decoded_ok and v or nil, text
end

-- The message of an RPC error answer ([{kind, id, msg}]).
local function error_text(v, raw)
  if type(v) == "table" and type(v[1]) == "table" then
    return tostring(v[1].msg or v[1].id)
  end
  return (raw:gsub("%s+$", ""))
end

-- Call, and fail the command unless the status is 200.
local function expect(args, method, path, body)
  local code, v, raw = call(args, method, path, body)
  if code ~= 200 then
    util.fail(string.format("%s %s: %d: %s", method, path, code,
      error_text(v, raw)))
  end
  return v, raw
end

local function is_peer_id(s) return s:match("^id%w+$") ~= nil end

-- A table with a header row; columns padded to the widest cell.
local function table_text(header, rows)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do
      widths[i] = math.max(widths[i] or 0, #tostring(c))
    end
  end
  local out = {}
  local function line(r)
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i == #r and tostring(c) or
        string.format("%-" .. widths[i] .. "s", tostring(c))
    end
    out[#out + 1] = table.concat(cells, "  ")
  end
  line(header)
  for _, r in ipairs(rows) do line(r) end
  return table.concat(out, "\n") .. "\n"
end
_M.table_text = table_text

-- lua-cjson decodes every number as a float: 9732.0 -> "9732".
local function int(v)
  return tostring(math.tointeger(v) or v)
end

local function point_text(id_point)
  if type(id_point) ~= "table" then return "?" end
  local addr = tostring(id_point.addr):gsub("^::ffff:", "")
  if addr:find(":", 1, true) then addr = "[" .. addr .. "]" end
  return addr .. ":" .. (id_point.port and int(id_point.port) or "?")
end

local function bytes(s) return util.si(tonumber(s) or 0) .. "B" end

local RUN = {}

function RUN.stat(args)
  local self_id = expect(args, "GET", "/network/self")
  local stat, raw = expect(args, "GET", "/network/stat")
  local conns = expect(args, "GET", "/network/connections")
  if args.json then return raw end
  local inc, out = 0, 0
  for _, c in ipairs(conns) do
    if c.incoming then inc = inc + 1 else out = out + 1 end
  end
  return table.concat({
    string.format("%-12s %s", "peer id", tostring(self_id)),
    string.format("%-12s %d (%d incoming, %d outgoing)", "connections",
      #conns, inc, out),
    string.format("%-12s %s sent, %s received", "total",
      bytes(stat.total_sent), bytes(stat.total_recv)),
    string.format("%-12s %s/s out, %s/s in", "rate",
      bytes(stat.current_outflow), bytes(stat.current_inflow)),
  }, "\n") .. "\n"
end

function RUN.connections(args)
  local conns, raw = expect(args, "GET", "/network/connections")
  if args.json then return raw end
  local rows = {}
  for _, c in ipairs(conns) do
    local v = c.announced_version or {}
    rows[#rows + 1] = { c.peer_id, c.incoming and "in" or "out",
      point_text(c.id_point), int(c.remote_socket_port),
      string.format("%s/%s", int(v.p2p_version),
        int(v.distributed_db_version)),
      c.private and "yes" or "no" }
  end
  if #rows == 0 then return "no connections\n" end
  return table_text({ "PEER ID", "DIR", "POINT", "SOCKET", "P2P/DDB",
                      "PRIVATE" }, rows)
end

function RUN.bans(args)
  local bans, raw = expect(args, "GET", "/luap2p/bans")
  if args.json then return raw end
  if #bans == 0 then return "no bans\n" end
  local rows = {}
  for _, b in ipairs(bans) do
    rows[#rows + 1] = { b.target, b.kind, b["until"] or "never",
                        b.reason or "" }
  end
  return table_text({ "TARGET", "KIND", "UNTIL", "REASON" }, rows)
end

function RUN.ban(args)
  local body = util.json({ target = args.target, seconds = args.seconds,
                           reason = args.reason or "luap2p ctl" })
  local _, raw = expect(args, "POST", "/luap2p/bans", body)
  if args.json then return raw end
  return string.format("banned %s %s\n", args.target, args.seconds and
    string.format("for %gs", args.seconds) or "until unbanned")
end

function RUN.unban(args)
  local v, raw = expect(args, "DELETE", "/luap2p/bans/" ..
    escape(args.target))
  if args.json then return raw end
  if not v.removed then
    return string.format("%s was not banned\n", args.target)
  end
  return string.format("unbanned %s\n", args.target)
end

function RUN.trust(args)
  local path
  if is_peer_id(args.target) then
    path = "/network/peers/" .. escape(args.target)
  else
    local canon = require("luap2p.core").point_parse(args.target)
    if not canon then
      util.usage(string.format("bad TARGET '%s': expected a point " ..
        "(IP:port) or a peer id", args.target))
    end
    path = "/network/points/" .. escape(canon)
  end
  local _, raw = expect(args, "PATCH", path, '{"acl":"trust"}')
  if args.json then return raw end
  return string.format("trusted %s\n", args.target)
end

function RUN.kick(args)
  if not is_peer_id(args.target) then
    util.usage(string.format("bad PEER '%s': expected a peer id (id...)",
      args.target))
  end
  local _, raw = expect(args, "DELETE", "/network/connections/" ..
    escape(args.target))
  if args.json then return raw end
  return string.format("closed the connection to %s\n", args.target)
end

function RUN.reload(args)
  local v, raw = expect(args, "POST", "/luap2p/reload")
  if args.json then return raw end
  return string.format("reloaded: %s\n", table.concat(v.reloaded or {},
    ", "))
end

function _M.run(args)
  util.line_buffered()
  local text = RUN[args.action](args)
  if args.json and text:sub(-1) ~= "\n" then text = text .. "\n" end
  io.stdout:write(text)
  return util.EXIT_OK
end

return _M
