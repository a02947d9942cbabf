-- Regression: a process that closes its nodes and exits without
-- running the loop again must not leak them. The reproducer runs in a
-- child lua5.4 with libasan preloaded: LeakSanitizer's interceptors see
-- the plain build's allocations too, so this needs no sanitized build.
local asan_runtime = require("helper").asan_runtime

describe("regress: exit after close", function()
  it("frees every node and connection when the Lua state closes", function()
    local rt = asan_runtime()
    if not rt then
      pending("gcc's libasan.so not found: cannot check leaks at exit")
      return
    end
    -- The core is preloaded too, so that it stays mapped after Lua's
    -- dlclose and the report names our functions.
    local so = package.searchpath("luap2p.core", package.cpath)
    local cwd = os.getenv("PWD") or "."
    if so:sub(1, 1) ~= "/" then so = cwd .. "/" .. so end
    local cmd = string.format(
      "LD_PRELOAD=%q ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS= " ..
      "timeout 30 lua5.4 spec/regress/exit_after_close.lua 2>&1",
      rt .. ":" .. so)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok, _, code = p:close()
    assert.matches("closed", out)
    assert.falsy(out:find("LeakSanitizer", 1, true),
      "leak at exit:\n" .. out:sub(1, 1500))
    assert.is_true(ok, "exit " .. tostring(code) .. ": " .. out:sub(1, 500))
  end)
end)
