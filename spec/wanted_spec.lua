-- Which calls cross from the core into Lua (node:want, README "Events"):
-- an event type that no listener, waiting task, policy event hook (its
-- `events` list) nor the node's own bookkeeping takes stays in C, and so
-- does the accept hook when no policy has one. The binding counts the
-- calls that crossed (node._c:calls()); these specs check both sides:
-- nothing unwanted crosses, and whoever starts listening late (a
-- listener, a task, a reloaded policy) gets every event from then on.
local p2p = require "luap2p"
local dispatch = require "luap2p.dispatch"
local h = require "helper"

-- One handshake from a fresh client to `server`, both ends running.
local function handshake(server, keep)
  local client = keep(h.quiet{ default_policies = false })
  local done = false
  local t = client:spawn(function()
    assert(client:dial(server.addr))
    done = true
  end)
  h.wait(function()
    return t:done() and done and h.nconns(server) >= 1
  end, 5, "a handshake")
  client:close()
  h.wait(function() return h.nconns(server) == 0 end, 5, "the close")
end

local function crossed(node) return node._c:calls() end

-- Every event type that crossed was one the node's state needs or one
-- listed in `also`.
local function only_wanted(node, also)
  for kind, n in pairs(crossed(node).events) do
    if n > 0 then
      assert(dispatch.TRACKED[kind] or (also and also[kind]),
        kind .. " crossed into Lua " .. n .. " times and nobody takes it")
    end
  end
end

