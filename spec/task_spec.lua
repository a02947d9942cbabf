-- Tasks (luap2p.task): spawn, join, cancel, errors, and the waiting calls
-- (p2p.sleep, node:dial, conn:receive, conn:request, conn:ask_points,
-- node:wait_for), driven by the real loop on 127.0.0.1.
local p2p = require "luap2p"
local task = require "luap2p.task"
local h = require "helper"

local core = p2p.core

-- Run the loop until every task given has ended (bounded).
local function settle(secs, ...)
  local ts = { ... }
  h.wait(function()
    for _, t in ipairs(ts) do if not t:done() then return false end end
    return true
  end, secs, "tasks to end")
end

describe("tasks", function()
  local keep = h.keeper(before_each, after_each)

  after_each(function()
    -- Every test ends with no task left alive and no waiter registered.
    for _ = 1, 5 do core.run("nowait") end
    assert.equal(0, task.count())
  end)

  it("run fn(...) on the loop and hand its results to join", function()
    local order = {}
    local inner
    local outer = p2p.spawn(function(a, b)
      order[#order + 1] = "outer"
      inner = p2p.spawn(function() order[#order + 1] = "inner"; return 7 end)
      return a + b, select("#", inner:join())
    end, 1, 2)
    order[#order + 1] = "spawned" -- spawn never runs the task in place
    settle(5, outer)
    assert.same({ "spawned", "outer", "inner" }, order)
    local joiner = p2p.spawn(function() return outer:join() end)
    settle(5, joiner)
    assert.same({ true, true, 3, 2 }, { joiner:result() })
  end)

  it("report an error (error event, join) and keep the loop going",
     function()
    local node = keep(h.quiet())
    local errs = {}
    node:on("error", function(ev) errs[#errs + 1] = ev end)
    local bad = node:spawn(function() error("boom") end)
    local fine = node:spawn(function() p2p.sleep(0.01); return "ok" end)
    settle(5, bad, fine)
    assert.equal("failed", bad.status)
    assert.equal("done", fine.status)
    assert.equal(1, #errs)
    assert.equal("task", errs[1].where)
    assert.matches("boom", errs[1].message)
    assert.matches("stack traceback", errs[1].message)
    assert.equal(1, node:stat().errors)
    local j = p2p.spawn(function() return bad:join() end)
    settle(5, j)
    local _, ok, msg, code = j:result()
    assert.is_nil(ok)
    assert.matches("^ETASK: .*boom", msg)
    assert.equal("ETASK", code)
  end)

  it("write an error nobody listens to on stderr", function()
    local out = require("check").run_lua(
      "-e 'local p2p = require \"luap2p\"; " ..
      "p2p.spawn(function() error(\"lost\") end); " ..
      "p2p.spawn(function() p2p.sleep(0.01); print(\"still running\") end); " ..
      "p2p.run()'", 10)
    assert.matches("luap2p: task error: .*lost", out)
    assert.matches("still running", out)
    -- p2p.on("error") takes them instead
    out = require("check").run_lua(
      "-e 'local p2p = require \"luap2p\"; " ..
      "p2p.on(\"error\", function(ev) print(\"got \" .. ev.where) end); " ..
      "p2p.spawn(function() error(\"lost\") end); p2p.run()'", 10)
    assert.equal("got task\n", out)
  end)

  it("raise when a waiting call is made outside a task", function()
    local node = keep(h.quiet())
    assert.has_error(function() p2p.sleep(0.1) end,
      "p2p.sleep: not inside a task; run code that waits with " ..
      "p2p.spawn(fn) (outside tasks: callbacks, p2p.after, p2p.wait)")
    assert.has_error(function() node:wait_for("connected") end)
    assert.has_error(function() node:dial("127.0.0.1:1") end)
  end)

  it("refuse to wait inside a listener or a policy hook", function()
    local node = keep(h.quiet{ policies = { {
      name = "waits",
      accept = function() p2p.sleep(1) return true end,
    } } })
    local perrs = {}
    node:on("policy_error", function(ev) perrs[#perrs + 1] = ev end)
    local client = keep(h.quiet())
    assert(client:connect(node.addr))
    h.wait(function() return #perrs > 0 end, 5, "policy_error")
    assert.equal("accept", perrs[1].hook)
    assert.matches("p2p.sleep: cannot wait inside a policy hook or a " ..
      "listener; spawn a task from there", perrs[1].message)
    -- a listener called while a task acts (node:ban emits "banned")
    local err_listener
    client:on("banned", function()
      local ok, e = pcall(p2p.sleep, 1)
      err_listener = not ok and e
    end)
    local t = client:spawn(function() client:ban("10.1.1.1", 1) end)
    settle(5, t)
    assert.equal("done", t.status)
    assert.matches("p2p.sleep: cannot wait inside a policy hook or a " ..
      "listener", err_listener)
  end)

  it("take turns with sleep(0) and bare yields, letting I/O in between",
     function()
    local a, b = keep(h.quiet(), h.quiet())
    local turns = { x = 0, y = 0 }
    local function spin(name)
      return p2p.spawn(function()
        for _ = 1, 50 do
          turns[name] = turns[name] + 1
          if name == "x" then p2p.sleep(0) else coroutine.yield() end
        end
      end)
    end
    local x, y = spin("x"), spin("y")
    -- a dial completes meanwhile: the spinning tasks do not starve I/O
    local d = b:spawn(function() return b:dial(a.addr) end)
    settle(5, x, y, d)
    assert.same({ x = 50, y = 50 }, turns)
    assert.equal("done", x.status)
    assert.equal("done", y.status)
    assert.is_true((d:result()))
  end)

  it("raise when a task runs the loop again, pointing to the waits",
     function()
    local errs = {}
    local t = p2p.spawn(function()
      for _, f in ipairs({ "run", "run_once", "run_nowait" }) do
        local ok, e = pcall(p2p[f])
        errs[f] = not ok and e
      end
      local ok, e = pcall(p2p.wait, function() return true end, 1)
      errs.wait = not ok and e
    end)
    settle(5, t)
    assert.equal("done", t.status)
    for _, f in ipairs({ "run", "run_once", "run_nowait", "wait" }) do
      assert.matches("p2p." .. f .. ": cannot run the loop inside a task " ..
        "%(it runs on the loop%); wait with p2p.sleep, node:wait_for or " ..
        "conn:receive", errs[f])
    end
    -- from a callback (no task): the core's guard names p2p.spawn
    local err
    local tm = p2p.after(0, function()
      local ok, e = pcall(p2p.wait, function() return true end, 1)
      err = not ok and e
    end)
    h.wait(function() return err ~= nil end, 5, "timer")
    tm:stop()
    assert.matches("use p2p.spawn", err)
  end)

  it("let a policy's authenticated hook answer at once and spawn the " ..
     "follow-up", function()
    local verdicts = 0
    local a = keep(h.quiet{ policies = { {
      name = "welcome",
      authenticated = function(node, info)
        verdicts = verdicts + 1
        node:spawn(function()
          local ev = node:wait_for("connected", function(e)
            return e.conn_id == info.conn_id end, 5)
          if ev then ev.conn:send("welcome " .. ev.peer_id) end
        end)
        return nil -- no opinion: the default (Ack) decides now
      end,
    } } })
    local b = keep(h.quiet())
    local t = b:spawn(function()
      local conn = assert(b:dial(a.addr))
      return conn:receive(5)
    end)
    settle(5, t)
    assert.same({ true, "welcome " .. b.peer_id, 16 }, { t:result() })
    assert.equal(1, verdicts)
  end)

  it("end a timeout in the loop turn of its deadline, before later timers",
     function()
    local order = {}
    local a, b = keep(h.quiet(), h.quiet())
    local t = p2p.spawn(function()
      local conn = assert(b:dial(a.addr))
      local t0 = core.now()
      p2p.after(0.04, function() order[#order + 1] = "timer 0.04" end)
      p2p.after(0.06, function() order[#order + 1] = "timer 0.06" end)
      local v, err, code = conn:receive(0.05)
      order[#order + 1] = "receive timed out"
      assert.is_nil(v)
      assert.equal("ETIMEDOUT", code)
      assert.equal("ETIMEDOUT: no message within 0.05s", err)
      -- never early (the loop clock counts whole milliseconds)
      assert.is_true(core.now() - t0 >= 0.049)
      p2p.after(0.02, function() order[#order + 1] = "timer 0.02" end)
      p2p.sleep(0.01)
      order[#order + 1] = "slept 0.01"
      p2p.sleep(0.02)
      order[#order + 1] = "slept 0.02"
    end)
    settle(5, t)
    assert.equal("done", t.status)
    h.wait(function() return #order == 6 end, 5, "timers")
    assert.same({ "timer 0.04", "receive timed out", "timer 0.06",
                  "slept 0.01", "timer 0.02", "slept 0.02" }, order)
  end)

  it("dial, then receive and send in order; ECLOSED after the close",
     function()
    local a, b = keep(h.quiet(), h.quiet())
    local got = {}
    local server = a:spawn(function()
      local conn = a:wait_for("connected", 5).conn
      for _ = 1, 3 do
        local payload, tag = assert(conn:receive(5))
        got[#got + 1] = payload .. "/" .. tag
      end
      conn:send("bye")
      return select(3, conn:receive(5)) -- the peer closes
    end)
    local client = b:spawn(function()
      local conn, err = b:dial(a.addr, { timeout = 5 })
      assert(conn, err)
      assert.equal(a.peer_id, conn.peer_id)
      conn:send("one")
      conn:send("two", 0x20)
      conn:send("three")
      assert.equal("bye", (conn:receive(5)))
      conn:close("done")
      return conn:receive(1)
    end)
    settle(10, server, client)
    assert.same({ "one/16", "two/32", "three/16" }, got)
    assert.same({ true, "ECLOSED" }, { server:result() })
    local ok, v, err, code = client:result()
    assert.is_true(ok)
    assert.is_nil(v)
    assert.matches("^ECLOSED: connection closed", err)
    assert.equal("ECLOSED", code)
  end)

  it("report a dial's failure, a Nack with its motive and points, and " ..
     "a dial timeout", function()
    local full = keep(h.quiet{ max_connections = 1 })
    full:point("10.9.9.9:9732").private = false -- known to be public
    local dialers = { keep(h.quiet(), h.quiet(), h.quiet()) }
    local res = {}
    local t = p2p.spawn(function()
      -- nobody listens on port 1
      res.refused = { dialers[1]:dial("127.0.0.1:1") }
      -- max_connections 1 (+ random(0,1) slots): the third is refused
      for _, d in ipairs(dialers) do
        local r = { d:dial(full.addr) }
        if r[3] == "ENACK" then res.nack = r end
      end
      -- a listener that never answers the handshake: a raw socket
      local socket = require "socket"
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      res.timeout = { dialers[2]:dial("127.0.0.1:" .. port,
        { timeout = 0.2 }) }
      srv:close()
    end)
    settle(10, t)
    assert.equal("done", t.status)
    assert.is_nil(res.refused[1])
    assert.equal("ECONNREFUSED", res.refused[3])
    assert.is_nil(res.nack[1])
    assert.matches("^ENACK: .*too_many_connections", res.nack[2])
    assert.equal(1, res.nack[4].motive)
    assert.equal("too_many_connections", res.nack[4].motive_name)
    local listed = {}
    for _, p in ipairs(res.nack[4].points) do listed[p] = true end
    assert.is_true(listed["10.9.9.9:9732"])
    assert.is_nil(res.timeout[1])
    assert.equal("ETIMEDOUT", res.timeout[3])
    h.wait(function() return dialers[2]:stat().pending_outgoing == 0 end,
      5, "the timed out dial to be dropped")
  end)

  it("wait for events with a predicate, bootstrap/advertise included",
     function()
    local a, b = keep(h.quiet(), h.quiet())
    -- the answerer advertises points known to be public
    for i = 1, 3 do a:point("10.0.0." .. i .. ":9732").private = false end
    local t = b:spawn(function()
      local conn = assert(b:dial(a.addr))
      local pts = assert(conn:ask_points(5))
      table.sort(pts)
      local pt = b:wait_for("new_point", function(ev)
        return ev.point == "10.0.0.3:9732"
      end, 0) -- already registered by the Advertise: times out
      return pts, pt
    end)
    local seen = a:spawn(function()
      return a:wait_for("bootstrap", 5)
    end)
    settle(5, t, seen)
    local ok, pts, pt = t:result()
    assert.is_true(ok)
    assert.same({ "10.0.0.1:9732", "10.0.0.2:9732", "10.0.0.3:9732" }, pts)
    assert.is_nil(pt)
    local _, ev = seen:result()
    assert.equal("bootstrap", ev.type)
    assert.equal(b.peer_id, ev.conn.peer_id)
    assert.equal(ev.conn.id, ev.conn_id)
  end)

  it("match a request's answer and keep the other messages", function()
    local a, b = keep(h.quiet(), h.quiet())
    a:spawn(function()
      local conn = a:wait_for("connected", 5).conn
      local q = assert(conn:receive(5))
      conn:send("noise 1")
      conn:send("answer:" .. q)
      conn:send("noise 2")
    end)
    local t = b:spawn(function()
      local conn = assert(b:dial(a.addr))
      local answer = assert(conn:request("q7", function(p)
        return p:match("^answer:")
      end, 5))
      local n1, tag1 = conn:receive(5)
      local n2, tag2 = conn:receive(5)
      return answer, n1, tag1, n2, tag2
    end)
    settle(5, t)
    assert.same({ true, "answer:q7", "noise 1", 16, "noise 2", 16 },
      { t:result() })
  end)

  it("release what a canceled task waited on and run its <close> " ..
     "variables", function()
    local a, b = keep(h.quiet(), h.quiet())
    local closed = 0
    local conn
    local function closer() return setmetatable({}, { __close = function()
      closed = closed + 1 end }) end
    local sleeper = p2p.spawn(function()
      local _ <close> = closer()
      p2p.sleep(60)
    end)
    local waiter = b:spawn(function()
      local _ <close> = closer()
      b:wait_for("banned")
    end)
    local reader = b:spawn(function()
      local _ <close> = closer()
      conn = assert(b:dial(a.addr))
      conn:receive()
    end)
    local joiner = p2p.spawn(function() return sleeper:join() end)
    h.wait(function() return conn and conn._reader end, 5, "reader")
    assert.is_true(sleeper:cancel())
    assert.is_true(waiter:cancel())
    assert.is_true(reader:cancel())
    assert.is_false(reader:cancel())
    assert.equal(3, closed)
    assert.is_nil(conn._reader)
    assert.is_nil(next(b._waits))
    settle(5, joiner)
    assert.same({ true, nil, "ECANCELED: task canceled", "ECANCELED" },
      { joiner:result() })
    -- a canceled dial drops the connection in flight
    local c = keep(h.quiet())
    local dialer = b:spawn(function() return b:dial(c.addr) end)
    h.wait(function() return b:stat().pending_outgoing > 0 or
      dialer:done() end, 5, "dial in flight")
    dialer:cancel()
    h.wait(function() return b:stat().pending_outgoing == 0 end, 5,
      "pending dial dropped")
  end)

  it("end a node's tasks when it closes and wake the others (ECLOSED)",
     function()
    local a = h.quiet()
    local own = a:spawn(function() a:wait_for("connected") end)
    local other = p2p.spawn(function() return a:wait_for("connected") end)
    core.run("nowait")
    core.run("nowait")
    assert.equal("waiting", own.status)
    a:close()
    assert.equal("canceled", own.status)
    settle(5, other)
    assert.same({ true, nil, "ECLOSED: node:wait_for: node closed",
                  "ECLOSED" }, { other:result() })
    assert.is_nil(next(a._waits))
    assert.is_nil(next(a._tasks))
  end)

  it("run 1 000 concurrent tasks that dial and exchange messages",
     function()
    local servers, clients = {}, {}
    local NS, NC = 25, 40
    for i = 1, NS do
      servers[i] = keep(h.quiet{ max_connections = 100,
        max_incoming_connections = 100, max_connections_per_ip = 0,
        max_connections_per_prefix = 0 })
      local s = servers[i]
      -- every connection gets a task (node:on sees every event; a task
      -- waiting with wait_for sees those that come while it waits)
      s:on("connected", function(ev)
        s:spawn(function(conn)
          local q = conn:receive(20)
          if q then conn:send("echo " .. q) end
        end, ev.conn)
      end)
    end
    for i = 1, NC do clients[i] = keep(h.quiet{ max_connections = 100 }) end
    local ok = 0
    local tasks = {}
    for i = 1, NC do
      for j = 1, NS do
        tasks[#tasks + 1] = p2p.spawn(function()
          local conn = assert(clients[i]:dial(servers[j].addr,
            { timeout = 20 }))
          local q = i .. "." .. j
          assert.equal("echo " .. q, conn:request(q, nil, 20))
          conn:close("done")
          ok = ok + 1
        end)
      end
    end
    assert.equal(NS * NC, #tasks)
    h.wait(function() return ok == NS * NC end, 60, "1000 exchanges")
    for _, t in ipairs(tasks) do assert.equal("done", t.status) end
  end)
end)
