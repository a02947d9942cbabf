-- luap2p monitor POINT...: stay connected to Tezos nodes and print each
-- new head: level, block hash, timestamp, the first peer that gave it and
-- how many of the peers agree on it.
--
-- As an Octez node sees it (src/lib_shell/p2p_reader.ml,
-- distributed_db.ml): the monitor answers nothing, but asks for the branch
-- (Get_current_branch, which makes it an active peer of the chain: the
-- node then sends it each new head as a Current_head) and for the head.
-- The chain id is the one the node asks us about at connection (Octez
-- sends Get_current_branch to every new peer), or --chain-id. A dropped
-- connection is dialled again after a back-off (1 s, doubling, 30 s at
-- most); when no node at all is connected for --give-up seconds (at
-- start, or after losing them all), the command stops with exit 1.
local p2p = require "luap2p"
local shell = require "luap2p.shell"
local util = require "luap2p.cli.util"

local io, ipairs, math, next, os, pairs, string, table, tostring =
      io, ipairs, math, next, os, pairs, string, table, tostring

local now = p2p.now

local _M = {}

_M.GIVE_UP = 30 -- s with no node connected before the command gives up

function _M.define(parser)
  local cmd = parser:command("monitor",
      "Stay connected to Tezos nodes and print each new head (level, " ..
      "hash, timestamp, first peer, how many agree).")
    :epilog("Example:\n  luap2p monitor 127.0.0.1:9732 127.0.0.1:9733 " ..
      "--json\nRuns until --count heads or SIGTERM (exit 0), Ctrl-C " ..
      "(exit 130), or --give-up seconds with no node connected (exit 1).")
  cmd:argument("point", "Nodes to follow (HOST:PORT).")
    :args("+"):convert(util.peer_point)
  cmd:flag("--json", "One JSON object per line.")
  cmd:option("--chain", "Chain name in our connection message.")
    :argname("NAME"):default("TEZOS_MAINNET")
    :convert(util.text(1, 255, "--chain", "a chain name"))
  cmd:option("--chain-id", "Chain id (Base58, Net...); default: the " ..
      "one the node asks us about.")
    :argname("ID"):convert(util.chain_id("--chain-id"))
  cmd:option("--timeout", "Seconds for a handshake and for the first " ..
      "answer.")
    :argname("S"):default("10"):convert(util.number(0.1, 3600,
      "--timeout"))
  cmd:option("--count", "Exit 0 after this many new heads.")
    :argname("N"):convert(util.integer(1, 1000000000, "--count"))
  cmd:option("--give-up", "Exit 1 after this many seconds with no node " ..
      "connected, at start or after losing them all (0: retry for ever).")
    :argname("S"):default(tostring(_M.GIVE_UP))
    :convert(util.number(0, 1e9, "--give-up"))
  cmd:option("--identity", "Use this identity.json instead of fresh keys.")
    :argname("FILE")
  cmd:option("--pow", "Proof-of-work bits of the fresh identity.")
    :argname("BITS"):default("0"):convert(util.number(0, 64, "--pow"))
end

-- The monitor's node: no listener, no default policies, shell messages.
function _M.node(id, chain)
  return p2p.new{ identity = id, chain = chain, pow_bits = 0,
                  default_policies = false, min_connections = 0,
                  app_messages = "shell" }
end

