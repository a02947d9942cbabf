-- luap2p crawl and luap2p monitor (lua/luap2p/cli/crawl.lua, monitor.lua).
-- The crawl walks a network of 57 luap2p nodes in 4 processes
-- (spec/crawl_net.lua: a seed, plain nodes, private ones, full ones that
-- Nack, and nodes playing a chain with examples/chain_policy.lua); the
-- monitor follows a chain node in this process.
local p2p = require "luap2p"
local cjson = require "cjson"
local h = require "helper"
local monitor = require "luap2p.cli.monitor"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- A child process under timeout: its pid (for kill) and its stdout.
local function child(args)
  local f = assert(io.popen("sh -c " .. q(
    "echo $$; exec timeout 120 lua5.4 spec/crawl_net.lua " .. args), "r"))
  local pid = assert(tonumber(f:read("l")))
  return { f = f, pid = pid }
end

-- Read a child's lines until "ready"; collect its nodes by role.
local function until_ready(c, nodes)
  for l in c.f:lines() do
    if l == "ready" then return true end
    local role, point = l:match("^node (%a+) (%S+)$")
    if role then nodes[#nodes + 1] = { role = role, point = point } end
    local sp, sid = l:match("^seed (%S+) (%S+)$")
    if sp then c.seed, c.seed_id = sp, sid end
  end
  error("a network process ended before it was ready")
end

describe("luap2p crawl", function()
  local procs = {}
  after_each(function()
    for _, c in ipairs(procs) do os.execute("kill " .. c.pid .. " 2>/dev/null") end
    for _, c in ipairs(procs) do c.f:close() end
    procs = {}
  end)

  it("walks 57 nodes in 4 processes: finds every public node, never a " ..
     "private one, reports Nacks and heads, writes JSON and DOT", function()
    local nodes = {}
    local p1 = child("seed plain:10")
    procs[#procs + 1] = p1
    until_ready(p1, nodes)
    assert.truthy(p1.seed)
    local rest = { "plain:15", "plain:15 private:6", "full:5 chain:5" }
    for _, spec in ipairs(rest) do
      procs[#procs + 1] = child(p1.seed .. " " .. p1.seed_id .. " " .. spec)
    end
    for i = 2, #procs do until_ready(procs[i], nodes) end
    assert.equal(56, #nodes)

    local dir = h.tmpdir()
    local json, dot = dir .. "/crawl.json", dir .. "/crawl.dot"
    local cmd = string.format("timeout 90 scripts/luap2p crawl %s " ..
      "--allow 127.0.0.0/8 --concurrency 16 --timeout 4 --json %s " ..
      "--dot %s 2>&1", p1.seed, q(json), q(dot))
    local p = assert(io.popen(cmd))
    local text = p:read("a")
    local ok, _, rc = p:close()
    assert.is_true(ok, "crawl exited " .. tostring(rc) .. ":\n" .. text)
    local report = cjson.decode((assert(h.read_file(json))))

    local by_point = {}
    for _, r in ipairs(report.peers) do
      assert.is_nil(by_point[r.point], "dialled twice: " .. r.point)
      by_point[r.point] = r
    end
    -- Every public node was found and answered.
    local seed = by_point[p1.seed]
    assert.truthy(seed, "the seed")
    assert.equal("ack", seed.answer)
    assert.equal(p1.seed_id, seed.peer_id)
    local heads = 0
    for _, n in ipairs(nodes) do
      local r = by_point[n.point]
      if n.role == "private" then
        assert.is_nil(r, "a private node was dialled: " .. n.point)
      else
        assert.truthy(r, n.role .. " node not found: " .. n.point)
        assert.truthy(r.peer_id, n.point)
        assert.same({ p2p = 1, distributed_db = 2 }, r.versions)
        assert.is_false(r.metadata.private_node)
        if n.role == "full" then
          assert.equal("nack", r.answer, n.point)
          assert.equal("too_many_connections", r.motive_name)
          assert.is_true(#r.points > 0)
        else
          assert.equal("ack", r.answer, n.point .. ": " ..
            tostring(r.error))
        end
        if n.role == "chain" then
          assert.truthy(r.head, "no head from " .. n.point .. ": " ..
            tostring(r.head_error))
          assert.is_true(r.head.level >= 0)
          assert.matches("^B", r.head.hash)
          assert.matches("^Net", r.head.chain_id)
          heads = heads + 1
        else
          assert.is_nil(r.head)
        end
      end
    end
    assert.equal(5, heads)
    -- A private node's point appears nowhere: not dialled, not in any
    -- Advertise or Nack, not among the points outside --allow.
    local private = {}
    for _, n in ipairs(nodes) do
      if n.role == "private" then private[n.point] = true end
    end
    for _, e in ipairs(report.edges) do
      assert.is_nil(private[e.to], "private point given by " .. e.from)
    end
    assert.equal(0, #report.skipped)
    assert.equal(51, report.summary.dialled)
    assert.equal(46, report.summary.ack)
    assert.equal(5, report.summary.nack)
    assert.matches("crawled 51 points: 46 ack, 5 nack, 0 failed", text)
    -- The graph: every dialled point is a node of it.
    local g = assert(h.read_file(dot))
    assert.matches("^digraph crawl {", g)
    for point in pairs(by_point) do
      assert.truthy(g:find('"' .. point .. '" [label=', 1, true), point)
    end
    h.rmdir(dir)
  end)
end)

describe("luap2p monitor", function()
  local keep = h.keeper(before_each, after_each)

  it("prints a new head of a chain node as soon as it is baked", function()
    local chain = dofile("examples/chain_policy.lua")._new{ interval = 0 }
    local srv = keep(h.quiet{ app_messages = "shell",
                              policies = { chain } })
    local mon = keep(monitor.node(h.identity(), "TEZOS_MAINNET"))
    local seen = {}
    local w = monitor.watch(mon, { srv.addr }, { timeout = 5 }, function(e)
      if e.event == "head" then seen[e.level] = e end
    end)
    -- The genesis first (the answer to Get_current_head or the branch).
    h.wait(function() return seen[0] end, 5, "genesis")
    assert.equal(srv.peer_id, seen[0].first_peer)
    assert.equal(srv.addr, seen[0].first_point)
    assert.equal(chain._config.chain_id, seen[0].chain_id)
    -- A new block: the node pushes its Current_head to the monitor, an
    -- active peer, which prints it. Awaited, bounded by one second.
    local made = chain._bake(srv)
    assert(p2p.wait(function() return seen[1] end, 1),
      "no new head within a second")
    assert.equal(made.hash, seen[1].hash)
    assert.equal(made.timestamp, seen[1].timestamp)
    assert.equal(1, seen[1].agree)
    assert.equal(1, seen[1].peers)
    w.stop()
  end)
end)
