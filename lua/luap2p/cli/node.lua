-- luap2p node: a full node from the command line (DESIGN.md, command line
-- contract): listen, dial --peer points, run the default policies after
-- any --policy files, reload them on SIGHUP, stop cleanly on SIGINT or
-- SIGTERM (every peer gets a Disconnect), log events, serve metrics.
local p2p = require "luap2p"
local identity = require "luap2p.identity"
local metrics = require "luap2p.cli.metrics"
local util = require "luap2p.cli.util"

local core = p2p.core
local io, ipairs, os, pcall, string, tostring =
      io, ipairs, os, pcall, string, tostring

local _M = {}

local SHUTDOWN_GRACE = 3 -- s: Disconnects get this long to be written

function _M.define(parser)
  local cmd = parser:command("node",
      "Run a node until SIGINT/SIGTERM; SIGHUP reloads its policy files.")
    :epilog("Examples:\n" ..
      "  luap2p node --identity id.json --listen 0.0.0.0:9732 \\\n" ..
      "      --peer 203.0.113.5:9732 --log json\n" ..
      "  luap2p node --identity id.json --listen 127.0.0.1:9732 \\\n" ..
      "      --policy examples/ban_policy.lua --metrics 127.0.0.1:9100\n" ..
      "HOST is an IP address (IPv6 in brackets); port 0 picks a free " ..
      "port.")
  cmd:option("--identity", "identity.json of this node " ..
    "(see 'luap2p identity generate').")
    :argname("FILE"):count(1)
  cmd:option("--listen", "Address to accept connections on.")
    :argname("HOST:PORT"):count(1):convert(util.listen_point)
  cmd:option("--chain", "Chain name in the connection message.")
    :argname("NAME"):default("TEZOS_MAINNET")
  cmd:option("--pow", "Proof-of-work bits required of peers.")
    :argname("BITS"):default("26"):convert(util.number(0, 256, "--pow"))
  cmd:option("--peer", "Point to connect to at start (repeatable).")
    :argname("HOST:PORT"):count("*"):convert(util.peer_point)
  cmd:option("--policy", "Policy module file, stacked before the " ..
    "defaults (repeatable).")
    :argname("FILE"):count("*")
  cmd:option("--min-connections", "Maintenance looks for peers below this.")
    :argname("N"):convert(util.integer(0, 100000, "--min-connections"))
  cmd:option("--max-connections", "Refuse (Nack) above this.")
    :argname("N"):convert(util.integer(1, 100000, "--max-connections"))
  cmd:option("--max-incoming", "Pending incoming connections at most.")
    :argname("N"):convert(util.integer(1, 100000, "--max-incoming"))
  cmd:flag("--private", "Private mode: only --trusted points and peers.")
  cmd:option("--trusted", "Trusted point (repeatable).")
    :argname("HOST:PORT"):count("*"):convert(util.peer_point)
  cmd:option("--log", "Event log on stdout: human lines or one JSON " ..
    "object per line.")
    :argname("human|json"):default("human"):choices({ "human", "json" })
  cmd:option("--metrics", "Serve Prometheus metrics at " ..
    "http://HOST:PORT/metrics.")
    :argname("HOST:PORT"):convert(util.listen_point)
end

local plain = util.plain

