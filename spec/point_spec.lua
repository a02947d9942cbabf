-- point: "a.b.c.d:port" and "[v6]:port" (core.point_parse).
-- Known answers: spec/vectors/gen_frame.py, which writes Octez's rules out
-- in Python (point_parser.mll lexer + Ipaddr: port required, IPv6 in
-- brackets, numeric addresses only, 47 bytes at most) and takes canonical
-- IPv6 text from Python's ipaddress (RFC 5952, like Ipaddr.V6.to_string).
local core = require "luap2p.core"
local C = require "check"
local fails = C.fails
local V = dofile("spec/vectors/frame.lua")


describe("point", function()
  it("parses every generator case like Octez", function()
    local n_ok, n_bad = 0, 0
    for _, c in ipairs(V.points) do
      local canon, family, addr, port = core.point_parse(c.text)
      if c.ok then
        n_ok = n_ok + 1
        assert.are.same({ c.canonical, c.family, c.address, c.port },
          { canon, family, addr, port }, c.text)
      else
        n_bad = n_bad + 1
        assert.is_nil(canon, c.text)
        assert.are.equal("EPOINT", addr, c.text)
        assert.are.equal("EPOINT: ", family:sub(1, 8), c.text)
      end
    end
    assert.is_true(n_ok >= 20 and n_bad >= 30)
  end)

  it("gives canonical text that parses to itself", function()
    for _, c in ipairs(V.points) do
      if c.ok then
        assert.are.equal(c.canonical, (core.point_parse(c.canonical)))
      end
    end
  end)

  it("prints IPv4-mapped IPv6 as IPv4, as Octez does", function()
    assert.are.same({ "1.2.3.4:80", 4, "1.2.3.4", 80 },
      { core.point_parse("[::ffff:1.2.3.4]:80") })
    assert.are.same({ "127.0.0.1:1", 4, "127.0.0.1", 1 },
      { core.point_parse("[::ffff:7f00:1]:1") })
  end)

  it("says why a point is rejected", function()
    local cases = {
      { "1.2.3.4", "no port" },
      { "1.2.3.4:", "no port" },
      { "[::1]", "no port" },
      { "[::1]:", "no port" },
      { "1.2.3.4:65536", "port out of range 0..65535" },
      { "1.2.3.4:12a", "port is not a decimal number" },
      { "1.2.3:4", "malformed IPv4 address" },
      { "::1:9732", "IPv6 address must be in brackets" },
      { "[::1:1", "missing ']'" },
      { "[::1]x1", "expected ':' after ']'" },
      { "[::1::2]:1", "malformed IP address" },
      { "", "empty point" },
      { "1.2.3.4:" .. ("0"):rep(39) .. "1", "point longer than 47 bytes" },
      { "localhost:9732", "malformed IPv4 address" },
      { "1.2.3.4\0:1", "malformed address" },
    }
    for _, c in ipairs(cases) do
      local msg = fails("EPOINT", core.point_parse(c[1]))
      assert.are.equal("EPOINT: " .. c[2], msg, c[1])
    end
  end)

  it("rejects spaces, letters and signs anywhere", function()
    for _, s in ipairs({ " 1.2.3.4:1", "1.2.3.4:1 ", "1.2.3.4: 1",
      "1.2.3.4 :1", "1.2.3.4:+1", "1.2.3.4:-1", "a.b.c.d:1", "[::1] :1",
      "[ ::1]:1", "1.2.3.4:1\n" }) do
      fails("EPOINT", core.point_parse(s))
    end
  end)

  it("accepts exactly 47 bytes and not 48", function()
    local p47 = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
    assert.are.equal(47, #p47)
    assert.are.equal(p47, (core.point_parse(p47)))
    fails("EPOINT", core.point_parse(p47:gsub(":65535", ":065535")))
  end)

  it("raises on a non-string", function()
    assert.has_error(function() core.point_parse(nil) end)
    assert.has_error(function() core.point_parse({}) end)
  end)
end)
