-- luap2p probe HOST:PORT: one handshake with a remote node, then report
-- what it said about itself and whether it accepted us (Ack) or not (Nack,
-- with a motive and maybe points to try instead). A crawler's building
-- block: see examples/crawler.lua.
--
-- The probe is a node without a listener and without the default policies
-- (no maintenance, no answerer): it dials, authenticates, Acks whoever it
-- meets, and closes politely (Disconnect) once the remote has answered.
local p2p = require "luap2p"
local util = require "luap2p.cli.util"

local io, pairs, pcall, string, table, tostring =
      io, pairs, pcall, string, table, tostring

local _M = {}

local MOTIVES = {}
for name, code in pairs(p2p.MOTIVES) do MOTIVES[code] = name end
_M.MOTIVES = MOTIVES

function _M.define(parser)
  local cmd = parser:command("probe",
      "One handshake with HOST:PORT: print its peer id, versions, " ..
      "metadata and its Ack or Nack.")
    :epilog("Exit codes: 0 when the remote answered (Ack or Nack), 1 when " ..
      "no answer\n(refused, timeout, failed handshake), 2 usage error.\n" ..
      "Real Octez nodes check the probe's proof of work against their " ..
      "own target\n(26 bits): use --identity with such an identity, " ..
      "or --pow 26.")
  cmd:argument("HOST:PORT", "Remote node address.")
    :target("point"):convert(util.peer_point)
  cmd:option("--chain", "Chain name in our connection message.")
    :argname("NAME"):default("TEZOS_MAINNET")
    :convert(util.text(1, 255, "--chain", "a chain name"))
  cmd:option("--identity", "Use this identity.json instead of fresh keys.")
    :argname("FILE")
  cmd:option("--pow", "Proof-of-work bits of the fresh identity.")
    :argname("BITS"):default("0"):convert(util.number(0, 64, "--pow"))
  cmd:option("--timeout", "Seconds to wait for the whole handshake.")
    :argname("SECONDS"):default("10")
    :convert(util.number(0.1, 3600, "--timeout"))
  cmd:flag("--json", "Print one JSON object on stdout.")
end

local plain = util.plain

-- Probe point (text) with identity id. Returns a result table:
--   { ok = true, answer = "ack" | "nack", point, peer_id, chain, port,
--     versions = {p2p, distributed_db}, negotiated = {...} (Ack only),
--     metadata = {private_node, disable_mempool}, motive, motive_name,
--     points (Nack) }
--   { ok = false, point, error = "ENAME: text", code = "ENAME", ... }
-- opts: chain, timeout (seconds), on_connected(conn) called on Ack before
-- the connection is closed (a crawler sends Bootstrap from there; return
-- true to keep it open until opts.linger seconds pass or it closes), and
-- on_advertise(conn, points) for the remote's Advertise messages.
function _M.probe(point, id, opts)
  opts = opts or {}
  local res = { point = point, ok = false }
  local done = false
  local keep
  local seen = {
    name = "probe",
    authenticated = function(_, info)
      res.peer_id = info.peer_id
      res.chain = info.chain
      res.port = info.port
      res.versions = { p2p = info.p2p_version,
                       distributed_db = info.ddb_version }
      res.metadata = { private_node = info.private_node,
                       disable_mempool = info.disable_mempool }
      return "ack"
    end,
    -- Discovery answers reach the caller (a crawler), never an answerer.
    advertise = function(_, conn, points)
      if opts.on_advertise then opts.on_advertise(conn, points) end
      return true
    end,
  }
  local node, err, code = p2p.new({
    identity = id, chain = opts.chain, pow_bits = 0,
    default_policies = false, policies = { seen },
    min_connections = 0, max_connections = 1,
    authentication_timeout = opts.timeout, connection_timeout = opts.timeout,
  })
  if not node then
    res.error, res.code = err, code
    return res
  end
  node:on("*", function(ev)
    if done then return end
    local t = ev.type
    if t == "connected" then
      local conn = ev.conn
      res.ok, res.answer = true, "ack"
      if conn and conn.version then
        res.negotiated = { p2p = conn.version.p2p,
                           distributed_db = conn.version.ddb }
      end
      if opts.on_connected and conn then keep = opts.on_connected(conn) end
      done = true
    elseif t == "nacked" then
      res.ok, res.answer = true, "nack"
      res.motive = ev.motive
      res.motive_name = MOTIVES[ev.motive] or "unknown"
      res.points = util.array(ev.points or {})
      done = true
    elseif t == "nack_sent" then
      res.error = "EREFUSED: we refused the remote: " ..
        tostring(ev.reason ~= "" and ev.reason or
          MOTIVES[ev.motive] or "refused")
      res.code = "EREFUSED"
      done = true
    elseif t == "auth_failed" or t == "disconnected" then
      res.code = ev.code or "ECLOSED"
      res.error = res.code .. ": " .. tostring(ev.reason or "closed")
      done = true
    end
  end)
  local cid, cerr, ccode = node:connect(point, { timeout = opts.timeout })
  if not cid then
    node:close()
    res.error, res.code = cerr, ccode
    return res
  end
  local stop = opts.stop or function() return false end
  local ok = p2p.wait(function() return done or stop() end,
    opts.timeout or 10)
  if stop() then
    res.ok, res.error, res.code = false, "ECANCELED: interrupted",
      "ECANCELED"
  elseif not ok then
    res.error = string.format("ETIMEDOUT: no answer within %gs",
      opts.timeout or 10)
    res.code = "ETIMEDOUT"
  end
  if keep and not stop() then
    p2p.wait(function() return #node:connections() == 0 or stop() end,
      opts.linger or 2)
  end
  -- Close politely (a Disconnect) and let the loop write it.
  node:close()
  for _ = 1, 10 do p2p.run_nowait() end
  return res
