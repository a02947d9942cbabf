-- Found by trying the API as a new user would: misuse that passed silently
-- or raised a message that names neither the call nor the fix.
local p2p = require "luap2p"

describe("review: timers", function()
  it("a period below a millisecond repeats (libuv reads a repeat of 0 " ..
     "as one-shot)", function()
    local ticks = 0
    local t = p2p.every(0.0004, function() ticks = ticks + 1 end)
    finally(function() t:stop() end)
    -- a one-shot timer stops at 1 tick: this waits for the 3rd or times out
    assert(p2p.wait(function() return ticks >= 3 end, 5))
  end)

  it("every(0) raises instead of making a one-shot timer", function()
    assert.has_error(function() p2p.every(0, print) end,
      "p2p.every: seconds: expected a period in seconds > 0 and <= 1e13, " ..
      "got 0")
    local node = assert(p2p.new{ identity = p2p.core.identity_generate(),
                                 pow_bits = 0 })
    finally(function() node:close() end)
    assert.has_error(function() node:every(0, print) end,
      "node:every: seconds: expected a period in seconds > 0 and <= 1e13, " ..
      "got 0")
    assert.has_error(function() node:every("1", print) end,
      "node:every: seconds: expected a period in seconds > 0 and <= 1e13, " ..
      "got '1'")
  end)

  it("a delay past the range of libuv's milliseconds raises", function()
    assert.has_error(function() p2p.after(1e300, print) end)
    assert.has_error(function() p2p.after(0 / 0, print) end)
  end)
end)

describe("review: node methods", function()
  it("known_points with a wrong count names the method", function()
    local node = assert(p2p.new{ identity = p2p.core.identity_generate(),
                                 pow_bits = 0 })
    finally(function() node:close() end)
    assert.has_error(function() node:known_points("x") end,
      "node:known_points: n: expected an integer count >= 0, got 'x'")
    assert.same({}, node:known_points(3))
  end)
end)

describe("review: conn:send tags", function()
  it("a tag below 0x10 (a P2P message's: 1 is Disconnect) raises instead " ..
     "of going out raw", function()
    local function new()
      return assert(p2p.new{ identity = p2p.core.identity_generate(),
        pow_bits = 0, listen = "127.0.0.1:0", app_messages = "raw",
        min_connections = 0, expected_connections = 0 })
    end
    local a, b = new(), new()
    finally(function() a:close(); b:close() end)
    local conn
    p2p.spawn(function() conn = assert(b:dial("127.0.0.1:" .. a.port)) end)
    assert(p2p.wait(function() return conn ~= nil end, 10))
    for _, tag in ipairs({ 0, 1, 5, 0x0f, 0x10000, 16.5 }) do
      assert.has_error(function() conn:send("", tag) end,
        "conn:send: tag: expected an application message tag in " ..
        "0x10..0xffff " ..
        "(P2P messages go through conn:send_msg), got " .. tostring(tag))
    end
    -- the connection is still up and application tags still go through
    local got
    a:on("message", function(ev) got = ev.tag end)
    assert(conn:send("x", 0x20))
    assert(p2p.wait(function() return got ~= nil end, 10))
    assert.equal(0x20, got)
    assert.is_nil(conn.closed)
  end)
end)
