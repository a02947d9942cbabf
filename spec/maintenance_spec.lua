-- luap2p.policies.maintenance: Octez bounds (docs/PROTOCOL.md §8,
-- p2p_maintenance.ml), reconnection back-off (p2p_point_state.ml,
-- point_reconnection_config.ml), and the maintenance end to end: a node
-- reaching its minimum through Bootstrap/Advertise from a seed, and a
-- node over its maximum dropping untrusted connections.
local p2p = require "luap2p"
local h = require "helper"

local M = require "luap2p.policies.maintenance"
local common = require "luap2p.policies.common"

local node = h.quiet

describe("maintenance bounds", function()
  it("10/50/100 gives 23/36/68/84 (docs/PROTOCOL.md §8)", function()
    assert.same({ min_threshold = 23, min_target = 36, max_target = 68,
                  max_threshold = 84 }, M._bounds(10, 50, 100))
  end)

  it("follows the Octez formula with integer division", function()
    -- Independent restatement: steps are floor((e - m) / 3) etc.
    for _, t in ipairs{ { 0, 0, 0 }, { 3, 4, 6 }, { 2, 20, 30 },
                        { 5, 5, 5 }, { 0, 50, 100 }, { 1, 2, 1000 } } do
      local min, exp, max = t[1], t[2], t[3]
      local sm = math.floor((exp - min) / 3)
      local sx = math.floor((max - exp) / 3)
      local b = M._bounds(min, exp, max)
      assert.equal(min + sm, b.min_threshold)
      assert.equal(min + 2 * sm, b.min_target)
      assert.equal(max - 2 * sx, b.max_target)
      assert.equal(max - sx, b.max_threshold)
      assert.truthy(b.min_threshold <= b.min_target)
      assert.truthy(b.min_target <= b.max_target)
      assert.truthy(b.max_target <= b.max_threshold)
    end
  end)
end)

