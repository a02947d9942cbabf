-- `make sanitize` runs every spec against build/asan/luap2p/core.so with
-- libasan preloaded (LUAP2P_SANITIZE=1). This spec proves that run really
-- used the sanitized core, so a green `make sanitize` cannot come from the
-- plain build by mistake. Under `make test` it checks the opposite.
local core = require "luap2p.core"

local function maps()
  local f = assert(io.open("/proc/self/maps"))
  local s = f:read("a")
  f:close()
  return s
end

describe("sanitize", function()
  it("loads the core from the build that the run asked for", function()
    local path = package.searchpath("luap2p.core", package.cpath)
    assert.is_string(path)
    assert.is_string(core.version)
    local m = maps()
    if os.getenv("LUAP2P_SANITIZE") then
      assert.truthy(path:find("build/asan/", 1, true), path)
      assert.truthy(m:find("build/asan/luap2p/core.so", 1, true))
      assert.truthy(m:find("libasan", 1, true))
    else
      assert.falsy(m:find("build/asan/luap2p/core.so", 1, true))
    end
  end)
end)