-- Follow `points` with node (call from main code or a task; it spawns one
-- task per point). on_event(e) gets:
--   { event = "head", level, hash, timestamp, chain_id, first_peer,
--     first_point, agree, peers }   a hash seen for the first time
--   { event = "agree", hash, level, peer_id, point, agree, peers }
--   { event = "connected" | "lost", point, peer_id?, error? }
-- Returns a handle: handle.heads (hash -> head), handle:stop().
function _M.watch(node, points, opts, on_event)
  opts = opts or {}
  local h = { heads = {}, current = {}, tasks = {}, stopped = false }
  local timeout = opts.timeout or 10

  local function connected_peers()
    local n = 0
    for _ in pairs(h.current) do n = n + 1 end
    return n
  end

  local function agreeing(hash)
    local n = 0
    for _, cur in pairs(h.current) do
      if cur == hash then n = n + 1 end
    end
    return n
  end

  local function saw(point, peer_id, hd, chain_id)
    local hash = hd.hash
    if h.current[point] == hash then return end
    h.current[point] = hash
    local known = h.heads[hash]
    if not known then
      known = { level = hd.level, hash = hash, timestamp = hd.timestamp,
                chain_id = chain_id, first_peer = peer_id,
                first_point = point }
      h.heads[hash] = known
      on_event{ event = "head", level = known.level, hash = hash,
                timestamp = known.timestamp, chain_id = chain_id,
                first_peer = peer_id, first_point = point,
                agree = agreeing(hash), peers = connected_peers() }
    else
      on_event{ event = "agree", level = known.level, hash = hash,
                peer_id = peer_id, point = point, agree = agreeing(hash),
                peers = connected_peers() }
    end
  end

  local function follow(conn, point)
    local chain_id = opts.chain_id
    local deadline = now() + timeout
    while not chain_id do
      local payload, tag = conn:receive(math.max(0, deadline - now()))
      if not payload then return "no chain id: the node asked nothing" end
      local m = shell.decode(payload, tag)
      if m and m.type == "get_current_branch" then chain_id = m.chain_id end
    end
    if not conn:send_shell{ type = "get_current_branch",
                            chain_id = chain_id } or
       not conn:send_shell{ type = "get_current_head", chain_id = chain_id }
    then
      return "send failed"
    end
    while not h.stopped do
      local payload, tag, code = conn:receive()
      if not payload then return code end
      local m = shell.decode(payload, tag)
      if m and m.chain_id == chain_id then
        if m.type == "current_head" then
          saw(point, conn.peer_id, m.header, chain_id)
        elseif m.type == "current_branch" then
          saw(point, conn.peer_id, m.head, chain_id)
        end
      end
    end
  end

  for _, point in ipairs(points) do
    h.tasks[#h.tasks + 1] = node:spawn(function()
      local delay = 1
      while not h.stopped do
        local conn, err = node:dial(point, { timeout = timeout })
        if conn then
          delay = 1
          on_event{ event = "connected", point = point,
                    peer_id = conn.peer_id }
          local why = follow(conn, point)
          h.current[point] = nil
          if not conn.closed then conn:close("monitor: " .. tostring(why)) end
          if h.stopped then return end
          on_event{ event = "lost", point = point, peer_id = conn.peer_id,
                    error = tostring(why) }
        else
          on_event{ event = "lost", point = point, error = err }
        end
        p2p.sleep(delay)
        delay = math.min(delay * 2, 30)
      end
    end)
  end

  function h.stop()
    h.stopped = true
    for _, t in ipairs(h.tasks) do t:cancel() end
  end
  return h
end

local function human(e)
  if e.event == "head" then
    return string.format("head %d %s %s from %s (%s), %d/%d agree",
      e.level, e.hash, os.date("!%Y-%m-%dT%H:%M:%SZ", e.timestamp),
      tostring(e.first_point), tostring(e.first_peer), e.agree, e.peers)
  elseif e.event == "agree" then
    return string.format("     %d %s also from %s, %d/%d agree", e.level,
      e.hash, tostring(e.point), e.agree, e.peers)
  elseif e.event == "connected" then
    return string.format("connected to %s (%s)", e.point, e.peer_id)
  end
  return string.format("lost %s: %s", e.point, tostring(e.error))
end

function _M.run(args)
  util.line_buffered()
  local id = util.dial_identity(args)
  local node, nerr = _M.node(id, args.chain)
  if not node then util.fail(util.plain(nerr)) end
  local points = {}
  for i, p in ipairs(args.point) do points[i] = p.text end
  local heads = 0
  local trap = util.trap_signals()
  -- Connected nodes, and the give-up clock that runs while there are none.
  local up, last_error, gave_up, clock = {}, {}, false, nil
  local function start_clock()
    if args.give_up > 0 and not clock then
      clock = p2p.after(args.give_up, function() gave_up = true end)
    end
  end
  start_clock()
  local h = _M.watch(node, points, { timeout = args.timeout,
                                     chain_id = args.chain_id },
    function(e)
      if e.event == "head" then heads = heads + 1 end
      if e.event == "connected" then
        up[e.point] = true
        if clock then clock:stop(); clock = nil end
      elseif e.event == "lost" then
        up[e.point] = nil
        last_error[e.point] = e.error
        if next(up) == nil then start_clock() end
      end
      if args.json then
        if e.event == "head" then
          e.time = os.date("!%Y-%m-%dT%H:%M:%SZ", e.timestamp)
        end
        io.stdout:write(util.json(e), "\n")
      else
        io.stdout:write(human(e), "\n")
      end
    end)
  p2p.wait(function()
    return trap.signal ~= nil or gave_up or
      (args.count ~= nil and heads >= args.count)
  end, 1e9) -- until a signal, --count or --give-up
  trap.close()
  if clock then clock:stop() end
  h.stop()
  node:close()
  for _ = 1, 10 do p2p.run_nowait() end
  if trap.signal == "SIGINT" then return util.EXIT_INTERRUPTED end
  if trap.signal == nil and gave_up then
    local why = {}
    for _, p in ipairs(points) do
      why[#why + 1] = p .. ": " .. (last_error[p] and
        util.plain(last_error[p]) or "no answer")
    end
    util.fail(string.format("no node connected for %gs (%s); check the " ..
      "points, or wait longer with --give-up S (0: for ever)", args.give_up,
      table.concat(why, ", ")))
  end
  return util.EXIT_OK
end

return _M
