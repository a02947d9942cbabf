-- A crawler: dial a node, ask it for the points it knows (Bootstrap ->
-- Advertise; a Nack lists points too) and walk every point learned,
-- `concurrency` peers at a time, each step bounded by `timeout` seconds.
--
--   scripts/luap2p run examples/crawler.lua               crawl a demo
--                                          network started in this process
--   scripts/luap2p run examples/crawler.lua HOST:PORT [N] crawl from there,
--                                                         N peers at a time
--
-- Real Octez nodes check our proof of work: pass a 26-bit identity there,
-- crawl(start, { identity = assert(require("luap2p.identity").load(
-- "identity.json")) }). require'd (dofile), this file returns crawl.
local p2p = require "luap2p"

-- crawl(start, {concurrency, timeout, identity}) -> results, in a task:
-- point -> { answer = "ack" | "nack", peer_id, learned } | { error }.
local function crawl(start, opts)
  opts = opts or {}
  local N, T = opts.concurrency or 16, opts.timeout or 3
  local node <close> = assert(p2p.new{ pow_bits = 0,
    identity = opts.identity or p2p.core.identity_generate(),
    default_policies = false, max_connections = 100000 })
  local results, seen, waiting, running, tasks = {}, {}, {}, 0, {}
  local go

  local function learn(points, r) -- visit the points never seen
    for _, p in ipairs(points or {}) do
      if not seen[p] then seen[p], r.learned = true, r.learned + 1; go(p) end
    end
  end

  local function visit(p)
    local conn, err, _, nack = node:dial(p, { timeout = T })
    local r = { learned = 0, error = err, peer_id = (conn or nack or {}).peer_id,
                answer = conn and "ack" or nack and "nack" or nil }
    results[p] = r
    learn(conn and conn:ask_points(T) or nack and nack.points, r)
    if conn then conn:close("crawled") end
  end

  function go(p) -- visit p now, or when one of the N visits ends
    if running >= N then waiting[#waiting + 1] = p return end
    running = running + 1
    tasks[#tasks + 1] = p2p.spawn(function()
      visit(p)
      running = running - 1
      if #waiting > 0 then go(table.remove(waiting, 1)) end
    end)
  end

  seen[start] = true
  go(start)
  -- Every visit, those started while we wait too (ipairs sees them).
  for _, t in ipairs(tasks) do t:join() end
  return results
end

local function report(results)
  local points, answered, peers = {}, 0, {}
  for p in pairs(results) do points[#points + 1] = p end
  table.sort(points)
  for _, p in ipairs(points) do
    local r = results[p]
    if r.answer then
      answered = answered + 1
      if r.peer_id then peers[r.peer_id] = true end
      print(string.format("%-22s %s %-4s %d new point(s)", p,
        tostring(r.peer_id), r.answer == "ack" and "Ack" or "Nack",
        r.learned))
    else
      print(string.format("%-22s no answer: %s", p, tostring(r.error)))
    end
  end
  local n = 0
  for _ in pairs(peers) do n = n + 1 end
  print(string.format("crawled %d point(s): %d answered, %d distinct " ..
    "peer(s)", #points, answered, n))
end

local function main(start, n)
  p2p.spawn(function()
    local net
    if not start then
      -- No address: start the `luap2p demo` network and let it settle.
      net = require("luap2p.cli.demo").network()
      p2p.sleep(3)
      start = net.by_name.seed.point
      print("crawling a local demo network from its seed " .. start)
    end
    local ok, results = pcall(crawl, start, { concurrency = tonumber(n) })
    if net then net.close() end
    assert(ok, results)
    report(results)
  end)
  p2p.run()
end

if arg and arg[0] and arg[0]:match("crawler%.lua$") then
  main(...)
else
  return crawl
end