describe("maintenance defaults", function()
  local keep = h.keeper(before_each, after_each)

  it("expected_connections defaults to Octez's 50 (p2p_limits.ml), so " ..
     "the default bounds are 23/36/68/84", function()
    local n = keep(p2p.new{ identity = h.identity(), pow_bits = 0,
                            maintenance_interval = 0 })
    assert.equal(10, n.config.min_connections)
    assert.equal(50, n.config.expected_connections)
    assert.equal(100, n.config.max_connections)
    local c = n.config
    assert.same({ min_threshold = 23, min_target = 36, max_target = 68,
                  max_threshold = 84 },
      M._bounds(c.min_connections, c.expected_connections, c.max_connections))
    -- random_extra is the default rule: no fixed threshold in the core.
    assert.equal("random_extra", c.too_many_rule)
    assert.is_nil(c.connections_threshold)
  end)

  it("brings the default expected_connections into [min, max]", function()
    local lo = keep(node{ min_connections = 3, max_connections = 7 })
    assert.equal(7, lo.config.expected_connections)
    local hi = keep(node{ min_connections = 60, max_connections = 90 })
    assert.equal(60, hi.config.expected_connections)
  end)

  it("too_many_rule = threshold refuses at the maintenance max_threshold " ..
     "(Octez >= v24.3), max_connections without maintenance", function()
    local t = keep(p2p.new{ identity = h.identity(), pow_bits = 0,
                            too_many_rule = "threshold" })
    assert.equal(84, t.config.connections_threshold)
    local off = keep(p2p.new{ identity = h.identity(), pow_bits = 0,
                              too_many_rule = "threshold",
                              maintenance_interval = 0 })
    assert.equal(100, off.config.connections_threshold)
    assert.has_error(function()
      p2p.new{ identity = h.identity(), too_many_rule = "sometimes" }
    end, "p2p.new: config.too_many_rule: expected one of 'random_extra', " ..
      "'threshold', got \"sometimes\"")
    -- 0/0/3 -> max_threshold 2: the third peer is Nacked, every time.
    local srv = keep(h.node{ min_connections = 0, expected_connections = 0,
                             max_connections = 3, swap_linger = 0,
                             too_many_rule = "threshold" })
    assert.equal(2, srv.config.connections_threshold)
    for _ = 1, 2 do
      local cli = keep(node{})
      assert(cli:connect(srv.addr))
    end
    h.wait(function() return h.nconns(srv) == 2 end, 5, "two in")
    local late = keep(node{})
    local ev = h.record(late)
    for i = 1, 6 do
      assert(late:connect(srv.addr))
      h.wait(function() return #ev.nacked == i end, 5, "nack " .. i)
      h.wait(function() return late:stat().pending_outgoing == 0 end, 5,
        "closed")
    end
    assert.equal(0, #ev.connected)
    assert.equal(1, ev.nacked[1].motive)
  end)
end)

describe("reconnection back-off", function()
  it("waits 1 s after a first failure, then x1.2 each time", function()
    local rec = { delay = 0 }
    local waits = {}
    for i = 1, 5 do
      common.failed(rec, 1000)
      waits[i] = rec.reconnect_at - 1000
    end
    local expect = { 1, 1.2, 1.44, 1.728, 2.0736 }
    for i = 1, 5 do assert.near(expect[i], waits[i], 1e-9) end
  end)

  it("is capped at 2 days", function()
    local rec = {}
    for _ = 1, 200 do common.failed(rec, 0) end
    assert.equal(172800, rec.delay)
    assert.equal(172800, rec.reconnect_at)
  end)

  it("waits 60 s after a normal disconnection and resets the delay",
    function()
    local rec = { delay = 50 }
    common.disconnected(rec, 10)
    assert.equal(70, rec.reconnect_at)
    common.failed(rec, 100)
    assert.equal(101, rec.reconnect_at)
  end)

  it("applies to real failed dials and disconnections", function()
    local a = node{ maintenance_interval = 3600, min_connections = 0,
                    expected_connections = 0, max_connections = 10 }
    local b = node{}
    -- a closed port: the dial fails
    local dead = h.node{ default_policies = false }
    local dead_addr = dead.addr
    h.close(dead)
    local ra = h.record(a)
    a:connect(dead_addr)
    h.wait(function() return #ra.disconnected == 1 end, 5, "failed dial")
    local rec = a.points[dead_addr]
    local t = p2p.now()
    assert.truthy(rec.reconnect_at > t and rec.reconnect_at <= t + 1)
    assert.near(1.2, rec.delay, 1e-9)
    -- a connection that ran, then ended: 60 s
    assert(a:connect(b.addr))
    h.wait(function() return h.nconns(a) == 1 end, 5, "connected")
    a:connection(b.peer_id):close("done")
    h.wait(function() return h.nconns(a) == 0 end, 5, "closed")
    local r2 = a.points[b.addr]
    assert.truthy(r2.reconnect_at > p2p.now() + 59)
    -- backed-off points are not candidates
    assert.same({}, M._connectable(a, 10))
    h.close(a, b)
  end)
end)

describe("maintenance end to end", function()
  local keep = h.keeper(before_each, after_each)

  it("a node with min_connections 3 reaches 3 connections via " ..
     "Bootstrap/Advertise from a seed (6 nodes)", function()
    -- the seed and four peers run no maintenance of their own
    local seed = keep(node{})
    local peers = { keep(node(), node(), node(), node()) }
    for _, p in ipairs(peers) do assert(p:connect(seed.addr)) end
    h.wait(function() return h.nconns(seed) == 4 end, 5, "peers on seed")
    local boots = 0
    local t = keep(node{ peers = { seed.addr }, min_connections = 3,
                         expected_connections = 4, max_connections = 6,
                         maintenance_interval = 0.2,
                         policies = { {
                           name = "count_advertise",
                           advertise = function() boots = boots + 1 end,
                         } } })
    local rt = h.record(t)
    h.wait(function() return h.nconns(t) >= 3 end, 10, "3 connections")
    -- it learnt the peers from the seed's Advertise, and dialed them
    assert.truthy(boots >= 1)
    local dialed = 0
    for _, ev in ipairs(rt.connecting) do
      if ev.point ~= seed.addr then dialed = dialed + 1 end
    end
    assert.truthy(dialed >= 2)
    for _, p in ipairs(peers) do assert.truthy(t.points[p.addr]) end
    -- never more than max_target (6 - 2 * 0)
    h.sleep(0.5)
    assert.truthy(h.nconns(t) <= 6)
    assert.equal(0, #rt.policy_error)
  end)

  it("asks its first peer for points at once when it started with none " ..
     "(a Bootstrap sent to nobody does not count)", function()
    local asked = 0
    local seed = keep(node{ policies = { {
      name = "count_bootstrap",
      bootstrap = function() asked = asked + 1 end,
    } } })
    local t = keep(node{ min_connections = 3, max_connections = 6,
                         maintenance_interval = 120 })
    -- Its first round at start (a 0 s timer) found nobody to ask.
    p2p.run_nowait()
    p2p.run_nowait()
    assert.equal(-math.huge, t.state.maintenance.bootstrap)
    -- A dial of its own (not the maintenance's): it is asked as soon as
    -- the connection runs, not at the next look (5 s later). The side
    -- that accepted runs first and may drop it at once when over its
    -- maximum.
    local rt = h.record(t)
    assert(t:connect(seed.addr))
    h.wait(function() return #rt.connected == 1 end, 5, "connected")
    p2p.run_nowait() -- the maintenance round it scheduled (a 0 s timer)
    p2p.run_nowait()
    assert.truthy(t.state.maintenance.bootstrap > -math.huge)
    h.wait(function() return asked >= 1 end, 5, "a Bootstrap")
  end)

  it("tells the peers it drops above max_threshold where else to go " ..
     "(an Advertise before the Disconnect)", function()
    -- min 0, expected 2, max 6: max_target 4, max_threshold 5
    local hub = keep(node{ min_connections = 0, expected_connections = 2,
                           max_connections = 6, maintenance_interval = 0.1 })
    local cls, rec = {}, {}
    for i = 1, 6 do
      cls[i] = keep(node())
      rec[i] = h.record(cls[i])
    end
    local rh = h.record(hub)
    for i = 1, 4 do assert(cls[i]:connect(hub.addr)) end
    h.wait(function() return #rh.connected == 4 end, 5, "four in")
    for i = 5, 6 do assert(cls[i]:connect(hub.addr)) end
    h.wait(function() return h.nconns(hub) == 4 end, 5, "trimmed")
    h.wait(function()
      local n = 0
      for i = 1, 6 do n = n + #rec[i].disconnected end
      return n == 2
    end, 5, "two told")
    local dropped = 0
    for i = 1, 6 do
      local d = rec[i].disconnected[1]
      if d and d.reason == "disconnected by peer" then
        dropped = dropped + 1
        assert.equal(1, #rec[i].advertise)
        -- it heard of the hub's other peers, never of itself
        local others = 0
        for j = 1, 6 do
          if j ~= i and cls[i].points[cls[j].addr] then
            others = others + 1
          end
        end
        assert.truthy(others >= 3)
        assert.is_nil(cls[i].points[cls[i].addr])
      end
    end
    assert.equal(2, dropped)
  end)

  it("drops connections above max_threshold down to max_target, " ..
     "never a trusted one", function()
    -- min 0, expected 2, max 6: max_target 4, max_threshold 5
    local hub = keep(node{ min_connections = 0, expected_connections = 2,
                           max_connections = 6, maintenance_interval = 0.1 })
    local b = M._bounds(0, 2, 6)
    assert.equal(4, b.max_target)
    assert.equal(5, b.max_threshold)
    local cls = {}
    for i = 1, 6 do cls[i] = keep(node()) end
    hub:trust(cls[1].peer_id)
    hub:trust(cls[2].addr)
    local rh = h.record(hub)
    for _, c in ipairs(cls) do assert(c:connect(hub.addr)) end
    h.wait(function() return #rh.connected == 6 end, 5, "six in")
    h.wait(function() return h.nconns(hub) == 4 end, 5, "trimmed")
    h.sleep(0.3)
    assert.equal(4, h.nconns(hub))
    assert.truthy(hub:connection(cls[1].peer_id))
    assert.truthy(hub:connection(cls[2].peer_id))
    local drops = 0
    for _, ev in ipairs(rh.disconnected) do
      if ev.reason == "too many connections" then drops = drops + 1 end
    end
    assert.equal(2, drops)
  end)

  it("above max_threshold closes the newcomers of a crowded /24, not " ..
     "its earlier peers (redialling attackers cannot take their slots)",
    function()
    -- min 0, expected 2, max 6: max_target 4, max_threshold 5
    local hub = keep(node{ listen = "127.31.0.1:0", min_connections = 0,
                           expected_connections = 2, max_connections = 6,
                           maintenance_interval = 0.1 })
    local hub_addr = "127.31.0.1:" .. hub.port
    local function from(ip)
      return keep(node{ listen = ip .. ":0", bind_address = ip })
    end
    local honest, attackers = {}, {}
    for i = 1, 4 do honest[i] = from("127.32." .. i .. ".1") end
    for i = 1, 4 do attackers[i] = from("127.66.6." .. i) end
    local rh = h.record(hub)
    for _, c in ipairs(honest) do assert(c:connect(hub_addr)) end
    h.wait(function() return #rh.connected == 4 end, 5, "honest in")
    for _, c in ipairs(attackers) do assert(c:connect(hub_addr)) end
    h.wait(function() return #rh.disconnected >= 2 end, 5, "trimmed")
    h.wait(function() return h.nconns(hub) <= 4 end, 5, "down to 4")
    for _, c in ipairs(honest) do
      assert.truthy(hub:connection(c.peer_id), "an honest peer was closed")
    end
    for _, ev in ipairs(rh.disconnected) do
      assert.equal("127.66.6", M._prefix(ev.conn and
        ev.conn.addr or ev.point))
    end
  end)

  it("eviction order: the largest prefix's newest first, the older half " ..
     "kept, then the newest of that half", function()
    local function c(id, prefix, since)
      return { conn = { id = id }, prefix = prefix, since = since }
    end
    local function ids(list)
      local out = {}
      for i, v in ipairs(list) do out[i] = v.id end
      return out
    end
    local cands = {}
    for i = 1, 8 do cands[#cands + 1] = c(i, "10.0." .. i, i) end
    for i = 9, 13 do cands[#cands + 1] = c(i, "66.6.6", 100 + i) end
    assert.same({ 13, 12, 11 }, ids(M._victims(cands, 3)))
    -- Spread over many prefixes: the newest.
    cands = {}
    for i = 1, 8 do cands[#cands + 1] = c(i, "10.0." .. i, i) end
    for i = 9, 13 do cands[#cands + 1] = c(i, "66." .. i, 100 + i) end
    assert.same({ 13, 12, 11 }, ids(M._victims(cands, 3)))
    -- More than the unprotected half: then the newest protected ones.
    cands = {}
    for i = 1, 4 do cands[#cands + 1] = c(i, "10.0." .. i, i) end
    assert.same({ 4, 3, 2 }, ids(M._victims(cands, 3)))
  end)

  it("network prefixes: /24 for IPv4, /64 for IPv6", function()
    assert.equal("127.1.2", M._prefix("127.1.2.3:9732"))
    assert.equal("2001:db8:0:0", M._prefix("[2001:db8::1]:9732"))
    assert.equal("2001:db8:1:2", M._prefix("[2001:DB8:1:2:3:4:5:6]:1"))
    assert.equal("0:0:0:0", M._prefix("[::1]:1"))
  end)

  it("dials never-failed points first, then the oldest miss; skips " ..
     "banned, ours and backed-off points", function()
    local n = keep(node{})
    local t = p2p.now()
    n:point("10.0.0.1:1").last_failed = t - 10
    n:point("10.0.0.2:1").last_failed = t - 30
    n:point("10.0.0.3:1") -- never failed
    n:point("10.0.0.4:1").ours = true
    n:point("10.0.0.5:1").reconnect_at = t + 100
    n:point("10.0.0.6:1")
    assert(n:ban("10.0.0.6", 100))
    assert.same({ "10.0.0.3:1", "10.0.0.2:1", "10.0.0.1:1" },
      M._connectable(n, 10))
    assert.same({ "10.0.0.3:1", "10.0.0.2:1" }, M._connectable(n, 2))
  end)

  it("sends one Swap_request in band (a receiver with a Swap tap)",
    function()
    local got = {}
    local function tapped()
      return node{ policies = { {
        name = "swap_tap",
        swap_request = function(n, conn, point, peer_id)
          got[#got + 1] = { n.peer_id, point, peer_id }
          return true
        end,
      } } }
    end
    local r1, r2 = keep(tapped(), tapped())
    -- min 0 expected 0 max 10: in band with 2 connections
    local s = keep(node{ min_connections = 0, expected_connections = 0,
                         max_connections = 10, maintenance_interval = 0.1,
                         swap_linger = 30 })
    assert(r1:connect(s.addr))
    assert(r2:connect(s.addr))
    h.wait(function() return #got >= 1 end, 5, "swap request")
    local to, point, pid = got[1][1], got[1][2], got[1][3]
    -- it proposes the other peer, by its point and raw peer id
    local other = to == r1.peer_id and r2 or r1
    assert.equal(other.addr, point)
    assert.equal(p2p.core.peer_id_decode(other.peer_id), pid)
    assert.truthy(s.state.swap.sent[s:connection(to).id])
  end)

  it("is off with maintenance_interval = 0", function()
    local seed = keep(node{})
    local t = keep(node{ peers = { seed.addr }, min_connections = 3,
                         expected_connections = 4, max_connections = 6,
                         maintenance_interval = 0 })
    local rs = h.record(seed)
    local other = keep(node{})
    assert(other:connect(seed.addr))
    h.wait(function() return h.nconns(seed) == 2 end, 5, "connected")
    h.sleep(0.3)
    assert.equal(1, h.nconns(t))
    assert.equal(0, #rs.policy_error)
  end)
end)
