-- luap2p node: a full node from the command line: listen, dial --peer
-- points, run the default policies after any --policy files, reload them
-- on SIGHUP, stop cleanly on SIGINT or SIGTERM (every peer gets a
-- Disconnect), log events, serve the RPC (--rpc-addr: Octez's /network
-- RPCs and /metrics) or metrics alone (--metrics).
local p2p = require "luap2p"
local config = require "luap2p.config"
local identity = require "luap2p.identity"
local metrics = require "luap2p.cli.metrics"
local rpc = require "luap2p.rpc"
local util = require "luap2p.cli.util"

local core = p2p.core
local io, ipairs, os, pairs, pcall, string, tostring =
      io, ipairs, os, pairs, pcall, string, tostring

local _M = {}

local SHUTDOWN_GRACE = 3 -- s: Disconnects get this long to be written

-- The flag of each config key it sets: help, range and default come from
-- the schema (lua/luap2p/config.lua), so they cannot disagree with p2p.new.
local FLAGS = {
  chain = "--chain", pow_bits = "--pow", min_connections = "--min-connections",
  max_connections = "--max-connections",
  max_incoming_connections = "--max-incoming", private_mode = "--private",
  log = "--log", app_messages = "--app-messages",
  too_many_rule = "--too-many-rule", greylist_timeout = "--greylist-timeout",
  rpc_request_timeout = "--rpc-request-timeout",
}
_M.FLAGS = FLAGS

-- with_default: argparse fills it in (the command needs the value);
-- otherwise the help shows it and p2p.new applies it. Either way the help
-- ends "(default: X)", as argparse writes it, X unquoted.
local function key_option(cmd, name, argname, with_default)
  local k = config.KEYS[name]
  local flag = FLAGS[name]
  -- The schema's docs are Markdown: `"shell"` and `max_connections`
  -- become 'shell' and 'max_connections'.
  local help = k.doc:gsub("^%l", string.upper):gsub('`"([^"`]*)"`', "'%1'")
    :gsub("`", "'") .. " (config." .. name .. ")"
  if k.type == "boolean" then return cmd:flag(flag, help .. ".") end
  if k.default ~= nil and not with_default then
    help = help .. ". (default: " .. tostring(k.default) .. ")"
  else
    help = help .. "."
  end
  local opt = cmd:option(flag, help):argname(argname)
  if k.default ~= nil and with_default then
    opt:default(tostring(k.default))
  end
  if k.type == "integer" then
    opt:convert(util.integer(k.min, k.max, flag))
  elseif k.type == "number" then
    opt:convert(util.number(k.min, k.max, flag))
  elseif k.type == "enum" then
    opt:choices(k.values)
  elseif k.type == "string" and k.max then
    opt:convert(util.text(k.min, k.max, flag, "a " .. name .. " name"))
  end
  return opt
end

