-- identity: keys, peer ids (Base58Check), proof of work, identity.json.
-- Known answers come from TezEdge's tests (tezedge/tezedge @
-- feba75be45ce: crypto/src/proof_of_work.rs, crypto/src/nonce.rs; copied
-- here with their file) and from spec/vectors/gen_identity.py (Python
-- hashlib + PyNaCl) whose output is spec/vectors/identity.lua.
local core = require "luap2p.core"
local C = require "check"
local fails, hex, raises, unhex = C.fails, C.hex, C.raises, C.unhex
local V = require "vectors.identity"

local function threads_now()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("Threads:%s*(%d+)"))
end

-- The TezEdge test identity of crypto/src/proof_of_work.rs, with its
-- secret key.
local VEC4 = {
  peer_id = "idssJHDL1z8fkryZaYVF9fQRMktoWg",
  public_key =
    "d8246d13d0270cbfff4046b6d94b05ab19920bc5ad9fb77f3e945c40b340e874",
  secret_key =
    "8b4622bc512c8621a35fa19ff252129b208c8cdffb57e2d29c7974df718c7ff2",
  proof_of_work_stamp = "d1d0ebd55784bc92852d913dbf0fb5152d505b567d930fb2",
}

-- A real Octez identity, published in a public Octez tutorial.
local TUTORIAL = {
  pk = "34a911ff9258d7c23b44844372a54c2a2a031d41e275e6a7d1251d1aeb95e207",
  stamp = "70e5ea8e85745a54f1a1d11b7c650e56f57f5c76243c072f",
  peer_id = "idtRhgUQFQcUFJLW5HXQbRcdYkaUr4",
}

