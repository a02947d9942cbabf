-- examples/embed.c: a node run from C alone (lp2p_node.h, lp2p.h),
-- built against build/libluap2p.a: two C nodes exchange a message, then
-- the C node talks to a Lua node.
local p2p = require "luap2p"
local h = require "helper"

local sh = h.plain_sh
-- For the background run below, as plain_sh does it.
local PLAIN = "env -u LD_PRELOAD "

describe("examples/embed.c", function()
  setup(function()
    local out, rc = sh("make --no-print-directory embed")
    assert.equal(0, rc, out)
  end)

  it("links against the static library alone (no Lua symbol)", function()
    local out, rc = sh("nm -u build/embed | grep -c ' lua' || true")
    assert.equal(0, rc, out)
    assert.equal("0", out:match("^(%d+)"))
  end)

  it("runs two C nodes: a Ping, a Pong, both closed", function()
    local out, rc = sh("timeout 20 build/embed")
    assert.equal(0, rc, out)
    assert.matches("a event accepted", out)
    assert.matches("b event connected", out)
    assert.matches("a got tag 0x10: ping", out)
    assert.matches("b got tag 0x10: pong", out)
    assert.matches("embed: done", out)
  end)

  it("talks to a Lua node", function()
    local node = h.node{}
    local got = {}
    node:on("message", function(ev)
      got[#got + 1] = ev.payload
      ev.conn:send("pong from lua")
    end)
    local dir = h.tmpdir()
    local log = dir .. "/embed.out"
    -- In the background: this process runs the Lua node's loop meanwhile.
    os.execute(string.format("(" .. PLAIN ..
      "timeout 20 build/embed 127.0.0.1:%d; " ..
      "echo rc=$?) >%s 2>&1 &", node.port, log))
    h.wait(function()
      local f = io.open(log)
      local text = f and f:read("a") or ""
      if f then f:close() end
      return text:match("rc=%d+")
    end, 25, "embed to finish")
    local text = h.read_file(log)
    node:close()
    h.rmdir(dir)
    assert.same({ "ping" }, got)
    assert.matches("b got tag 0x10: pong from lua", text)
    assert.matches("rc=0", text)
  end)
end)
