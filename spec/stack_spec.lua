-- The policy stack as the node runs it: order, verdicts, safe defaults.
local p2p = require "luap2p"
local h = require "helper"

local function node(policies, cfg)
  cfg = cfg or {}
  cfg.default_policies = false
  cfg.policies = policies
  cfg.hook_budget = cfg.hook_budget or 100000
  return h.node(cfg)
end

describe("policy stack", function()
  local keep = h.keeper(before_each, after_each)
  local function mk(...) return keep(node(...)) end

  it("asks policies in order: the first verdict decides, nil passes on",
    function()
    local calls = {}
    local first = { name = "first", accept = function(_, point)
      calls[#calls + 1] = "first " .. point:match("^[^:]+")
    end }
    local second = { name = "second", accept = function()
      calls[#calls + 1] = "second"
      return false, "second says no"
    end }
    local third = { name = "third", accept = function()
      calls[#calls + 1] = "third"
      return true
    end }
    local a = mk{ first, second, third }
    local ev = h.record(a)
    local c = h.raw(a.addr)
    h.wait_raw({ c }, function() return c.closed end, 5, "refusal")
    assert.same({ "first 127.0.0.1", "second" }, calls)
    assert.equal("second says no", ev.refused[1].reason)
    assert.equal("", c.data)
  end)

  it("calls every policy's event hook", function()
    local seen = {}
    local p1 = { event = function(_, ev) seen[#seen + 1] = "p1 " .. ev.type end }
    local p2 = { event = function(_, ev) seen[#seen + 1] = "p2 " .. ev.type end }
    local a = mk{ p1, p2 }
    a:ban("10.0.0.1", 1)
    local banned = {}
    for _, s in ipairs(seen) do
      if s:find("banned") then banned[#banned + 1] = s end
    end
    assert.same({ "p1 banned", "p2 banned" }, banned)
  end)

  for _, case in ipairs{
    { "errors", function() error("broken hook") end, "broken hook" },
    { "loops forever", function() while true do end end,
      "instruction budget exceeded" },
    { "returns a bad verdict", function() return "maybe" end,
      "bad verdict maybe" },
  } do
    it("fails closed when the accept hook " .. case[1] .. ", and lives on",
      function()
      local a = mk{ { name = "bad", accept = case[2] } }
      local ev = h.record(a)
      local c = h.raw(a.addr)
      h.wait_raw({ c }, function() return c.closed end, 5, "refusal")
      assert.equal("policy error", ev.refused[1].reason)
      assert.equal("bad", ev.policy_error[1].policy)
      assert.equal("accept", ev.policy_error[1].hook)
      assert.matches(case[3], ev.policy_error[1].message, 1, true)
      -- The node still serves: a connect attempt is answered.
      local c2 = h.raw(a.addr)
      h.wait_raw({ c2 }, function() return c2.closed end, 5, "second")
      assert.equal(2, #ev.refused)
    end)
  end

  it("closes after authentication when that hook fails", function()
    local a = mk{ { name = "bad", authenticated = function()
      error("no")
    end } }
    local b = mk()
    local ev = h.record(a)
    assert(b:connect(a.addr))
    h.wait(function() return #ev.disconnected > 0 end, 5, "close")
    assert.equal("EREFUSED", ev.disconnected[1].code)
    assert.equal("policy error", ev.disconnected[1].reason)
    assert.equal(0, h.nconns(a))
  end)

  it("cannot turn a hard refusal into an Ack", function()
    local a = mk({ { authenticated = function() return "ack" end } },
      { chain = "OTHER_CHAIN" })
    local b = mk()
    local ev = h.record(a)
    assert(b:connect(a.addr))
    h.wait(function() return #ev.nack_sent > 0 end, 5, "nack")
    assert.equal(2, ev.nack_sent[1].motive) -- Unknown_chain_name
    assert.equal(0, h.nconns(a))
  end)

  it("lets a policy Nack with its own motive and points", function()
    local a = mk{ { authenticated = function()
      return "nack", 1, { "192.0.2.1:9732", "not a point", "192.0.2.2:9732" }
    end } }
    local b = mk()
    local evb = h.record(b)
    assert(b:connect(a.addr))
    h.wait(function() return #evb.nacked > 0 end, 5, "nack")
    assert.equal(1, evb.nacked[1].motive)
    assert.same({ "192.0.2.1:9732", "192.0.2.2:9732" }, evb.nacked[1].points)
  end)

  -- The dialling side answers the accepting side's metadata with its own
  -- and its verdict in one write: a Nack naming many points (a full
  -- node's) comes behind the metadata, more than a metadata chunk. It is
  -- a Nack for the accepting side, not malformed input (the acl greylists
  -- that for a day: nodes Nacked by a seed lost it for good).
  for _, workers in ipairs{ 0, 1 } do
    it("hears a Nack with 50 points from the side that dialled " ..
       "(crypto_workers = " .. workers .. ")", function()
      local pts = {}
      for i = 1, 50 do pts[i] = "[2001:db8::" .. i .. ":1]:" .. 9700 + i end
      local a = mk(nil, { crypto_workers = workers })
      local b = mk({ { authenticated = function() return "nack", 1, pts end } },
        { crypto_workers = workers })
      local eva, evb = h.record(a), h.record(b)
      assert(b:connect(a.addr))
      h.wait(function() return #eva.nacked + #eva.auth_failed > 0 end, 5,
        "a's end of the handshake")
      assert.equal(0, #eva.auth_failed,
        eva.auth_failed[1] and eva.auth_failed[1].reason)
      assert.equal(1, eva.nacked[1].motive)
      assert.same(pts, eva.nacked[1].points)
      assert.equal(1, #evb.nack_sent)
    end)
  end

  for _, hook in ipairs{ "accept", "authenticated", "event", "message" } do
    it("survives a policy that closes the node inside " .. hook, function()
      local closer = {}
      closer[hook] = function(node, ...)
        node:close()
        collectgarbage()
      end
      local a = mk{ closer }
      local b = mk()
      local eb = h.record(b)
      local id = b:connect(a.addr)
      if hook == "message" then
        h.wait(function() return #eb.connected > 0 or
          #eb.disconnected > 0 end, 5, "handshake")
        for _, conn in ipairs(b:connections()) do conn:send("x") end
      end
      h.wait(function() return #eb.disconnected > 0 end, 5, "cut")
      assert.is_true(a._closed)
      -- The loop still serves others: b is fine.
      local c = mk()
      assert(c:connect(b.addr))
      h.wait(function() return h.nconns(b) == 1 end, 5, "new connection")
    end)
  end

  it("rejects a policy of the wrong shape at start with a clear error",
    function()
    local n, err, code = p2p.new{ identity = h.identity(),
      default_policies = false, policies = { { acept = function() end } } }
    assert.is_nil(n)
    assert.equal("EPOLICY", code)
    assert.matches("unknown hook 'acept'", err)
    n, err, code = p2p.new{ identity = h.identity(),
      default_policies = false, policies = { "/nonexistent/policy.lua" } }
    assert.is_nil(n)
    assert.equal("EPOLICY", code)
    assert.matches("/nonexistent/policy.lua", err)
  end)
  it("gives every node its own default policies, compiled once", function()
    local a = keep(h.quiet())
    local b = keep(h.quiet())
    assert.equal(#p2p.DEFAULT_POLICIES, #a:policies())
    for i, ea in ipairs(a._stack) do
      local eb = b._stack[i]
      assert.equal(ea.path, eb.path)
      -- The module's table, locals and closures are this node's.
      assert.are_not.equal(ea.module, eb.module)
      for k, f in pairs(ea.module) do
        if type(f) == "function" and
           debug.getinfo(f, "S").source == "@" .. ea.path then
          assert.are_not.equal(f, eb.module[k])
        end
      end
    end
    assert.are_not.equal(a._stack[4].module._RECONNECT,
                         b._stack[4].module._RECONNECT)
    -- A reloaded default policy still loads from its file.
    assert(a:reload(a._stack[2].path))
    assert.equal("acl", a._stack[2].name)
    assert.are_not.equal(b._stack[2].module, a._stack[2].module)
  end)

  it("runs a cached policy chunk in a fresh environment each time",
    function()
    local policy = require "luap2p.policy"
    local p = io.popen("mktemp -d")
    local dir = p:read("*l")
    p:close()
    local f = assert(io.open(dir .. "/lp2p_cached_policy.lua", "w"))
    f:write([[
loads = (loads or 0) + 1 -- a global: the policy's own environment
return { name = "cached", _loads = function() return loads end }
]])
    f:close()
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local one = assert(policy._resolve("lp2p_cached_policy", nil, true))
    os.remove(dir .. "/lp2p_cached_policy.lua") -- compiled once: not read again
    local two = assert(policy._resolve("lp2p_cached_policy", nil, true))
    package.path = saved
    os.execute("rm -rf '" .. dir .. "'")
    assert.equal(1, one.module._loads())
    assert.equal(1, two.module._loads())
    assert.are_not.equal(one.module, two.module)
    assert.is_nil(rawget(_G, "loads"))
  end)

  -- Code that still holds a closed node (a task, a p2p.after callback,
  -- another node's listener) can make a timer on it: such a timer never
  -- calls back, so it must not keep p2p.run() going either (a node:every
  -- held it for ever). Run in a process of its own, whose loop holds
  -- nothing else.
  it("lets p2p.run() return past the timers of a closed node", function()
    local c = require "cli_helper"
    local dir = h.tmpdir()
    local script = dir .. "/closed_timers.lua"
    h.write_file(script, [[
local p2p = require "luap2p"
local n = assert(p2p.new{ identity = p2p.core.identity_generate(),
                          pow_bits = 0, default_policies = false })
n:close()
local calls = 0
n:every(0.05, function() calls = calls + 1 end)
n:after(3600, function() calls = calls + 1 end)
p2p.run()
print("returned", calls)
]])
    local p = assert(io.popen(string.format("timeout 20 %s run %s 2>&1",
      c.q(c.CLI), c.q(script))))
    local out = p:read("a")
    local _, _, code = p:close()
    h.rmdir(dir)
    assert.equal(0, code, out) -- 124: killed by timeout, still running
    assert.equal("returned\t0\n", out)
  end)
end)

