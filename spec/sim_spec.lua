-- luap2p sim: the plan (addresses, workers, churn), the network metrics
-- and property checks on hand-made graphs, the HTML report, bind_address,
-- and two 100-node simulations run as `luap2p sim` child processes
-- (churn with faults, and an eclipse attempt) whose stated properties
-- must all hold.
local p2p = require "luap2p"
local cjson = require "cjson"
local h = require "helper"
local scenario = require "luap2p.sim.scenario"
local metrics = require "luap2p.sim.metrics"
local report = require "luap2p.sim.report"

local ROOT = os.getenv("PWD") or "."

describe("sim plan", function()
  local sc = { name = "t", nodes = 50, seeds = 3, join = { over = 10 },
               churn = { from = 5, to = 20, rate = 0.1, downtime = { 2, 4 } },
               faults = { { at = 7, kind = "stop", process = 1, seconds = 2 },
                          { at = 8, kind = "reset", nodes = 3 } },
               attacks = { { kind = "eclipse", at = 5, attackers = 10,
                             target = "random" },
                           { kind = "sybil", at = 6, attackers = 0.2,
                             prefixes = 2 } } }

  it("gives every node its own loopback address, honest nodes each a /24",
    function()
    local plan = scenario.plan(sc, { port = 20001, processes = 2 })
    assert.equal(50 + 10 + 10, #plan.nodes)
    local ips, nets = {}, {}
    for _, n in ipairs(plan.nodes) do
      assert.is_nil(ips[n.ip])
      ips[n.ip] = true
      assert.truthy(n.ip:match("^127%.%d+%.%d+%.%d+$"))
      assert.equal(n.ip .. ":20001", n.point)
      if n.role ~= "adversary" then
        local net = n.ip:match("^(%d+%.%d+%.%d+)")
        assert.is_nil(nets[net])
        nets[net] = true
      end
    end
    -- The sybils spread over exactly two /24s, the eclipse over one.
    local per = {}
    for _, n in ipairs(plan.nodes) do
      if n.role == "adversary" then
        local key = n.kind .. " " .. n.ip:match("^(%d+%.%d+%.%d+)")
        per[key] = true
      end
    end
    local count = { eclipse = 0, sybil = 0 }
    for k in pairs(per) do
      local kind = k:match("^(%a+)")
      count[kind] = count[kind] + 1
    end
    assert.same({ eclipse = 1, sybil = 2 }, count)
  end)

  it("is the same for the same seed and differs for another", function()
    local a = scenario.encode(scenario.plan(sc, { seed = 7, port = 1 }))
    local b = scenario.encode(scenario.plan(sc, { seed = 7, port = 1 }))
    local c = scenario.encode(scenario.plan(sc, { seed = 8, port = 1 }))
    assert.equal(a, b)
    assert.not_equal(a, c)
  end)

  it("deals nodes over the workers, seeds first, and sorts the actions",
    function()
    local plan = scenario.plan(sc, { processes = 3 })
    assert.equal(3, plan.workers)
    local per = {}
    for _, n in ipairs(plan.nodes) do
      per[n.worker] = (per[n.worker] or 0) + 1
    end
    for w = 1, 3 do assert.truthy(per[w] >= 23 and per[w] <= 24) end
    assert.equal("seed", plan.nodes[3].role)
    assert.equal("honest", plan.nodes[4].role)
    local kinds, prev = {}, -1
    for _, a in ipairs(plan.actions) do
      assert.truthy(a.at >= prev)
      prev = a.at
      kinds[a.kind] = true
      if a.node then assert.truthy(a.node > 3 and a.node <= 50) end
    end
    assert.same({ leave = true, join = true, stop = true, reset = true },
      kinds)
    local t = plan.attacks[1].target
    assert.truthy(t > 3 and t <= 50)
  end)

  it("scales with --nodes: shares of nodes stay shares", function()
    local small = scenario.plan(sc, { nodes = 50 })
    local big = scenario.plan(sc, { nodes = 200 })
    assert.equal(10, #small.attacks[2].members)
    assert.equal(40, #big.attacks[2].members)
    assert.equal(10, #big.attacks[1].members) -- a count stays a count
  end)

  it("rejects unknown attacks and faults", function()
    assert.has_error(function()
      scenario.plan({ attacks = { { kind = "nope" } } })
    end, "scenario: attacks[1]: unknown kind nope")
    assert.has_error(function()
      scenario.plan({ faults = { { kind = "nope" } } })
    end, "scenario: faults[1]: unknown kind nope")
  end)
end)

describe("sim metrics", function()
  -- Nodes 1..6 honest (bounds [2, 3]), 7 an adversary; 1-2-3-4 a path,
  -- 5-6 apart, 7 linked to 1.
  local plan = { bounds = { 2, 3 }, attacks = { { target = 1 } },
                 nodes = {} }
  for i = 1, 7 do
    plan.nodes[i] = { i = i, role = i == 7 and "adversary" or "honest" }
  end
  local reports = {
    { nodes = { { 1, 2, 7 }, { 2, 1, 3 }, { 3, 2, 4 } },
      counters = { handshakes = 4 }, cpu = 1, rss = 100, hosted = 3 },
    { nodes = { { 4, 3 }, { 5, 6 }, { 6, 5 }, { 7, 1 } },
      counters = { handshakes = 6 }, cpu = 2, rss = 50, hosted = 4 },
  }

  it("measures degrees, components, diameter, cut-off and the attack",
    function()
    local s, hist = metrics.sample(plan, reports, 3)
    assert.equal(6, s.honest_alive)
    assert.equal(1, s.deg_min)
    assert.equal(2, s.deg_max)
    -- 1, 2 and 3 have 2 connections: 3 of 6 within [2, 3]
    assert.near(0.5, s.within, 1e-9)
    assert.same({ [1] = 3, [2] = 3 }, hist)
    assert.near(4 / 6, s.component, 1e-9)
    assert.equal(2, s.components)
    assert.equal(3, s.diameter)
    assert.equal(0, s.cut_off)
    assert.equal(1, s.target_honest)
    assert.equal(1, s.target_adversary)
    assert.near(0.5, s.target_share, 1e-9)
    -- one adversary link among the honest nodes' 9 connection ends
    assert.near(1 / 9, s.adversary_share, 1e-9)
    assert.equal(10, s.counters.handshakes)
    assert.equal(3, s.cpu)
    assert.equal(7, s.hosted)
  end)

  it("checks properties over windows, counting back from the end with " ..
     "negative times", function()
    local samples = {}
    for t = 1, 10 do
      samples[t] = { t = t, within = t >= 6 and 1 or 0.5 }
    end
    local function one(p)
      local pl = { properties = { p }, converge = {} }
      local res, all = metrics.check(pl, samples, 4)
      return all, res[1]
    end
    assert.is_true((one({ metric = "within", min = 0.9, from = 6 })))
    assert.is_false((one({ metric = "within", min = 0.9, from = 5 })))
    assert.is_true((one({ metric = "within", min = 0.9, from = -4 })))
    assert.is_false((one({ metric = "within", min = 0.9, from = -5 })))
    assert.is_true((one({ metric = "within", max = 0.5, to = 5 })))
    assert.is_true((one({ metric = "within", min = 1, final = true })))
    assert.is_true((one({ metric = "converged", max = 4 })))
    assert.is_false((one({ metric = "converged", max = 3 })))
    local ok, r = one({ metric = "within", min = 0.9, from = 20 })
    assert.is_false(ok)
    assert.equal("no sample in the window", r.detail)
    ok, r = one({ metric = "nonsense", min = 1 })
    assert.is_false(ok)
    assert.equal("unknown metric nonsense", r.detail)
  end)

  it("finds the convergence time after the last join", function()
    local pl = { converge = { within = 0.9, component = 0.99 },
                 nodes = { { role = "honest", join = 3 } } }
    local samples = {
      { t = 1, within = 1, component = 1 },
      { t = 3, within = 0.5, component = 1 },
      { t = 4, within = 0.95, component = 0.9 },
      { t = 5, within = 0.95, component = 1 },
    }
    assert.equal(5, (metrics.convergence(pl, samples)))
  end)
end)

describe("sim report", function()
  it("is one self-contained HTML file with inline SVG plots", function()
    local plan = scenario.plan({ name = "r<x>", nodes = 10,
      attacks = { { kind = "eclipse", attackers = 2 } } }, { port = 1 })
    local samples = {}
    for t = 1, 5 do
      samples[t] = { t = t, within = 1, component = 1, cut_off = 0,
                     deg_min = 2, deg_median = 3, deg_max = 4,
                     diameter = 2, adversary_share = 0.1,
                     adversary_touched = 0.2, target_share = 0.3,
                     target_honest = 4, target_adversary = 1,
                     counters = { handshakes = t * 10 } }
    end
    local summary = { ok = false, adversaries = 2, processes = 1,
                      properties = { { text = "p <1>", ok = false,
                                       detail = "d" } },
                      final = samples[5], converged_at = 2, last_join = 0,
                      histogram = { { 2, 3 }, { 3, 7 } }, wall_seconds = 5,
                      cost = { cpu_seconds = 1, rss_kb = 1000,
                               cpu_share_per_node = 0.001,
                               rss_kb_per_node = 100 } }
    local html = report.html(plan, samples, summary)
    assert.truthy(html:find("^<!DOCTYPE html>"))
    assert.truthy(html:find("r&lt;x&gt;", 1, true))
    assert.truthy(html:find("p &lt;1&gt;", 1, true))
    local _, nsvg = html:gsub("<svg ", "")
    assert.equal(7, nsvg)
    -- Nothing fetched: the only URL is the SVG namespace.
    for url in html:gmatch("https?://[^\"'%s]+") do
      assert.equal("http://www.w3.org/2000/svg", url)
    end
    assert.is_nil(html:find("<script", 1, true))
  end)
end)

describe("bind_address", function()
  local keep = h.keeper(before_each, after_each)

  it("makes a node dial from the address it listens on", function()
    local a = keep(h.node{ listen = "127.41.0.1:0" })
    local b = keep(h.node{ listen = "127.42.0.1:0",
                           bind_address = "127.42.0.1" })
    local got
    a:on("connected", function(ev) got = ev.conn end)
    assert(b:connect("127.41.0.1:" .. a.port))
    h.wait(function() return got end, 5, "connected")
    assert.equal("127.42.0.1", (p2p.split_point(got.addr)))
    assert.equal("127.42.0.1:" .. b.port, got.point)
  end)

  it("rejects what is not an IP address", function()
    local ok, err = pcall(p2p.new, { identity = h.identity(),
                                     bind_address = "localhost" })
    assert.is_false(ok)
    assert.matches("config.bind_address: expected an IP address", err, 1,
      true)
  end)
end)

describe("luap2p sim", function()
  local uv = require "luv"

  -- Run each command line at once; returns { {code, out}, ... }.
  local function run_all(cmds, timeout)
    local res = {}
    local left = #cmds
    for i, cmd in ipairs(cmds) do
      local out = os.tmpname()
      res[i] = { out = out }
      local handle
      handle = uv.spawn("/bin/sh", {
        args = { "-c", "exec " .. cmd .. " >" .. out .. " 2>&1" },
      }, function(code)
        res[i].code = code
        handle:close()
        left = left - 1
      end)
      res[i].handle = handle
    end
    -- luv's loop time is stale when other specs ran since its last run:
    -- a deadline from it could lie in the past.
    uv.update_time()
    local timer = uv.new_timer()
    timer:start(timeout * 1000, 0, function()
      for _, r in ipairs(res) do
        if r.code == nil then r.handle:kill("sigterm") end
      end
    end)
    while left > 0 do uv.run("once") end
    timer:close()
    uv.run() -- the close callbacks (luv crashes at exit without them)
    for _, r in ipairs(res) do
      r.text = h.read_file(r.out) or ""
      os.remove(r.out)
    end
    return res
  end

  it("holds every stated property of churn and eclipse at 100 nodes",
    function()
    local dir = h.tmpdir()
    finally(function() h.rmdir(dir) end)
    local bin = "lua5.4 " .. ROOT .. "/scripts/luap2p sim "
    local res = run_all({
      bin .. ROOT .. "/examples/sim/churn.lua --nodes 100 " ..
        "--report " .. dir .. "/churn",
      bin .. ROOT .. "/examples/sim/eclipse.lua --nodes 100 " ..
        "--report " .. dir .. "/eclipse",
    }, 150)
    for i, name in ipairs({ "churn", "eclipse" }) do
      local r = res[i]
      assert.equal(0, r.code, name .. ":\n" .. r.text)
      local summary = cjson.decode(h.read_file(dir .. "/" .. name ..
        "/summary.json"))
      assert.is_true(summary.ok)
      assert.truthy(#summary.properties >= 4)
      for _, p in ipairs(summary.properties) do
        assert.is_true(p.ok, name .. ": " .. p.text)
        assert.truthy(r.text:find("[ok] " .. p.text, 1, true))
      end
      assert.equal(100, summary.honest)
      assert.truthy(summary.converged_at)
      assert.truthy(summary.cost.cpu_seconds > 0)
      local html = h.read_file(dir .. "/" .. name .. "/report.html")
      assert.truthy(html and html:find("Every property held", 1, true))
      assert.truthy(h.read_file(dir .. "/" .. name .. "/samples.jsonl"))
    end
    -- The eclipse scenario really attacked: attackers reached the target
    -- (and were evicted: the property above held).
    local most = 0
    for line in io.lines(dir .. "/eclipse/samples.jsonl") do
      local s = cjson.decode(line)
      most = math.max(most, s.target_adversary or 0)
    end
    assert.truthy(most > 0, "no attacker ever reached the target")
  end)

  it("exits 1 when a property fails, naming it", function()
    local dir = h.tmpdir()
    finally(function() h.rmdir(dir) end)
    local sc = dir .. "/strict.lua"
    h.write_file(sc, [[return { name = "strict", nodes = 6, seeds = 1,
      seconds = 3, properties = { { metric = "deg_min", min = 1000 } } }]])
    local res = run_all({ "lua5.4 " .. ROOT .. "/scripts/luap2p sim " ..
      sc .. " --quiet --report " .. dir .. "/out" }, 60)
    assert.equal(1, res[1].code, res[1].text)
    assert.truthy(res[1].text:find("[FAILED] deg_min >= 1000", 1, true))
    assert.truthy(res[1].text:find("1 of 1 properties failed", 1, true))
  end)
  it("starts again on another port when its random one is in use",
    function()
    -- A stand-in coordinator: the first run meets a port in use.
    local ports, real = {}, package.loaded["luap2p.sim.coordinator"]
    package.loaded["luap2p.sim.coordinator"] = { run = function(opts)
      ports[#ports + 1] = opts.port
      local summary = { scenario = "s", honest = 2, bounds = { 1, 2 },
        converged_at = 1, last_join = 0, max_lag = 0,
        cost = { cpu_seconds = 0, cpu_share_per_node = 0,
                 rss_kb_per_node = 0 } }
      if #ports == 1 then
        summary.failure = "worker 1 cannot start node 1: EADDRINUSE"
      end
      return { summary = summary, properties = {}, report_dir = "x" }
    end }
    finally(function()
      package.loaded["luap2p.sim.coordinator"] = real
    end)
    local sim = require "luap2p.cli.sim"
    local stdout = io.stdout
    io.stdout = assert(io.open("/dev/null", "w"))
    finally(function() io.stdout:close(); io.stdout = stdout end)
    math.randomseed(7) -- two draws that differ, every time
    local ok, code = pcall(sim.run, { scenario = ROOT ..
      "/examples/sim/cold_start.lua", quiet = true })
    assert.is_true(ok, tostring(code))
    assert.equal(0, code)
    assert.equal(2, #ports)
    assert.are_not.equal(ports[1], ports[2])
    -- A port given on the command line is used once, as given.
    ports = {}
    ok = pcall(sim.run, { scenario = ROOT .. "/examples/sim/cold_start.lua",
      quiet = true, port = 20001 })
    assert.is_false(ok)
    assert.same({ 20001 }, ports)
  end)
end)
