-- Admission control (core/admission.c) through its Lua test binding
-- core.admission_new: token buckets per IP and per prefix, concurrent caps,
-- the bounded LRU table, loopback exemption and the under-load mode. The
-- spec drives the clock itself (now_ms), so every expected number follows
-- from the configured rates: WireGuard's 20/s with a burst of 5 by default.
local core = require "luap2p.core"

-- n checks of ip at time t: the number admitted and the last error name.
local function burst(adm, ip, t, n, pending)
  local ok, last = 0, nil
  for _ = 1, n do
    local r, _, code = adm:check(ip, t, pending)
    if r then ok = ok + 1 else last = code end
  end
  return ok, last
end

describe("admission", function()
  it("admits a burst of 5 per IP by default, then refuses with EREFUSED",
    function()
      local adm = core.admission_new{ exempt_loopback = false }
      assert.are.equal(5, (burst(adm, "192.0.2.1", 1000, 5)))
      local r, err, code = adm:check("192.0.2.1", 1000)
      assert.is_nil(r)
      assert.are.equal("EREFUSED", code)
      assert.are.equal("EREFUSED: accept rate limit (IP)", err)
      adm:close()
    end)

  it("refills at 20 per second: one token every 50 ms, capped at the burst",
    function()
      local adm = core.admission_new{}
      burst(adm, "192.0.2.1", 1000, 5)
      assert.is_nil((adm:check("192.0.2.1", 1049)))
      assert.is_true(adm:check("192.0.2.1", 1050))
      assert.is_nil((adm:check("192.0.2.1", 1050)))
      -- 10 s idle earns 200 tokens, but the bucket holds 5.
      assert.are.equal(5, (burst(adm, "192.0.2.1", 11050, 9)))
      adm:close()
    end)

  it("does not charge refused attempts", function()
    local adm = core.admission_new{}
    burst(adm, "192.0.2.1", 0, 5)
    -- 1000 refused attempts at t = 0 leave the bucket where it was.
    assert.are.equal(0, (burst(adm, "192.0.2.1", 0, 1000)))
    assert.is_true(adm:check("192.0.2.1", 50))
    adm:close()
  end)

  it("earns nothing when the clock goes backwards", function()
    local adm = core.admission_new{}
    burst(adm, "192.0.2.1", 5000, 5)
    assert.is_nil((adm:check("192.0.2.1", 1000)))
    assert.is_nil((adm:check("192.0.2.1", 5049)))
    assert.is_true(adm:check("192.0.2.1", 5050))
    adm:close()
  end)

  it("shares a bucket per /24: 20 per prefix by default", function()
    local adm = core.admission_new{}
    local ok = 0
    for i = 1, 10 do ok = ok + burst(adm, "198.51.100." .. i, 0, 5) end
    assert.are.equal(20, ok)
    local r, err, code = adm:check("198.51.100.200", 0)
    assert.is_nil(r)
    assert.are.equal("EREFUSED", code)
    assert.are.equal("EREFUSED: accept rate limit (prefix)", err)
    -- The next /24 has its own bucket.
    assert.is_true(adm:check("198.51.101.1", 0))
    adm:close()
  end)

  it("groups IPv6 sources by /64 and keys IPv4-mapped addresses as IPv4",
    function()
      local adm = core.admission_new{ burst = 1, prefix_burst = 2 }
      assert.is_true(adm:check("2001:db8:1:2::1", 0))
      assert.is_true(adm:check("2001:db8:1:2:ffff::9", 0))
      local _, _, code = adm:check("2001:db8:1:2:aaaa::1", 0)
      assert.are.equal("EREFUSED", code)
      assert.is_true(adm:check("2001:db8:1:3::1", 0)) -- another /64
      assert.is_true(adm:check("203.0.113.7", 0))
      local r, err = adm:check("::ffff:203.0.113.7", 0)
      assert.is_nil(r)
      assert.are.equal("EREFUSED: accept rate limit (IP)", err)
      -- Points are accepted too; the port does not matter.
      local _, _, c2 = adm:check("[::ffff:203.0.113.7]:9732", 0)
      assert.are.equal("EREFUSED", c2)
      adm:close()
    end)

  it("caps concurrent connections per IP and per prefix with ETOOMANY",
    function()
      local adm = core.admission_new{ max_per_ip = 2, max_per_prefix = 3,
                                      rate = 1000, burst = 100,
                                      prefix_rate = 1000,
                                      prefix_burst = 100 }
      local ip = "192.0.2.10"
      for _ = 1, 2 do
        assert.is_true(adm:check(ip, 0))
        adm:opened(ip)
      end
      assert.are.equal(2, adm:open_count(ip))
      local r, err, code = adm:check(ip, 0)
      assert.is_nil(r)
      assert.are.equal("ETOOMANY", code)
      assert.are.equal("ETOOMANY: too many connections from this IP", err)
      adm:closed(ip)
      assert.is_true(adm:check(ip, 0))
      adm:opened(ip)
      -- 3 open in 192.0.2.0/24 now (2 + this one): the prefix is full.
      assert.is_true(adm:check("192.0.2.11", 0))
      adm:opened("192.0.2.11")
      local _, err2, code2 = adm:check("192.0.2.12", 0)
      assert.are.equal("ETOOMANY", code2)
      assert.are.equal("ETOOMANY: too many connections from this prefix", err2)
      adm:close()
    end)

  it("never counts below zero on unmatched closes", function()
    local adm = core.admission_new{ max_per_ip = 1 }
    adm:closed("192.0.2.20") -- unknown: nothing happens
    adm:opened("192.0.2.20")
    adm:closed("192.0.2.20")
    adm:closed("192.0.2.20")
    assert.are.equal(0, adm:open_count("192.0.2.20"))
    adm:opened("192.0.2.20")
    assert.are.equal(1, adm:open_count("192.0.2.20"))
    local _, _, code = adm:check("192.0.2.20", 0)
    assert.are.equal("ETOOMANY", code)
    adm:close()
  end)

  it("exempts loopback by default, and limits it when configured", function()
    local adm = core.admission_new{}
    for _, ip in ipairs{ "127.0.0.1", "127.8.9.10", "::1",
                         "::ffff:127.0.0.1" } do
      assert.are.equal(100, (burst(adm, ip, 0, 100)))
    end
    adm:opened("127.0.0.1")
    assert.are.equal(0, adm:open_count("127.0.0.1"))
    assert.are.equal(400, adm:stats().exempt)
    adm:close()
    local strict = core.admission_new{ exempt_loopback = false }
    assert.are.equal(5, (burst(strict, "127.0.0.1", 0, 100)))
    strict:close()
  end)

  it("keeps a flood of fresh IPs within a fixed table (LRU)", function()
    local adm = core.admission_new{ table_size = 64 }
    local ok = 0
    for i = 0, 9999 do
      -- every source in its own /24: two entries each
      local ip = string.format("10.%d.%d.1", i // 256, i % 256)
      if adm:check(ip, i) then ok = ok + 1 end
    end
    local s = adm:stats()
    assert.are.equal(10000, ok) -- a fresh source always has its burst
    assert.are.equal(64, s.capacity)
    assert.is_true(s.entries <= 64)
    assert.are.equal(20000 - s.entries, s.evictions)
    adm:close()
  end)

  it("never evicts an entry with open connections; full means ETOOMANY",
    function()
      local adm = core.admission_new{ table_size = 4 }
      for _, ip in ipairs{ "10.0.1.1", "10.0.2.1" } do
        assert.is_true(adm:check(ip, 0))
        adm:opened(ip)
      end
      local r, err, code = adm:check("10.0.3.1", 0)
      assert.is_nil(r)
      assert.are.equal("ETOOMANY", code)
      assert.are.equal("ETOOMANY: admission table full of open connections",
        err)
      assert.are.equal(1, adm:open_count("10.0.1.1"))
      adm:closed("10.0.1.1")
      assert.is_true(adm:check("10.0.3.1", 0))
      assert.are.equal(1, adm:open_count("10.0.2.1"))
      adm:close()
    end)

  it("enters under-load mode above the threshold, halves the rates, and " ..
     "leaves at half the threshold", function()
    local calls = {}
    local adm = core.admission_new{ load_threshold = 10,
      on_load = function(under, pending)
        calls[#calls + 1] = { under, pending }
      end }
    assert.is_true(adm:check("192.0.2.30", 0, 10))
    assert.are.equal(0, #calls)
    assert.is_false(adm:under_load())
    assert.is_true(adm:check("192.0.2.31", 0, 11))
    assert.are.same({ { true, 11 } }, calls)
    assert.is_true(adm:under_load())
    -- Burst 5 / 2 = 2.5 for a new source: 2 whole tokens.
    assert.are.equal(2, (burst(adm, "192.0.2.40", 0, 5, 11)))
    -- Half a token is left; at 10 per second (20 / 2) the next whole one
    -- comes after 50 ms (at the full rate, 25 ms would do).
    assert.is_nil((adm:check("192.0.2.40", 49, 11)))
    assert.is_true(adm:check("192.0.2.40", 50, 11))
    -- No flapping between the threshold and half of it.
    for _, p in ipairs{ 10, 8, 6 } do adm:check("192.0.2.50", 1000, p) end
    assert.are.equal(1, #calls)
    adm:check("192.0.2.50", 1000, 5)
    assert.are.same({ { true, 11 }, { false, 5 } }, calls)
    assert.is_false(adm:under_load())
    assert.are.equal(1, adm:stats().load_episodes)
    adm:close()
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.admission_new{ rate = -1 } end,
      "core.admission_new: option 'rate' must be >= 0")
    assert.has_error(function() core.admission_new{ table_size = 1 } end,
      "core.admission_new: option 'table_size' must be >= 2")
    assert.has_error(function() core.admission_new{ on_load = 3 } end,
      "core.admission_new: option 'on_load' must be a function")
    local adm = core.admission_new{}
    assert.has_error(function() adm:check("nonsense", 0) end)
    assert.has_error(function() adm:check("192.0.2.1", -1) end)
    adm:close()
    adm:close() -- idempotent
    assert.has_error(function() adm:check("192.0.2.1", 0) end,
      "attempt to use a closed luap2p.Admission")
    assert.matches("closed", tostring(adm))
  end)
end)
