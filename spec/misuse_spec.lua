-- Misuse of the binding raises a Lua error, never crashes: every method of
-- every luap2p userdata type called with a wrong self (a table, a string,
-- nil, a file, another luap2p userdata) and with wrong arguments, and every
-- core function with wrong arguments. Run it under ASan too:
--   make sanitize BUSTED_ARGS=spec/misuse_spec.lua
local p2p = require "luap2p"
local core = p2p.core

local ZERO24 = string.rep("\0", 24)

-- One constructor per userdata type the core registers. A type missing
-- here fails the "every type" test, so a new type cannot go untested.
local MAKE = {
  ["luap2p.Identity"] = function() return core.identity_generate() end,
  ["luap2p.Channel"] = function()
    return core.channel(string.rep("k", 32), ZERO24, ZERO24)
  end,
  ["luap2p.MsgReader"] = function() return core.msg_reader() end,
  ["luap2p.Handshake"] = function()
    return core.handshake{ identity = core.identity_generate(),
                           incoming = false, pow_bits = 0 }
  end,
  ["luap2p.Node"] = function()
    return core.node({ pow_bits = 0 }, core.identity_generate(),
      function() end)
  end,
  ["luap2p.Timer"] = function()
    return core.timer(3600, nil, function() end)
  end,
  ["luap2p.Signal"] = function()
    return assert(core.signal("SIGUSR2", function() end))
  end,
  ["luap2p.Watch"] = function()
    return assert(core.watch(".", function() end))
  end,
  ["luap2p.Admission"] = function() return core.admission_new() end,
  ["luap2p.HttpServer"] = function()
    return assert(core.http_serve("127.0.0.1", 0, function() end))
  end,
  -- Internal: the loop itself (registry only); only its __gc exists.
  ["luap2p.Loop"] = false,
  -- Internal: the limits of core.guard (registry only); only __gc.
  ["luap2p.GuardState"] = false,
}

-- Every metatable named luap2p.* in the registry.
local function registered_types()
  local names = {}
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^luap2p%.") and type(v) == "table"
    then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  return names
end

-- Every function reachable on an object of type tname: methods and the
-- meta functions (__gc, __close, __tostring).
local function functions_of(tname)
  local mt = debug.getregistry()[tname]
  local fns = {}
  for k, v in pairs(mt) do
    if type(v) == "function" then fns[#fns + 1] = { k, v } end
  end
  if type(mt.__index) == "table" then
    for k, v in pairs(mt.__index) do
      if type(v) == "function" then fns[#fns + 1] = { k, v } end
    end
  end
  table.sort(fns, function(a, b) return a[1] < b[1] end)
  return fns
end

-- Wrong values: a table, a string, nil, a number, a Lua file, and a
-- userdata of every other luap2p type.
local function wrong_values(except)
  local vals = { { "a table", {} }, { "a string", "x" }, { "nil", nil },
                 { "a number", 42 }, { "a file", io.stdout },
                 { "a boolean", true } }
  for tname, make in pairs(MAKE) do
    if make and tname ~= except then
      vals[#vals + 1] = { "a " .. tname, make() }
    end
  end
  return vals
end

describe("misuse of the binding", function()
  after_each(function()
    collectgarbage()
    collectgarbage()
  end)

  it("has a constructor in this spec for every registered type", function()
    for _, tname in ipairs(registered_types()) do
      assert.is_not_nil(MAKE[tname], "no constructor for " .. tname)
    end
  end)

  it("raises on every method called with a wrong self", function()
    local calls = 0
    for tname, make in pairs(MAKE) do
      if make then
        for _, f in ipairs(functions_of(tname)) do
          for _, w in ipairs(wrong_values(tname)) do
            local ok, err = pcall(f[2], w[2])
            calls = calls + 1
            assert.is_false(ok, string.format("%s.%s(%s) did not raise",
              tname, f[1], w[1]))
            assert.is_string(err)
            assert.matches("bad argument #1", err, 1, true)
          end
        end
      end
    end
    assert.is_true(calls > 500, "only " .. calls .. " calls")
  end)

  it("raises or answers, never crashes, on methods with wrong arguments",
    function()
    local calls = 0
    for tname, make in pairs(MAKE) do
      if make then
        for _, f in ipairs(functions_of(tname)) do
          for pos = 2, 4 do
            for _, w in ipairs(wrong_values(nil)) do
              local obj = make()
              local args = { obj }
              args[pos] = w[2]
              local ok, err = pcall(f[2], table.unpack(args, 1, pos))
              calls = calls + 1
              if not ok then assert.is_string(err) end
              pcall(obj.close or function() end, obj)
            end
          end
        end
      end
    end
    assert.is_true(calls > 1000, "only " .. calls .. " calls")
  end)

  it("raises on the methods of a closed object, and close stays idempotent",
    function()
    for tname, make in pairs(MAKE) do
      if make then
        local obj = make()
        local close = obj.close or obj.stop
        assert.is_function(close, tname .. " has no close")
        close(obj)
        if obj.close then obj:close() end -- idempotent
        assert.matches("closed", tostring(obj))
        for _, f in ipairs(functions_of(tname)) do
          if f[1]:sub(1, 2) ~= "__" and f[1] ~= "close" then
            local ok, err = pcall(f[2], obj, "x")
            assert.is_false(ok, tname .. "." .. f[1] .. " on a closed one")
            assert.matches("closed", err)
          end
        end
      end
    end
  end)

  it("raises or answers, never crashes, on core functions with wrong " ..
     "arguments", function()
    -- run(nil) would run the loop: it is checked with non-nil wrong
    -- values only, which must raise. stop() takes no argument.
    local SKIP_NIL = { run = true }
    local calls = 0
    for name, fn in pairs(core) do
      if type(fn) == "function" and name ~= "on_error" and
         name ~= "stop" then
        for pos = 1, 3 do
          for _, w in ipairs(wrong_values(nil)) do
            if not (SKIP_NIL[name] and (w[2] == nil or pos > 1)) then
              local args = {}
              args[pos] = w[2]
              local ok, err = pcall(fn, table.unpack(args, 1, pos))
              calls = calls + 1
              if not ok then assert.is_string(err) end
              if type(err) == "userdata" then
                pcall(function() err:close() end)
              end
            end
          end
        end
      end
    end
    assert.is_true(calls > 500, "only " .. calls .. " calls")
  end)

  it("raises on core.on_error with anything but a function or nil",
    function()
    for _, w in ipairs(wrong_values(nil)) do
      if w[2] ~= nil then
        assert.is_false(pcall(core.on_error, w[2]), w[1])
      end
    end
  end)
end)
