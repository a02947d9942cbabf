-- Heap allocations per handshake. spec/c/hs_allocs.c (built against
-- build/libluap2p.a with the allocator wrapped, see its header) runs
-- handshakes between two C nodes on one loop and counts what the library
-- allocates once warm: nothing, on either side, whether the handshake
-- ends in Ack or in a Nack without points. The state machine keeps the
-- usual items and its output inline and the loop reuses handshake and
-- connection blocks; larger items (a 255-byte chain name, a Nack of 100
-- points) take the heap, and the specs below drive those paths too (under
-- `make sanitize`, with ASan watching them).
local p2p = require "luap2p"
local core = p2p.core
local h = require "helper"

local sh = h.plain_sh

-- Run the harness; returns the handshakes counted and the allocations.
local function count_allocs(mode)
  local out, rc = sh("timeout 90 build/hs_allocs " .. mode ..
    " 100 200")
  assert.equal(0, rc, out)
  local n, allocs = out:match("handshakes (%d+) allocations (%d+)")
  assert.is_truthy(n, out)
  return tonumber(n), tonumber(allocs), out
end

-- 100 distinct points, each "10.0.X.Y:9732" (the most a Nack carries).
local function many_points()
  local pts = {}
  for i = 1, 100 do
    pts[i] = string.format("10.0.%d.%d:9732", i // 50, i % 50 + 1)
  end
  return pts
end

describe("handshake allocations", function()
  describe("spec/c/hs_allocs.c", function()
    setup(function()
      local out, rc = sh("make --no-print-directory hs-allocs")
      assert.equal(0, rc, out)
    end)

    it("counts no heap allocation per acked handshake once warm, both " ..
       "sides together", function()
      local n, allocs, out = count_allocs("ack")
      assert.equal(200, n)
      assert.equal(0, allocs, out)
    end)

    it("counts none either when the server refuses with a Nack", function()
      local n, allocs, out = count_allocs("nack")
      assert.equal(200, n)
      assert.equal(0, allocs, out)
    end)
  end)

  describe("items past the inline buffers", function()
    after_each(function()
      collectgarbage()
      collectgarbage()
    end)

    -- Move bytes between two state machines until both are finished or
    -- nothing moves; decide(hs) answers the metadata. Returns the events
    -- of each side.
    local function exchange(a, b, decide_a, decide_b)
      local evs = { [a] = {}, [b] = {} }
      local inbox = { [a] = "", [b] = "" }
      local decide = { [a] = decide_a, [b] = decide_b }
      local done = {}
      for _ = 1, 20 do
        inbox[b] = inbox[b] .. a:output()
        inbox[a] = inbox[a] .. b:output()
        for _, hs in ipairs { a, b } do
          while not done[hs] and #inbox[hs] > 0 do
            local ev, used = hs:feed(inbox[hs])
            assert.is_not_nil(ev, used)
            inbox[hs] = inbox[hs]:sub(used + 1)
            if ev == "need_more" then break end
            table.insert(evs[hs], ev)
            if ev == "metadata" then
              if decide[hs] then
                decide[hs](hs)
                done[hs] = true
              else
                assert(hs:ack())
              end
            elseif ev == "acked" or ev == "nacked" then
              done[hs] = true
            end
          end
        end
        if done[a] and done[b] then break end
      end
      return evs[a], evs[b]
    end

    it("reach Ack with a 255-byte chain name on both sides", function()
      local chain = string.rep("c", 255)
      local a = core.handshake { identity = core.identity_generate(),
        incoming = false, pow_bits = 0, chain = chain }
      local b = core.handshake { identity = core.identity_generate(),
        incoming = true, pow_bits = 0, chain = chain }
      local ea, eb = exchange(a, b)
      assert.same({ "conn_msg", "metadata", "acked" }, ea)
      assert.same({ "conn_msg", "metadata", "acked" }, eb)
      assert.equal(chain, a:remote().chain)
      assert.equal(chain, b:remote().chain)
      assert.is_truthy(a:channel())
    end)

    it("carry a Nack of 100 points from the state machine to the other",
      function()
      local pts = many_points()
      local a = core.handshake { identity = core.identity_generate(),
        incoming = false, pow_bits = 0 }
      local b = core.handshake { identity = core.identity_generate(),
        incoming = true, pow_bits = 0 }
      local ea, eb = exchange(a, b, nil, function(hs)
        assert(hs:nack(3, pts))
      end)
      assert.same({ "conn_msg", "metadata", "nacked" }, ea)
      assert.same({ "conn_msg", "metadata" }, eb)
      assert.equal(3, a:remote().nack_motive)
      assert.same(pts, a:remote().nack_points)
    end)

    it("carry them between two nodes over TCP, then handshake again",
      function()
      local chain = string.rep("n", 255)
      -- A node's verdict names at most 50 points (Octez's Nack lists);
      -- about 850 bytes, still past the inline buffers.
      local pts = { table.unpack(many_points(), 1, 50) }
      local srv = h.quiet { chain = chain, policies = { {
        name = "refuse_first",
        authenticated = function(n)
          n.state.seen = (n.state.seen or 0) + 1
          if n.state.seen == 1 then return "nack", 3, pts end
          return "ack"
        end,
      } } }
      local cli = h.quiet { chain = chain }
      local rc = h.record(cli)
      assert(cli:connect(srv.addr))
      h.wait(function() return #rc.nacked == 1 end, 10, "the Nack")
      assert.equal(3, rc.nacked[1].motive)
      assert.same(pts, rc.nacked[1].points)
      h.wait(function() return h.nconns(cli) == 0 end, 10, "closed")
      assert(cli:connect(srv.addr))
      h.wait(function() return #rc.connected == 1 end, 10, "connected")
      h.close(cli, srv)
    end)
  end)
end)
