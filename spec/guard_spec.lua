-- Limits of guarded calls (core.guard, policy.guard, every hook of every
-- policy): instructions across coroutines, heap growth, wall clock; and
-- the rate limit on error reports (policy_error, error, stderr).
local p2p = require "luap2p"
local policy = require "luap2p.policy"
local report = require "luap2p.report"
local h = require "helper"
local core = p2p.core

local MiB = 1024 * 1024

describe("core.guard", function()
  it("stops a loop inside coroutine.wrap(...)() and inside a coroutine " ..
     "created in the call", function()
    for _, fn in ipairs{
      function() coroutine.wrap(function() while true do end end)() end,
      function()
        local co = coroutine.create(function() while true do end end)
        coroutine.resume(co) -- swallowed here: the caller's turn next
        while true do end
      end,
      function()
        -- coroutines within coroutines, each with a loop
        coroutine.wrap(function()
          coroutine.wrap(function() while true do end end)()
        end)()
      end,
    } do
      local ok, err = core.guard(100000, 0, 0, fn)
      assert.is_false(ok)
      assert.equal("instruction budget exceeded (100000 instructions)", err)
    end
  end)

  it("counts the instructions of every coroutine against one budget",
    function()
    -- 20 coroutines of 20 000 instructions each: 400 000 in all.
    local function work()
      for _ = 1, 20 do
        coroutine.wrap(function() for _ = 1, 5000 do end end)()
      end
      return "done"
    end
    assert.same({ true, "done" }, { core.guard(10000000, 0, 0, work) })
    assert.same({ false, "instruction budget exceeded (100000 instructions)" },
      { core.guard(100000, 0, 0, work) })
  end)

  it("refuses heap growth over the memory limit before allocating, and " ..
     "lets garbage through", function()
    local ok, err = core.guard(0, 16 * MiB, 0, function()
      return #string.rep("x", 64 * MiB)
    end)
    assert.is_false(ok)
    assert.equal("memory limit exceeded (16777216 bytes)", err)
    ok, err = core.guard(0, 16 * MiB, 0, function()
      local t = {}
      for i = 1, 1e7 do t[i] = i end
    end)
    assert.is_false(ok)
    assert.equal("memory limit exceeded (16777216 bytes)", err)
    -- 200 MiB allocated in all, 1 MiB alive at a time.
    assert.same({ true, 200 }, { core.guard(0, 16 * MiB, 0, function()
      local n = 0
      for _ = 1, 200 do n = n + #string.rep("x", MiB) // MiB end
      return n
    end) })
    -- a refused allocation left the state usable
    assert.equal(3, #string.rep("x", 3))
  end)

  it("stops a call over its wall-clock limit: a Lua loop from the hook, " ..
     "a long C call when it returns", function()
    local ok, err = core.guard(0, 0, 0.05, function() while true do end end)
    assert.is_false(ok)
    assert.equal("time limit exceeded (0.05 s)", err)
    -- string.rep of 256 MiB copies 256 MiB: far longer than 1 us.
    ok, err = core.guard(0, 0, 1e-6, function()
      return #string.rep("x", 256 * MiB)
    end)
    assert.is_false(ok)
    assert.equal("time limit exceeded (1e-06 s)", err)
  end)

  it("passes results and errors through, and nests (the outer limits " ..
     "count)", function()
    assert.same({ true, 3, "x" }, { core.guard(1000, 0, 0,
      function(a, b) return a + b, "x" end, 1, 2) })
    local ok, err = core.guard(1000, 0, 0, function() error("boom") end)
    assert.is_false(ok)
    assert.matches("boom\nstack traceback:", err, 1, true)
    assert.same({ true, true, "inner" }, { core.guard(1000, 0, 0, function()
      return core.guard(10, 0, 0, function() return "inner" end)
    end) })
    assert.same({ false, "instruction budget exceeded (100000 instructions)" },
      { core.guard(100000, 0, 0, function()
          return core.guard(0, 0, 0, function() while true do end end)
        end) })
  end)

  it("leaves the caller's debug hook in place", function()
    local function hook() end
    debug.sethook(hook, "", 1000000)
    core.guard(1000, 0, 0, function() end)
    core.guard(1000, 0, 0, function() while true do end end)
    local fn, mask, count = debug.gethook()
    debug.sethook()
    assert.equal(hook, fn)
    assert.equal("", mask)
    assert.equal(1000000, count)
  end)
end)

describe("policy limits", function()
  local keep = h.keeper(before_each, after_each)

  local function node(policies, cfg)
    cfg = cfg or {}
    cfg.default_policies = false
    cfg.policies = policies
    return keep(h.node(cfg))
  end

  -- An accept hook that misbehaves: the accept is refused ("policy
  -- error", fail closed) and a policy_error names the limit.
  local function refuses(hook, cfg, limits)
    local a = node({ { name = "bad", accept = hook, limits = limits } }, cfg)
    local ev = h.record(a)
    local c = h.raw(a.addr)
    h.wait_raw({ c }, function() return c.closed end, 10, "refusal")
    assert.equal("policy error", ev.refused[1].reason)
    assert.equal("bad", ev.policy_error[1].policy)
    assert.equal("accept", ev.policy_error[1].hook)
    return ev.policy_error[1].message, a
  end

  it("gives the safe default when an accept hook loops in a coroutine",
    function()
    local msg = refuses(function()
      coroutine.wrap(function() while true do end end)()
    end, { hook_budget = 100000 })
    assert.equal("instruction budget exceeded (100000 instructions)", msg)
  end)

  it("gives the safe default when a hook allocates 64 MiB per call",
    function()
    local kept = {}
    local msg = refuses(function()
      kept[#kept + 1] = string.rep("x", 64 * MiB)
    end, { hook_memory = 32 * MiB })
    assert.equal("memory limit exceeded (33554432 bytes)", msg)
    assert.equal(0, #kept)
  end)

  it("gives the safe default when a hook runs past hook_time", function()
    local msg = refuses(function() while true do end end,
      { hook_budget = 0, hook_time = 0.05 })
    assert.equal("time limit exceeded (0.05 s)", msg)
  end)

  it("takes a policy's own limits over the node's", function()
    local msg = refuses(function()
      for _ = 1, 100000 do end
      return true
    end, { hook_budget = 10000000 }, { budget = 5000 })
    assert.equal("instruction budget exceeded (5000 instructions)", msg)
    assert.equal("limits.budget: expected a number >= 0 (an integer)",
      policy.validate({ limits = { budget = "many" } }))
    assert.equal("limits: unknown key 'cpu' (budget, memory, time)",
      policy.validate({ limits = { cpu = 1 } }))
  end)

  it("refuses negative limits in the config", function()
    for _, key in ipairs{ "hook_budget", "hook_memory", "hook_time" } do
      local ok, err = pcall(p2p.new, { identity = core.identity_generate(),
                                       [key] = -1 })
      assert.is_false(ok)
      assert.matches("p2p.new: config." .. key .. ": expected ", err, 1, true)
    end
  end)
end)

describe("error reports", function()
  local keep = h.keeper(before_each, after_each)

  -- Account for every failure: a report stands for itself plus the
  -- `suppressed` it carries; a summary only for its `suppressed`.
  local function accounted(list)
    local n = 0
    for _, ev in ipairs(list) do
      n = n + (ev.summary and 0 or 1) + (ev.suppressed or 0)
    end
    return n
  end

  it("rate-limits policy_error events and counts what was suppressed",
    function()
    local a = keep(h.node{ default_policies = false, policies = { {
      name = "noisy", event = function(_, ev)
        if ev.type == "new_point" then error("noisy") end
      end } } })
    local ev = h.record(a)
    local t0 = p2p.now()
    for _ = 1, 1000 do a:_event({ type = "new_point" }) end
    local elapsed = p2p.now() - t0
    assert.equal(1000, a:stat().policy_errors)
    assert.is_true(#ev.policy_error <= report.BURST + report.RATE * elapsed
      + 1, #ev.policy_error .. " events for 1000 errors")
    h.wait(function() return accounted(ev.policy_error) == 1000 end, 5,
      "the summary")
    local last = ev.policy_error[#ev.policy_error]
    assert.is_true(last.summary)
    assert.equal("noisy", last.policy)
    assert.equal("event", last.hook)
    assert.equal(last.suppressed .. " more errors suppressed", last.message)
  end)

  it("sends a failing listener to an error event, stderr only when " ..
     "nobody listens", function()
    local a = keep(h.node{ default_policies = false })
    a:on("new_point", function() error("listener broke") end)
    local errs = {}
    a:on("error", function(ev) errs[#errs + 1] = ev end)
    a:_event({ type = "new_point" })
    assert.equal(1, #errs)
    assert.equal("new_point listener", errs[1].where)
    assert.matches("listener broke", errs[1].message)
    assert.equal(1, a:stat().errors)
  end)

  it("rate-limits the errors of a timer throwing every 1 ms, with the " ..
     "count of what was suppressed", function()
    local got = {}
    local function listen(ev) got[#got + 1] = ev end
    p2p.on("error", listen)
    local fired = 0
    local t0 = p2p.now()
    local t = p2p.every(0.001, function()
      fired = fired + 1
      error("tick " .. fired)
    end)
    h.wait(function() return fired >= 300 end, 10, "300 firings")
    t:stop()
    local elapsed = p2p.now() - t0
    local direct = 0
    for _, ev in ipairs(got) do
      if not ev.summary then direct = direct + 1 end
    end
    assert.is_true(direct <= report.BURST + report.RATE * elapsed + 1,
      direct .. " reports in " .. elapsed .. " s")
    h.wait(function() return accounted(got) == fired end, 5, "the summary")
    assert.equal("timer", got[1].where)
    assert.matches("tick 1", got[1].message)
    assert.is_true(p2p.off("error", listen))
  end)

  it("writes what nobody listens for to stderr, rate-limited", function()
    local script = os.tmpname()
    h.write_file(script, [[
      local p2p = require "luap2p"
      local n = 0
      local t = p2p.every(0.001, function()
        n = n + 1
        if n == 300 then p2p.stop() end
        error("tick " .. n)
      end)
      p2p.run()
      t:stop()
      -- exit at once: the count of what was suppressed last comes at exit
    ]])
    local f = io.popen("lua5.4 " .. script .. " 2>&1")
    local out = f:read("a")
    f:close()
    os.remove(script)
    local reports, suppressed = 0, 0
    for line in out:gmatch("[^\n]+") do
      if line:match("^luap2p: timer error") then
        reports = reports + 1
        local j = line:match("^luap2p: timer error %((%d+) earlier " ..
          "reports? suppressed%): ")
        if j then suppressed = suppressed + tonumber(j) end
      end
      local k = line:match("^luap2p: report error: (%d+) more errors")
      if k then suppressed = suppressed + tonumber(k) end
    end
    assert.is_true(reports >= report.BURST and reports < 300, out)
    assert.equal(300, reports + suppressed)
    assert.is_true(#out < 300 * 200, #out .. " bytes on stderr")
  end)

  it("reports what a node suppressed when it closes", function()
    local a = h.node{ default_policies = false }
    a:on("new_point", function() error("listener broke") end)
    local errs = {}
    a:on("error", function(ev) errs[#errs + 1] = ev end)
    for _ = 1, 100 do a:_event({ type = "new_point" }) end
    assert.is_true(#errs < 100)
    h.close(a)
    assert.equal(100, accounted(errs))
    assert.is_true(errs[#errs].summary)
  end)
end)
