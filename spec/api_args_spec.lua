-- api_args: misuse of the public Lua API (p2p, node, conn) raises, with
-- a message that names the function and the argument ("node:after:
-- seconds: expected ..., got 'x'") and the position of the caller: this
-- file and the line of the call, never a line inside luap2p. Each case is
-- one line: here() gives the line of the call.
local p2p = require "luap2p"
local h = require "helper"

local SRC = debug.getinfo(1, "S").short_src
local line
local function here() line = debug.getinfo(2, "l").currentline end
local f = function() end

-- { call, expected message } with n a node, c a connection.
local CASES = {
  { function(n) here(); n:after("x", f) end, "node:after: seconds: expected a number of seconds in 0..1e13, got 'x'" },
  { function(n) here(); n:after(1) end, "node:after: fn: expected a function, got nil" },
  { function(n) here(); n:every(-1, f) end, "node:every: seconds: expected a period in seconds > 0 and <= 1e13, got -1" },
  { function(n) here(); n:every(1, "f") end, "node:every: fn: expected a function, got 'f'" },
  { function(n) here(); n:ban() end, "node:ban: target: expected a string, got nil" },
  { function(n) here(); n:ban("x") end, "node:ban: target: expected an IP, IP/prefix, IP:port or peer id, got 'x'" },
  { function(n) here(); n:ban("192.0.2.1", "1h") end, "node:ban: seconds: expected a number of seconds in 0..1e13 or nil, got '1h'" },
  { function(n) here(); n:ban("192.0.2.1", 1, {}) end, "node:ban: reason: expected a string or nil, got a table" },
  { function(n) here(); n:ban("192.0.2.1", 1, "r", 1) end, "node:ban: opts: expected a table or nil, got 1" },
  { function(n) here(); n:unban(7) end, "node:unban: target: expected a string, got 7" },
  { function(n) here(); n:unban("x") end, "node:unban: target: expected an IP, IP/prefix, IP:port or peer id, got 'x'" },
  { function(n) here(); n:banned(nil) end, "node:banned: target: expected a string, got nil" },
  { function(n) here(); n:add_points("x") end, "node:add_points: points: expected a list of 'HOST:PORT' strings, got 'x'" },
  { function(n) here(); n:add_points({ "192.0.2.1:9732", 9732 }) end, "node:add_points: points[2]: expected a point 'HOST:PORT', got 9732" },
  { function(n) here(); n:add_points({ "192.0.2.1" }) end, "node:add_points: points[1]: expected a point 'HOST:PORT', got '192.0.2.1'" },
  { function(n) here(); n:connect("x") end, "node:connect: point: expected a point 'HOST:PORT', got 'x'" },
  { function(n) here(); n:connect("192.0.2.1:9732", true) end, "node:connect: opts: expected a table or nil, got true" },
  { function(n) here(); n:listen("x") end, "node:listen: point: expected 'HOST:PORT' (or host, port), got 'x'" },
  { function(n) here(); n:listen("127.0.0.1", 70000) end, "node:listen: port: expected an integer in 0..65535, got 70000" },
  { function(n) here(); n:on(1, f) end, "node:on: event type: expected a string, got 1" },
  { function(n) here(); n:on("connected") end, "node:on: fn: expected a function, got nil" },
  { function(n) here(); n:on("connectedd", f) end, "node:on: event type: unknown event type 'connectedd' (did you mean 'connected'?)" },
  { function(n) here(); n:on("tick", f) end, "node:on: event type: unknown event type 'tick'" },
  { function(n) here(); n:spawn(1) end, "node:spawn: fn: expected a function, got 1" },
  { function(n) here(); n:trust(nil) end, "node:trust: target: expected a point or a peer id, got nil" },
  { function(n) here(); n:untrust(1) end, "node:untrust: target: expected a point or a peer id, got 1" },
  { function(n) here(); n:disconnect(nil) end, "node:disconnect: target: expected a connection, a peer id or a point, got nil" },
  { function(n) here(); n:point(nil) end, "node:point: point: expected a string, got nil" },
  { function(n) here(); n:peer(1) end, "node:peer: peer id: expected a string, got 1" },
  { function(n) here(); n:known_points(-1) end, "node:known_points: n: expected an integer count >= 0, got -1" },
  { function(n) here(); n:known_points(2.0) end, "node:known_points: n: expected an integer count >= 0, got 2.0" },
  { function(n) here(); n:reload(5) end, "node:reload: path: expected a string or nil, got 5" },
  { function(n) here(); n:known_points(3, "x") end, "node:known_points: opts: expected a table or nil, got 'x'" },
  { function() here(); p2p.after(nil, f) end, "p2p.after: seconds: expected a number of seconds in 0..1e13, got nil" },
  { function() here(); p2p.after(1, nil) end, "p2p.after: fn: expected a function, got nil" },
  { function() here(); p2p.every(0, f) end, "p2p.every: seconds: expected a period in seconds > 0 and <= 1e13, got 0" },
  { function() here(); p2p.wait("x") end, "p2p.wait: pred: expected a function, got 'x'" },
  { function() here(); p2p.wait(f, -1) end, "p2p.wait: timeout: expected a number of seconds in 0..1e13 or nil, got -1" },
  { function() here(); p2p.spawn(nil) end, "p2p.spawn: fn: expected a function, got nil" },
  { function(_, c) here(); c:send(1) end, "conn:send: payload: expected a string, got 1" },
  { function(_, c) here(); c:send("", 1) end, "conn:send: tag: expected an application message tag in 0x10..0xffff (P2P messages go through conn:send_msg), got 1" },
  { function(_, c) here(); c:send_shell("x") end, "conn:send_shell: message: expected a table, got 'x'" },
  { function(_, c) here(); c:send_msg("bootstrap") end, "conn:send_msg: message: expected a table {type = ...}, got 'bootstrap'" },
  { function(_, c) here(); c:pull(1) end, "conn:pull: on: expected a boolean or nil, got 1" },
  { function(_, c) here(); c:on("msg", f) end, "conn:on: event type: expected 'message' or 'close', got 'msg'" },
  { function(_, c) here(); c:on("close") end, "conn:on: fn: expected a function, got nil" },
  { function(_, c) here(); c:close(false) end, "conn:close: reason: expected a string or nil, got false" },
  -- the calls that wait, outside a task
  { function(n) here(); n:dial("127.0.0.1:9732") end, "node:dial: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
  { function(n) here(); n:wait_for("connected") end, "node:wait_for: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
  { function() here(); p2p.sleep(0) end, "p2p.sleep: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
  { function() here(); p2p.sleep(1) end, "p2p.sleep: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
  { function() local t = p2p.spawn(f); here(); t:join(1) end, "task:join: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
  { function(_, c) here(); c:receive(1) end, "conn:receive: not inside a task; run code that waits with p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)" },
}

-- The same inside a task, for the calls that wait.
local TASK_CASES = {
  { function(n) here(); n:dial(9732) end, "node:dial: point: expected a point 'HOST:PORT', got 9732" },
  { function(n) here(); n:wait_for("connected", f, "soon") end, "node:wait_for: timeout: expected a number of seconds in 0..1e13 or nil, got 'soon'" },
  { function(n) here(); n:wait_for(nil) end, "node:wait_for: event type: expected a string, got nil" },
  { function(n) here(); n:wait_for("nackd") end, "node:wait_for: event type: unknown event type 'nackd' (did you mean 'nacked'?)" },
  { function(n) here(); n:wait_for("*") end, "node:wait_for: event type: unknown event type '*'" },
  { function(n) here(); n:wait_for("message", 1) end, "node:wait_for: event type: 'message' is not waited for: use conn:receive() in a task, or node:on('message', fn)" },
  { function(_, c) here(); c:receive("1") end, "conn:receive: timeout: expected a number of seconds in 0..1e13 or nil, got '1'" },
  { function(_, c) here(); c:request(nil) end, "conn:request: msg: expected a payload string or a P2P message table, got nil" },
  { function(_, c) here(); c:request("", "m") end, "conn:request: match: expected a function, got 'm'" },
  { function(_, c) here(); c:ask_points(-2) end, "conn:ask_points: timeout: expected a number of seconds in 0..1e13 or nil, got -2" },
}

describe("api arguments", function()
  local keep = h.keeper(before_each, after_each)
  local a, b, conn

  before_each(function()
    a = keep(h.quiet())
    b = keep(h.quiet())
    conn = nil
    p2p.spawn(function() conn = assert(b:dial(a.addr)) end)
    h.wait(function() return conn ~= nil end, 10, "connected")
  end)

  local function expect(case, ok, err)
    assert.is_false(ok, case[2])
    assert.equal(SRC .. ":" .. line .. ": " .. case[2], err)
  end

  it("knows every event type the core emits (node:on would refuse one " ..
     "it does not)", function()
    local known = {}
    for _, t in ipairs(require("luap2p.check").EVENT_TYPES) do
      known[t] = true
    end
    for t in pairs(a._c:calls().events) do
      assert.is_true(known[t], t .. " missing from check.EVENT_TYPES")
      assert.equal(a, a:on(t, f))
    end
  end)

  it("misuse raises at the caller's line, naming function and argument",
    function()
    for _, case in ipairs(CASES) do
      line = nil
      local ok, err = pcall(case[1], b, conn)
      expect(case, ok, err)
    end
  end)

  it("the same inside a task", function()
    local results = {}
    p2p.spawn(function()
      for i, case in ipairs(TASK_CASES) do
        line = nil
        local ok, err = pcall(case[1], b, conn)
        results[i] = { ok, err, line }
      end
    end)
    h.wait(function() return #results == #TASK_CASES end, 10, "cases run")
    for i, case in ipairs(TASK_CASES) do
      line = results[i][3]
      expect(case, results[i][1], results[i][2])
    end
  end)

  it("add_points takes a list of points and returns how many were new",
    function()
    assert.equal(2, b:add_points({ "192.0.2.1:9732", "[2001:db8::1]:9732" }))
    assert.equal(0, b:add_points({ "192.0.2.1:9732" }))
    assert.equal(0, b:add_points({}))
  end)
end)