end

local function human(res)
  local lines = {}
  local function add(k, v)
    lines[#lines + 1] = string.format("%-12s %s", k, v)
  end
  add("point", res.point)
  if res.peer_id then
    add("peer id", res.peer_id)
    add("chain", res.chain)
    add("versions", string.format("p2p %d, distributed_db %d (announced)",
      res.versions.p2p, res.versions.distributed_db))
    if res.negotiated then
      add("negotiated", string.format("p2p %d, distributed_db %d",
        res.negotiated.p2p, res.negotiated.distributed_db))
    end
    add("port", res.port == 0 and "none advertised" or tostring(res.port))
    add("metadata", string.format("private_node=%s disable_mempool=%s",
      tostring(res.metadata.private_node),
      tostring(res.metadata.disable_mempool)))
  end
  if res.answer == "ack" then
    add("answer", "Ack")
  elseif res.answer == "nack" then
    add("answer", string.format("Nack (%s, motive %d)", res.motive_name,
      res.motive))
    add("points", #res.points > 0 and table.concat(res.points, " ") or
      "(none)")
  end
  return table.concat(lines, "\n") .. "\n"
end

function _M.run(args)
  util.line_buffered()
  local id = util.dial_identity(args)
  -- Ctrl-C (or SIGTERM): stop waiting, close politely, exit 130.
  local trap = util.trap_signals()
  local ok, res = pcall(_M.probe, args.point.text, id,
    { chain = args.chain, timeout = args.timeout,
      stop = function() return trap.signal ~= nil end })
  trap.close()
  if trap.signal then util.fail("interrupted", util.EXIT_INTERRUPTED) end
  if not ok then util.fail(tostring(res)) end
  if args.json then
    io.stdout:write(util.json(res), "\n")
  elseif res.peer_id then
    io.stdout:write(human(res))
  end
  if not res.ok and (res.code == "EOF" or res.code == "ECONNRESET") then
    -- Connected, then dropped before any answer: Octez closes without a
    -- word on a proof of work below its target or a chain it does not
    -- serve.
    util.fail(string.format("no answer from %s: the remote closed " ..
      "during the handshake: it likely requires more proof of work " ..
      "(try --pow %s) or another chain (--chain)", res.point,
      args.identity and "N with a stronger --identity" or
      (args.pow < 26 and "26" or "N > " .. args.pow)))
  elseif not res.ok and res.code == "EREFUSED" and res.chain and
         res.chain ~= args.chain then
    -- Its connection message named another chain: we refused it, as it
    -- refuses us (Octez closes, luap2p Nacks).
    util.fail(string.format("%s is on chain '%s', not '%s': probe it " ..
      "with --chain %s", res.point, res.chain, args.chain, res.chain))
  elseif not res.ok then
    util.fail(string.format("no answer from %s: %s", res.point,
      plain(res.error)))
  end
  return util.EXIT_OK
end

return _M
