-- The config schema (lua/luap2p/config.lua): one source for p2p.new,
-- core.handshake, the core's fallback defaults and the README table.
local p2p = require "luap2p"
local config = require "luap2p.config"
local h = require "helper"

local core = p2p.core

describe("config schema", function()
  it("gives every key a type, a reader and a doc", function()
    for _, k in ipairs(config.SCHEMA) do
      assert.is_string(k.name)
      assert.is_string(k.type)
      assert.truthy(k.read == "core" or k.read == "lua", k.name)
      assert.is_string(k.doc, k.name)
      if k.type == "integer" or k.type == "number" then
        assert.is_number(k.min, k.name)
        assert.is_number(k.max, k.name)
      end
    end
  end)

  it("matches the keys, defaults and ranges the C core reads", function()
    local c = core.config_keys()
    for _, k in ipairs(config.SCHEMA) do
      if k.read == "core" then
        local ck = c[k.name]
        assert.is_table(ck, "the core does not read " .. k.name)
        assert.same(k.default, ck.default, k.name)
        if k.type == "integer" or k.type == "number" or k.max then
          assert.equal(k.min, ck.min, k.name)
          assert.equal(k.max, ck.max, k.name)
        end
      end
    end
    for name in pairs(c) do
      assert.is_table(config.KEYS[name], name .. " is missing from the schema")
      assert.equal("core", config.KEYS[name].read, name)
    end
  end)

  it("fills every default in the table passed to the core", function()
    local c = config.check{ identity = "x" }
    for _, k in ipairs(config.SCHEMA) do
      if k.default ~= nil and not k.derived then
        assert.same(k.default, c[k.name], k.name)
      end
    end
    assert.equal(50, c.expected_connections)
  end)

  it("is what README.md shows", function()
    local f = assert(io.open("README.md", "rb"))
    local text = f:read("a")
    f:close()
    local mark = "by `make readme-config` -->\n"
    local a = text:find(mark, 1, true)
    local b = text:find("<!-- end of the config table", 1, true)
    local table_text = a and b and text:sub(a + #mark, b - 1)
    assert.is_string(table_text, "README.md: config table markers missing")
    assert.equal(config.markdown(), table_text,
      "README.md drifted from the schema: run `make readme-config`")
  end)

  it("gives the command line's key flags their range and default",
    function()
    local cli = require "luap2p.cli.node"
    for name, flag in pairs(cli.FLAGS) do
      assert.is_table(config.KEYS[name], flag)
    end
    local argparse = require "argparse"
    local parser = argparse("luap2p")
    cli.define(parser)
    local ok, err = parser:pparse{ "node", "--identity", "x", "--listen",
      "127.0.0.1:0", "--max-incoming", "2000000" }
    assert.is_false(ok)
    assert.matches("expected an integer in 0..1048576", err)
  end)

  it("suggests the nearest key", function()
    assert.equal("max_connections", config.nearest("max_conections"))
    assert.equal("advertised_port", config.nearest("port"))
    assert.is_nil(config.nearest("zzzzzz"))
  end)

  describe("p2p_versions and ddb_versions", function()
    local VERSIONS = "a non-empty list of consecutive versions in " ..
      "[0, 65535], e.g. {0, 1}"

    it("raise on the same lists in p2p.new and core.handshake", function()
      for _, bad in ipairs{ { 0, 1, 5 }, { 1, 0 }, {}, { 0, 1.5 } } do
        assert.has_error(function()
          p2p.new{ identity = h.identity(), p2p_versions = bad }
        end, "p2p.new: config.p2p_versions: expected " .. VERSIONS ..
          ", got a table")
        assert.has_error(function()
          core.handshake{ identity = core.identity_generate(),
            incoming = false, p2p_versions = bad }
        end, "core.handshake: config.p2p_versions: expected " .. VERSIONS)
        assert.has_error(function()
          core.node({ p2p_versions = bad }, core.identity_generate(),
            function() end)
        end, "core.node: config.p2p_versions: expected " .. VERSIONS)
      end
    end)

    it("announce the largest in both", function()
      local hs = core.handshake{ identity = core.identity_generate(),
        incoming = false, pow_bits = 0, p2p_versions = { 1, 2, 3 },
        ddb_versions = { 0 } }
      local m = assert(core.conn_msg_decode(hs:output():sub(3)))
      assert.equal(3, m.p2p_version)
      assert.equal(0, m.ddb_version)
    end)
  end)
end)
