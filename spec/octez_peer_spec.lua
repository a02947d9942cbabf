-- A luap2p node with its default policies and no user code, next to a peer
-- that behaves as an Octez node does towards a silent peer
-- (docs/OCTEZ.md, "After the Ack"): it is sent Get_current_branch once
-- (src/lib_shell/p2p_reader.ml, on_launch), Bootstrap from time to time,
-- and is dropped without a Disconnect when the Octez node prunes
-- (src/lib_p2p/p2p_maintenance.ml, p2p_socket.ml close).
local p2p = require "luap2p"
local h = require "helper"
local core = p2p.core

-- Get_current_branch (tag 0x10) for a chain id of 4 bytes.
local CHAIN_ID = "\x7a\x06\xa7\x70" -- mainnet's chain id bytes (NetXdQprcVkpaWU)

-- The "Octez" side: a bare node (no policies) that records every message
-- it gets and speaks only when told.
local function octez_like(keep)
  local o = keep(h.node{ default_policies = false })
  o.got = { app = {}, advertise = {}, swap_request = 0, other = {} }
  o:on("message", function(ev)
    table.insert(o.got.app, { tag = ev.tag, payload = ev.payload })
  end)
  return o
end

-- The luap2p node under test: default policies, no listener, no hook.
local function stock(keep, cfg)
  local c = { min_connections = 1, expected_connections = 1,
              max_connections = 4, maintenance_interval = 1 }
  for k, v in pairs(cfg or {}) do c[k] = v end
  local n = keep(h.node(c))
  for _, entry in ipairs(n._stack) do
    local r = entry.name == "maintenance" and entry.module._RECONNECT
    -- Test-only: Octez waits 60 s after a normal disconnection.
    if r then r.disconnection, r.initial = 0.2, 0.2 end
  end
  return n
end

describe("a luap2p node next to an Octez node", function()
  local keep = h.keeper(before_each, after_each)

  it("stays silent on Get_current_branch, keeps reading, answers " ..
     "Bootstrap with points Octez decodes", function()
    local o = octez_like(keep)
    -- Octez's side of the P2P messages, decoded by the core: a bad one
    -- would close the connection and show up as decoding_error.
    local ro = h.record(o)
    local raw = {}
    o._message_orig = o._message
    o._message = function(self, id, tag, payload)
      if tag < p2p.APP_TAG then
        local m = core.msg_decode(string.pack(">I2", tag) .. payload)
        raw[#raw + 1] = m
      end
      return self._message_orig(self, id, tag, payload)
    end
    -- A few known public points on the stock node, so it has something
    -- to advertise (points seen through real connections only).
    local others = {}
    local n = stock(keep, { max_connections = 10 })
    for i = 1, 3 do
      others[i] = keep(h.quiet{})
      assert(others[i]:connect(n.addr))
    end
    -- Their points must be known public before o asks: with none, the
    -- node has nothing to advertise and stays silent.
    h.wait(function() return h.nconns(n) == 3 end, 5, "three peers")
    local rn = h.record(n)
    assert(n:connect(o.addr))
    h.wait(function() return h.nconns(o) == 1 end, 5, "connected")
    local conn = o:connections()[1]
    -- What Octez sends a new peer: Get_current_branch, once per chain.
    assert(conn:send(CHAIN_ID, 0x10))
    -- Then Bootstrap, answered by an Advertise.
    for round = 1, 2 do
      assert(conn:send_msg{ type = "bootstrap" })
      h.wait(function()
        local k = 0
        for _, m in ipairs(raw) do
          if m.type == "advertise" then k = k + 1 end
        end
        return k >= round
      end, 5, "advertise " .. round)
      -- Another Get_current_branch between the two rounds: the node
      -- keeps reading after an application message nobody consumes.
      if round == 1 then assert(conn:send(CHAIN_ID, 0x10)) end
    end
    -- Correctly silent: no application message, nothing undecodable.
    assert.equal(0, #o.got.app)
    assert.equal(0, #ro.decoding_error)
    assert.equal(0, #rn.decoding_error)
    for _, m in ipairs(raw) do
      if m.type == "advertise" then
        assert.is_true(#m.points >= 1 and #m.points <= 50)
        for _, p in ipairs(m.points) do
          assert.truthy(core.point_parse(p))
          assert.matches("^127%.", p)
        end
      end
      -- never a Disconnect while running, never an unknown P2P tag
      assert.truthy(m.type == "advertise" or m.type == "swap_request" or
        m.type == "bootstrap", tostring(m.type))
    end
    -- The two Get_current_branch wait in the inbox, unread, and the
    -- connection still runs and reads.
    local mine = n:connection(o.peer_id)
    assert.truthy(mine)
    assert.equal(2, #mine.inbox - mine._head + 1)
    assert.is_nil(mine._paused)
  end)

  it("after an Octez-style prune (socket closed, no Disconnect) it " ..
     "does not greylist and reconnects through maintenance", function()
    local o = octez_like(keep)
    local n = stock(keep)
    local rn = h.record(n)
    assert(n:connect(o.addr))
    h.wait(function() return #rn.connected == 1 and h.nconns(o) == 1 end,
      5, "connected")
    local conn = o:connections()[1]
    -- Octez closes the socket without a word.
    o._c:disconnect(conn.id, "pruned", false)
    h.wait(function() return #rn.disconnected == 1 end, 5, "dropped")
    assert.equal("EOF", rn.disconnected[1].code)
    h.wait(function() return #rn.connected == 2 end, 10, "reconnected")
    assert.is_false(n:banned("127.0.0.1"))
    assert.is_false(n:banned(o.peer_id))
    assert.equal(0, #rn.banned)
  end)
end)
