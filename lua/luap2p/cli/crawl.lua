-- luap2p crawl SEED...: walk a network from seed points. Each point is
-- dialled once: its peer id, announced versions and metadata are read at
-- authentication; a Nack gives its motive and the points it suggests; an
-- Ack is followed by Bootstrap (the peer's Advertise gives more points)
-- and, on a Tezos chain, by the shell's questions for its current head;
-- then a polite Disconnect. New points go to the queue; at most
-- --concurrency dials run at once, each bounded by --timeout.
--
-- The current head, as an Octez node gives it (src/lib_shell/p2p_reader.ml):
-- a node sends Get_current_branch(chain id) to every new peer, and answers
-- Get_current_head only from peers that asked for its branch. So the
-- crawler learns the chain id from that first message (or --chain-id),
-- sends Get_current_branch then Get_current_head, and takes the head of
-- the Current_head (or, failing that, of the Current_branch).
local p2p = require "luap2p"
local shell = require "luap2p.shell"
local probe = require "luap2p.cli.probe"
local util = require "luap2p.cli.util"

local io, ipairs, math, pairs, pcall, string, table, tonumber, tostring =
      io, ipairs, math, pairs, pcall, string, table, tonumber, tostring

local now = p2p.now

local _M = {}

local MOTIVES = probe.MOTIVES

function _M.define(parser)
  local cmd = parser:command("crawl",
      "Walk a network from seed points (Bootstrap/Advertise and Nack " ..
      "points): per peer its point, peer id, versions, metadata, Nack " ..
      "motive, current head and the points it gave; a summary, JSON and " ..
      "a DOT graph.")
    :epilog("Examples:\n" ..
      "  luap2p crawl 127.0.0.1:9732 --max-peers 200 --json crawl.json " ..
      "--dot crawl.dot\n" ..
      "  luap2p crawl 127.0.0.1:9732 --allow 127.0.0.0/8   # stay on " ..
      "loopback\n" ..
      "Exit codes: 0 when at least one seed answered, 1 otherwise, " ..
      "2 usage error.")
  cmd:argument("seed", "Points to start from (HOST:PORT).")
    :args("+"):convert(util.peer_point)
  cmd:option("--max-peers", "Points dialled at most.")
    :argname("N"):default("1000"):convert(util.integer(1, 1000000,
      "--max-peers"))
  cmd:option("--concurrency", "Dials at once.")
    :argname("N"):default("16"):convert(util.integer(1, 4096,
      "--concurrency"))
  cmd:option("--timeout", "Seconds per point: handshake, points and head.")
    :argname("S"):default("10"):convert(util.number(0.1, 3600,
      "--timeout"))
  cmd:option("--json", "Write every peer, edge and head as JSON to FILE.")
    :argname("FILE")
  cmd:option("--dot", "Write the graph (who gave whom) in DOT to FILE.")
    :argname("FILE")
  cmd:option("--allow", "Only dial points in this prefix (IPv4 " ..
      "a.b.c.d/n, or an exact IPv6 address); repeatable. Others are " ..
      "listed as seen, never dialled.")
    :argname("PREFIX"):count("*")
  cmd:option("--chain", "Chain name in our connection message.")
    :argname("NAME"):default("TEZOS_MAINNET")
    :convert(util.text(1, 255, "--chain", "a chain name"))
  cmd:option("--chain-id", "Chain id (Base58, Net...) for the head " ..
      "questions; default: the one the peer asks us about.")
    :argname("ID"):convert(util.chain_id("--chain-id"))
  cmd:option("--identity", "Use this identity.json instead of fresh keys.")
    :argname("FILE")
  cmd:option("--pow", "Proof-of-work bits of the fresh identity.")
    :argname("BITS"):default("0"):convert(util.number(0, 64, "--pow"))
  cmd:flag("--quiet", "No table on stdout, only the summary.")
end

---------------------------------------------------------------- prefixes

-- "a.b.c.d/n" -> matcher; an IPv6 address (no prefix) matches itself.
local function ipv4(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local n = 0
  for _, x in ipairs({ a, b, c, d }) do
    x = tonumber(x)
    if x > 255 then return nil end
    n = n * 256 + x
  end
  return n
end

function _M.prefix(text)
  local addr, bits = text:match("^([%d%.]+)/(%d+)$")
  if not addr then addr, bits = text:match("^([%d%.]+)$"), "32" end
  if addr then
    local n, b = ipv4(addr), tonumber(bits)
    if not n or b > 32 then return nil end
    local mask = b == 0 and 0 or (0xffffffff << (32 - b)) & 0xffffffff
    return function(host)
      local h = ipv4(host)
      return h ~= nil and (h & mask) == (n & mask)
    end
  end
  local canon = p2p.core.point_parse("[" .. text .. "]:1")
  if not canon then return nil end
  local want = canon:match("^%[(.*)%]")
  return function(host)
    local c = p2p.core.point_parse("[" .. host .. "]:1")
    return c ~= nil and c:match("^%[(.*)%]") == want
  end
end

---------------------------------------------------------------- one point

-- The head of a connected peer (inside a task). Returns {level, hash,
-- timestamp, chain_id} or nil, why.
local function current_head(conn, chain_id, deadline)
  local function left() return math.max(0, deadline - now()) end
  -- The peer's own Get_current_branch names its chain (Octez sends it to
  -- every new peer at once).
  local cid_deadline = math.min(deadline, now() + 2)
  while not chain_id do
    local payload, tag = conn:receive(math.max(0, cid_deadline - now()))
    if not payload then return nil, "no chain id (the peer asked nothing)" end
    local m = shell.decode(payload, tag)
    if m and m.type == "get_current_branch" then chain_id = m.chain_id end
  end
  -- Become active for that chain (Octez answers Get_current_head only
  -- then), then ask.
  if not conn:send_shell{ type = "get_current_branch", chain_id = chain_id }
     or not conn:send_shell{ type = "get_current_head", chain_id = chain_id }
  then
    return nil, "send failed"
  end
  local branch
  while true do
    local payload, tag = conn:receive(left())
    if not payload then break end
    local m = shell.decode(payload, tag)
    if m and m.chain_id == chain_id then
      local hd = m.type == "current_head" and m.header or
        m.type == "current_branch" and m.head or nil
      if hd then
        local h = { level = hd.level, hash = hd.hash,
                    timestamp = hd.timestamp, chain_id = chain_id }
        if m.type == "current_head" then return h end
        branch = h
      end
    end
  end
  if branch then return branch end
  return nil, "no Current_head within the timeout"
end

-- Dial one point and learn what it says (inside a task).
local function visit(node, point, opts, infos)
  local rec = { point = point }
  local deadline = now() + opts.timeout
  local conn, err, code, nack = node:dial(point, { timeout = opts.timeout })
  local info = infos[point]
  if info then
    rec.peer_id = info.peer_id
    rec.chain = info.chain
    rec.versions = { p2p = info.p2p_version,
                     distributed_db = info.ddb_version }
    rec.metadata = { private_node = info.private_node,
                     disable_mempool = info.disable_mempool }
  end
  if not conn then
    if code == "ENACK" then
      rec.answer = "nack"
      rec.motive, rec.motive_name = nack.motive, nack.motive_name
      rec.points, rec.via = nack.points or {}, "nack"
    else
      rec.answer, rec.error, rec.code = "error", err, code
      rec.points = {}
    end
    return rec
  end
  rec.answer = "ack"
  rec.negotiated = { p2p = conn.version.p2p, distributed_db = conn.version.ddb }
  -- Points and head at once: a peer with nothing to advertise never
  -- answers Bootstrap, so that wait must not delay the head.
  local pts_task = node:spawn(function()
    return conn:ask_points(math.max(0.05, math.min(opts.points_wait,
      deadline - now())))
  end)
  if node._shell then
    local head, why = current_head(conn, opts.chain_id, deadline)
    rec.head, rec.head_error = head, why
  end
  local ok, pts = pts_task:join(math.max(0.05, deadline - now()) + 1)
  rec.points, rec.via = (ok and pts) or {}, "advertise"
  conn:close("crawl done") -- a Disconnect, then the socket closes
  return rec
end

---------------------------------------------------------------- the walk

-- Crawl from seeds with node (no default policies; the recorder policy
-- of _M.node). opts: max_peers, concurrency, timeout, points_wait,
-- allow (list of matchers), chain_id, on_peer(rec). Returns the report
-- once every dial is over; call from main code (it runs the loop).
function _M.walk(node, infos, seeds, opts)
  local report = { peers = {}, edges = {}, skipped = {}, seeds = seeds }
  local seen, queue, running, dialled = {}, {}, 0, 0
  local finished = false

  local function allowed(point)
    if not opts.allow or #opts.allow == 0 then return true end
    local host = p2p.split_point(point)
    for _, m in ipairs(opts.allow) do
      if host and m(host) then return true end
    end
    return false
  end

  local function add(point, from, via)
    if from then
      report.edges[#report.edges + 1] = { from = from, to = point, via = via }
    end
    if seen[point] then return end
    seen[point] = true
    if not allowed(point) then
      report.skipped[#report.skipped + 1] = point
      return
    end
    queue[#queue + 1] = point
  end

  local launch
  local function done_one(point, rec)
    report.peers[#report.peers + 1] = rec
    if opts.on_peer then pcall(opts.on_peer, rec) end
    for _, p in ipairs(rec.points or {}) do add(p, point, rec.via) end
    running = running - 1
    launch()
  end

  function launch()
    while running < opts.concurrency and #queue > 0 and
          dialled < opts.max_peers do
      local point = table.remove(queue, 1)
      running, dialled = running + 1, dialled + 1
      node:spawn(function()
        local ok, rec = pcall(visit, node, point, opts, infos)
        if not ok then
          rec = { point = point, answer = "error", code = "ETASK",
                  error = tostring(rec), points = {} }
        end
        done_one(point, rec)
      end)
    end
    if running == 0 then finished = true end
  end

  for _, s in ipairs(seeds) do add(s) end
  launch()
  local limit = opts.timeout * (opts.max_peers / opts.concurrency + 2) + 5
  p2p.wait(function() return finished or (opts.stop and opts.stop()) end,
    limit)
  report.unvisited = {}
  for _, p in ipairs(queue) do report.unvisited[#report.unvisited + 1] = p end
  return report
end

-- The crawler's node: no listener, no default policies; a recorder
-- policy keeps what each point announced at authentication.
function _M.node(id, chain)
  local infos = {}
  local recorder = {
    name = "crawl",
    authenticated = function(_, info)
      if info.point then infos[info.point] = info end
      return nil -- Octez's verdict: Ack, or Nack/close on a hard refusal
    end,
  }
  local node, err, code = p2p.new{
    identity = id, chain = chain, pow_bits = 0, default_policies = false,
    policies = { recorder }, min_connections = 0, max_connections = 100000,
  }
  return node, infos, err, code
end

---------------------------------------------------------------- output

local function short(s, n)
  s = tostring(s or "-")
  if #s <= n then return s end
  return s:sub(1, n - 2) .. ".."
end

local function line(rec)
  local head = rec.head and string.format("%d %s", rec.head.level,
    short(rec.head.hash, 14)) or "-"
  local answer = rec.answer == "nack" and
    ("nack:" .. tostring(rec.motive_name)) or
    rec.answer == "error" and ("error:" .. tostring(rec.code)) or "ack"
  local v = rec.versions and string.format("%d/%d", rec.versions.p2p,
    rec.versions.distributed_db) or "-"
  local meta = rec.metadata and ((rec.metadata.private_node and "P" or "-")
    .. (rec.metadata.disable_mempool and "M" or "-")) or "--"
  return string.format("%-21s %-16s %-5s %-4s %-26s %-20s %d",
    rec.point, short(rec.peer_id, 16), v, meta, short(answer, 26), head,
    #(rec.points or {}))
end

function _M.summary(report)
  local n = { ack = 0, nack = 0, error = 0 }
  local heads, nheads = {}, 0
  for _, r in ipairs(report.peers) do
    n[r.answer] = (n[r.answer] or 0) + 1
    if r.head then
      local k = r.head.level .. " " .. r.head.hash
      if not heads[k] then
        heads[k] = { level = r.head.level, hash = r.head.hash, count = 0 }
        nheads = nheads + 1
      end
      heads[k].count = heads[k].count + 1
    end
  end
  local list = {}
  for _, hd in pairs(heads) do list[#list + 1] = hd end
  table.sort(list, function(a, b)
    if a.level ~= b.level then return a.level > b.level end
    return a.hash < b.hash
  end)
  return { dialled = #report.peers, ack = n.ack, nack = n.nack,
           failed = n.error, skipped = #report.skipped,
           unvisited = #report.unvisited, edges = #report.edges,
           heads = list }
end

function _M.dot(report)
  local out = { "digraph crawl {", "  node [shape=box, fontsize=10];" }
  local color = { ack = "palegreen", nack = "orange", error = "grey" }
  for _, r in ipairs(report.peers) do
    local label = r.point .. (r.peer_id and ("\\n" .. r.peer_id) or "") ..
      (r.head and ("\\nhead " .. r.head.level) or "") ..
      (r.answer == "nack" and ("\\nnack " .. tostring(r.motive_name)) or "")
    out[#out + 1] = string.format(
      '  "%s" [label="%s", style=filled, fillcolor=%s];', r.point, label,
      color[r.answer] or "white")
  end
  local done = {}
  for _, e in ipairs(report.edges) do
    local k = e.from .. ">" .. e.to
    if not done[k] then
      done[k] = true
      out[#out + 1] = string.format('  "%s" -> "%s"%s;', e.from, e.to,
        e.via == "nack" and " [style=dashed]" or "")
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

local function write(path, text)
  local f, err = io.open(path, "w")
  if not f then util.fail("cannot write " .. path .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
end

function _M.run(args)
  util.line_buffered()
  local allow = {}
  for _, a in ipairs(args.allow or {}) do
    local m = _M.prefix(a)
    if not m then
      util.usage("bad --allow '" .. a .. "': expected a.b.c.d/n or an " ..
        "IPv6 address")
    end
    allow[#allow + 1] = m
  end
  local id = util.dial_identity(args)
  local node, infos, nerr = _M.node(id, args.chain)
  if not node then util.fail(util.plain(nerr)) end
  local seeds = {}
  for i, s in ipairs(args.seed) do seeds[i] = s.text end
  local quiet = args.quiet
  if not quiet then
    io.stdout:write(string.format("%-21s %-16s %-5s %-4s %-26s %-20s %s\n",
      "POINT", "PEER ID", "VER", "META", "ANSWER", "HEAD", "POINTS"))
  end
  local trap = util.trap_signals()
  local report = _M.walk(node, infos, seeds, {
    max_peers = args.max_peers, concurrency = args.concurrency,
    timeout = args.timeout, points_wait = math.min(2, args.timeout),
    allow = allow, chain_id = args.chain_id,
    stop = function() return trap.signal ~= nil end,
    on_peer = function(rec)
      if not quiet then io.stdout:write(line(rec), "\n") end
    end,
  })
  trap.close()
  node:close()
  for _ = 1, 10 do p2p.run_nowait() end
  local sum = _M.summary(report)
  io.stdout:write(string.format("crawled %d points: %d ack, %d nack, %d " ..
    "failed; %d outside --allow, %d not dialled (--max-peers); %d edges\n",
    sum.dialled, sum.ack, sum.nack, sum.failed, sum.skipped, sum.unvisited,
    sum.edges))
  for _, hd in ipairs(sum.heads) do
    io.stdout:write(string.format("head %d %s: %d peer%s\n", hd.level,
      hd.hash, hd.count, hd.count == 1 and "" or "s"))
  end
  if args.json then
    for _, r in ipairs(report.peers) do r.points = util.array(r.points) end
    write(args.json, util.json({ seeds = util.array(report.seeds),
      peers = util.array(report.peers), edges = util.array(report.edges),
      skipped = util.array(report.skipped),
      unvisited = util.array(report.unvisited), summary = sum }) .. "\n")
  end
  if args.dot then write(args.dot, _M.dot(report)) end
  if trap.signal then util.fail("interrupted", util.EXIT_INTERRUPTED) end
  local answered = false
  for _, r in ipairs(report.peers) do
    for _, s in ipairs(seeds) do
      if r.point == s and r.answer ~= "error" then answered = true end
    end
  end
  if not answered then util.fail("no seed answered") end
  return util.EXIT_OK
end

return _M
