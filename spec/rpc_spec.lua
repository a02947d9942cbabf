-- rpc: luap2p.rpc on core.http_serve (libmicrohttpd on the node's loop),
-- against a node with real peers on loopback. Every Octez path is checked
-- field by field against the Octez encodings (spec/octez_rpc.lua, which
-- also checks those schemas against real Octez output).
local cjson = require "cjson"
local p2p = require "luap2p"
local rpc = require "luap2p.rpc"
local metrics = require "luap2p.cli.metrics"
local octez = require "octez_rpc"
local h = require "helper"

local core = p2p.core
local S = octez.S

-- One HTTP/1.1 request over a raw socket while the loop runs; returns
-- status, body, head. `from` binds the client to a source address.
local function http(port, method, path, body, headers)
  local c = h.raw("127.0.0.1:" .. port)
  local req = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1",
                "Connection: close" }
  for k, v in pairs(headers or {}) do req[#req + 1] = k .. ": " .. v end
  if body then
    req[#req + 1] = "Content-Type: application/json"
    req[#req + 1] = "Content-Length: " .. #body
  end
  assert(c:send(table.concat(req, "\r\n") .. "\r\n\r\n" .. (body or "")))
  h.wait_raw({ c }, function() return c.closed end, 10,
    method .. " " .. path .. " answered")
  c:close()
  local status = tonumber(c.data:match("^HTTP/1%.%d (%d%d%d) "))
  local head, text = c.data:match("^(.-)\r\n\r\n(.*)$")
  return status, text, head
end

local function get_json(port, path)
  local status, text = http(port, "GET", path)
  assert.equal(200, status, path .. ": " .. tostring(text))
  return cjson.decode(text)
end

local function conforms(schema, v, what)
  local errs = octez.check(schema, v)
  assert(errs == nil, what .. ": " .. table.concat(errs or {}, "; "))
end

describe("rpc", function()
  it("schemas accept real Octez outputs (fixtures)", function()
    conforms(S.connections, cjson.decode(octez.FIXTURES.connections),
      "connections fixture")
    conforms(S.point, cjson.decode(octez.FIXTURES.point), "point fixture")
    conforms(S.peer, cjson.decode(octez.FIXTURES.peer), "peer fixture")
    conforms(S.greylist_ips, cjson.decode(octez.FIXTURES.greylist_ips),
      "greylist fixture")
    -- and they are strict: an unknown or missing field is caught
    local c = cjson.decode(octez.FIXTURES.connections)[1]
    c.extra = 1
    assert.truthy(octez.check(S.connection, c))
    c.extra, c.private = nil, nil
    assert.truthy(octez.check(S.connection, c))
  end)

  describe("against a node with peers", function()
    local a, b, c, srv, port, r, ids
    setup(function()
      a = h.quiet({ greylist_loopback = true })
      b = h.quiet()
      c = h.quiet({ listen = "127.0.0.2:0" })
      c.addr = "127.0.0.2:" .. c.port
      r = rpc.new(a, { allow_write = true, metrics = metrics.new(a) })
      srv, port = assert(r:serve("127.0.0.1", 0))
      -- b dials a (incoming at a); a dials c (outgoing, a point at a)
      assert(b:connect(a.addr))
      assert(a:connect(c.addr))
      h.wait(function()
        return h.nconns(a) == 2 and h.nconns(b) == 1 and h.nconns(c) == 1
      end, 10, "a connected to b and c")
      for _, conn in ipairs(b:connections()) do conn:send("hello a") end
      h.wait(function() return a:stat().bytes_in > 0 end, 5, "bytes in")
      ids = { b = b.peer_id, c = c.peer_id }
    end)
    teardown(function()
      if srv then srv:close() end
      h.close(a, b, c)
    end)

    it("GET /network/self: the peer id", function()
      assert.equal(a.peer_id, get_json(port, "/network/self"))
    end)

    it("GET /network/stat: P2p_stat, totals as int64 strings", function()
      local v = get_json(port, "/network/stat")
      conforms(S.stat, v, "stat")
      local s = a:stat()
      assert.is_true(tonumber(v.total_recv) > 0)
      assert.is_true(tonumber(v.total_recv) <= s.bytes_in)
      assert.is_true(tonumber(v.total_sent) > 0)
    end)

    it("GET /network/connections and /network/connections/<peer_id>",
      function()
      local list = get_json(port, "/network/connections")
      conforms(S.connections, list, "connections")
      assert.equal(2, #list)
      local by = {}
      for _, e in ipairs(list) do by[e.peer_id] = e end
      local in_b, out_c = by[ids.b], by[ids.c]
      assert.is_true(in_b.incoming)
      assert.is_false(out_c.incoming)
      assert.equal("::ffff:127.0.0.1", in_b.id_point.addr)
      assert.equal(b.port, in_b.id_point.port) -- its listening port
      local conn = a:connection(ids.b)
      assert.equal(tonumber(conn.addr:match(":(%d+)$")),
        in_b.remote_socket_port)
      assert.equal("::ffff:127.0.0.2", out_c.id_point.addr)
      assert.equal(c.port, out_c.id_point.port)
      assert.equal(c.port, out_c.remote_socket_port)
      assert.same({ chain_name = "TEZOS_MAINNET", p2p_version = 1,
                    distributed_db_version = 2 }, out_c.announced_version)
      assert.same({ disable_mempool = false, private_node = false },
        out_c.remote_metadata)
      local one = get_json(port, "/network/connections/" .. ids.c)
      conforms(S.connection, one, "connection")
      assert.same(out_c, one)
      local status, text = http(port, "GET", "/network/connections/" ..
        a.peer_id)
      assert.equal(404, status)
      assert.matches("no such connection", text)
    end)

    it("GET /network/peers and /network/peers/<peer_id>", function()
      local list = get_json(port, "/network/peers")
      conforms(S.peers, list, "peers")
      local seen = {}
      for _, e in ipairs(list) do seen[e[1]] = e[2] end
      assert.truthy(seen[ids.b])
      assert.truthy(seen[ids.c])
      local p = get_json(port, "/network/peers/" .. ids.c)
      conforms(S.peer, p, "peer")
      assert.equal("running", p.state)
      assert.is_false(p.trusted)
      assert.same({ addr = "::ffff:127.0.0.2", port = c.port },
        p.reachable_at)
      assert.same(p.reachable_at, p.last_established_connection[1])
      assert.same({ disable_mempool = false, private_node = false },
        p.conn_metadata)
      assert.is_true(tonumber(p.stat.total_sent) > 0)
      assert.equal(404, (http(port, "GET", "/network/peers/" ..
        "idtzzzzzzzzzzzzzzzzzzzzzzzzzzz")))
    end)

    it("GET /network/points and /network/points/<point>", function()
      local list = get_json(port, "/network/points")
      conforms(S.points, list, "points")
      local p = get_json(port, "/network/points/" .. c.addr)
      conforms(S.point, p, "point")
      assert.same({ event_kind = "running", p2p_peer_id = ids.c }, p.state)
      assert.equal(ids.c, p.p2p_peer_id)
      assert.equal(ids.c, p.last_established_connection[1])
      assert.equal(404, (http(port, "GET", "/network/points/10.9.9.9:1")))
    end)

    it("greylist: GET ips and peers, DELETE clears them", function()
      local acl = h.policy(a, "acl").module
      acl._greylist(a, "127.0.0.3", ids.b, "EAUTH")
      local v = get_json(port, "/network/greylist/ips")
      conforms(S.greylist_ips, v, "greylist ips")
      assert.same({ "::ffff:127.0.0.3" }, v.ips)
      assert.equal(cjson.null, v.not_reliable_since)
      local peers = get_json(port, "/network/greylist/peers")
      conforms(S.peer_ids, peers, "greylist peers")
      assert.same({ ids.b }, peers)
      local pt = get_json(port, "/network/points/127.0.0.3:9732/banned")
      assert.is_true(pt)
      local status, text = http(port, "DELETE", "/network/greylist")
      assert.equal(200, status, text)
      assert.same({}, cjson.decode(text))
      assert.same({}, get_json(port, "/network/greylist/ips").ips)
      assert.same({}, get_json(port, "/network/greylist/peers"))
      assert.is_false(a:banned("127.0.0.3"))
      assert.is_false(a:banned(ids.b))
    end)

    it("GET /metrics on the same port: Prometheus text", function()
      local status, text, head = http(port, "GET", "/metrics")
      assert.equal(200, status)
      assert.matches("Content%-Type: text/plain; version=0%.0%.4", head)
      assert.matches('\nluap2p_connections{state="running",' ..
        'direction="outgoing"} 1\n', text)
    end)

    it("GET /luap2p/events: numbered recent events, since a number",
      function()
      local v = get_json(port, "/luap2p/events")
      assert.is_true(v.seq >= 1)
      local types = {}
      for _, e in ipairs(v.events) do types[e.type] = true end
      assert.is_true(types.connected)
      a:ban("10.9.9.9", 60, "events test")
      local w = get_json(port, "/luap2p/events?since=" .. v.seq)
      assert.equal(1, #w.events)
      assert.equal("banned", w.events[1].type)
      assert.equal("10.9.9.9", w.events[1].detail)
      assert.equal(v.seq + 1, w.seq)
      a:unban("10.9.9.9")
    end)

    it("GET / is the status page (HTML, no external resource)", function()
      local status, text, head = http(port, "GET", "/")
      assert.equal(200, status)
      assert.matches("Content%-Type: text/html", head)
      assert.matches('<table id="connections">', text, 1, true)
      assert.falsy(text:find("https?://"), "an external resource")
    end)

    it("unknown paths are 404, wrong methods 405 with Allow", function()
      assert.equal(404, (http(port, "GET", "/network/nope")))
      local status, _, head = http(port, "POST", "/network/self", "{}")
      assert.equal(405, status)
      assert.matches("Allow: GET", head)
    end)
  end)

  describe("writes", function()
    local keep = h.keeper(before_each, after_each)
    local servers = {}
    after_each(function()
      for _, s in ipairs(servers) do s:close() end
      servers = {}
    end)

    local function setup_pair(allow)
      local a, b = keep(h.quiet(), h.quiet({ listen = "127.0.0.2:0" }))
      b.addr = "127.0.0.2:" .. b.port
      local r = rpc.new(a, { allow_write = allow })
      local srv, port = assert(r:serve("127.0.0.1", 0))
      servers[#servers + 1] = srv
      assert(a:connect(b.addr))
      h.wait(function() return h.nconns(a) == 1 end, 10, "connected")
      return a, b, port
    end

    it("are refused with 403 unless allowed, and change nothing",
      function()
      local a, b, port = setup_pair(false)
      local cases = {
        { "PATCH", "/network/peers/" .. b.peer_id, '{"acl":"ban"}' },
        { "PATCH", "/network/points/" .. b.addr, '{"acl":"ban"}' },
        { "DELETE", "/network/connections/" .. b.peer_id },
        { "DELETE", "/network/greylist" },
        { "POST", "/luap2p/bans", '{"target":"10.0.0.1"}' },
        { "DELETE", "/luap2p/bans/10.0.0.1" },
        { "POST", "/luap2p/reload" },
      }
      for _, case in ipairs(cases) do
        local status, text = http(port, case[1], case[2], case[3])
        assert.equal(403, status, case[1] .. " " .. case[2])
        assert.matches("%-%-rpc%-allow%-write", text)
      end
      assert.equal(1, h.nconns(a))
      assert.is_false(a:banned(b.peer_id))
      assert.is_false(a:banned("10.0.0.1"))
      -- reads still work
      assert.equal(a.peer_id, get_json(port, "/network/self"))
    end)

    it("PATCH /network/peers/<id>: ban drops it, trust lifts the ban, " ..
       "open clears both", function()
      local a, b, port = setup_pair(true)
      local rec = h.record(a)
      local status, text = http(port, "PATCH", "/network/peers/" ..
        b.peer_id, '{"acl":"ban"}')
      assert.equal(200, status, text)
      conforms(S.peer, cjson.decode(text), "patched peer")
      assert.is_true(a:banned(b.peer_id))
      h.wait(function() return #rec.disconnected == 1 end, 5, "dropped")
      status, text = http(port, "PATCH", "/network/peers/" .. b.peer_id,
        '{"acl":"trust"}')
      assert.equal(200, status, text)
      assert.is_true(cjson.decode(text).trusted)
      assert.is_false(a:banned(b.peer_id))
      status, text = http(port, "PATCH", "/network/peers/" .. b.peer_id,
        '{"acl":"open"}')
      assert.equal(200, status, text)
      assert.is_false(cjson.decode(text).trusted)
      status, text = http(port, "PATCH", "/network/peers/" .. b.peer_id,
        '{"acl":"maybe"}')
      assert.equal(400, status)
      assert.matches("acl must be", text)
    end)

    it("PATCH /network/points/<point>: ban bans the IP (Octez ignores " ..
       "the port), open lifts it", function()
      local a, b, port = setup_pair(true)
      local rec = h.record(a)
      local status, text = http(port, "PATCH", "/network/points/" ..
        b.addr, '{"acl":"ban"}')
      assert.equal(200, status, text)
      conforms(S.point, cjson.decode(text), "patched point")
      assert.is_true(a:banned("127.0.0.2"))
      h.wait(function() return #rec.disconnected == 1 end, 5, "dropped")
      assert.is_true(get_json(port, "/network/points/" .. b.addr ..
        "/banned"))
      status = http(port, "PATCH", "/network/points/" .. b.addr,
        '{"acl":"open"}')
      assert.equal(200, status)
      assert.is_false(a:banned("127.0.0.2"))
      status, text = http(port, "PATCH", "/network/points/" .. b.addr,
        '{"acl":"trust"}')
      assert.equal(200, status)
      assert.is_true(cjson.decode(text).trusted)
      assert.is_true(a:trusted(b.addr))
    end)

    it("DELETE /network/connections/<id> closes it", function()
      local a, b, port = setup_pair(true)
      local rec = h.record(a)
      local status, text = http(port, "DELETE", "/network/connections/" ..
        b.peer_id)
      assert.equal(200, status, text)
      assert.same({}, cjson.decode(text))
      h.wait(function() return #rec.disconnected == 1 end, 5, "closed")
      assert.equal(0, h.nconns(a))
      assert.equal(404, (http(port, "DELETE", "/network/connections/" ..
        b.peer_id)))
    end)

    it("/luap2p/bans: a timed ban, the list, unban of a prefix", function()
      local a, _, port = setup_pair(true)
      local status, text = http(port, "POST", "/luap2p/bans",
        '{"target":"10.1.0.0/16","seconds":600,"reason":"test"}')
      assert.equal(200, status, text)
      assert.is_true(a:banned("10.1.2.3"))
      local list = get_json(port, "/luap2p/bans")
      assert.equal(1, #list)
      assert.equal("10.1.0.0/16", list[1].target)
      assert.equal("ban", list[1].kind)
      assert.equal("test", list[1].reason)
      assert.is_true(octez.T.timestamp(list[1]["until"]))
      status, text = http(port, "DELETE", "/luap2p/bans/10.1.0.0%2F16")
      assert.equal(200, status, text)
      assert.is_true(cjson.decode(text).removed)
      assert.is_false(a:banned("10.1.2.3"))
      assert.same({}, get_json(port, "/luap2p/bans"))
      status = http(port, "POST", "/luap2p/bans", '{"target":"bogus"}')
      assert.equal(400, status)
    end)
  end)

  describe("the HTTP server", function()
    local keep = h.keeper(before_each, after_each)

    it("refuses an oversize body (413) and head (431), and lives on",
      function()
      local a = keep(h.quiet())
      local srv, port = assert(rpc.new(a, { allow_write = true }):serve(
        "127.0.0.1", 0, { max_body = 1024, max_head = 4096 }))
      local status = http(port, "POST", "/luap2p/bans",
        string.rep("x", 2048))
      assert.equal(413, status)
      status = http(port, "GET", "/network/self", nil,
        { ["X-Big"] = string.rep("a", 16384) })
      assert.equal(431, status)
      assert.equal(a.peer_id, get_json(port, "/network/self"))
      srv:close()
    end)

    it("200 idle clients do not stop a /metrics scrape", function()
      local socket = require "socket"
      local a = keep(h.quiet())
      local r = rpc.new(a, { metrics = metrics.new(a) })
      local srv, port = assert(r:serve("127.0.0.1", 0,
        { max_per_ip = 16, idle_timeout = 60 }))
      -- 200 connections from another loopback address that never send
      local idle = {}
      for i = 1, 200 do
        local s = assert(socket.tcp())
        assert(s:bind("127.0.0.2", 0))
        s:settimeout(0)
        local ok, err = s:connect("127.0.0.1", port)
        assert(ok or err == "timeout", err)
        idle[i] = s
        core.run("nowait") -- the server accepts (and refuses) as we go
      end
      local status, text = http(port, "GET", "/metrics")
      assert.equal(200, status)
      assert.matches("\nluap2p_uptime_seconds ", text)
      -- MHD kept at most max_per_ip of them (+ ours, already closed)
      assert.is_true(srv:clients() <= 16, "clients: " .. srv:clients())
      for _, s in ipairs(idle) do s:close() end
      srv:close()
    end)

    it("a handler error is a 500 and a close inside a handler is safe",
      function()
      local errors = {}
      core.on_error(function(where, msg) errors[#errors + 1] = msg end)
      local srv
      local s, port = assert(core.http_serve("127.0.0.1", 0,
        function(method, path)
          if path == "/boom" then error("boom") end
          if path == "/close" then srv:close() end
          return 200, { ["Content-Type"] = "text/plain" }, method .. path
        end))
      srv = s
      local status, text = http(port, "GET", "/x?y=1")
      assert.equal(200, status)
      assert.equal("GET/x", text)
      assert.equal(500, (http(port, "GET", "/boom")))
      assert.equal(1, #errors)
      assert.matches("boom", errors[1])
      http(port, "GET", "/close")
      assert.matches("%(closed%)", tostring(srv))
      core.on_error(nil)
      collectgarbage()
    end)
  end)
end)
