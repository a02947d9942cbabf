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

  it("has the documents it points to", function()
    for _, path in ipairs{ "docs/ARCHITECTURE.md", "docs/PROTOCOL.md",
                           "docs/OCTEZ.md" } do
      local f = io.open(path)
      assert.truthy(f, path)
      f:close()
    end
  end)
end)
