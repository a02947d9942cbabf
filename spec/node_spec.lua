-- The connect handler over real sockets on the loopback: connect,
-- authenticate, exchange, limits, bans, timeouts, backpressure, cleanup.
local p2p = require "luap2p"
local h = require "helper"
local core = p2p.core

-- Bare nodes: the C handler and the Octez fallbacks, no default policies,
-- so each limit is seen on its own.
local function bare(cfg)
  cfg = cfg or {}
  cfg.default_policies = false
  return h.node(cfg)
end

local function connect_pair(a, b)
  assert(b:connect(a.addr))
  h.wait(function() return h.nconns(a) >= 1 and h.nconns(b) >= 1 end, 5,
    "connection")
  return a:connections()[1], b:connections()[1]
end

local SIZES = { 0, 1, 65517, 65518, 5 * 1024 * 1024 }

describe("node", function()
  local keep = h.keeper(before_each, after_each)
  local function mk(cfg) return keep(bare(cfg)) end

  it("connects two nodes, exchanges messages both ways and disconnects",
    function()
    local a, b = mk(), mk()
    local ca, cb = connect_pair(a, b)
    assert.equal(b.peer_id, ca.peer_id)
    assert.equal(a.peer_id, cb.peer_id)
    assert.equal("incoming", ca.direction)
    assert.equal("outgoing", cb.direction)
    assert.equal(a.addr, cb.point)
    -- The incoming side learns the remote's listening point from its
    -- connection message.
    assert.equal(b.addr, ca.point)
    local got_a, got_b = {}, {}
    ca:on("message", function(ev) got_a[#got_a + 1] = ev.payload end)
    cb:on("message", function(ev) got_b[#got_b + 1] = ev.payload end)
    for i, n in ipairs(SIZES) do
      assert.is_true(cb:send(string.rep(string.char(64 + i), n)))
      assert.is_true(ca:send(string.rep(string.char(96 + i), n), 0x20))
    end
    h.wait(function() return #got_a == #SIZES and #got_b == #SIZES end, 10,
      "messages")
    for i, n in ipairs(SIZES) do
      assert.equal(string.rep(string.char(64 + i), n), got_a[i])
      assert.equal(string.rep(string.char(96 + i), n), got_b[i])
    end
    local total = 0
    for _, n in ipairs(SIZES) do total = total + n end
    local sa, sb = ca:stat(), cb:stat()
    assert.equal(#SIZES, sa.msgs_in)
    assert.equal(#SIZES, sb.msgs_out)
    -- Wire bytes: payload + 6-byte envelope + 18 bytes per chunk, at least.
    assert.is_true(sb.bytes_out >= total + 6 * #SIZES)
    assert.is_true(sa.bytes_in >= total + 6 * #SIZES)
    local closed
    ca:on("close", function(ev) closed = ev.reason end)
    cb:close("done")
    h.wait(function() return closed ~= nil and h.nconns(b) == 0 end, 5,
      "disconnection")
    assert.equal("disconnected by peer", closed)
    assert.equal(0, a:stat().active)
    assert.equal(0, b:stat().active)
  end)

  it("reports moving-average rates while traffic flows", function()
    local a, b = mk(), mk()
    local ca, cb = connect_pair(a, b)
    local chunk = string.rep("r", 32 * 1024)
    local t = b:every(0.02, function() cb:send(chunk) end)
    -- Rates are updated once a second.
    h.wait(function() return ca:stat().rate_in > 0 end, 4, "a rate")
    t:stop()
    local s = ca:stat()
    assert.is_true(s.rate_in > 0 and s.rate_in <= s.bytes_in)
    assert.is_true(cb:stat().rate_out > 0)
    assert.is_true(a:stat().rate_in > 0)
  end)

  it("meshes ten nodes that all exchange messages", function()
    local ring = {}
    for i = 1, 10 do ring[i] = mk() end
    local received = 0
    for i = 1, 10 do
      ring[i]:on("message", function() received = received + 1 end)
    end
    for i = 1, 10 do
      for j = i + 1, 10 do assert(ring[i]:connect(ring[j].addr)) end
    end
    h.wait(function()
      for i = 1, 10 do if h.nconns(ring[i]) ~= 9 then return false end end
      return true
    end, 15, "45 connections")
    for i = 1, 10 do
      for _, conn in ipairs(ring[i]:connections()) do
        assert.is_true(conn:send("hello from " .. i))
      end
    end
    h.wait(function() return received == 90 end, 5, "90 messages")
    for i = 1, 10 do assert.equal(9, ring[i]:stat().active) end
  end)

  it("closes the pending accept over max_incoming_connections before any "
     .. "byte", function()
    local a = mk{ max_incoming_connections = 2, authentication_timeout = 5 }
    local ev = h.record(a)
    local c1, c2 = h.raw(a.addr), h.raw(a.addr)
    -- The node answers the connecting side's connection message: these
    -- two, silent, are only accepted.
    h.wait_raw({ c1, c2 }, function() return #ev.accepted == 2 end,
      5, "the two first accepted")
    local c3 = h.raw(a.addr)
    h.wait_raw({ c3 }, function() return c3.closed end, 5, "third closed")
    assert.equal("", c3.data)
    assert.equal(1, #ev.refused)
    assert.equal("too many incoming connections", ev.refused[1].reason)
    c1:close()
    c2:close()
  end)

  it("allows max_connections plus at random one more, else Nacks "
     .. "Too_many_connections with known public points only", function()
    local a = mk{ max_connections = 1 }
    local b = mk()
    connect_pair(a, b)
    a:point("10.1.2.3:9732")
    a:point("10.1.2.4:9732")
    local c = mk()
    local nacked, acked = 0, 0
    local last_nack
    c:on("nacked", function(ev) nacked = nacked + 1; last_nack = ev end)
    c:on("connected", function() acked = acked + 1 end)
    local trials = 0
    while (nacked == 0 or acked == 0) and trials < 60 do
      trials = trials + 1
      local before = nacked + acked
      assert(c:connect(a.addr))
      h.wait(function() return nacked + acked > before and
        a:stat().pending_incoming == 0 end, 5, "verdict")
      for _, conn in ipairs(c:connections()) do conn:close() end
      h.wait(function() return h.nconns(c) == 0 and a:stat().active == 1 end,
        5, "back to one connection")
    end
    assert.is_true(acked > 0, "the random extra slot was never granted")
    assert.is_true(nacked > 0, "max_connections was never enforced")
    assert.equal(1, last_nack.motive)
    -- Octez list_known_points ~ignore_private:true: b, whose metadata
    -- said public, is sent; the two points never connected (their privacy
    -- unknown: they might be private nodes) are not.
    assert.same({ b.addr }, last_nack.points)
  end)

  it("never sends in a Nack a point never connected, nor a private one",
    function()
    local a = mk{ max_connections = 2, too_many_rule = "threshold" }
    local pub = mk()
    local priv = mk{ private_mode = true }
    priv:trust(a.addr)
    connect_pair(a, pub)
    assert(priv:connect(a.addr, { trusted = true }))
    h.wait(function() return h.nconns(a) == 2 end, 5, "two connections")
    a:point("127.0.0.9:9732") -- heard of (an Advertise), never connected
    local c = mk()
    local ev = h.record(c)
    assert(c:connect(a.addr))
    h.wait(function() return #ev.nacked == 1 end, 5, "nack")
    assert.equal(1, ev.nacked[1].motive)
    assert.same({ pub.addr }, ev.nacked[1].points)
    assert.is_true(a.points[priv.addr].private)
    assert.is_nil(a.points["127.0.0.9:9732"].private)
  end)

  it("too_many_rule = threshold (Octez >= v24.3) Nacks at max_connections "
     .. "without maintenance, never one more", function()
    local a = mk{ max_connections = 1, too_many_rule = "threshold" }
    local b = mk()
    connect_pair(a, b)
    local c = mk()
    local ev = h.record(c)
    -- Under random_extra one dial in two would get in; here none does.
    for i = 1, 12 do
      assert(c:connect(a.addr))
      h.wait(function() return #ev.nacked == i end, 5, "nack " .. i)
      h.wait(function() return c:stat().pending_outgoing == 0 end, 5,
        "closed")
    end
    assert.equal(0, #ev.connected)
    assert.equal(1, a:stat().active)
  end)

  it("Nacks a second connection of the same peer with Already_connected",
    function()
    local a, b = mk(), mk()
    connect_pair(a, b)
    -- Dialling b's listening point again is refused locally (EALREADY);
    -- b reached through a second address is the same peer: Nack.
    local _, _, code = a:connect(b.addr)
    assert.equal("EALREADY", code)
    local port2 = assert(b:listen("127.0.0.2", 0))
    local ev, evb = h.record(a), h.record(b)
    assert(a:connect("127.0.0.2:" .. port2))
    -- Both ends see the peer connected already: each Nacks, then closes.
    h.wait(function() return #ev.nack_sent > 0 and #evb.nack_sent > 0 end,
      5, "nacks")
    assert.equal(5, ev.nack_sent[1].motive)
    assert.equal(5, evb.nack_sent[1].motive)
    h.wait(function() return a:stat().pending_outgoing == 0 end, 5, "close")
    assert.equal(1, h.nconns(a))
    assert.equal(1, h.nconns(b))
  end)

  it("keeps one connection when two nodes dial each other at once",
    function()
    for _ = 1, 10 do
      local a, b = mk(), mk()
      assert(a:connect(b.addr))
      assert(b:connect(a.addr))
      h.wait(function()
        local sa, sb = a:stat(), b:stat()
        return sa.pending_outgoing + sa.pending_incoming == 0 and
               sb.pending_outgoing + sb.pending_incoming == 0
      end, 5, "both handshakes over")
      assert.equal(1, h.nconns(a))
      assert.equal(1, h.nconns(b))
      local ca, cb = a:connections()[1], b:connections()[1]
      -- The same TCP connection seen from both ends.
      assert.are_not.equal(ca.direction, cb.direction)
      h.close(a, b)
    end
  end)

  it("counts acked handshakes against max_connections", function()
    local a = mk{ max_connections = 2 }
    local peers = {}
    for i = 1, 8 do peers[i] = mk() end
    -- Eight dial at once: at most max_connections + 1 may get in.
    for i = 1, 8 do assert(peers[i]:connect(a.addr)) end
    h.wait(function()
      for i = 1, 8 do
        if peers[i]:stat().pending_outgoing > 0 then return false end
      end
      return a:stat().pending_incoming == 0
    end, 10, "all verdicts")
    assert.is_true(h.nconns(a) <= 3, h.nconns(a) .. " connections")
    assert.is_true(h.nconns(a) >= 2)
  end)

  it("closes when the peer id is not the expected one", function()
    local a, b = mk(), mk()
    local other = h.identity():peer_id()
    local ev = h.record(b)
    assert(b:connect(a.addr, { expected_peer_id = other }))
    h.wait(function() return #ev.disconnected > 0 end, 5, "close")
    assert.equal("EUNEXPECTED", ev.disconnected[1].code)
    assert.equal(0, h.nconns(b))
  end)

  it("refuses a banned point at accept and a banned peer after "
     .. "authentication", function()
    local a, b = mk(), mk()
    local ev = h.record(a)
    assert(a:ban("127.0.0.1", 60))
    local c = h.raw(a.addr)
    h.wait_raw({ c }, function() return c.closed end, 5, "refusal")
    assert.equal("", c.data)
    assert.equal("banned", ev.refused[1].reason)
    assert.is_true(a:unban("127.0.0.1"))
    assert(a:ban(b.peer_id))
    local evb = h.record(b)
    assert(b:connect(a.addr))
    h.wait(function() return #evb.disconnected > 0 end, 5, "close")
    assert.equal(0, h.nconns(a))
    assert.equal("EBANNED", ev.disconnected[1].code)
    -- Outgoing: a banned point is never dialled.
    assert(b:ban(a.addr))
    local id, err, code = b:connect(a.addr)
    assert.is_nil(id)
    assert.equal("EBANNED", code)
    assert.matches("^EBANNED: ", err)
  end)

  it("keeps the ban table at its capacity, dropping the oldest", function()
    local a = mk{ ban_table_size = 100 }
    for i = 1, 1000 do
      assert(a:ban(string.format("10.%d.%d.1", i // 256, i % 256), 600))
    end
    assert.equal(100, a:stat().bans)
    assert.is_true(a:banned("10.3.232.1:1"))  -- the 1000th
    assert.is_false(a:banned("10.0.1.1:1"))   -- the first
  end)

  it("bans IP prefixes, v4 and v6", function()
    local a = mk()
    assert(a:ban("127.0.0.0/8", 60))
    assert.is_true(a:banned("127.9.9.9:1"))
    assert(a:ban("2001:db8::/32"))
    assert.is_true(a:banned("[2001:db8::1]:9732"))
    assert.is_false(a:banned("[2001:db9::1]:9732"))
    assert.has_error(function() a:ban("300.1.1.1") end)
    assert.has_error(function() a:ban("10.0.0.0/33") end)
  end)

  it("cuts a peer that sends half a connection message at the "
     .. "authentication timeout", function()
    local a = mk{ authentication_timeout = 0.3 }
    local ev = h.record(a)
    local c = h.raw(a.addr)
    c:send("\0\100" .. string.rep("\1", 40))
    local t0 = core.now()
    h.wait_raw({ c }, function() return c.closed end, 5, "cut")
    local dt = core.now() - t0
    assert.is_true(dt >= 0.25 and dt < 2, "cut after " .. dt .. " s")
    assert.equal("ETIMEDOUT", ev.auth_failed[1].code)
    -- Timeouts do not greylist (no ban added).
    assert.is_false(a:banned("127.0.0.1:1"))
  end)

  it("gives up an outgoing connection at the connection timeout", function()
    local socket = require "socket"
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local b = mk{ connection_timeout = 0.3 }
    local ev = h.record(b)
    -- The server accepts (backlog) but never answers the handshake.
    assert(b:connect("127.0.0.1:" .. port))
    h.wait(function() return #ev.disconnected > 0 end, 5, "timeout")
    assert.equal("ETIMEDOUT", ev.disconnected[1].code)
    server:close()
  end)

  it("applies backpressure: a reader that does not read stops the sender's "
     .. "queue, and nothing is lost", function()
    local a = mk{ incoming_app_message_queue_size = 4 }
    local b = mk{ outgoing_message_queue_size = 64,
                  outgoing_queue_bytes = 256 * 1024 }
    local ca, cb = connect_pair(a, b)
    ca:pull(true) -- the application reads with recv(): backpressure
    local payload = string.rep("z", 16 * 1024)
    local sent, full, err = 0, false, nil
    for _ = 1, 2000 do
      local ok, e, code = cb:send(payload)
      if not ok then full, err = true, code break end
      sent = sent + 1
      if sent % 16 == 0 then core.run("nowait") end
    end
    for _ = 1, 50 do core.run("nowait") end
    -- Keep offering until the queue stays full.
    while not full do
      local ok, e, code = cb:send(payload)
      if ok then sent = sent + 1 else full, err = true, code end
      core.run("nowait")
    end
    assert.equal("EQUEUEFULL", err)
    local q = cb:stat()
    assert.is_true(q.queued_bytes <= 256 * 1024 + #payload + 6)
    assert.is_true(q.queued_msgs <= 64)
    -- The receiver drains; every message sent arrives, in order.
    local got = 0
    h.wait(function()
      while ca:recv() do got = got + 1 end
      return got == sent
    end, 10, "all messages")
    assert.equal(sent, got)
  end)

  it("delivers everything queued before a graceful close", function()
    local a, b = mk(), mk()
    local ca, cb = connect_pair(a, b)
    local got, closed = 0, nil
    ca:on("message", function() got = got + 1 end)
    ca:on("close", function(ev) closed = ev.reason end)
    -- More than one sealed batch (a chunk) is queued when close is asked.
    for i = 1, 40 do assert.is_true(cb:send(string.rep("q", 60000))) end
    cb:close("bye")
    h.wait(function() return closed ~= nil end, 10, "close")
    assert.equal(40, got)
    assert.equal("disconnected by peer", closed)
  end)

  it("emits too_few_connections and too_many_connections", function()
    local a = mk{ min_connections = 1, max_connections = 1 }
    local ev = h.record(a)
    local b, c = mk(), mk()
    connect_pair(a, b)
    -- Over max: the random extra slot may take a second peer.
    local tries = 0
    while #ev.too_many_connections == 0 and tries < 40 do
      tries = tries + 1
      assert(c:connect(a.addr))
      h.wait(function() return c:stat().pending_outgoing == 0 and
        a:stat().pending_incoming == 0 end, 5, "verdict")
    end
    assert.is_true(#ev.too_many_connections > 0)
    for _, conn in ipairs(a:connections()) do conn:close() end
    h.wait(function() return #ev.too_few_connections > 0 end, 5, "too few")
    assert.equal(0, ev.too_few_connections[#ev.too_few_connections].active)
  end)

  it("sends private_node in its metadata", function()
    local a = mk{ private_mode = true }
    local b = mk()
    local ca, cb = connect_pair(a, b)
    assert.is_true(cb.metadata.private_node)
    assert.is_false(ca.metadata.private_node)
  end)

  it("listens and connects over IPv6 when ::1 is available", function()
    local a = mk()
    local port = a:listen("::1", 0)
    if not port then
      pending("no IPv6 loopback here")
      return
    end
    local b = mk()
    assert(b:connect("[::1]:" .. port))
    h.wait(function() return h.nconns(a) == 1 and h.nconns(b) == 1 end, 5,
      "v6 connection")
    assert.equal("[::1]:" .. port, b:connections()[1].point)
  end)

  it("reports a port in use and a bad listen address", function()
    local a = mk()
    local n, err, code = p2p.new{ identity = h.identity(), pow_bits = 0,
      default_policies = false, listen = a.addr }
    assert.is_nil(n)
    assert.equal("EADDRINUSE", code)
    assert.matches("cannot listen on 127.0.0.1 port", err)
    n, err, code = p2p.new{ identity = h.identity(), default_policies = false,
      listen = "nowhere" }
    assert.is_nil(n)
    assert.equal("EPOINT", code)
  end)

  it("rejects unknown or bad config keys naming them", function()
    assert.has_error(function()
      p2p.new{ identity = h.identity(), max_conections = 3 }
    end, "p2p.new: unknown config key 'max_conections' (did you mean " ..
      "'max_connections'?)")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), port = 9732 }
    end, "p2p.new: unknown config key 'port' (did you mean " ..
      "'advertised_port'?)")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), xyzzy = 1 }
    end, "p2p.new: unknown config key 'xyzzy'")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), max_connections = "ten" }
    end, "p2p.new: config.max_connections: expected an integer in " ..
      "[0, 1048576], got \"ten\"")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), default_policies = false,
               binary_chunks_size = 10 }
    end, "p2p.new: config.binary_chunks_size: expected an integer in " ..
      "[19, 65535], got 10")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), log = "xml" }
    end, "p2p.new: config.log: expected one of 'human', 'json', got \"xml\"")
    assert.has_error(function()
      p2p.new{ identity = h.identity(), min_connections = 5,
               max_connections = 2 }
    end, "p2p.new: config.min_connections (5) > max_connections (2)")
  end)

  it("sends messages cut into small chunks with binary_chunks_size 19",
    function()
    local a = mk{ binary_chunks_size = 19 }
    local b = mk{ binary_chunks_size = 19 }
    local ca, cb = connect_pair(a, b)
    local got
    ca:on("message", function(ev) got = ev.payload end)
    local msg = string.rep("0123456789", 1000)
    assert.is_true(cb:send(msg))
    h.wait(function() return got ~= nil end, 5, "message")
    assert.equal(msg, got)
    -- 1 B of payload per chunk: at least 18 bytes of overhead per byte.
    assert.is_true(cb:stat().bytes_out > 18 * #msg)
  end)

  it("closes on node:close() with a Disconnect, and with __close", function()
    local a = mk()
    local closed
    do
      local b <close> = bare()
      connect_pair(a, b)
      a:connections()[1]:on("close", function(ev) closed = ev.reason end)
    end
    h.wait(function() return closed ~= nil end, 5, "disconnect")
    assert.equal("disconnected by peer", closed)
  end)

  it("keeps a listening node alive without a reference until closed",
    function()
    local socket = require "socket"
    local function dial(port)
      local s = socket.tcp()
      s:settimeout(1)
      local ok = s:connect("127.0.0.1", port)
      s:close()
      return ok
    end
    local weak = setmetatable({}, { __mode = "v" })
    do weak.n = bare() end
    local port = weak.n.port
    collectgarbage()
    collectgarbage()
    for _ = 1, 5 do core.run("nowait") end
    assert.is_not_nil(weak.n, "a listening node was collected")
    assert.equal(1, dial(port))
    weak.n:close()
    for _ = 1, 5 do core.run("nowait") end
    assert.is_nil(dial(port))
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak.n, "a closed node was kept")
  end)

  it("collects and closes an idle node nobody references", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      weak.n = assert(p2p.new{ identity = h.identity(),
                               default_policies = false })
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak.n)
  end)
end)
