-- The one event shape: every listener gets fn(ev), ev.conn the connection
-- object and ev.conn_id its number. Checked on live events, and in the
-- sources, so that code written for the earlier shapes (fn(conn, ...), a
-- separate connection field, a number in ev.conn) does not come back
-- unnoticed.
local p2p = require "luap2p"
local h = require "helper"

local function sources()
  local list = {}
  local f = io.popen("find lua spec examples bench scripts -name '*.lua' " ..
    "| sort")
  for path in f:lines() do list[#list + 1] = path end
  f:close()
  return list
end

describe("events", function()
  local keep = h.keeper(before_each, after_each)

  it("have one shape for every listener, conn:on and event hooks",
     function()
    local hooked = {}
    local a = keep(h.quiet{ policies = { { name = "seen",
      event = function(_, ev) hooked[#hooked + 1] = ev end } } })
    local b = keep(h.quiet())
    local all, msgs, closes = {}, {}, {}
    a:on("*", function(ev) all[#all + 1] = ev end)
    a:on("message", function(ev) msgs[#msgs + 1] = ev end)
    a:on("connected", function(ev)
      ev.conn:on("close", function(e) closes[#closes + 1] = e end)
    end)
    local t = b:spawn(function()
      local conn = assert(b:dial(a.addr))
      conn:send("hi")
      conn:ask_points(0.2) -- a Bootstrap for a "bootstrap" event
      conn:close("bye")
    end)
    h.wait(function() return t:done() and #closes == 1 end, 5, "the close")
    local by = {}
    for _, ev in ipairs(all) do by[ev.type] = ev end
    for _, kind in ipairs{ "accepted", "authenticated", "connected",
                           "bootstrap", "disconnected" } do
      local ev = by[kind]
      assert.truthy(ev, kind)
      assert.equal("integer", math.type(ev.conn_id), kind)
      assert.is_number(ev.ts)
    end
    -- the object while it runs, nil before
    assert.is_nil(by.accepted.conn)
    assert.is_nil(by.authenticated.conn)
    local conn = by.connected.conn
    assert.equal(conn.id, by.connected.conn_id)
    assert.equal(conn, by.bootstrap.conn)
    assert.equal(conn, by.disconnected.conn)
    assert.equal(conn, msgs[1].conn)
    assert.equal("hi", msgs[1].payload)
    assert.equal(16, msgs[1].tag)
    assert.equal(by.disconnected, closes[1])
    -- policies' event hooks see the very same tables
    local same = false
    for _, ev in ipairs(hooked) do same = same or ev == by.connected end
    assert.is_true(same)
  end)

  it("are never read in the earlier shapes by the sources", function()
    local bad = {}
    for _, path in ipairs(sources()) do
      local text = h.read_file(path)
      local n = 0
      for line in text:gmatch("[^\n]*") do
        n = n + 1
        if line:match("ev%.connection%f[^%w_]") or
           line:match(':on%("[%w_*]+", function%(%s*[%w_]+%s*,') or
           line:match("conns%[ev%.conn%]") then
          bad[#bad + 1] = path .. ":" .. n .. ": " .. line
        end
      end
    end
    assert.same({}, bad)
  end)
end)
