-- The event tables the C core hands to Lua (core/lua/lua_node_hooks.c, before
-- dispatch.lua adds conn objects and timestamps): each kind carries exactly
-- these fields, with these Lua types and, where the core fixes them, these
-- values. Recorded by wrapping the dispatcher of core.node.
local p2p = require "luap2p"
local h = require "helper"
local core = p2p.core

-- A quiet node without policies (nothing bans or answers behind the
-- test's back) whose raw core events are recorded: the first event of
-- each type is kept as { key = Lua type } and as a copy (dispatch.lua
-- then puts the Conn object in ev.conn).
local function recording(cfg)
  local shapes, first = {}, {}
  local real = core.node
  core.node = function(c, id, dispatch)
    return real(c, id, function(kind, ev, ...)
      if kind == "event" and not shapes[ev.type] then
        local shape, copy = {}, {}
        for k, v in pairs(ev) do
          shape[k], copy[k] = math.type(v) or type(v), v
        end
        shapes[ev.type], first[ev.type] = shape, copy
      end
      return dispatch(kind, ev, ...)
    end)
  end
  local c = { default_policies = false }
  for k, v in pairs(cfg or {}) do c[k] = v end
  local ok, node = pcall(h.quiet, c)
  core.node = real
  assert(ok, node)
  -- The core calls Lua only for events someone takes: take them all.
  node:on("*", function() end)
  return node, shapes, first
end

local CONN = { type = "string", conn = "integer", point = "string",
               incoming = "boolean" }

local function with(base, more)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(more) do t[k] = v end
  return t
end

local PEER = with(CONN, { peer_id = "string" })

describe("core events", function()
  local keep = h.keeper(before_each, after_each)

  it("of a connection that runs, then closes gracefully, and of the " ..
     "node falling under min_connections", function()
    local a, sa, fa = recording{ min_connections = 1 }
    local b, sb, fb = recording()
    keep(a, b)
    assert(b:connect(a.addr))
    h.wait(function() return sa.connected and sb.connected end, 5,
           "both connected")
    b.conns[fb.connected.conn]:close("bye")
    h.wait(function() return sa.disconnected and sb.disconnected and
                             sa.too_few_connections end, 5, "the close")
    assert.same(CONN, sa.accepted)
    assert.is_true(fa.accepted.incoming)
    assert.same(with(CONN, {}), sb.connecting)
    assert.is_false(fb.connecting.incoming)
    assert.same(PEER, sa.authenticated)
    assert.same(PEER, sb.authenticated)
    assert.same(PEER, sa.connected)
    assert.same(PEER, sb.connected)
    assert.equal(b.peer_id, fa.connected.peer_id)
    assert.equal(a.addr, fb.connected.point)
    -- closed without an error: a reason, no code
    assert.same(with(PEER, { reason = "string" }), sa.disconnected)
    assert.equal("disconnected by peer", fa.disconnected.reason)
    assert.same(with(PEER, { reason = "string" }), sb.disconnected)
    assert.equal("bye", fb.disconnected.reason)
    assert.same({ type = "string", active = "integer" },
                sa.too_few_connections)
    assert.equal(0, fa.too_few_connections.active)
  end)

  it("of a refusal at accept and the dialer's failed handshake", function()
    local a, sa, fa = recording()
    local b, sb, fb = recording()
    keep(a, b)
    assert(a:ban("127.0.0.1", 60))
    assert(b:connect(a.addr))
    h.wait(function() return sa.refused and sb.disconnected end, 5,
           "the refusal")
    assert.same({ type = "string", point = "string", code = "string",
                  reason = "string" }, sa.refused)
    assert.equal("EBANNED", fa.refused.code)
    assert.equal("banned", fa.refused.reason)
    assert.is_nil(sa.disconnected) -- a refused socket had no id
    local failed = with(CONN, { code = "string", reason = "string" })
    assert.same(failed, sb.auth_failed)
    assert.equal("EOF", fb.auth_failed.code)
    assert.same(failed, sb.disconnected)
    assert.equal("EOF", fb.disconnected.code)
  end)

  it("of a Nack, on both sides", function()
    local a, sa, fa = recording{ max_connections = 0,
                                 too_many_rule = "threshold" }
    local b, sb, fb = recording()
    keep(a, b)
    assert(b:connect(a.addr))
    h.wait(function() return sa.disconnected and sb.disconnected end, 5,
           "the Nack")
    assert.same(with(PEER, { motive = "integer", points = "table",
                             reason = "string" }), sa.nack_sent)
    assert.equal(fa.nack_sent.motive, fb.nacked.motive)
    assert.same({}, fa.nack_sent.points)
    assert.same(with(PEER, { motive = "integer", points = "table",
                             code = "string", reason = "string" }),
                sb.nacked)
    assert.equal("ENACK", fb.nacked.code)
    assert.same(with(PEER, { code = "string", reason = "string" }),
                sa.disconnected)
    assert.equal("ETOOMANY", fa.disconnected.code)
    assert.equal("ENACK", fb.disconnected.code)
    assert.is_nil(sb.auth_failed)
  end)

  it("of a peer over its P2P message rate, and of one whose P2P " ..
     "message does not decode", function()
    local a, sa, fa = recording{ p2p_message_rate = 1,
                                 p2p_message_burst = 1 }
    local b = keep(h.quiet{ default_policies = false })
    local c = keep(h.quiet{ default_policies = false })
    keep(a)
    local id = assert(b:connect(a.addr))
    h.wait(function() return b.conns[id] end, 5, "b connected")
    -- a Bootstrap: the first one spends the burst
    assert(b._c:send_raw(id, "\0\0\0\2\0\2"))
    h.wait(function() return sa.rate_exceeded end, 5, "rate_exceeded")
    assert.same(with(PEER, { reason = "string", count = "integer",
                             kind = "string" }), sa.rate_exceeded)
    assert.equal("p2p", fa.rate_exceeded.kind)
    assert.equal("p2p messages", fa.rate_exceeded.reason)
    assert.equal(1, fa.rate_exceeded.count)
    id = assert(c:connect(a.addr))
    h.wait(function() return c.conns[id] end, 5, "c connected")
    -- an Advertise whose list of points is cut short
    assert(c._c:send_raw(id, "\0\0\0\3\0\3\1"))
    h.wait(function() return sa.decoding_error end, 5, "decoding_error")
    assert.same(with(PEER, { code = "string", reason = "string" }),
                sa.decoding_error)
    assert.equal("P2P message does not decode", fa.decoding_error.reason)
  end)

  it("of a node over max_connections", function()
    -- The core's own node (no Lua node around it): a threshold over
    -- max_connections lets a connection in past it, with no random
    -- extra slot.
    local b = keep(h.quiet{ default_policies = false })
    local shapes, first = {}, {}
    local a = core.node({ pow_bits = 0, chain = b.config.chain,
                          max_connections = 0, connections_threshold = 5 },
      core.identity_generate(), function(kind, ev)
        if kind == "accept" then return true end
        if kind == "event" and not shapes[ev.type] then
          local shape = {}
          for k, v in pairs(ev) do shape[k] = math.type(v) or type(v) end
          shapes[ev.type], first[ev.type] = shape, ev
        end
      end)
    local port = assert(a:listen("127.0.0.1", 0))
    local ok, err = pcall(function()
      assert(b:connect("127.0.0.1:" .. port))
      h.wait(function() return shapes.too_many_connections end, 5,
             "too_many_connections")
    end)
    a:close()
    assert(ok, err)
    assert.same(PEER, shapes.connected)
    assert.same({ type = "string", active = "integer" },
                shapes.too_many_connections)
    assert.equal(1, first.too_many_connections.active)
  end)

  it("of the node going under load and back", function()
    local a, sa, fa = recording{ load_threshold = 1 }
    keep(a)
    local raws = {}
    for i = 1, 3 do
      raws[i] = h.raw(a.addr)
      h.wait(function() return a._c:stat().pending_incoming == i end, 5,
             "pending " .. i)
    end
    assert.same({ type = "string", reason = "string" }, sa.under_load)
    for _, r in ipairs(raws) do r:close() end
    h.wait(function() return a._c:stat().pending_incoming == 0 end, 5,
           "no pending handshake")
    local last = h.raw(a.addr)
    h.wait(function() return sa.load_normal end, 5, "load_normal")
    last:close()
    assert.same({ type = "string", reason = "string" }, sa.load_normal)
    assert.matches("accept rates halved", fa.under_load.reason)
  end)
end)
