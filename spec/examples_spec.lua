-- The README's example runs as a real process and does what it says.
describe("examples/hello.lua", function()
  it("connects two nodes that exchange ping and pong", function()
    local out = require("check").run_lua("examples/hello.lua", 20)
    assert.matches("b connected to id%w+ at 127%.0%.0%.1:%d+", out)
    assert.matches("a got: ping from id%w+", out)
    assert.matches("b got: pong", out)
  end)
end)

describe("README's first program", function()
  local function readme_first()
    local f = assert(io.open("README.md"))
    local text = f:read("a")
    f:close()
    local section = text:match("## A first program(.-)\n## ")
    local code = section and section:match("```lua\n(.-)```")
    assert(code, "README.md lost its first program")
    return code
  end

  it("is examples/hello.lua", function()
    local f = assert(io.open("examples/hello.lua"))
    local file = f:read("a")
    f:close()
    -- the file adds a header comment
    assert.equal(readme_first(), file:match("\n(local p2p = .*)$"))
  end)

  it("runs as printed from any directory with scripts/luap2p run and " ..
     "with make env", function()
    local dir = require("helper").tmpdir()
    local path = dir .. "/hello.lua"
    local out = assert(io.open(path, "w"))
    out:write(readme_first())
    out:close()
    local root = io.popen("pwd"):read("l")
    for _, cmd in ipairs({
      string.format("cd %s && env -u LUA_PATH -u LUA_CPATH timeout 20 " ..
        "%s/scripts/luap2p run hello.lua 2>&1", dir, root),
      string.format("cd %s && eval \"$(make -s env)\" && cd %s && " ..
        "timeout 20 lua5.4 hello.lua 2>&1", root, dir),
    }) do
      local p = io.popen(cmd)
      local text = p:read("a")
      local ok, _, code = p:close()
      assert.is_true(ok, cmd .. ": exit " .. tostring(code) .. ": " .. text)
      assert.matches("b connected to id%w+ at 127%.0%.0%.1:%d+", text)
      assert.matches("a got: ping from id%w+", text)
      assert.matches("b got: pong", text)
    end
    require("helper").rmdir(dir)
  end)
end)

describe("examples/handshake.lua", function()
  it("reaches Ack on both sides and exchanges a sealed message", function()
    local out = require("check").run_lua("examples/handshake.lua", 20)
    assert.matches("a sees id%w+ on port 9732", out)
    assert.matches("b got bootstrap", out)
  end)
end)

-- The complete policy printed in README.md, taken from the README itself.
describe("README's complete policy", function()
  local p2p = require "luap2p"
  local h = require "helper"

  local function readme_policy()
    local f = assert(io.open("README.md"))
    local text = f:read("a")
    f:close()
    local section = text:match("### A complete policy(.-)\n### ")
    local code = section and section:match("```lua\n(.-)```")
    assert(code, "README.md lost its complete policy example")
    local path = os.tmpname() .. "_guard.lua"
    local out = assert(io.open(path, "w"))
    out:write(code)
    out:close()
    return path
  end

  it("caps connections per IP with a Nack, as it says", function()
    local path = readme_policy()
    local a = h.node{ policies = { path } }
    os.remove(path)
    local ev = h.record(a)
    local clients = {}
    for i = 1, 5 do clients[i] = h.node() end
    for i = 1, 4 do
      assert(clients[i]:connect(a.addr))
      h.wait(function() return h.nconns(a) == i end, 5, "connection " .. i)
    end
    assert(clients[5]:connect(a.addr))
    h.wait(function() return #ev.nack_sent > 0 end, 5, "nack")
    assert.equal(1, ev.nack_sent[1].motive)
    assert.equal(4, h.nconns(a))
    assert.same({ "guard", "private_mode", "acl", "answerer", "maintenance",
      "log" }, a:policies())
    h.close(a, table.unpack(clients))
  end)
end)