-- identity.json text with fields in the given order (default: Octez's).
local function json_of(t, order)
  order = order or { "peer_id", "public_key", "secret_key",
                     "proof_of_work_stamp" }
  local parts = {}
  for _, k in ipairs(order) do
    if t[k] ~= nil then
      parts[#parts + 1] = string.format("%q: %s", k,
        type(t[k]) == "string" and string.format("%q", t[k]) or tostring(t[k]))
    end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function copy(t, changes)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(changes or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return c
end


describe("identity", function()
  after_each(function()
    collectgarbage()
    collectgarbage()
  end)

  describe("peer ids", function()
    it("match every peer id of the TezEdge vectors", function()
      local cases = {
        { VEC4.public_key, VEC4.peer_id },
        { "98317bd6efad8352a7144c9eb0b218c9130e0a875973908ddc894b764ffc0d7f",
          "idtBWDzTcpfNnDyoRbM1bFoXe2vuZK" },
        { "b3845960b32b039fef38ca5c9f8f867df1d522f27a83e07d9dfbe3b296a6c076",
          "idrcXJiU6wtDntNEso85aDg5nBEZyg" },
        { "70387c4cbd115833626a88a9f2b9bbadd70705f5ad059f494655ac823620c641",
          "idsjXqdHKtcRb6NfdKsAYqE4JN2kep" },
        { "2cc1b580f4b8b1f6dbd0aa1d9cde2655c2081c07d7e61249aad8b11d954fb01a",
          "idsg2wkkDDv2cbEMK4zH49fjgyn7XT" },
        { TUTORIAL.pk, TUTORIAL.peer_id },
      }
      for _, c in ipairs(cases) do
        local id = core.peer_id(unhex(c[1]))
        assert.are.equal(16, #id)
        assert.are.equal(c[2], core.peer_id_encode(id))
        assert.are.equal(id, core.peer_id_decode(c[2]))
      end
    end)

    it("is BLAKE2b with a 16-byte digest (TezEdge vectors)", function()
      local pk = unhex(
        "2cc1b580f4b8b1f6dbd0aa1d9cde2655c2081c07d7e61249aad8b11d954fb01a")
      assert.are.equal("a158a0fb7958a4e8f0219960d1cd9fe8",
        hex(core.peer_id(pk)))
    end)

    it("matches the generator for fixed public keys", function()
      assert.is_true(#V.peer_ids >= 16)
      for _, c in ipairs(V.peer_ids) do
        local id = core.peer_id(unhex(c.pk))
        assert.are.equal(c.hex, hex(id))
        assert.are.equal(c.text, core.peer_id_encode(id))
        assert.are.equal(30, #c.text)
        assert.are.equal(c.hex, hex(core.peer_id_decode(c.text)))
      end
    end)

    it("decodes the generator's good text", function()
      assert.are.equal(V.peer_id_good.hex,
        hex(core.peer_id_decode(V.peer_id_good.text)))
    end)

    it("rejects bad checksums, prefixes, lengths and characters", function()
      assert.is_true(#V.bad_peer_ids >= 15)
      for _, c in ipairs(V.bad_peer_ids) do
        local v, msg, name = core.peer_id_decode(c.text)
        assert.is_nil(v, c.why)
        fails("EPEERID", v, msg, name)
      end
      local good = V.peer_id_good.text
      for _, s in ipairs({ good:sub(1, 12) .. "\0" .. good:sub(14),
                           good:sub(1, 12) .. "\xff" .. good:sub(14),
                           good:sub(1, 12) .. "\xc3\xa9" .. good:sub(15),
                           good:upper(), good:lower() }) do
        fails("EPEERID", core.peer_id_decode(s))
      end
    end)

    it("raises on arguments of the wrong size or type", function()
      raises("expected a 32-byte public key, got 31 bytes", core.peer_id,
        ("x"):rep(31))
      raises("expected a 16-byte peer id, got 17 bytes", core.peer_id_encode,
        ("x"):rep(17))
      raises("bad argument #1", core.peer_id_decode, nil)
      raises("bad argument #1", core.peer_id, {})
    end)
  end)

  describe("proof-of-work target", function()
    it("matches TezEdge proof_of_work.rs for 24, 26 and 0 bits", function()
      assert.are.equal(
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000",
        hex(core.pow_target(24.0)))
      assert.are.equal(
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff3f000000",
        hex(core.pow_target(26.0)))
      assert.are.equal(
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        hex(core.pow_target(0.0)))
      assert.are.equal(hex(core.pow_target(24.0)), hex(core.pow_target(24)))
    end)

    it("follows Crypto_box.make_pow_target for fractional bits", function()
      assert.is_true(#V.targets >= 30)
      local fractional = 0
      for _, c in ipairs(V.targets) do
        assert.are.equal(c.le, hex(core.pow_target(c.bits)),
          "bits " .. c.bits)
        if c.bits % 1 ~= 0 then fractional = fractional + 1 end
      end
      assert.is_true(fractional >= 20)
    end)

    it("raises outside [0, 256]", function()
      for _, b in ipairs({ -0.001, -1, 256.001, 1e9, math.huge, -math.huge,
                           0 / 0 }) do
        raises("bits must be a number between 0 and 256", core.pow_target, b)
      end
      raises("bad argument #1", core.pow_target, "many")
      raises("bad argument #1", core.pow_target)
    end)
  end)

  describe("proof-of-work check", function()
    it("accepts the TezEdge proof_of_work.rs stamp at 24 and 26 bits",
      function()
      local pk = unhex(VEC4.public_key)
      local stamp = unhex(VEC4.proof_of_work_stamp)
      assert.is_true(core.pow_check(pk, stamp, 24.0))
      assert.is_true(core.pow_check(pk, stamp, 26.0))
      -- Its hash 6f5b...25000000 has exactly 26 leading zero bits.
      assert.is_false(core.pow_check(pk, stamp, 27.0))
    end)

    it("accepts the stamp of a mainnet node's connection message", function()
      local pk = unhex(
        "70387c4cbd115833626a88a9f2b9bbadd70705f5ad059f494655ac823620c641")
      local stamp = unhex("0ec0d9b1716ad6d59d0cc551c96992c8031df8c77735d211")
      assert.is_true(core.pow_check(pk, stamp, 24))
      assert.is_true(core.pow_check(pk, stamp, 26))
      assert.is_false(core.pow_check(pk, stamp, 27))
    end)

    it("gives the tutorial identity 26 bits and not 27", function()
      local pk, stamp = unhex(TUTORIAL.pk), unhex(TUTORIAL.stamp)
      assert.are.equal(TUTORIAL.peer_id,
        core.peer_id_encode(core.peer_id(pk)))
      assert.is_true(core.pow_check(pk, stamp, 26))
      assert.is_false(core.pow_check(pk, stamp, 27))
      assert.is_true(core.pow_check(pk, stamp, 0))
      -- Another stamp for the same key almost surely fails 26 bits.
      local other = stamp:sub(1, 23) .. string.char((stamp:byte(24) + 1) % 256)
      assert.is_false(core.pow_check(pk, other, 26))
    end)

    it("matches the generator on both sides of fractional targets", function()
      local seen = { [true] = 0, [false] = 0 }
      for _, c in ipairs(V.pow) do
        local got = core.pow_check(unhex(c.pk), unhex(c.stamp), c.bits)
        assert.are.equal(c.ok, got,
          string.format("pk %s stamp %s bits %.17g", c.pk, c.stamp, c.bits))
        seen[c.ok] = seen[c.ok] + 1
      end
      assert.is_true(seen[true] >= 30 and seen[false] >= 30)
    end)

    it("raises on bad arguments", function()
      local pk, stamp = ("\0"):rep(32), ("\0"):rep(24)
      raises("expected a 32-byte public key", core.pow_check, pk .. "x",
        stamp, 1)
      raises("expected a 24-byte stamp", core.pow_check, pk, stamp:sub(2), 1)
      raises("bits must be a number between 0 and 256", core.pow_check, pk,
        stamp, 257)
    end)
  end)

  describe("proof-of-work search", function()
    local pk = unhex(VEC4.public_key)

    it("finds a stamp pow_check accepts with one thread", function()
      local stamp, tries = core.pow_search(pk, 10, { threads = 1 })
      assert.are.equal(24, #stamp)
      assert.is_true(core.pow_check(pk, stamp, 10))
      assert.is_true(math.type(tries) == "integer" and tries >= 1)
    end)

    it("finds a stamp with two threads and a fractional target", function()
      local stamp, tries = core.pow_search(pk, 12.5, { threads = 2,
                                                       every = 1000 })
      assert.is_true(core.pow_check(pk, stamp, 12.5))
      assert.is_true(tries >= 1)
    end)

    it("uses the default options (all CPUs)", function()
      local stamp = core.pow_search(pk, 8)
      assert.is_true(core.pow_check(pk, stamp, 8))
    end)

    it("starts from random stamps", function()
      local a = core.pow_search(pk, 0, { threads = 1 })
      local b = core.pow_search(pk, 0, { threads = 1 })
      assert.are_not.equal(a, b)
    end)

    it("counts every try exactly with one thread at bits 0", function()
      local _, tries = core.pow_search(pk, 0, { threads = 1, every = 1 })
      assert.are.equal(1, tries)
    end)

    it("is canceled when progress returns true", function()
      local calls, last_tries, last_elapsed = 0, -1, -1
      local before = threads_now()
      local v, msg, name = core.pow_search(pk, 200, {
        threads = 2, every = 4096,
        progress = function(tries, elapsed)
          calls = calls + 1
          assert(math.type(tries) == "integer" and tries >= last_tries)
          assert(type(elapsed) == "number" and elapsed >= last_elapsed)
          last_tries, last_elapsed = tries, elapsed
          return calls >= 2
        end,
      })
      fails("ECANCELED", v, msg, name)
      assert.are.equal(2, calls)
      assert.is_true(last_tries > 0)
      assert.is_true(last_elapsed >= 0.2 and last_elapsed < 5)
      if before then assert.are.equal(before, threads_now()) end
    end)

    it("stops its threads and re-raises an error of progress", function()
      local before = threads_now()
      raises("progress failed here", core.pow_search, pk, 200, {
        threads = 2,
        progress = function() error("progress failed here") end,
      })
      if before then assert.are.equal(before, threads_now()) end
      -- Still usable afterwards.
      assert.is_true(core.pow_check(pk, core.pow_search(pk, 4), 4))
    end)

    it("raises on bad options", function()
      raises("expected a 32-byte public key", core.pow_search, "x", 8)
      raises("bits must be a number between 0 and 256", core.pow_search, pk,
        -1)
      raises("opts.threads must be an integer in 1..256", core.pow_search,
        pk, 8, { threads = 0 })
      raises("opts.threads must be an integer in 1..256", core.pow_search,
        pk, 8, { threads = 1.5 })
      raises("opts.every must be an integer in 1..2^24", core.pow_search,
        pk, 8, { every = 0 })
      raises("opts.progress must be a function", core.pow_search, pk, 8,
        { progress = 1 })
      raises("bad argument #3", core.pow_search, pk, 8, "fast")
    end)
  end)

  describe("Identity", function()
    it("generates fresh keys with no proof of work", function()
      local a, b = core.identity_generate(), core.identity_generate()
      assert.are.equal(32, #a:public_key())
      assert.are.equal(32, #a:secret_key())
      assert.are.equal(("\0"):rep(24), a:stamp())
      assert.are_not.equal(a:public_key(), b:public_key())
      assert.are.equal(core.peer_id(a:public_key()), a:peer_id_bytes())
      assert.are.equal(core.peer_id_encode(a:peer_id_bytes()), a:peer_id())
      assert.is_true(a:check_keys())
      assert.is_true(a:check_pow(0))
    end)

    it("holds the keys of the generator's key pairs", function()
      for _, k in ipairs(V.keys) do
        local id = assert(core.identity_from_json(json_of({
          public_key = k.pk, secret_key = k.sk,
          proof_of_work_stamp = ("00"):rep(24) })))
        assert.are.equal(k.peer_id, id:peer_id())
        assert.are.equal(k.pk, hex(id:public_key()))
        assert.are.equal(k.sk, hex(id:secret_key()))
        assert.is_true(id:check_keys())
      end
    end)

    it("sets and checks a stamp", function()
      local id = assert(core.identity_from_json(json_of(copy(VEC4, {
        proof_of_work_stamp = ("00"):rep(24) }))))
      assert.is_false(id:check_pow(24))
      assert.are.equal(id, id:set_stamp(unhex(VEC4.proof_of_work_stamp)))
      assert.are.equal(VEC4.proof_of_work_stamp, hex(id:stamp()))
      assert.is_true(id:check_pow(24))
      assert.is_true(id:check_pow(26))
      assert.is_false(id:check_pow(27))
      raises("expected a 24-byte stamp", id.set_stamp, id, "short")
      raises("bits must be a number between 0 and 256", id.check_pow, id,
        300)
    end)

    it("finds its own proof of work with pow_search", function()
      local id = core.identity_generate()
      id:set_stamp((core.pow_search(id:public_key(), 9, { threads = 2 })))
      assert.is_true(id:check_pow(9))
    end)

    it("wipes itself on close, once, and then refuses use", function()
      local id = core.identity_generate()
      assert.is_truthy(tostring(id):find("luap2p.Identity (id", 1, true))
      id:close()
      id:close()
      assert.are.equal("luap2p.Identity (closed)", tostring(id))
      for _, m in ipairs({ "peer_id", "peer_id_bytes", "public_key",
                           "secret_key", "stamp", "to_json", "check_keys" }) do
        raises("attempt to use a closed luap2p.Identity", id[m], id)
      end
      raises("attempt to use a closed luap2p.Identity", id.check_pow, id, 1)
    end)

    it("closes at the end of a to-be-closed variable", function()
      local outer
      do
        local id <close> = core.identity_generate()
        outer = id
        assert.are.equal(32, #id:public_key())
      end
      assert.are.equal("luap2p.Identity (closed)", tostring(outer))
    end)

    it("raises on a wrong self", function()
      local id = core.identity_generate()
      raises("luap2p.Identity expected", id.peer_id, {})
    end)
  end)

  describe("identity.json", function()
    local function parse_ok(text)
      local id, msg = core.identity_from_json(text)
      assert.is_not_nil(id, msg)
      return id
    end

    local function parse_err(text, expected)
      local msg = fails("EIDENTITY", core.identity_from_json(text))
      if expected then
        assert.are.equal("EIDENTITY: " .. expected, msg)
      end
      return msg
    end

    it("reads the TezEdge test identity", function()
      local id = parse_ok(json_of(VEC4))
      assert.are.equal(VEC4.peer_id, id:peer_id())
      assert.are.equal(VEC4.public_key, hex(id:public_key()))
      assert.are.equal(VEC4.secret_key, hex(id:secret_key()))
      assert.are.equal(VEC4.proof_of_work_stamp, hex(id:stamp()))
      assert.is_true(id:check_pow(26))
    end)

    it("reads the layout Octez writes", function()
      local text = '{ "peer_id": "' .. VEC4.peer_id .. '",\n'
        .. '  "public_key":\n    "' .. VEC4.public_key .. '",\n'
        .. '  "secret_key":\n    "' .. VEC4.secret_key .. '",\n'
        .. '  "proof_of_work_stamp":\n    "'
        .. VEC4.proof_of_work_stamp .. '" }\n'
      assert.are.equal(VEC4.peer_id, parse_ok(text):peer_id())
    end)

    it("writes the Octez fields, one per line, and reads them back", function()
      local id = parse_ok(json_of(VEC4))
      local expected = "{\n"
        .. '  "peer_id": "' .. VEC4.peer_id .. '",\n'
        .. '  "public_key": "' .. VEC4.public_key .. '",\n'
        .. '  "secret_key": "' .. VEC4.secret_key .. '",\n'
        .. '  "proof_of_work_stamp": "' .. VEC4.proof_of_work_stamp .. '"\n'
        .. "}\n"
      assert.are.equal(expected, id:to_json())
      local fresh = core.identity_generate()
      local back = parse_ok(fresh:to_json())
      assert.are.equal(fresh:public_key(), back:public_key())
      assert.are.equal(fresh:secret_key(), back:secret_key())
      assert.are.equal(fresh:stamp(), back:stamp())
      assert.are.equal(fresh:peer_id(), back:peer_id())
    end)

    it("takes keys in any order, whitespace and unknown keys", function()
      local order = { "proof_of_work_stamp", "secret_key", "peer_id",
                      "public_key" }
      assert.are.equal(VEC4.peer_id, parse_ok(json_of(VEC4, order)):peer_id())
      local text = " \t\r\n{ \"comment\" : \"hello \\\" \\\\ \\u00e9 \\n\" ,"
        .. '"n": -12.5e+3, "z": 0, "list": [1, [true, false, null], {}],'
        .. '"obj": {"a": {"b": []}, "c": "d"}, "t": true, "f": false,'
        .. '"nul": null,'
        .. json_of(VEC4):sub(2, -2) .. ' , "tail": "x"\n}\n\t '
      assert.are.equal(VEC4.peer_id, parse_ok(text):peer_id())
    end)

    it("computes a missing peer_id, as Octez does", function()
      local id = parse_ok(json_of(copy(VEC4, { peer_id = false })))
      assert.are.equal(VEC4.peer_id, id:peer_id())
    end)

    it("accepts upper-case hex and JSON escapes in values", function()
      local id = parse_ok(json_of(copy(VEC4, {
        public_key = VEC4.public_key:upper() })))
      assert.are.equal(VEC4.public_key, hex(id:public_key()))
      local text = json_of(VEC4):gsub(VEC4.secret_key,
        "\\u0038" .. VEC4.secret_key:sub(2), 1)
      assert.are.equal(VEC4.secret_key, hex(parse_ok(text):secret_key()))
    end)

    it("names each missing field", function()
      for _, f in ipairs({ "public_key", "secret_key",
                           "proof_of_work_stamp" }) do
        parse_err(json_of(copy(VEC4, { [f] = false })),
          string.format('missing field "%s"', f))
      end
      parse_err("{}", 'missing field "public_key"')
      parse_err('{"unrelated": 1}', 'missing field "public_key"')
    end)

    it("names each malformed field", function()
      local sizes = { public_key = 64, secret_key = 64,
                      proof_of_work_stamp = 48 }
      for f, n in pairs(sizes) do
        local want = string.format('field "%s": expected %d hex characters',
          f, n)
        local v = VEC4[f]
        for _, bad in ipairs({ v:sub(2), v .. "0", v:sub(2) .. "g",
                               v:sub(2) .. " ", "", v .. v .. v .. v,
                               42, "true", "null", "[]", "{}" }) do
          local t = copy(VEC4, { [f] = bad })
          if bad == "true" or bad == "null" or bad == "[]" or bad == "{}" then
            t[f] = setmetatable({}, { __tostring = function() return bad end })
          end
          parse_err(json_of(t), want)
        end
      end
      local want = 'field "peer_id": expected a base58 peer id ("id", 30 '
        .. 'characters)'
      for _, bad in ipairs({ "", VEC4.peer_id:sub(2),
                             VEC4.peer_id:sub(1, -2) .. "0",
                             VEC4.peer_id:sub(1, -2) .. "x", 7 }) do
        parse_err(json_of(copy(VEC4, { peer_id = bad })), want)
      end
    end)

    it("refuses a peer_id or secret_key of another key", function()
      parse_err(json_of(copy(VEC4, { peer_id = TUTORIAL.peer_id })),
        'field "peer_id" does not match public_key')
      parse_err(json_of(copy(VEC4, { secret_key = V.keys[1].sk })),
        "secret_key does not match public_key")
      parse_err(json_of(copy(VEC4, { peer_id = false,
                                     public_key = V.keys[1].pk })),
        "secret_key does not match public_key")
    end)

    it("refuses duplicate fields", function()
      parse_err(json_of(VEC4):sub(1, -2) .. ', "secret_key": "'
        .. VEC4.secret_key .. '"}', 'duplicate field "secret_key"')
    end)

    it("refuses what is not a JSON object", function()
      for _, s in ipairs({ "", "   ", "[]", "null", '"x"', "42", "id",
                           "\0{}" }) do
        parse_err(s, "not a JSON object")
      end
      raises("bad argument #1", core.identity_from_json, nil)
    end)

    it("refuses bad JSON syntax", function()
      local good = json_of(VEC4)
      local cases = {
        good .. "}", good .. " x", good .. "{}", good:sub(1, -2) .. ",}",
        good:gsub(":", "", 1), good:gsub(",", "", 1),
        good:gsub('"peer_id"', "peer_id", 1),
        good:gsub('"peer_id"', "'peer_id'", 1),
        '{"a": tru,' .. good:sub(2), '{"a": nul,' .. good:sub(2),
        '{"a": 01,' .. good:sub(2), '{"a": 1.,' .. good:sub(2),
        '{"a": -,' .. good:sub(2), '{"a": 1e,' .. good:sub(2),
        '{"a": [1 2],' .. good:sub(2), '{"a": {"b"},' .. good:sub(2),
        '{"a": "\\x",' .. good:sub(2), '{"a": "\\u12g4",' .. good:sub(2),
        '{"a": "tab\there",' .. good:sub(2),
        '{"a": "nul\0here",' .. good:sub(2),
        '{"a": ,' .. good:sub(2), '{,' .. good:sub(2),
      }
      for _, s in ipairs(cases) do
        local msg = parse_err(s)
        assert.is_truthy(msg:find("^EIDENTITY: invalid JSON"), msg)
      end
    end)

    it("refuses every truncation without crashing", function()
      local good = json_of(VEC4)
      for n = 0, #good - 1 do
        parse_err(good:sub(1, n))
      end
      local pretty = parse_ok(good):to_json()
      for n = 0, #pretty - 3 do -- pretty ends with "}\n"
        parse_err(pretty:sub(1, n))
      end
    end)

    it("bounds nesting of unknown values", function()
      local deep = ("["):rep(100000)
      local msg = parse_err('{"a": ' .. deep)
      assert.is_truthy(msg:find("nested too deeply", 1, true), msg)
      local ok = ("["):rep(20) .. ("]"):rep(20)
      parse_ok('{"a": ' .. ok .. "," .. json_of(VEC4):sub(2))
    end)

    it("survives mutated and random inputs", function()
      local good = json_of(VEC4)
      local okn = 0
      local function try(s)
        local id, msg, name = core.identity_from_json(s)
        if id then
          okn = okn + 1
          assert.are.equal(32, #id:public_key())
        else
          assert.are.equal("EIDENTITY", name)
          assert.is_truthy(msg:find("^EIDENTITY: "))
        end
      end
      for i = 1, #good do
        for _, b in ipairs({ 0, 0x22, 0x5c, 0x7b, 0x7d, 0x20, 0xff }) do
          try(good:sub(1, i - 1) .. string.char(b) .. good:sub(i + 1))
        end
        try(good:sub(1, i - 1) .. good:sub(i + 1))
      end
      assert.is_true(okn > 0) -- e.g. a space swapped for a space
      local seed = 12345
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local alphabet = '{}[]":,\\ 0123456789abcdefu-+.eEtrnlsf\0\255'
      for _ = 1, 3000 do
        local t = {}
        for j = 1, rnd(60) do
          local k = rnd(#alphabet) + 1
          t[j] = alphabet:sub(k, k)
        end
        try(table.concat(t))
      end
    end)
  end)
end)

describe("identity file loading", function()
  local identity = require "luap2p.identity"
  local p2p = require "luap2p"
  local dir

  before_each(function()
    local f = io.popen("mktemp -d")
    dir = f:read("l")
    f:close()
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function write(name, text, mode)
    local path = dir .. "/" .. name
    assert(core.write_private(path, text))
    os.execute(string.format("chmod %s '%s'", mode, path))
    return path
  end

  it("refuses an identity file group or others may access, with the " ..
     "chmod to run; check_mode = false loads it", function()
    local id = core.identity_generate()
    for _, mode in ipairs{ "644", "640", "604", "620", "660" } do
      local path = write("id" .. mode .. ".json", id:to_json(), mode)
      local got, err, code = identity.load(path)
      assert.is_nil(got)
      assert.equal("EPERM", code)
      assert.equal(string.format("EPERM: identity file %s is accessible by " ..
        "others (mode 0%s): run chmod 600 %s", path, mode, path), err)
      local ok = assert(identity.load(path, { check_mode = false }))
      assert.equal(id:peer_id(), ok:peer_id())
    end
    for _, mode in ipairs{ "600", "400" } do
      local path = write("id" .. mode .. ".json", id:to_json(), mode)
      assert.equal(id:peer_id(), assert(identity.load(path)):peer_id())
    end
  end)

  it("refuses it in p2p.new too, unless identity_check_mode = false",
    function()
    local path = write("open.json", core.identity_generate():to_json(), "644")
    local node, err, code = p2p.new{ identity = path, pow_bits = 0 }
    assert.is_nil(node)
    assert.equal("EPERM", code)
    assert.matches("run chmod 600", err, 1, true)
    node = assert(p2p.new{ identity = path, pow_bits = 0,
                           identity_check_mode = false })
    node:close()
  end)

  it("stops reading past 64 KiB: a huge file and /dev/zero are EFBIG",
    function()
    local path = write("huge.json", string.rep(" ", 64 * 1024 + 1), "600")
    local got, err, code = identity.load(path)
    assert.is_nil(got)
    assert.equal("EFBIG", code)
    assert.equal("EFBIG: identity file " .. path .. " is larger than 64 KiB",
      err)
    got, err, code = identity.load("/dev/zero", { check_mode = false })
    assert.is_nil(got)
    assert.equal("EFBIG", code)
    -- /dev/zero is 0666, but a device's mode says nothing of who reads
    -- the key (the advice "chmod 600 /dev/zero" would break the system):
    -- only a regular file's mode is checked, a device is bounded by size
    got, err, code = identity.load("/dev/zero")
    assert.equal("EFBIG", code)
    assert.equal("EFBIG: identity file /dev/zero is larger than 64 KiB", err)
    -- a directory is named as one, whatever its mode
    local sub = dir .. "/sub.json"
    assert(os.execute("mkdir -m 755 '" .. sub .. "'"))
    got, err, code = identity.load(sub)
    assert.is_nil(got)
    assert.equal("EISDIR", code)
    assert.equal("EISDIR: identity file " .. sub .. " is a directory", err)
    assert.same({ tonumber("755", 8), "directory" },
      { core.file_mode(sub) })
    assert.same({ tonumber("666", 8), "other" }, { core.file_mode("/dev/zero") })
    os.remove(sub)
    -- 64 KiB of valid JSON padding is still read
    local id = core.identity_generate()
    local padded = write("padded.json",
      id:to_json() .. string.rep(" ", 64 * 1024 - #id:to_json()), "600")
    assert.equal(id:peer_id(), assert(identity.load(padded)):peer_id())
  end)
end)
