-- examples/crawler.lua: the task-style crawler finds every node of a
-- network it only knows one point of, dialling several at a time.
local p2p = require "luap2p"
local h = require "helper"

describe("examples/crawler.lua", function()
  local keep = h.keeper(before_each, after_each)

  it("finds all 20 nodes of a chain from its first node, 4 at a time",
     function()
    -- A chain: node i dials node i + 1, so each knows only its
    -- neighbours, and only as points seen through real connections.
    local nodes = {}
    for i = 1, 20 do nodes[i] = keep(h.quiet()) end
    for i = 1, 19 do assert(nodes[i]:connect(nodes[i + 1].addr)) end
    h.wait(function()
      for i = 1, 19 do
        if not nodes[i]:connection(nodes[i + 1].peer_id) then return false end
      end
      return true
    end, 20, "the chain")
    local crawl = dofile("examples/crawler.lua")
    local results
    local t = p2p.spawn(function()
      results = crawl(nodes[1].addr, { concurrency = 4, timeout = 5 })
    end)
    h.wait(function() return t:done() end, 60, "the crawl")
    local ok, err = t:result()
    assert.is_true(ok, tostring(err))
    local found = 0
    for _, n in ipairs(nodes) do
      local r = results[n.addr]
      assert.truthy(r, "not reached: " .. n.addr)
      assert.equal("ack", r.answer, n.addr .. ": " .. tostring(r.error))
      assert.equal(n.peer_id, r.peer_id)
      found = found + 1
    end
    assert.equal(20, found)
    -- the crawler's node is closed: nothing of it is left on the loop
    h.wait(function()
      for _, n in ipairs(nodes) do
        if h.nconns(n) > 2 then return false end
      end
      return true
    end, 10, "the crawler's connections to close")
  end)
end)
