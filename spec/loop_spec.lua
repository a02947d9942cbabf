-- The loop binding: timers, the embedding entry points, the error funnel.
local p2p = require "luap2p"
local core = p2p.core

describe("loop", function()
  it("fires a timer after its delay even when Lua ran long outside the loop",
    function()
    -- Regression: the loop's cached time went stale while specs ran
    -- without the loop, and new timers fired at once.
    local t0 = core.now()
    while core.now() - t0 < 0.3 do end
    local fired_at
    local start = core.now()
    core.timer(0.2, nil, function() fired_at = core.now() end)
    assert(p2p.wait(function() return fired_at ~= nil end, 2))
    assert.is_true(fired_at - start >= 0.19, "fired after " ..
      (fired_at - start))
  end)

  it("repeats, stops and reports a stopped timer as closed", function()
    local n = 0
    local t
    t = core.timer(0.01, 0.01, function()
      n = n + 1
      if n == 3 then t:stop() end
    end)
    assert(p2p.wait(function() return n == 3 end, 2))
    for _ = 1, 5 do core.run("nowait") end
    assert.equal(3, n)
    assert.matches("closed", tostring(t))
    assert.has_error(function() t:stop() end,
      "attempt to use a closed timer")
  end)

  it("gives a backend fd and timeout for embedding", function()
    local fd = p2p.backend_fd()
    assert.is_true(math.type(fd) == "integer" and fd >= 0)
    local t = core.timer(5, nil, function() end)
    core.run("nowait")
    local timeout = p2p.backend_timeout()
    assert.is_true(timeout > 0 and timeout <= 5000)
    t:stop()
  end)

  it("reports an error in a callback and keeps running", function()
    local reported
    local prev = core.on_error(function(where, msg)
      reported = where .. ": " .. msg
    end)
    local after = false
    core.timer(0, nil, function() error("boom") end)
    core.timer(0.01, nil, function() after = true end)
    assert(p2p.wait(function() return after end, 2))
    -- on_error hands back the reporter it replaced (luap2p's own)
    assert.equal(require("luap2p.report").process_error, prev)
    core.on_error(prev)
    assert.matches("^timer: .*boom", reported)
  end)
end)