local function tmpdir()
  local p = io.popen("mktemp -d")
  local d = p:read("*l")
  p:close()
  return d
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("event crossings", function()
  local keep = h.keeper(before_each, after_each)

  it("keep to what the node's state needs when nobody listens", function()
    local a = keep(h.quiet{ default_policies = false })
    handshake(a, keep)
    local c = crossed(a)
    assert.equal(0, c.events.accepted)
    assert.equal(0, c.events.authenticated)
    assert.equal(0, c.accept) -- no policy has an accept hook
    assert.equal(1, c.authenticated)
    assert.equal(1, c.events.connected)
    assert.equal(1, c.events.disconnected)
    only_wanted(a)
  end)

  it("keep to what the default policies declare (no log)", function()
    local a = keep(h.quiet())
    handshake(a, keep)
    local c = crossed(a)
    assert.equal(0, c.events.accepted)
    assert.equal(0, c.events.authenticated)
    assert.equal(0, c.accept)
    assert.equal(1, c.events.connected)
    only_wanted(a)
  end)

  it("include every event when the log policy logs", function()
    local out = io.tmpfile()
    local a = keep(h.quiet{ log = "json", log_level = "debug",
                            log_file = out })
    handshake(a, keep)
    assert.equal(1, crossed(a).events.accepted)
    out:seek("set")
    assert.truthy(out:read("a"):find('"type":"accepted"', 1, true))
    out:close()
  end)

  it("still keep the peers and points of the node's state", function()
    local a = keep(h.quiet{ default_policies = false })
    local b = keep(h.quiet{ default_policies = false })
    local t = b:spawn(function() assert(b:dial(a.addr)) end)
    h.wait(function() return t:done() and h.nconns(a) == 1 end, 5)
    assert.equal(0, crossed(b).events.authenticated)
    assert.truthy(a.peers[b.peer_id])
    assert.truthy(b.peers[a.peer_id])
    assert.equal(a.peer_id, b.points[a.addr].peer_id)
    assert.equal("running", b.points[a.addr].state)
  end)

  it("reach a listener added late, from its first event on", function()
    local a = keep(h.quiet{ default_policies = false })
    handshake(a, keep)
    assert.equal(0, crossed(a).events.accepted)
    local got = {}
    a:on("accepted", function(ev) got[#got + 1] = ev end)
    a:on("authenticated", function(ev) got[#got + 1] = ev end)
    a:on("new_peer", function(ev) got[#got + 1] = ev end) -- Lua's own
    handshake(a, keep)
    assert.equal(3, #got)
    local by = {}
    for _, ev in ipairs(got) do by[ev.type] = ev end
    assert.truthy(by.accepted and by.authenticated and by.new_peer)
    assert.equal(by.authenticated.peer_id, by.new_peer.peer_id)
    assert.equal(1, crossed(a).events.accepted)
    only_wanted(a, { accepted = true, authenticated = true })
  end)

  it("take everything for a '*' listener", function()
    local a = keep(h.quiet{ default_policies = false })
    local seen = h.record(a)
    handshake(a, keep)
    assert.equal(1, #seen.accepted)
    assert.equal(1, #seen.authenticated)
    assert.equal(1, crossed(a).events.accepted)
  end)

  it("reach a waiting task, and stop once it has its event", function()
    local a = keep(h.quiet{ default_policies = false })
    local got
    local t = a:spawn(function() got = assert(a:wait_for("accepted", 5)) end)
    handshake(a, keep)
    h.wait(function() return t:done() end, 5, "the task")
    assert.equal("accepted", got.type)
    assert.equal(1, crossed(a).events.accepted)
    handshake(a, keep) -- nobody waits any more
    assert.equal(1, crossed(a).events.accepted)
  end)

  it("follow a policy's events list, and its reload", function()
    local dir = tmpdir()
    local path = dir .. "/watcher.lua"
    local policy = [[
return {
  name = "watcher",
  events = { %q },
  event = function(node, ev)
    node.state.seen = node.state.seen or {}
    table.insert(node.state.seen, ev.type)
  end,
}
]]
    write(path, policy:format("accepted"))
    local a = keep(h.quiet{ default_policies = false, policies = { path } })
    handshake(a, keep)
    -- Only the declared type reaches the hook, events of Lua's own too.
    assert.same({ "accepted" }, a.state.seen)
    assert.equal(0, crossed(a).events.authenticated)
    write(path, policy:format("authenticated"))
    assert(a:reload())
    a.state.seen = {}
    handshake(a, keep)
    assert.same({ "authenticated" }, a.state.seen)
    assert.equal(1, crossed(a).events.accepted) -- none since the reload
    assert.equal(1, crossed(a).events.authenticated)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("give every event to an event hook without a list", function()
    local kinds = {}
    local a = keep(h.quiet{ default_policies = false, policies = { {
      name = "all", event = function(_, ev) kinds[ev.type] = true end } } })
    handshake(a, keep)
    assert.is_true(kinds.accepted)
    assert.is_true(kinds.authenticated)
    assert.is_true(kinds.new_peer) -- Lua's own events too
  end)

  it("call the accept hook only while a policy has one", function()
    local dir = tmpdir()
    local path = dir .. "/door.lua"
    write(path, [[
return { name = "door",
  accept = function(node, point) node.state.asked = point; return nil end }
]])
    local a = keep(h.quiet{ default_policies = false, policies = { path } })
    handshake(a, keep)
    assert.equal(1, crossed(a).accept)
    assert.matches("^127%.0%.0%.1:", a.state.asked)
    write(path, 'return { name = "door" }\n')
    assert(a:reload())
    handshake(a, keep)
    assert.equal(1, crossed(a).accept)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("refuse a policy's bad events list at load", function()
    local ok, err = p2p.new{ identity = h.identity(), default_policies = false,
      policies = { { name = "bad", events = { 1 } } } }
    assert.is_nil(ok)
    assert.matches("events: expected a list of event types", err)
    ok, err = p2p.new{ identity = h.identity(), default_policies = false,
      policies = { { name = "bad", events = function() error("boom") end } } }
    assert.is_nil(ok)
    assert.matches("bad: events failed: .*boom", err)
    local a = keep(h.quiet{ default_policies = false })
    assert.has_error(function() a._c:want(42) end,
      "bad argument #1 to 'want' (expected a boolean or a set of event names)")
  end)
end)
