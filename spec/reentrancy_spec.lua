-- Callbacks that try to run the loop, or that close what the core is
-- still reading from: the loop refuses to re-enter (a Lua error, never
-- undefined behaviour) and the core stops dispatching a connection, or a
-- node, that a listener closed. Run under ASan with
--   make sanitize BUSTED_ARGS=spec/reentrancy_spec.lua
local p2p = require "luap2p"
local h = require "helper"
local core = p2p.core

local MSG = "p2p.wait: cannot run the loop from inside a callback " ..
  "(listener, hook or timer); use p2p.spawn for sequential code"

local function pair(keep, cfg)
  local a = keep(h.quiet(cfg))
  local b = keep(h.quiet(cfg))
  assert(b:connect(a.addr))
  h.wait(function() return h.nconns(a) == 1 and h.nconns(b) == 1 end, 5,
    "connection")
  return a, b, a:connections()[1], b:connections()[1]
end

describe("re-entrancy", function()
  local keep = h.keeper(before_each, after_each)

  for _, case in ipairs{
    { "p2p.wait", function() return p2p.wait(function() return true end) end,
      MSG },
    { "p2p.run_once", function() return p2p.run_once() end,
      (MSG:gsub("^p2p.wait", "p2p.run_once")) },
    { "p2p.run", function() return p2p.run() end,
      (MSG:gsub("^p2p.wait", "p2p.run")) },
    { "p2p.run_nowait", function() return p2p.run_nowait() end,
      (MSG:gsub("^p2p.wait", "p2p.run_nowait")) },
    { "core.run", function() return core.run("once") end,
      (MSG:gsub("^p2p.wait", "core.run")) },
  } do
    local name, run, want = case[1], case[2], case[3]
    it("raises when a message listener calls " .. name .. ", and keeps " ..
       "delivering", function()
      local a, _, _, cb = pair(keep)
      local errors, got = {}, 0
      a:on("message", function()
        got = got + 1
        local ok, err = pcall(run)
        errors[#errors + 1] = ok and "no error" or err
      end)
      for i = 1, 20 do assert(cb:send("m" .. i)) end
      h.wait(function() return got == 20 end, 5, "20 messages")
      assert.equal(20, #errors)
      for _, e in ipairs(errors) do assert.equal(want, e) end
    end)
  end

  it("raises in a timer and in an event listener too", function()
    local a = keep(h.quiet())
    local in_timer, in_event
    local t = p2p.after(0, function()
      in_timer = select(2, pcall(p2p.wait, function() return true end))
    end)
    a:on("connected", function()
      in_event = select(2, pcall(p2p.run_once))
    end)
    local b = keep(h.quiet())
    assert(b:connect(a.addr))
    h.wait(function() return in_timer and in_event end, 5, "both callbacks")
    assert.equal(MSG, in_timer)
    assert.equal((MSG:gsub("^p2p.wait", "p2p.run_once")), in_event)
    assert.is_false(core.in_callback())
    t:stop()
  end)

  it("an uncaught loop call in a listener is reported, the node lives on",
    function()
    local a, _, _, cb = pair(keep)
    local reported = {}
    local prev = core.on_error(function(where, msg)
      reported[#reported + 1] = msg
    end)
    finally(function() core.on_error(prev) end)
    local got = 0
    a:on("message", function()
      got = got + 1
      if got == 1 then p2p.wait(function() return false end, 1) end
    end)
    -- Listener errors are caught by the node (stderr), not the funnel:
    -- silence them for this test.
    local real = io.stderr
    local lines = 0
    io.stderr = { write = function(self, ...)
      for i = 1, select("#", ...) do
        if tostring(select(i, ...)):find("cannot run the loop", 1, true)
        then lines = lines + 1 end
      end
      return self
    end }
    finally(function() io.stderr = real end)
    for i = 1, 5 do assert(cb:send("x" .. i)) end
    h.wait(function() return got == 5 end, 5, "5 messages")
    assert.equal(1, lines + #reported)
  end)

  -- Many messages share one chunk (the sender batches them): a listener
  -- that closes the connection, the node, or bans the peer in the middle
  -- stops the dispatch of the rest of that chunk at once.
  for _, case in ipairs{
    { "closes the connection", function(a, conn) conn:close("enough") end },
    { "closes the node", function(a) a:close() end },
    { "bans the peer", function(a, conn) a:ban(conn.peer_id, 60) end },
  } do
    it("stops dispatching when a listener " .. case[1] ..
       " in the middle of a chunk", function()
      local a, b, _, cb = pair(keep)
      local got, after = 0, 0
      local closed_at
      a:on("message", function(ev)
        if closed_at then after = after + 1 return end
        got = got + 1
        if got == 5 then
          closed_at = got
          case[2](a, ev.conn)
        end
      end)
      local gone = false
      b:on("disconnected", function() gone = true end)
      for i = 1, 200 do assert(cb:send(string.rep("p", 100) .. i)) end
      h.wait(function() return gone end, 5, "the sender sees the close")
      -- Let anything still buffered reach the loop.
      for _ = 1, 20 do p2p.run_nowait() end
      assert.equal(5, got)
      assert.equal(0, after)
    end)
  end

  it("survives peers that hang up in the middle of a chunk", function()
    local a = keep(h.quiet())
    local seen = 0
    a:on("disconnected", function() seen = seen + 1 end)
    local N = 20
    local clients = {}
    for i = 1, N do
      local b = h.quiet()
      clients[i] = b
      assert(b:connect(a.addr))
    end
    h.wait(function()
      if h.nconns(a) < N then return false end
      for _, b in ipairs(clients) do
        if h.nconns(b) ~= 1 then return false end
      end
      return true
    end, 10, "N connections")
    -- Each sender queues a large message and closes hard (no graceful
    -- flush): the receiver sees a chunk cut off, then the EOF.
    for _, b in ipairs(clients) do
      local conn = b:connections()[1]
      assert(conn:send(string.rep("z", 300 * 1024)))
      p2p.run_nowait()
      b:close()
    end
    h.wait(function() return seen == N end, 10, "every hang-up seen")
    assert.equal(0, h.nconns(a))
  end)
end)
