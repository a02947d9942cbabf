-- Policy hooks with real nodes on 127.0.0.1: each hook changes behaviour
-- as documented (README, hook table), a failing hook gets its safe
-- default and the node keeps serving, and the default answerer answers
-- as Octez does (p2p_protocol.ml).
local p2p = require "luap2p"
local h = require "helper"
local socket = require "socket"
local cjson = require "cjson"

local node = h.quiet

-- Connect a to b and wait until both sides run the connection.
local function link(a, b)
  local before_a, before_b = h.nconns(a), h.nconns(b)
  assert(a:connect(b.addr))
  h.wait(function()
    return h.nconns(a) == before_a + 1 and h.nconns(b) == before_b + 1
  end, 5, "connection " .. a.addr .. " -> " .. b.addr)
  return a:connection(b.peer_id), b:connection(a.peer_id)
end

-- A non-blocking luasocket client bound to `from`, connecting to port.
local function raw_client(from, port)
  local s = socket.tcp()
  if from then assert(s:bind(from, 0)) end
  s:settimeout(0)
  s:connect("127.0.0.1", port)
  return s
end

-- Read what a raw socket gets, driving the loop, until it is closed or
-- `want` bytes arrived or `timeout` passed. Returns data, closed.
local function drain(s, want, timeout)
  local buf, closed = {}, false
  local got = 0
  -- The socket is outside the loop: a ticking timer keeps it polling.
  local tick = p2p.every(0.005, function() end)
  p2p.wait(function()
    local data, err, partial = s:receive(want and (want - got) or 4096)
    local chunk = data or partial
    if chunk and #chunk > 0 then
      buf[#buf + 1] = chunk
      got = got + #chunk
    end
    if err == "closed" then closed = true end
    return closed or (want and got >= want)
  end, timeout or 3)
  tick:stop()
  return table.concat(buf), closed
end

describe("policy hooks", function()
  local keep = h.keeper(before_each, after_each)

  it("accept(node, point) refusing 127.0.0.2 closes it before any byte",
    function()
    local calls = {}
    local srv = keep(node{ policies = { {
      name = "deny2",
      accept = function(n, point)
        calls[#calls + 1] = point
        if point:match("^127%.0%.0%.2:") then return false, "no .2 here" end
      end,
    } } })
    local rec = h.record(srv)
    local bad = raw_client("127.0.0.2", srv.port)
    h.wait(function() return #rec.refused == 1 end, 5, "refused event")
    assert.matches("^127%.0%.0%.2:%d+$", rec.refused[1].point)
    assert.equal("no .2 here", rec.refused[1].reason)
    assert.equal("EREFUSED", rec.refused[1].code)
    assert.equal(0, #rec.accepted)
    local data, closed = drain(bad, nil, 3)
    assert.is_true(closed)
    assert.equal("", data) -- not one byte of the connection message
    bad:close()
    -- 127.0.0.1 passes the same hook and, once it said its connection
    -- message (the connecting side speaks first), gets the node's.
    local good = raw_client(nil, srv.port)
    h.wait(function() return #rec.accepted == 1 end, 5, "accepted event")
    local hs = p2p.core.handshake{ identity = p2p.core.identity_generate(),
                               incoming = false, pow_bits = 0 }
    good:settimeout(2)
    assert(good:send(hs:output()))
    good:settimeout(0)
    local hello = drain(good, 2, 3)
    assert.equal(2, #hello)
    hs:close()
    assert.is_true((hello:byte(1) << 8 | hello:byte(2)) > 0)
    good:close()
    assert.equal(2, #calls)
    assert.matches("^127%.0%.0%.2:", calls[1])
    assert.matches("^127%.0%.0%.1:", calls[2])
  end)

  it("authenticated(node, info) Nacks with motive 1 and two points, " ..
     "seen by the connecting side", function()
    local seen
    local srv = keep(node{ policies = { {
      name = "nacker",
      authenticated = function(n, info)
        seen = info
        return "nack", 1, { "10.0.0.1:1001", "[2001:db8::1]:1002" }
      end,
    } } })
    local cli = keep(node{})
    local rs, rc = h.record(srv), h.record(cli)
    assert(cli:connect(srv.addr))
    h.wait(function() return #rc.nacked == 1 end, 5, "nacked")
    assert.equal(1, rc.nacked[1].motive)
    assert.same({ "10.0.0.1:1001", "[2001:db8::1]:1002" },
      rc.nacked[1].points)
    assert.equal(srv.peer_id, rc.nacked[1].peer_id)
    assert.equal(1, #rs.nack_sent)
    assert.equal(1, rs.nack_sent[1].motive)
    h.wait(function() return #rc.disconnected == 1 end, 5, "disconnected")
    assert.equal("ENACK", rc.disconnected[1].code)
    assert.equal(0, h.nconns(srv))
    -- The info table of the hook describes the remote.
    assert.equal(cli.peer_id, seen.peer_id)
    assert.is_true(seen.incoming)
    assert.equal("incoming", seen.direction)
    assert.equal(cli.addr, seen.point)
    assert.equal("TEZOS_MAINNET", seen.chain)
    assert.equal(1, seen.p2p_version)
    assert.is_false(seen.private_node)
    assert.is_nil(seen.refusal)
    -- The connecting side learnt the two points (discovery is on).
    assert.truthy(cli.points["10.0.0.1:1001"])
    assert.truthy(cli.points["[2001:db8::1]:1002"])
  end)

  it("authenticated 'close' closes with the reason; 'ack' cannot override " ..
     "a hard refusal", function()
    local srv = keep(node{ policies = { {
      name = "closer",
      authenticated = function(n, info)
        if info.peer_id == n.state.victim then return "close", "not you" end
        return "ack"
      end,
    } } })
    local c1, c2 = keep(node{}, node{})
    srv.state.victim = c1.peer_id
    local rs = h.record(srv)
    local r1 = h.record(c1)
    assert(c1:connect(srv.addr))
    h.wait(function() return #rs.disconnected == 1 end, 5, "closed")
    assert.equal("not you", rs.disconnected[1].reason)
    h.wait(function() return #r1.disconnected == 1 end, 5, "client sees it")
    assert.equal(0, #r1.connected)
    -- c2 is acked once; a second connection from the same peer is a hard
    -- refusal (already connected) that "ack" cannot turn into a success.
    link(c2, srv)
    local second = keep(p2p.new{ identity = c2.identity, pow_bits = 0,
                                 default_policies = false })
    local r2 = h.record(second)
    assert(second:connect(srv.addr))
    h.wait(function() return #r2.disconnected == 1 end, 5, "refused")
    assert.equal(0, #r2.connected)
    assert.equal(5, r2.nacked[1].motive) -- Already_connected
    assert.equal(1, h.nconns(srv))
  end)

  it("connect(node, point, opts) refuses an outgoing dial", function()
    local srv = keep(node{})
    local cli = keep(node{ policies = { {
      name = "no_dial",
      connect = function(n, point, opts)
        if not (opts and opts.trusted) then return false, "dialing off" end
      end,
    } } })
    local rc = h.record(cli)
    local id, err, code = cli:connect(srv.addr)
    assert.is_nil(id)
    assert.equal("EREFUSED", code)
    assert.matches("dialing off", err)
    assert.equal(0, #rc.connecting)
    assert(cli:connect(srv.addr, { trusted = true }))
    h.wait(function() return h.nconns(cli) == 1 end, 5, "trusted dial")
  end)

  it("message(node, conn, payload, tag) consumes with true, else the " ..
     "application gets it", function()
    local hooked = {}
    local srv = keep(node{ policies = { {
      name = "tap",
      message = function(n, conn, payload, tag)
        hooked[#hooked + 1] = { payload, tag, conn.peer_id }
        if payload:sub(1, 4) == "eat:" then return true end
      end,
    } } })
    local cli = keep(node{})
    local app = {}
    srv:on("message", function(ev)
      app[#app + 1] = ev.payload
    end)
    local c = link(cli, srv)
    assert(c:send("eat:1"))
    assert(c:send("keep:2", 0x20))
    assert(c:send("eat:3"))
    h.wait(function() return #hooked == 3 end, 5, "three messages")
    h.wait(function() return #app == 1 end, 5, "app message")
    assert.same({ "keep:2" }, app)
    assert.same({ "eat:1", p2p.APP_TAG, cli.peer_id }, hooked[1])
    assert.same({ "keep:2", 0x20, cli.peer_id }, hooked[2])
  end)

  it("event(node, ev) and disconnect(node, conn, ev) are called for " ..
     "every policy", function()
    local evs, discs = {}, {}
    local function recorder(name)
      return {
        name = name,
        event = function(n, ev) evs[#evs + 1] = name .. ":" .. ev.type end,
        disconnect = function(n, conn, ev)
          discs[#discs + 1] = { name, conn.peer_id, ev.reason }
        end,
      }
    end
    local srv = keep(node{ policies = { recorder("one"), recorder("two") } })
    local cli = keep(node{})
    link(cli, srv)
    cli:connection(srv.peer_id):close("bye now")
    h.wait(function() return #discs == 2 end, 5, "disconnect hooks")
    assert.same({ "one", cli.peer_id, "disconnected by peer" }, discs[1])
    assert.equal("two", discs[2][1])
    local order = table.concat(evs, " ")
    assert.matches("one:accepted two:accepted", order, 1, true)
    assert.matches("one:connected two:connected", order, 1, true)
    assert.matches("one:disconnected two:disconnected", order, 1, true)
  end)

  it("a custom answerer replies to Bootstrap", function()
    local srv = keep(node{ policies = { {
      name = "custom_answerer",
      bootstrap = function(n, conn)
        n.state.boots = (n.state.boots or 0) + 1
        conn:send_msg({ type = "advertise",
                        points = { "10.1.1.1:1111", "10.2.2.2:2222" } })
        return true
      end,
    } } })
    local adverts = {}
    local cli = keep(node{ policies = { {
      name = "advert_tap",
      advertise = function(n, conn, points)
        adverts[#adverts + 1] = { conn.peer_id, points }
        -- nil: no opinion, the default answerer registers them too
      end,
    } } })
    local c = link(cli, srv)
    assert(c:send_msg({ type = "bootstrap" }))
    h.wait(function() return #adverts == 1 end, 5, "advertise")
    assert.equal(srv.peer_id, adverts[1][1])
    assert.same({ "10.1.1.1:1111", "10.2.2.2:2222" }, adverts[1][2])
    assert.equal(1, srv.state.boots)
    assert.truthy(cli.points["10.1.1.1:1111"])
    assert.truthy(cli.points["10.2.2.2:2222"])
  end)

  it("swap_request / swap_ack hooks get the point and the raw peer id",
    function()
    local got = {}
    local srv = keep(node{ policies = { {
      name = "swap_tap",
      swap_request = function(n, conn, point, peer_id)
        got[#got + 1] = { "request", point, peer_id }
        return true
      end,
      swap_ack = function(n, conn, point, peer_id)
        got[#got + 1] = { "ack", point, peer_id }
        return true
      end,
    } } })
    local cli = keep(node{})
    local c = link(cli, srv)
    local raw = assert(p2p.core.peer_id_decode(cli.peer_id))
    assert(c:send_msg({ type = "swap_request", point = "10.9.9.9:99",
                        peer_id = raw }))
    assert(c:send_msg({ type = "swap_ack", point = "10.8.8.8:88",
                        peer_id = raw }))
    h.wait(function() return #got == 2 end, 5, "swap hooks")
    assert.same({ "request", "10.9.9.9:99", raw }, got[1])
    assert.same({ "ack", "10.8.8.8:88", raw }, got[2])
    assert.equal(16, #got[1][3])
  end)
end)

describe("failing hooks", function()
  local keep = h.keeper(before_each, after_each)

  -- A server whose policy `bad` behaves well until mode is set.
  local function server(hooks, cfg)
    local mode = { on = false }
    local pol = { name = "bad" }
    for k, fn in pairs(hooks) do
      pol[k] = function(...)
        if mode.on then return fn(...) end
      end
    end
    local c = { policies = { pol }, hook_budget = 200000 }
    for k, v in pairs(cfg or {}) do c[k] = v end
    return keep(node(c)), mode
  end

  local function echo_works(srv, cli)
    local conn = cli:connection(srv.peer_id)
    local got
    conn:on("message", function(ev) got = ev.payload end)
    srv:connection(cli.peer_id):send("still here")
    h.wait(function() return got == "still here" end, 5, "message")
  end

  it("accept that throws refuses (fail closed), reports, keeps serving",
    function()
    local srv, mode = server{ accept = function() error("boom") end }
    local rec = h.record(srv)
    local c1, c2 = keep(node{}, node{})
    link(c1, srv)
    mode.on = true
    local r2 = h.record(c2)
    assert(c2:connect(srv.addr))
    h.wait(function() return #rec.refused == 1 end, 5, "refused")
    h.wait(function() return #r2.disconnected == 1 end, 5, "c2 dropped")
    assert.equal(1, #rec.policy_error)
    local pe = rec.policy_error[1]
    assert.equal("bad", pe.policy)
    assert.equal("accept", pe.hook)
    assert.matches("boom", pe.message)
    echo_works(srv, c1)
  end)

  it("accept that loops forever is cut by the budget and refuses",
    function()
    local srv, mode = server{ accept = function() while true do end end }
    local rec = h.record(srv)
    mode.on = true
    local cli = keep(node{})
    local t0 = p2p.now()
    assert(cli:connect(srv.addr))
    h.wait(function() return #rec.refused == 1 end, 5, "refused")
    assert.is_true(p2p.now() - t0 < 3)
    assert.matches("instruction budget exceeded", rec.policy_error[1].message)
    assert.equal("accept", rec.policy_error[1].hook)
  end)

  it("authenticated that errors or loops closes the connection", function()
    for _, body in ipairs{ function() error("auth boom") end,
                           function() while true do end end } do
      local srv, mode = server{ authenticated = body }
      local rec = h.record(srv)
      mode.on = true
      local cli = keep(node{})
      local rc = h.record(cli)
      assert(cli:connect(srv.addr))
      h.wait(function() return #rc.disconnected == 1 end, 5, "closed")
      assert.equal(0, #rc.connected)
      assert.equal(0, #rec.connected)
      assert.equal("authenticated", rec.policy_error[1].hook)
      assert.equal("policy error", rec.disconnected[1].reason)
    end
  end)

  it("answerer hooks that fail are ignored and the node keeps serving",
    function()
    local srv, mode = server{
      bootstrap = function() error("no bootstrap today") end,
      advertise = function() while true do end end,
      message = function() error("message boom") end,
    }
    local rec = h.record(srv)
    local cli = keep(node{})
    link(cli, srv)
    mode.on = true
    local app = {}
    srv:on("message", function(ev) app[#app + 1] = ev.payload end)
    local c = cli:connection(srv.peer_id)
    assert(c:send_msg({ type = "bootstrap" }))
    assert(c:send_msg({ type = "advertise", points = { "10.3.3.3:3" } }))
    assert(c:send("not lost"))
    h.wait(function() return #app == 1 end, 5, "message delivered")
    -- a failing message hook is "no opinion": the app still gets it
    assert.same({ "not lost" }, app)
    assert.equal(3, #rec.policy_error)
    local hooks = {}
    for i, pe in ipairs(rec.policy_error) do hooks[i] = pe.hook end
    assert.same({ "bootstrap", "advertise", "message" }, hooks)
    -- a failing answerer hook is ignored: no other policy acts on it
    assert.is_nil(srv.points["10.3.3.3:3"])
    assert.equal(1, h.nconns(srv))
    echo_works(srv, cli)
  end)

  it("an event hook that fails does not stop the other policies", function()
    local seen = {}
    local srv = keep(node{ policies = {
      { name = "broken", event = function(n, ev)
        if ev.type ~= "policy_error" then error("event boom") end
      end },
      { name = "fine", event = function(n, ev) seen[#seen + 1] = ev.type end },
    } })
    local rec = h.record(srv)
    local cli = keep(node{})
    link(cli, srv)
    assert.truthy(#rec.policy_error >= 2)
    assert.equal("event", rec.policy_error[1].hook)
    local s = table.concat(seen, " ")
    assert.matches("accepted", s)
    assert.matches("connected", s)
    -- policy_error events reach "fine" too, without a loop
    assert.matches("policy_error", s)
  end)
end)

describe("default answerer (Octez p2p_protocol.ml)", function()
  local keep = h.keeper(before_each, after_each)

  it("registers a refused newcomer's listening point and names it in " ..
     "the next Nack (Octez p2p_connect_handler.ml, authenticate)",
    function()
    -- max_connections 1 admits one or two (Octez allows one more at
    -- random); newcomers are dialled until one is Nacked.
    local full = keep(node{ max_connections = 1 })
    local rf = h.record(full)
    local function nacked_newcomer()
      for _ = 1, 3 do
        local n = keep(node())
        local rn = h.record(n)
        local acked = #rf.connected
        assert(n:connect(full.addr))
        h.wait(function()
          return #rf.connected > acked or #rn.nacked > 0
        end, 5, "an answer")
        if #rn.nacked > 0 then return n, rn.nacked[1] end
      end
    end
    local refused = nacked_newcomer()
    assert.truthy(refused, "a newcomer was Nacked")
    local rec = full.points[refused.addr]
    assert.truthy(rec, "the refused point is known")
    assert.equal(false, rec.private)
    local _, nack = nacked_newcomer()
    local named = {}
    for _, p in ipairs(nack.points or {}) do named[p] = true end
    assert.truthy(named[refused.addr])
  end)

  -- A node recording the Advertise messages it receives (before the
  -- default policies, returning nil so they still run).
  local function tapped(cfg)
    local adverts = {}
    local c = cfg or {}
    c.policies = { {
      name = "advert_tap",
      advertise = function(n, conn, points)
        adverts[#adverts + 1] = { from = conn.peer_id, points = points }
      end,
    } }
    return keep(node(c)), adverts
  end

  it("answers Bootstrap with known public points only: not private, " ..
     "not banned, not the asker's own", function()
    local seed = keep(node{})
    local p1, p2 = keep(node{}, node{})
    local priv = keep(node{ private_mode = true, trusted = {} })
    priv:trust(seed.addr)
    link(p1, seed)
    link(p2, seed)
    link(priv, seed)
    assert.is_true(seed.points[priv.addr].private)
    assert.is_false(seed.points[p1.addr].private)
    -- an Advertise-only point is not known to be public: never advertised
    seed:point("10.7.7.7:7")
    -- p2's point gets banned (this also drops its connection)
    assert(seed:ban(p2.addr, 3600))
    h.wait(function() return h.nconns(seed) == 2 end, 5, "p2 dropped")
    local asker, adverts = tapped{}
    local c = link(asker, seed)
    assert(c:send_msg({ type = "bootstrap" }))
    h.wait(function() return #adverts == 1 end, 5, "advertise")
    assert.same({ p1.addr }, adverts[1].points)
    assert.equal(seed.peer_id, adverts[1].from)
    -- the asker registered it
    assert.truthy(asker.points[p1.addr])
  end)

  it("does not answer a private node, nor in private mode, nor with " ..
     "discovery disabled", function()
    local seed = keep(node{})
    local p1 = keep(node{})
    link(p1, seed)
    -- a private asker (the tap sits before private_mode, which then
    -- swallows the message)
    local priv, padverts = tapped{ private_mode = true }
    priv:trust(seed.addr)
    local c = link(priv, seed)
    assert(c:send_msg({ type = "bootstrap" }))
    -- private-mode and discovery-disabled seeds, asked by a public node
    local pseed = keep(node{ private_mode = true })
    local dseed = keep(node{ disable_peer_discovery = true })
    local asker, adverts = tapped{}
    pseed:trust(asker.addr)
    link(p1, dseed)
    link(asker, pseed)
    link(asker, dseed)
    -- pseed knows p1 too, through a trusted connection
    pseed:trust(p1.addr)
    link(pseed, p1)
    for _, s in ipairs{ pseed, dseed } do
      assert(asker:connection(s.peer_id):send_msg({ type = "bootstrap" }))
    end
    -- control: the public seed does answer the same asker
    link(asker, seed)
    assert(asker:connection(seed.peer_id):send_msg({ type = "bootstrap" }))
    h.wait(function() return #adverts >= 1 end, 5, "control advertise")
    h.sleep(0.3)
    assert.equal(1, #adverts)
    assert.equal(seed.peer_id, adverts[1].from)
    assert.equal(0, #padverts)
  end)

  it("registers the points of a Nack under the same known_points_max cap",
    function()
    local full = keep(node{ max_connections = 0,
                            too_many_rule = "threshold" })
    for i = 1, 60 do
      local rec = full:point("10.3.0." .. i .. ":1")
      rec.private = false -- public: full may send them in its Nacks
    end
    local cli = keep(node{ known_points_max = 20 })
    local ev = h.record(cli)
    assert(cli:connect(full.addr))
    h.wait(function() return #ev.nacked == 1 end, 5, "nack")
    assert.equal(50, #ev.nacked[1].points)
    -- full's own point (dialled) plus Nack points, never over the cap
    assert.is_true(cli:known_count() <= 20, cli:known_count() .. " known")
    assert.is_true(cli:known_count() >= 15)
  end)

  it("registers advertised points, not ours, capped by known_points_max " ..
     "(forgetting disconnected untrusted points, oldest miss first)",
    function()
    local srv = keep(node{ known_points_max = 8 })
    local cli = keep(node{})
    local c = link(cli, srv)
    -- srv knows: cli's point (running), a trusted point, 3 failed points
    srv:trust("10.0.0.100:1")
    local t = p2p.now()
    for i = 1, 3 do
      local rec = srv:point("10.0.1." .. i .. ":1")
      rec.last_failed = t - 100 * i -- .3 is the oldest miss
    end
    assert.equal(5, srv:stat().known_points)
    local pts = { srv.addr } -- srv's own point: skipped
    for i = 1, 6 do pts[#pts + 1] = "10.0.2." .. i .. ":2" end
    assert(c:send_msg({ type = "advertise", points = pts }))
    h.wait(function() return srv.points["10.0.2.6:2"] end, 5, "registered")
    assert.is_nil(srv.points[srv.addr])
    local n = h.count(srv.points)
    assert.equal(n, srv:stat().known_points)
    assert.truthy(n <= 8)
    -- kept: the running point, the trusted one, every advertised one
    assert.truthy(srv.points[cli.addr])
    assert.truthy(srv.points["10.0.0.100:1"])
    -- forgotten first: the oldest misses
    assert.is_nil(srv.points["10.0.1.3:1"])
    assert.is_nil(srv.points["10.0.1.2:1"])
  end)

  it("Swap_request: Swap_ack with another peer, dial, drop that peer; " ..
     "the requester swaps too; swap_linger ignores the next", function()
    local cfg = { swap_linger = 30 }
    local a, b, c, d = keep(node(cfg), node(cfg), node(cfg), node(cfg))
    link(a, b)
    link(a, c)
    link(b, d)
    -- b proposes d to a, as its maintenance would (node.state.swap).
    local b_to_a = b:connection(a.peer_id)
    b.state.swap = { sent = {}, pending = {}, latest_accepted = -math.huge,
                     latest_successful = -math.huge }
    b.state.swap.sent[b_to_a.id] = { time = p2p.now(), peer_id = d.peer_id }
    local ra = h.record(a)
    assert(b_to_a:send_msg({ type = "swap_request", point = d.addr,
      peer_id = assert(p2p.core.peer_id_decode(d.peer_id)) }))
    h.wait(function()
      return a:connection(d.peer_id) and not a:connection(c.peer_id) and
        b:connection(c.peer_id) and not b:connection(d.peer_id)
    end, 5, "swap done")
    assert.truthy(a:connection(b.peer_id))
    assert.equal("swapped", ra.disconnected[1].reason)
    -- within swap_linger: a ignores the next request (sent on a fresh
    -- connection, so the per-connection spacing does not hide it)
    local e, f = keep(node(cfg), node(cfg))
    link(e, a)
    link(e, f)
    local before = h.count(a.conns)
    assert(e:connection(a.peer_id):send_msg({ type = "swap_request",
      point = f.addr, peer_id = assert(p2p.core.peer_id_decode(f.peer_id)) }))
    h.sleep(0.3)
    assert.is_nil(a:connection(f.peer_id))
    assert.equal(before, h.count(a.conns))
  end)
end)

describe("log policy", function()
  local function lines_of(path)
    local out = {}
    for line in (h.read_file(path) or ""):gmatch("[^\n]+") do
      out[#out + 1] = line
    end
    return out
  end

  -- Two nodes talk, the server logging to a file; returns its lines.
  local function session(cfg)
    local dir = h.tmpdir()
    local path = dir .. "/log"
    local f = assert(io.open(path, "w"))
    cfg.log_file = f
    local srv = node(cfg)
    local cli = node{}
    assert(cli:connect(srv.addr))
    h.wait(function() return h.nconns(srv) == 1 and h.nconns(cli) == 1 end,
      5, "connected")
    cli:connection(srv.peer_id):close("bye")
    h.wait(function() return h.nconns(srv) == 0 end, 5, "closed")
    local out = lines_of(path)
    h.close(srv, cli)
    f:close()
    h.rmdir(dir)
    return out, cli
  end

  it("json: one object per event, ts and type first, info level", function()
    local lines, cli = session{ log = "json" }
    local types = {}
    for _, line in ipairs(lines) do
      assert.matches('^{"ts":%d+,"type":"[%w_]+","level":"%a+"', line)
      local ev = cjson.decode(line)
      types[#types + 1] = ev.type
      assert.not_equal("debug", ev.level)
      if ev.type == "connected" then
        assert.equal(cli.peer_id, ev.peer_id)
        assert.equal(cli.addr, ev.point)
        assert.is_true(ev.incoming)
      end
    end
    assert.same({ "connected", "disconnected" }, types)
  end)

  it("human: timestamp, level, type, key=value; debug shows more",
    function()
    local lines = session{ log = "human", log_level = "debug" }
    local types = {}
    for _, line in ipairs(lines) do
      local ts, level, typ = line:match(
        "^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ) (%u+) +([%w_]+)")
      assert.truthy(ts, line)
      types[#types + 1] = typ
      if typ == "accepted" then assert.equal("DEBUG", level) end
      if typ == "disconnected" then
        assert.equal("INFO", level)
        assert.matches(' reason="disconnected by peer"', line)
      end
    end
    local all = table.concat(types, " ")
    assert.matches("accepted", all)
    assert.matches("authenticated", all)
    assert.matches("connected", all)
  end)

  it("error level keeps policy errors only, each on one line", function()
    local lines = session{ log = "json", log_level = "error",
      policies = { { name = "oops",
                     event = function(n, ev)
                       if ev.type == "connected" then error("multi\nline") end
                     end } } }
    assert.equal(1, #lines)
    local ev = cjson.decode(lines[1])
    assert.equal("policy_error", ev.type)
    assert.equal("error", ev.level)
    assert.equal("oops", ev.policy)
    assert.matches("multi\nline", ev.message)
  end)

  it("is silent when config.log is unset", function()
    local lines = session{}
    assert.same({}, lines)
  end)

  it("rejects a bad log setting at start (the config schema)", function()
    assert.has_error(function()
      p2p.new{ identity = h.identity(), pow_bits = 0, log = "xml" }
    end, "p2p.new: config.log: expected one of 'human', 'json', got \"xml\"")
  end)
end)

describe("examples/ban_policy.lua", function()
  it("bans a flooding peer and keeps the others", function()
    local dir = h.tmpdir()
    local srv = node{ policies = { "examples/ban_policy.lua" } }
    local good, bad = node{}, node{}
    local rec = h.record(srv)
    link(good, srv)
    link(bad, srv)
    local conn = bad:connection(srv.peer_id)
    for i = 1, 200 do conn:send("spam " .. i) end
    h.wait(function() return #rec.banned == 1 end, 5, "ban")
    assert.equal(bad.peer_id, rec.banned[1].target)
    h.wait(function() return h.nconns(srv) == 1 end, 5, "flooder dropped")
    assert.truthy(srv:connection(good.peer_id))
    assert.is_true(srv:banned(bad.peer_id))
    h.close(srv, good, bad)
    h.rmdir(dir)
  end)
end)
