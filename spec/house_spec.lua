-- The repository explains itself: comments and documents cite files it
-- holds (docs/) or upstream sources, never notes kept outside it or work
-- items.
local function tracked_hits(pattern)
  local f = assert(io.popen("git grep -I -n -E '" .. pattern ..
    "' -- . ':!spec/house_spec.lua' 2>/dev/null"))
  local out = f:read("a")
  f:close()
  return out
end

describe("house", function()
  local in_git = os.execute("git rev-parse --is-inside-work-tree " ..
    ">/dev/null 2>&1")

  it("cites no document outside the repository", function()
    if not in_git then pending("not a git checkout") return end
    assert.equal("", tracked_hits("/shared/|[^/]DESIGN\\.md|VECTORS\\.md"))
  end)

  it("names no work item in place of a reason", function()
    if not in_git then pending("not a git checkout") return end
    assert.equal("", tracked_hits("[Ii]ssue [0-9]+"))
  end)

  it("keeps a connection's calls up to its node to the two of " ..
     "node_internal.h", function()
    -- Every function a conn*.c object uses that a handler*.c object
    -- defines must be lp2p__node_report or lp2p__node_emit.
    local function names(cmd)
      local f = assert(io.popen(cmd .. " 2>/dev/null"))
      local set = {}
      for name in f:read("a"):gmatch("([%w_]+)\n") do set[name] = true end
      f:close()
      return set
    end
    local objs = "build/obj/net/"
    local node = names("nm --defined-only " .. objs .. "handler*.o | " ..
                       "awk '$2 == \"T\" { print $3 }'")
    if next(node) == nil then pending("build/obj/net is not built") return end
    local used = names("nm -u " .. objs .. "conn*.o | awk '{ print $2 }'")
    local up = {}
    for name in pairs(used) do
      if node[name] then up[#up + 1] = name end
    end
    table.sort(up)
    assert.same({ "lp2p__node_emit", "lp2p__node_report" }, up)
  end)

  it("has the documents it points to", function()
    for _, path in ipairs{ "docs/ARCHITECTURE.md", "docs/PROTOCOL.md",
                           "docs/OCTEZ.md" } do
      local f = io.open(path)
      assert.truthy(f, path)
      f:close()
    end
  end)
end)
