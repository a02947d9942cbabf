-- Found by posting odd bans to the RPC of a running node: a ban of 1e400
-- seconds (cjson reads it as inf) was applied, then every answer that
-- lists bans (GET /luap2p/bans, the status page, `luap2p ctl bans`) and
-- the JSON log failed on it until it was lifted.
local p2p = require "luap2p"
local rpc = require "luap2p.rpc"
local cjson = require "cjson"

describe("review: bans of absurd length", function()
  local node, server
  before_each(function()
    node = assert(p2p.new{ identity = p2p.core.identity_generate(),
                           pow_bits = 0 })
    server = rpc.new(node, { allow_write = true })
  end)
  after_each(function() node:close() end)

  it("POST /luap2p/bans refuses inf, NaN and 1e300 seconds with 400 " ..
     "bad_seconds, and the ban list still answers", function()
    for _, secs in ipairs({ "1e400", "NaN", "-1e400", "1e300" }) do
      local status, _, body = server:handle("POST", "/luap2p/bans", "",
        '{"target": "192.0.2.1", "seconds": ' .. secs .. '}')
      assert.equal(400, status, secs)
      assert.equal("luap2p.bad_seconds", cjson.decode(body)[1].id, secs)
    end
    assert.is_false(node:banned("192.0.2.1"))
    local status, _, body = server:handle("GET", "/luap2p/bans", "", "")
    assert.equal(200, status)
    assert.same({}, cjson.decode(body))
  end)

  it("a bad target's message does not carry a source position",
    function()
    local status, _, body = server:handle("POST", "/luap2p/bans", "",
      '{"target": "x", "seconds": 10}')
    assert.equal(400, status)
    local err = cjson.decode(body)[1]
    assert.equal("luap2p.bad_target", err.id)
    assert.equal("node:ban: target: expected an IP, IP/prefix, " ..
      "IP:port or peer id, got 'x'", err.msg)
  end)

  it("node:ban raises on seconds that are not finite or past 1e13",
    function()
    for _, secs in ipairs({ math.huge, 0 / 0, 1e300 }) do
      assert.has_error(function() node:ban("192.0.2.1", secs) end,
        "node:ban: seconds: expected a number of seconds in 0..1e13 or " ..
        "nil, got " .. tostring(secs))
    end
    assert.is_false(node:banned("192.0.2.1"))
    assert(node:ban("192.0.2.1", 1e13))
    assert.is_true(node:banned("192.0.2.1"))
  end)
end)
