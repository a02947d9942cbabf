-- embed: luap2p driven by another event loop (luv) through
-- p2p.backend_fd() + p2p.run_nowait() + p2p.backend_timeout(), with no
-- p2p.run() or p2p.wait() anywhere.
local p2p = require "luap2p"
local h = require "helper"

local ok_luv, uv = pcall(require, "luv")

describe("embed", function()
  if not ok_luv then
    pending("lua-luv is not installed (apt install lua-luv)")
    return
  end

  it("exchanges messages and fires luap2p timers inside uv.run()", function()
    local bridge = require("luap2p.luv").attach(uv)

    local a, b = h.node({ default_policies = false }),
                 h.node({ default_policies = false })
    local got_a, got_b, timer_fired, ticks = {}, {}, 0, 0
    a:on("message", function(ev)
      got_a[#got_a + 1] = ev.payload
      ev.conn:send("pong " .. ev.payload)
    end)
    local function finish()
      a:close()
      b:close()
      bridge:stop()
      uv.stop()
    end
    b:on("message", function(ev)
      got_b[#got_b + 1] = ev.payload
      if #got_b == 3 then finish() end
    end)
    b:on("connected", function(ev)
      local conn = ev.conn
      conn:send("1")
      -- luap2p timers must fire through the timeout path of the bridge.
      p2p.after(0.05, function()
        timer_fired = timer_fired + 1
        conn:send("2")
        p2p.after(0.05, function()
          timer_fired = timer_fired + 1
          conn:send("3")
        end)
      end)
    end)
    local tick = uv.new_timer()
    tick:start(5, 5, function() ticks = ticks + 1 end)
    local guard = uv.new_timer()
    local timed_out = false
    guard:start(5000, 0, function()
      timed_out = true
      finish()
    end)
    assert(b:connect(a.addr)) -- no bridge:pump(): the bridge re-arms itself
    uv.run()

    tick:close()
    guard:close()
    -- Let luap2p finish closing its handles, still without p2p.run().
    for _ = 1, 20 do p2p.run_nowait() end
    bridge:close()
    uv.run("nowait")

    assert.is_false(timed_out)
    assert.same({ "1", "2", "3" }, got_a)
    assert.same({ "pong 1", "pong 2", "pong 3" }, got_b)
    assert.equal(2, timer_fired)
    assert.is_true(ticks >= 5, "luv's own timer ran alongside: " .. ticks)
    assert.is_true(bridge.runs > 3)
    h.close()
  end)

  it("fires a luap2p timer made in a luv callback on time, and runs " ..
     "tasks, with nothing but uv.run()", function()
    local bridge = require("luap2p.luv").attach(uv)
    local order = {}
    local t = p2p.spawn(function()
      p2p.sleep(0.1)
      order[#order + 1] = "task slept 0.1"
    end)
    local start = uv.new_timer()
    local later = uv.new_timer()
    start:start(10, 0, function()
      -- Created from luv, while luap2p's loop waits on nothing sooner.
      p2p.after(0.2, function() order[#order + 1] = "luap2p timer 0.2" end)
      later:start(250, 0, function()
        order[#order + 1] = "luv timer 0.25"
        uv.stop()
      end)
    end)
    local guard = uv.new_timer()
    guard:start(5000, 0, function() uv.stop() end)
    uv.run()
    for _, handle in ipairs{ start, later, guard } do handle:close() end
    bridge:close()
    uv.run("nowait")
    assert.equal("done", t.status)
    assert.same({ "task slept 0.1", "luap2p timer 0.2", "luv timer 0.25" },
      order)
  end)

  it("runs examples/embed_luv.lua to completion", function()
    local out = require("check").run_lua("examples/embed_luv.lua", 20)
    assert.matches("a got ping after %d+ luv ticks", out)
    assert.matches("b got pong", out)
    assert.matches("done: luap2p ran inside the luv loop", out)
  end)
end)
