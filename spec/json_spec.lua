-- luap2p.json: the JSON writer every output of luap2p goes through (RPC,
-- JSON log, CLI --json, ban file, sim files) and its checked reader.
local json = require "luap2p.json"
local cjson = require "cjson"

describe("json", function()
  describe("encode", function()
    -- { name, value, expected text }
    local cases = {
      { "a plain string", "abc", '"abc"' },
      { "quotes and backslashes", 'a"b\\c', '"a\\"b\\\\c"' },
      { "named control characters", "\b\f\n\r\t", '"\\b\\f\\n\\r\\t"' },
      { "other control characters as \\u", "\0\1\31\127",
        '"\\u0000\\u0001\\u001f\\u007f"' },
      { "valid UTF-8 unchanged", "caf\195\169 \226\130\172",
        '"caf\195\169 \226\130\172"' },
      { "invalid UTF-8 bytes as \\u00XX", "a\255\128b",
        '"a\\u00ff\\u0080b"' },
      { "a slash unescaped", "a/b", '"a/b"' },
      { "an integer exactly", math.maxinteger, "9223372036854775807" },
      { "a negative integer", -42, "-42" },
      { "an int64 past 2^53 exactly", (1 << 53) + 1, "9007199254740993" },
      { "an integral float without a fraction", 3.0, "3" },
      { "negative zero as 0", -0.0, "0" },
      { "a float with its shortest digits", 0.1, "0.1" },
      { "a float needing 17 digits", 1 / 3, "0.3333333333333333" },
      { "a large float in exponent form", 1e300, "1e+300" },
      { "true", true, "true" },
      { "false", false, "false" },
      { "nil as null", nil, "null" },
      { "json.null as null", json.null, "null" },
      { "an unmarked empty table as an object", {}, "{}" },
      { "a marked empty table as an array", json.array({}), "[]" },
      { "a sequence as an array", { 1, "a", false }, '[1,"a",false]' },
      { "an array with a hole as null", { 1, nil, 3 }, "[1,null,3]" },
      { "object keys sorted", { b = 1, a = 2, c = 3 },
        '{"a":2,"b":1,"c":3}' },
      { "number keys of an object as strings", { x = 1, [2] = "y" },
        '{"2":"y","x":1}' },
      { "nested values", { peers = json.array({}), stat = { n = 1,
          list = { { id = "a" }, json.array({}) }, empty = {} } },
        '{"peers":[],"stat":{"empty":{},"list":[{"id":"a"},[]],"n":1}}' },
    }
    for _, c in ipairs(cases) do
      it("writes " .. c[1], function()
        assert.equal(c[3], json.encode(c[2]))
      end)
    end

    it("writes what lua-cjson reads back to the same value", function()
      local v = { s = "\0\1\"\\\n\226\130\172", n = 12345, f = 2.5,
                  list = { 1, 2, { deep = { true, false } } } }
      assert.same(v, cjson.decode(json.encode(v)))
    end)

    it("keeps a table's array mark after the call", function()
      local t = json.array({})
      json.encode({ t })
      assert.equal("[]", json.encode(t))
      t[1] = 7
      assert.equal("[7]", json.encode(t))
    end)

    -- { name, value, exact message }
    local refused = {
      { "NaN", { a = { 1, 0 / 0 } }, "json: cannot encode NaN at $.a[2]" },
      { "infinity", { rate = math.huge },
        "json: cannot encode infinity at $.rate" },
      { "-infinity", { -math.huge }, "json: cannot encode -infinity at $[1]" },
      { "a function", { f = print }, "json: cannot encode a function at $.f" },
      { "a table key", { [{}] = 1 }, "json: cannot encode a table key at $" },
      { "an infinite key", { x = { [-math.huge] = 1 } },
        "json: cannot encode the key -inf at $.x" },
      { "a sparse array", { x = { [1] = 1, [100] = 2 } },
        "json: cannot encode an array with more holes than values at $.x" },
    }
    for _, c in ipairs(refused) do
      it("raises on " .. c[1] .. ", naming where", function()
        assert.has_error(function() json.encode(c[2]) end, c[3])
      end)
    end

    it("raises on a cycle, naming its last steps", function()
      local t = {}
      t.self = t
      assert.has_error(function() json.encode(t) end,
        "json: cannot encode tables nested deeper than 1000 (a cycle?) " ..
        "at $....self.self.self.self.self.self.self.self")
    end)
  end)

  describe("decode", function()
    it("reads JSON, null as json.null", function()
      local v = json.decode('{"a":[1,null,"x"],"b":{}}')
      assert.same({ a = { 1, json.null, "x" }, b = {} }, v)
    end)

    it("returns nil, 'EPROTO: not JSON: ...', 'EPROTO' on bad text",
      function()
      local v, err, code = json.decode("{bad")
      assert.is_nil(v)
      assert.equal("EPROTO", code)
      assert.truthy(err:match("^EPROTO: not JSON: "), err)
    end)

    it("raises on a value that is not a string", function()
      assert.has_error(function() json.decode(42) end,
        "json.decode: string expected, got number")
    end)
  end)
end)
