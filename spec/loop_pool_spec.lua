-- The loop's key-job worker pool (core/net/workers.c) and the buffers its
-- nodes share (core/net/handler.c): kept when the last node closes, for
-- the loop's next node, and stopped and freed when the loop closes. The
-- steps run in a child lua5.4 (spec/loop_pool.lua) so that its thread
-- counts start from a loop that never had a node; with gcc's libasan
-- preloaded there, LeakSanitizer checks that nothing is left at exit.
local asan_runtime = require("helper").asan_runtime

describe("the loop's worker pool", function()
  local out, steps
  setup(function()
    local so = package.searchpath("luap2p.core", package.cpath)
    local cwd = os.getenv("PWD") or "."
    if so:sub(1, 1) ~= "/" then so = cwd .. "/" .. so end
    local rt = asan_runtime()
    -- The core is preloaded with the runtime, so that it stays mapped
    -- after Lua's dlclose and a report names our functions.
    local pre = rt and string.format(
      "LD_PRELOAD=%q ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS= ",
      rt .. ":" .. so) or "env -u LD_PRELOAD "
    local p = assert(io.popen(pre .. "timeout 30 lua5.4 spec/loop_pool.lua " ..
      "2>&1; echo \"rc=$?\""))
    out = p:read("a")
    p:close()
    steps = {}
    for name, n in out:gmatch("(%S+) (%d+)\n") do steps[name] = tonumber(n) end
  end)

  it("starts the threads a node asks for with the loop's first node",
     function()
    assert.equal("0", out:match("rc=(%d+)\n$"), out)
    assert.equal(steps.start + 2, steps.first, out)
  end)

  it("keeps them when the last node closes, for the loop's next node",
     function()
    assert.equal(steps.first, steps.first_closed, out)
    assert.equal(steps.first, steps.second, out)
    assert.equal(steps.first, steps.second_closed, out)
  end)

  it("stops them when the loop closes, leaving nothing behind", function()
    assert.equal(steps.start, steps.loop_closed, out)
    assert.falsy(out:find("LeakSanitizer", 1, true),
      "leak at exit:\n" .. out:sub(1, 1500))
  end)
end)
