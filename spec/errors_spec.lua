-- The error contract: every runtime failure of the Lua API is
-- nil, "ENAME: message", "ENAME", and p2p.core.errors lists every ENAME
-- the API (functions and events) can carry. Checked two ways: the ENAMEs
-- written in the sources (Lua layer, C core), and the failures of public
-- functions, wrapped to record every result, while real ones happen.
local p2p = require "luap2p"
local identity = require "luap2p.identity"
local h = require "helper"
local core = p2p.core
local errors = core.errors

local function files(pattern)
  local list = {}
  local f = io.popen("find lua core -name '" .. pattern .. "' | sort")
  for path in f:lines() do list[#list + 1] = path end
  f:close()
  return list
end

describe("errors", function()
  it("lists every ENAME the Lua layer writes", function()
    local n = 0
    for _, path in ipairs(files("*.lua")) do
      local text = h.read_file(path)
      for name in text:gmatch('"(E[%u%d]+)[:"]') do
        if name ~= "ENAME" then
          n = n + 1
          assert.is_not_nil(errors[name], name .. " (" .. path .. ")")
        end
      end
    end
    assert.is_true(n > 40, n .. " names found")
  end)

  it("lists every libuv and LP2P error code the C core uses", function()
    local n = 0
    for _, path in ipairs(files("*.c")) do
      local text = h.read_file(path)
      for name in text:gmatch("UV_(E[%u%d_]+)%f[^%w_]") do
        n = n + 1
        assert.is_not_nil(errors[name], name .. " (" .. path .. ")")
      end
      -- LP2P_E<NAME> as a whole word: not LP2P_EV_..., LP2P_ERRNO_MAP
      for name in text:gmatch("LP2P_(E[%u%d]+)%f[^%w_]") do
        if name ~= "EXPORT" then
          assert.is_not_nil(errors[name], name .. " (" .. path .. ")")
        end
      end
    end
    assert.is_true(n > 5, n .. " libuv names found")
    -- and names them as the core does
    for name, code in pairs(errors) do
      assert.equal(name, (core.strerror(code)))
    end
  end)

  describe("at run time", function()
    local keep = h.keeper(before_each, after_each)
    local seen -- ENAME -> count, from functions and events
    local bad  -- contract breaches

    -- Wrap every public function of t (a module or a metatable's
    -- methods) to check what it returns.
    local function watch(t, what)
      local saved = {}
      for name, fn in pairs(t) do
        if type(fn) == "function" and name:sub(1, 1) ~= "_" then
          saved[name] = fn
          t[name] = function(...)
            local r = table.pack(fn(...))
            if r[1] == false and r.n >= 3 then
              bad[#bad + 1] = what .. "." .. name .. " returned false, " ..
                tostring(r[2])
            elseif r[1] == nil and r.n >= 2 then
              local code = r[3]
              if type(code) ~= "string" or type(r[2]) ~= "string" or
                 r[2]:sub(1, #code + 2) ~= code .. ": " then
                bad[#bad + 1] = string.format("%s.%s returned nil, %s, %s",
                  what, name, tostring(r[2]), tostring(code))
              else
                seen[code] = (seen[code] or 0) + 1
              end
            end
            return table.unpack(r, 1, r.n)
          end
        end
      end
      return function()
        for name, fn in pairs(saved) do t[name] = fn end
      end
    end

    it("every failure is nil, 'ENAME: message', ENAME, with ENAME in " ..
       "p2p.core.errors", function()
      seen, bad = {}, {}
      local a = keep(h.quiet())
      local Node = getmetatable(a).__index
      local Conn = require "luap2p.conn"
      local restore = { watch(Node, "node"), watch(Conn, "conn"),
                        watch(p2p, "p2p"), watch(identity, "identity"),
                        watch(p2p.policy, "policy") }
      finally(function() for _, r in ipairs(restore) do r() end end)
      local events = {}
      a:on("*", function(ev) events[#events + 1] = ev end)

      -- listen: the port is taken; an address that is not ours
      assert.is_nil(a:listen("127.0.0.1", a.port))
      assert.is_nil(a:listen("192.0.2.1", 0))
      -- connect: refused by a policy; a closed port (the failure is an
      -- event: auth_failed / disconnected with its code)
      local b = keep(h.quiet{ default_policies = false, policies = { {
        name = "no", connect = function() return false, "not today" end,
      } } })
      b:on("*", function(ev) events[#events + 1] = ev end)
      assert.is_nil(b:connect("127.0.0.1:1"))
      local closed = keep(h.quiet())
      local port = closed.port
      closed:close()
      assert(a:connect("127.0.0.1:" .. port))
      -- a real connection, then everything a closed one refuses
      local c = keep(h.quiet())
      assert(c:connect(a.addr))
      h.wait(function() return h.nconns(a) == 1 and h.nconns(c) == 1 end,
        5, "connected")
      local conn = c:connection(a.peer_id)
      assert.is_true(conn:close("bye"))
      assert.is_nil(conn:close("again"))
      assert.is_nil(conn:send("late"))
      assert.is_nil(conn:send_msg{ type = "bootstrap" })
      assert.is_nil(conn:stat())
      assert.is_nil(c:disconnect("127.0.0.1:9"))
      h.wait(function() return h.nconns(a) == 0 end, 5, "closed")
      -- policies: a file that does not load
      local dir = h.tmpdir()
      local path = dir .. "/p.lua"
      h.write_file(path, "return {}")
      local d = keep(h.quiet{ policies = { path } })
      h.write_file(path, "return {")
      assert.is_nil(d:reload(path))
      assert.is_nil(p2p.policy.load_file(path))
      assert.is_nil(p2p.policy.resolve("no.such.policy"))
      -- identity files
      assert.is_nil(identity.load(dir .. "/none.json"))
      h.write_file(dir .. "/open.json", core.identity_generate():to_json())
      os.execute("chmod 644 '" .. dir .. "/open.json'")
      assert.is_nil(identity.load(dir .. "/open.json"))
      assert.is_nil(identity.save(core.identity_generate(),
        dir .. "/open.json"))
      assert.is_nil(p2p.new{ identity = dir .. "/open.json" })
      -- waiting
      assert.is_nil(p2p.wait(function() return false end, 0.01))
      h.wait(function()
        for _, ev in ipairs(events) do
          if ev.code and ev.point == "127.0.0.1:" .. port then return true end
        end
      end, 5, "the failed dial")
      h.rmdir(dir)

      assert.same({}, bad)
      for _, ev in ipairs(events) do
        if ev.code then
          seen[ev.code] = (seen[ev.code] or 0) + 1
        end
      end
      local names = {}
      for name in pairs(seen) do
        names[#names + 1] = name
        assert.is_not_nil(errors[name], name)
      end
      table.sort(names)
      -- the failures provoked above, by name
      for _, want in ipairs{ "EADDRINUSE", "EADDRNOTAVAIL", "EREFUSED",
                             "ECLOSED", "ENOTCONN", "EPOLICY", "ENOENT",
                             "EPERM", "EEXIST", "ETIMEDOUT",
                             "ECONNREFUSED" } do
        assert.is_not_nil(seen[want], want .. " not seen: " ..
          table.concat(names, " "))
      end
    end)
  end)
end)
