-- A connection's inbox: messages nobody consumes are kept up to the
-- bounds then counted and dropped (reading never stops, so Disconnect and
-- EOF are always seen); pull mode (conn:pull(true)) pauses reading when
-- the inbox is full and resumes as recv() drains it, losing nothing.
local p2p = require "luap2p"
local h = require "helper"
local Conn = require "luap2p.conn"

local function pair(keep, acfg)
  local a = keep(h.quiet(acfg))
  local b = keep(h.quiet())
  assert(b:connect(a.addr))
  h.wait(function() return h.nconns(a) == 1 and h.nconns(b) == 1 end, 5,
    "connection")
  return a, b, a:connections()[1], b:connections()[1]
end

describe("inbox", function()
  local keep = h.keeper(before_each, after_each)

  it("keeps every message through deliver, deliver, recv, deliver", function()
    -- The queue itself, driven exactly as the dispatcher drives it.
    local released = 0
    local node = { _on = {}, config = { incoming_app_message_queue_size = 10,
      incoming_app_message_queue_bytes = 1024, pull_mode = true },
      _c = { release = function(_, _, n) released = released + n end,
             pause = function() end } }
    local c = Conn._new(node, 1)
    c:_deliver("one", 0x10)
    c:_deliver("two", 0x11)
    assert.same({ "one", 0x10 }, { c:recv() })
    c:_deliver("three", 0x12)
    assert.same({ "two", 0x11 }, { c:recv() })
    assert.same({ "three", 0x12 }, { c:recv() })
    assert.is_nil(c:recv())
    assert.equal(11, released)
    assert.same({ 0, 0 }, { c:pending() })
  end)

  it("keeps every message over the wire: deliver, deliver, recv, deliver",
    function()
    local _, _, ca, cb = pair(keep)
    ca:pull(true)
    assert(cb:send("one"))
    assert(cb:send("two"))
    h.wait(function() return ca:pending() == 2 end, 5, "two messages")
    assert.equal("one", ca:recv())
    assert(cb:send("three"))
    h.wait(function() return ca:pending() == 2 end, 5, "the third")
    assert.equal("two", ca:recv())
    assert.equal("three", ca:recv())
    assert.is_nil(ca:recv())
  end)

  it("drops what nobody consumes past the inbox and still sees the " ..
     "Disconnect", function()
    local a, _, ca, cb = pair(keep, { incoming_app_message_queue_size = 100 })
    local dropped_events, total = 0, 0
    a:on("dropped", function(ev)
      dropped_events = dropped_events + 1
      total = total + ev.count
    end)
    local closed
    ca:on("close", function(ev) closed = ev.reason end)
    -- Every Octez shell message is an application message: a node that
    -- never consumes them must keep reading the peer's control messages.
    for i = 1, 250 do assert(cb:send("m" .. i)) end
    cb:close("bye")
    h.wait(function() return closed ~= nil end, 5, "the peer's Disconnect")
    assert.equal("disconnected by peer", closed)
    assert.equal(100, (ca:pending()))
    assert.equal(150, ca.dropped)
    -- One event at once, the rest counted into the next (at most one a
    -- second per connection).
    assert.equal(1, dropped_events)
    assert.equal(1, total)
    assert.equal(150, a:stat().dropped)
    -- What was kept is still readable, in order.
    assert.equal("m1", ca:recv())
  end)

  it("bounds the inbox in bytes as well as in messages", function()
    local _, _, ca, cb = pair(keep, {
      incoming_app_message_queue_bytes = 64 * 1024 })
    for _ = 1, 10 do assert(cb:send(string.rep("b", 16 * 1024))) end
    h.wait(function() return (ca.dropped or 0) + ca:pending() == 10 end, 5,
      "ten messages")
    local n, bytes = ca:pending()
    assert.equal(4, n)
    assert.equal(64 * 1024, bytes)
    assert.equal(6, ca.dropped)
  end)

  it("in pull mode pauses reading at a full inbox and loses nothing",
    function()
    local a, _, ca, cb = pair(keep, { incoming_app_message_queue_size = 50,
                                      pull_mode = true })
    for i = 1, 400 do assert(cb:send("p" .. i)) end
    h.wait(function() return ca:pending() == 50 end, 5, "a full inbox")
    -- Reading paused: nothing more arrives however long we wait.
    for _ = 1, 30 do p2p.run_nowait() end
    assert.equal(50, (ca:pending()))
    assert.is_nil(ca.dropped)
    local got = {}
    h.wait(function()
      while true do
        local m = ca:recv()
        if not m then break end
        got[#got + 1] = m
      end
      return #got == 400
    end, 10, "every message")
    for i = 1, 400 do assert.equal("p" .. i, got[i]) end
    assert.equal(0, a:stat().buffered_inbox)
  end)

  it("in pull mode still sees a peer that hangs up while reading is paused",
    function()
    local _, b, ca, cb = pair(keep, { incoming_app_message_queue_size = 10 })
    ca:pull(true)
    local closed
    ca:on("close", function(ev) closed = ev.code or ev.reason end)
    for i = 1, 100 do assert(cb:send("q" .. i)) end
    h.wait(function() return ca:pending() == 10 end, 5, "a full inbox")
    b:close()
    -- The rate tick sees the peer's FIN on the paused socket and reads on
    -- to its Disconnect.
    h.wait(function() return closed ~= nil end, 5, "the hang-up")
    assert.equal(10, (ca:pending()))
  end)

  it("counts inbox bytes in the node's incoming budget", function()
    local a, _, ca, cb = pair(keep)
    for _ = 1, 5 do assert(cb:send(string.rep("x", 1000))) end
    h.wait(function() return ca:pending() == 5 end, 5, "five messages")
    local s = a:stat()
    assert.equal(5000, s.buffered_inbox)
    assert.is_true(s.buffered >= 5000)
    ca:recv()
    assert.equal(4000, a:stat().buffered_inbox)
  end)

  it("rejects a non-boolean pull mode", function()
    local _, _, ca = pair(keep)
    assert.has_error(function() ca:pull("yes") end,
      "conn:pull: on: expected a boolean or nil, got 'yes'")
  end)
end)