function _M.define(parser)
  local cmd = parser:command("node",
      "Run a node until SIGINT/SIGTERM; SIGHUP reloads its policy files.")
    :epilog("Examples:\n" ..
      "  luap2p node --identity id.json --listen 0.0.0.0:9732 \\\n" ..
      "      --peer 203.0.113.5:9732 --log json\n" ..
      "  luap2p node --identity id.json --listen 127.0.0.1:9732 \\\n" ..
      "      --policy examples/ban_policy.lua --rpc-addr 127.0.0.1:8732\n" ..
      "HOST is an IP address (IPv6 in brackets); port 0 picks a free " ..
      "port.")
  cmd:option("--identity", "identity.json of this node " ..
    "(see 'luap2p identity generate').")
    :argname("FILE"):count(1)
  cmd:option("--listen", "Address to accept connections on.")
    :argname("HOST:PORT"):count(1):convert(util.listen_option("--listen"))
  key_option(cmd, "chain", "NAME", true)
  key_option(cmd, "pow_bits", "BITS", true)
  cmd:option("--peer", "Point to connect to at start (repeatable).")
    :argname("HOST:PORT"):count("*"):convert(util.peer_option("--peer"))
  cmd:option("--policy", "Policy module file, stacked before the " ..
    "defaults (repeatable).")
    :argname("FILE"):count("*")
  key_option(cmd, "min_connections", "N")
  key_option(cmd, "max_connections", "N")
  key_option(cmd, "max_incoming_connections", "N")
  key_option(cmd, "private_mode")
  key_option(cmd, "too_many_rule", "random_extra|threshold")
  key_option(cmd, "app_messages", "shell|raw")
  cmd:option("--trusted", "Trusted point (repeatable).")
    :argname("HOST:PORT"):count("*"):convert(util.peer_option("--trusted"))
  -- The command line logs by default; a library node does not.
  key_option(cmd, "log", "human|json", true):default("human")
  key_option(cmd, "greylist_timeout", "SECONDS")
  cmd:option("--rpc-addr", "Serve the RPC (Octez /network RPCs, " ..
    "/luap2p/..., /metrics) at http://HOST:PORT.")
    :argname("HOST:PORT"):convert(util.listen_option("--rpc-addr"))
  cmd:flag("--rpc-allow-write", "Allow the RPCs that change the node " ..
    "(ban, trust, kick, reload); refused with 403 otherwise.")
  key_option(cmd, "rpc_request_timeout", "SECONDS")
  cmd:option("--metrics", "Serve only Prometheus metrics at " ..
    "http://HOST:PORT/metrics.")
    :argname("HOST:PORT"):convert(util.listen_option("--metrics"))
end

local plain = util.plain

local function node_config(args)
  local cfg = {
    listen = args.listen.text, peers = util.texts(args.peer),
    trusted = util.texts(args.trusted), policies = {},
  }
  for name, flag in pairs(FLAGS) do
    cfg[name] = args[flag:sub(3):gsub("%-", "_")]
  end
  cfg.private_mode = cfg.private_mode or nil
  local min = cfg.min_connections or config.KEYS.min_connections.default
  local max = cfg.max_connections or config.KEYS.max_connections.default
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
  local cfg = node_config(args) -- usage errors first: exit 2 before any I/O
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
  -- HTTP servers: the RPC (with /metrics) and/or metrics alone.
  local servers = {}
  local m = (args.metrics or args.rpc_addr) and metrics.new(node)
  local function serve(addr, flag, metrics_only)
    local r = rpc.new(node, { metrics = m, metrics_only = metrics_only,
                              allow_write = args.rpc_allow_write })
    local srv, port, code = r:serve(addr.host, addr.port)
    if not srv then
      node:close()
      if code == "EADDRINUSE" then
        util.fail(string.format("cannot serve %s on %s: address " ..
          "already in use (EADDRINUSE); choose another port", flag,
          addr.text))
      end
      util.fail(string.format("cannot serve %s on %s: %s", flag,
        addr.text, plain(port)))
    end
    servers[#servers + 1] = srv
    return string.format(addr.family == 6 and "http://[%s]:%d" or
      "http://%s:%d", addr.host, port)
  end
  local rurl = args.rpc_addr and serve(args.rpc_addr, "--rpc-addr", false)
  local murl = args.metrics and
    serve(args.metrics, "--metrics", true) .. "/metrics"
  local extra = ""
  if rurl then extra = extra .. ", RPC at " .. rurl end
  if murl then extra = extra .. ", metrics at " .. murl end
  say(string.format("luap2p node %s listening on %s (chain %s)%s",
    node.peer_id, point, args.chain, extra),
    { type = "started", peer_id = node.peer_id, point = point,
      chain = args.chain, rpc = rurl, metrics = murl,
      policies = node:policies() })

  local signals = {}
  local stopping = false
  local function shutdown(signame)
    if stopping then
      -- A second signal: the user wants out now.
      os.exit(130)
    end
    stopping = signame
    say("luap2p node: " .. signame .. ", closing connections",
      { type = "stopping", signal = signame })
    node:close() -- a Disconnect to every peer, then close
    for _, srv in ipairs(servers) do srv:close() end
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
  -- Ctrl-C is an interruption for the shell (130, as every command);
  -- SIGTERM is how a service manager stops a node: a clean exit.
  if stopping == "SIGINT" then return util.EXIT_INTERRUPTED end
  return util.EXIT_OK
end

return _M
