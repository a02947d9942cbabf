-- luap2p.policies.private_mode end to end (docs/PROTOCOL.md §7-8): a private
-- node among five public ones talks only to trusted points and peers,
-- announces private_node, never advertises nor acts on Advertise/Swap, and
-- its peers never advertise it.
local p2p = require "luap2p"
local h = require "helper"

local node = h.quiet

local function linked(a, b)
  return a:connection(b.peer_id) ~= nil and b:connection(a.peer_id) ~= nil
end

describe("private mode", function()
  local keep = h.keeper(before_each, after_each)

  it("with 6 nodes: only trusted points and peers, in and out", function()
    -- a, b, c, d, e public; p private, trusting a's point and d's peer id
    local a, b, c, d, e = keep(node(), node(), node(), node(), node())
    -- p records the Advertise messages it receives, before private_mode
    local adverts = {}
    local p = keep(node{
      private_mode = true, trusted = { a.addr },
      policies = { {
        name = "tap",
        advertise = function(n, conn, points)
          adverts[#adverts + 1] = points
        end,
      } },
    })
    p:trust(d.peer_id)
    local rp = h.record(p)
    local rb = h.record(b)

    -- out: trusted point a yes; untrusted b refused before any dial
    assert(p:connect(a.addr))
    h.wait(function() return linked(p, a) end, 5, "p -> a")
    local id, err, code = p:connect(b.addr)
    assert.is_nil(id)
    assert.equal("EREFUSED", code)
    assert.matches("private mode", err)
    assert.equal(1, #rp.connecting)

    -- the private_node flag reaches the peer
    assert.is_true(a:connection(p.peer_id).metadata.private_node)
    assert.is_false(p:connection(a.peer_id).metadata.private_node)

    -- in: untrusted b is closed after authentication; trusted peer d in
    assert(b:connect(p.addr))
    h.wait(function() return #rb.disconnected == 1 end, 5, "b closed")
    assert.equal(0, #rb.connected)
    local closed = rp.disconnected[1]
    assert.matches("private mode", closed.reason)
    assert(d:connect(p.addr))
    h.wait(function() return linked(p, d) end, 5, "d -> p")

    -- a knows c and e (public, connected): its Advertise to p is ignored
    assert(c:connect(a.addr))
    assert(e:connect(a.addr))
    h.wait(function() return h.nconns(a) == 3 end, 5, "c, e -> a")
    local known = h.count(p.points)
    assert(a:connection(p.peer_id):send_msg({ type = "advertise",
      points = { c.addr, e.addr, "10.0.0.9:9" } }))
    -- a Bootstrap from p's trusted peer gets no answer from p
    local da = {}
    d:on("*", function(ev) da[#da + 1] = ev.type end)
    assert(d:connection(p.peer_id):send_msg({ type = "bootstrap" }))
    -- a Swap_request to p is ignored too
    assert(a:connection(p.peer_id):send_msg({ type = "swap_request",
      point = e.addr,
      peer_id = assert(p2p.core.peer_id_decode(e.peer_id)) }))
    h.wait(function() return #adverts == 1 end, 5, "advertise reached p")
    h.sleep(0.3)
    assert.equal(known, h.count(p.points))
    assert.is_nil(p.points["10.0.0.9:9"])
    assert.is_nil(p:connection(e.peer_id))
    assert.equal(2, h.nconns(p))
    for _, t in ipairs(da) do assert.not_equal("new_point", t) end

    -- a never advertises p (private): ask a for its points
    local c_to_a = c:connection(a.peer_id)
    local before = h.count(c.points)
    assert(c_to_a:send_msg({ type = "bootstrap" }))
    h.wait(function() return h.count(c.points) > before end, 5,
      "a advertised")
    assert.truthy(c.points[e.addr])
    assert.is_nil(c.points[p.addr])
    -- and a private peer is never asked for points by a's maintenance
    -- (checked in maintenance_spec); nor by p, which is private.
    assert.equal(0, #rp.policy_error)
  end)

  it("maintenance of a private node dials only trusted points and " ..
     "never sends Bootstrap", function()
    -- t1, t2 count the Bootstrap messages they receive
    local boots = 0
    local function tapped()
      return node{ policies = { {
        name = "boot_tap",
        bootstrap = function() boots = boots + 1 end,
      } } }
    end
    local t1, t2 = keep(tapped(), tapped())
    local u1, u2, u3 = keep(node(), node(), node())
    -- min_target 3 with 2 trusted points: short, yet private
    local p = keep(node{ private_mode = true, trusted = { t1.addr, t2.addr },
                         min_connections = 3, expected_connections = 3,
                         max_connections = 4, maintenance_interval = 0.1 })
    local rp = h.record(p)
    -- p knows three untrusted points as well
    for _, n in ipairs{ u1, u2, u3 } do p:point(n.addr) end
    h.wait(function() return linked(p, t1) and linked(p, t2) end, 5,
      "trusted dials")
    h.sleep(0.5) -- several maintenance rounds, all short
    assert.equal(2, h.nconns(p))
    assert.equal(2, #rp.connecting)
    for _, ev in ipairs(rp.connecting) do
      assert.truthy(ev.point == t1.addr or ev.point == t2.addr, ev.point)
    end
    for _, n in ipairs{ u1, u2, u3 } do assert.equal(0, h.nconns(n)) end
    assert.equal(0, boots)
    -- control: the same setup without private mode asks for points
    local q = keep(node{ trusted = { t1.addr }, min_connections = 3,
                         expected_connections = 3, max_connections = 4,
                         maintenance_interval = 0.1 })
    h.wait(function() return boots > 0 end, 5, "bootstrap from public q")
    assert.truthy(q)
  end)
end)
