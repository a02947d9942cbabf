-- The known-peers bound (config.known_peers_max): over it, the oldest seen
-- peers go first, then by peer id, never a trusted or connected one, down
-- to 3/4 of the bound. Checked against a full sort by (last seen, id) on
-- tables with many equal times.
local p2p = require "luap2p"
local h = require "helper"

-- What a full sort by (last_seen, id) removes: the first k candidates.
local function reference(peers, live, k)
  local c = {}
  for id, rec in pairs(peers) do
    if not rec.trusted and not live[id] then
      c[#c + 1] = { rec.last_seen or 0, id }
    end
  end
  table.sort(c, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local gone = {}
  for i = 1, math.min(k, #c) do gone[c[i][2]] = true end
  return gone
end

describe("known peers", function()
  local keep = h.keeper(before_each, after_each)

  it("forget the oldest seen first, then by id, never trusted ones",
    function()
    local node = keep(assert(p2p.new{ identity = h.identity(),
      default_policies = false, known_peers_max = 1000000 }))
    local rng = 12345
    local function rand(n) -- a fixed sequence: the global one stays as is
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    for trial = 1, 200 do
      node.peers, node._npeers = {}, 0
      local n = rand(60)
      for i = 1, n do
        local rec = node:peer(string.format("id%03d-%d", rand(999), i))
        rec.last_seen = rand(8) -- few distinct times: many ties
        if rand(5) == 1 then rec.trusted = true end
      end
      local target = rand(n + 1) - 1
      local before = {}
      for id, rec in pairs(node.peers) do before[id] = rec end
      local gone = reference(node.peers, {}, node._npeers - target)
      node:_evict_peers(target)
      local count = 0
      for id in pairs(before) do
        assert.equal(not gone[id], node.peers[id] ~= nil,
          "trial " .. trial .. ": " .. id)
        if node.peers[id] then count = count + 1 end
      end
      assert.equal(count, node._npeers, "trial " .. trial)
    end
  end)

  it("stay under their bound as new peers come", function()
    local node = keep(assert(p2p.new{ identity = h.identity(),
      default_policies = false, known_peers_max = 40 }))
    node:trust("idtrusted")
    for i = 1, 500 do node:peer("id" .. i) end
    assert.is_true(node:peer_count() <= 40)
    assert.truthy(node.peers.idtrusted)
    assert.truthy(node.peers.id500)
    assert.is_nil(node.peers.id1)
    assert.is_true(node:stat().evicted_peers > 400)
  end)
end)