local function config(args)
  local cfg = {
    listen = args.listen.text, chain = args.chain,
    pow_bits = args.pow, peers = util.texts(args.peer),
    trusted = util.texts(args.trusted), policies = {},
    private_mode = args.private or nil, log = args.log,
    min_connections = args.min_connections,
    max_connections = args.max_connections,
    max_incoming_connections = args.max_incoming,
  }
  local min = cfg.min_connections or 10
  local max = cfg.max_connections or 100
  if cfg.min_connections and not cfg.max_connections and min > max then
    cfg.max_connections = min
  elseif cfg.max_connections and not cfg.min_connections and min > max then
    cfg.min_connections = max
  elseif min > max then
    util.usage(string.format("--min-connections (%d) is larger than " ..
      "--max-connections (%d)", min, max))
  end
  for _, path in ipairs(args.policy) do
    cfg.policies[#cfg.policies + 1] = path
  end
  return cfg
end

function _M.run(args)
  util.line_buffered()
  local cfg = config(args) -- usage errors first: exit 2 before any I/O
  local id = util.load_identity(args.identity)
  cfg.identity = id
  local have = identity.pow_bits(id)
  if have < args.pow then
    io.stderr:write(string.format("warning: %s has %d bits of proof of " ..
      "work; peers that require %g (like this node) will refuse it\n",
      args.identity, have, args.pow))
  end
  for _, path in ipairs(args.policy) do
    util.check_readable(path, "policy file")
  end
  local ok, node, err, code = pcall(p2p.new, cfg)
  if not ok then util.fail(tostring(node)) end
  if not node then
    if code == "EADDRINUSE" then
      util.fail(string.format("cannot listen on %s: address already in " ..
        "use (EADDRINUSE); choose another --listen port or stop the " ..
        "process using it", args.listen.text))
    elseif code == "EADDRNOTAVAIL" then
      util.fail(string.format("cannot listen on %s: no such local " ..
        "address (EADDRNOTAVAIL); use an address of this machine or " ..
        "0.0.0.0", args.listen.text))
    elseif code == "EACCES" then
      util.fail(string.format("cannot listen on %s: permission denied " ..
        "(EACCES); ports below 1024 need privileges", args.listen.text))
    elseif code == "EPOLICY" then
      util.fail("policy error: " .. plain(err))
    end
    util.fail(plain(err))
  end

  local json = args.log == "json"
  local function say(text, obj)
    if json then
      obj.ts = os.time()
      obj.level = "info"
      io.stdout:write(util.json(obj), "\n")
    else
      io.stdout:write(text, "\n")
    end
  end

  local point = string.format(args.listen.family == 6 and "[%s]:%d" or
    "%s:%d", args.listen.host, node.port)
  local server, mport
  if args.metrics then
    local m = metrics.new(node)
    local merr
    server, mport, merr = m:serve(args.metrics.host, args.metrics.port)
    if not server then
      node:close()
      if merr == "EADDRINUSE" then
        util.fail(string.format("cannot serve --metrics on %s: address " ..
          "already in use (EADDRINUSE); choose another port",
          args.metrics.text))
      end
      util.fail(string.format("cannot serve --metrics on %s: %s",
        args.metrics.text, plain(mport)))
    end
  end
  local murl = mport and string.format(args.metrics.family == 6 and
    "http://[%s]:%d/metrics" or "http://%s:%d/metrics", args.metrics.host,
    mport)
  say(string.format("luap2p node %s listening on %s (chain %s)%s",
    node.peer_id, point, args.chain,
    murl and ", metrics at " .. murl or ""),
    { type = "started", peer_id = node.peer_id, point = point,
      chain = args.chain, metrics = murl, policies = node:policies() })

  local signals = {}
  local stopping = false
  local function shutdown(signame)
    if stopping then
      -- A second signal: the user wants out now.
      os.exit(130)
    end
    stopping = true
    say("luap2p node: " .. signame .. ", closing connections",
      { type = "stopping", signal = signame })
    node:close() -- a Disconnect to every peer, then close
    if server then server:close() end
    for _, s in ipairs(signals) do s:close() end
    -- A peer that does not read cannot hold the process forever.
    local t = core.timer(SHUTDOWN_GRACE, nil, function() p2p.stop() end)
    t:unref()
  end
  local function on(name, fn)
    local s, serr = core.signal(name, fn)
    if not s then util.fail("cannot handle " .. name .. ": " .. plain(serr)) end
    signals[#signals + 1] = s
  end
  on("SIGINT", function() shutdown("SIGINT") end)
  on("SIGTERM", function() shutdown("SIGTERM") end)
  on("SIGHUP", function()
    -- Every policy loaded from a file is reloaded; "reloaded" and
    -- "policy_error" events report the outcome in the log.
    node:reload()
  end)

  p2p.run()
  if not stopping then
    -- The loop ran dry without a signal: nothing left to do.
    node:close()
  end
  say("luap2p node: stopped", { type = "stopped" })
  io.stdout:flush()
  return util.EXIT_OK
end

return _M
