-- Hot reload under live traffic (README, "Policies"): 50
-- connections exchange messages while the policy file is rewritten 100
-- times through good versions, a syntax error, a runtime error in
-- check(), a top-level endless loop, a hook that loops forever and a hook
-- that errors. Zero connections dropped, zero messages lost, each bad
-- version reported with its policy_error (file, hook, message), and the
-- behaviour switches exactly when a version lands.
local p2p = require "luap2p"
local h = require "helper"

local node = h.quiet

-- Policy file texts. Every good version K answers each message itself
-- with "vK:<payload>" and checks it runs when the spec expects it.
local function good(k)
  return string.format([[
local K = %d
return {
  name = "live",
  check = function(node) return node.state.live ~= nil end,
  message = function(node, conn, payload, tag)
    local s = node.state.live
    s.handled = s.handled + 1
    if s.expect ~= K then s.wrong = s.wrong + 1 end
    conn:send("v" .. K .. ":" .. payload)
    return true
  end,
}
]], k)
end

local BAD_LOAD = {
  syntax = {
    text = 'return { name = "live", message = function( end }\n',
    pattern = "live%.lua:1:",
  },
  check_error = {
    text = [[
return {
  name = "live",
  check = function(node) local t = nil; return t.field end,
  message = function(node, conn, payload) conn:send("never:" .. payload)
    return true end,
}
]],
    pattern = "check failed: .*attempt to index a nil value",
  },
  load_loop = {
    text = "while true do end\nreturn { name = \"live\" }\n",
    pattern = "instruction budget exceeded",
  },
}

-- These load (nothing can tell before a call) and fail on every call:
-- each message gets the safe default (not consumed: the application
-- listener answers "d:<payload>").
local BAD_HOOK = {
  hook_loop = {
    text = [[
return { name = "live",
         message = function() while true do end end }
]],
    pattern = "instruction budget exceeded",
  },
  hook_error = {
    text = [[
return { name = "live",
         message = function() error("hook boom") end }
]],
    pattern = "hook boom",
  },
}

local CYCLE = { "good", "syntax", "check_error", "load_loop", "hook_loop",
                "hook_error" }

describe("hot reload", function()
  it("under 50 live connections, 100 rewrites: nothing dropped or lost",
    function()
    local dir = h.tmpdir()
    local path = dir .. "/live.lua"
    h.write_file(path, good(0))
    local state = { handled = 0, wrong = 0, expect = 0, default = 0 }
    -- check() needs node.state.live: seed it through a tiny first policy
    local srv = node{
      policies = { { name = "seed", check = function(n)
                       n.state.live = n.state.live or state
                       return true
                     end }, path },
      hook_budget = 20000, max_incoming_connections = 64, backlog = 64,
    }
    assert.equal(state, srv.state.live)
    local rs = h.record(srv)
    -- the application path answers what no policy consumed
    srv:on("message", function(ev)
      local conn, payload = ev.conn, ev.payload
      local s = srv.state.live
      s.default = s.default + 1
      if s.expect ~= "default" then s.wrong = s.wrong + 1 end
      conn:send("d:" .. payload)
    end)

    local clients, replies, recs = {}, {}, {}
    for i = 1, 50 do
      local c = node{}
      clients[i], replies[i], recs[i] = c, {}, h.record(c)
      assert(c:connect(srv.addr))
      if i % 10 == 0 then
        h.wait(function() return h.nconns(srv) == i end, 10,
          "connections " .. i)
      end
    end
    -- The server's side runs first (the client's runs on our Ack).
    h.wait(function()
      for _, c in ipairs(clients) do
        if h.nconns(c) ~= 1 then return false end
      end
      return true
    end, 10, "every client connected")
    local conns = {}
    for i, c in ipairs(clients) do
      conns[i] = c:connection(srv.peer_id)
      conns[i]:on("message", function(ev)
        table.insert(replies[i], ev.payload)
      end)
    end

    local sent = 0
    local loads = { good = 0, bad_load = 0, bad_hook = 0 }
    local pe_seen = 0
    local named = 0 -- policy_errors of failing hooks, not summaries
    local version = 0
    for step = 1, 100 do
      local kind = CYCLE[(step - 1) % #CYCLE + 1]
      local text, bad
      if kind == "good" then
        version = version + 1
        text = good(version)
      else
        bad = BAD_LOAD[kind] or BAD_HOOK[kind]
        text = bad.text
      end
      h.write_file(path, text)
      local ok, err, code = srv:reload(path)
      if kind == "good" then
        assert.is_true(ok, err)
        srv.state.live.expect = version
        loads.good = loads.good + 1
      elseif BAD_LOAD[kind] then
        assert.is_nil(ok)
        assert.equal("EPOLICY", code)
        -- exactly one policy_error, naming file, hook and cause
        assert.equal(pe_seen + 1, #rs.policy_error)
        local pe = rs.policy_error[#rs.policy_error]
        assert.equal("live", pe.policy)
        assert.equal(path, pe.path)
        assert.equal("load", pe.hook)
        assert.matches(bad.pattern, pe.message)
        loads.bad_load = loads.bad_load + 1
        -- the previous version keeps running: expect unchanged
      else
        assert.is_true(ok, err)
        srv.state.live.expect = "default"
        loads.bad_hook = loads.bad_hook + 1
      end
      pe_seen = #rs.policy_error
      -- traffic: every client sends two messages; half of them may still
      -- be in flight at the next rewrite
      local handled0 = state.handled + state.default
      for i, c in ipairs(conns) do
        for j = 1, 2 do
          assert(c:send(string.format("c%d:s%d:%d", i, step, j)))
          sent = sent + 1
        end
      end
      h.wait(function()
        return state.handled + state.default >= handled0 + 50
      end, 10, "traffic at step " .. step)
      -- a failing hook: policy_errors (rate-limited: the first ones of a
      -- burst, then a summary of the rest), file and hook named
      if bad and BAD_HOOK[kind] then
        for k = pe_seen + 1, #rs.policy_error do
          local pe = rs.policy_error[k]
          assert.equal(path, pe.path)
          assert.equal("message", pe.hook)
          if not pe.summary then
            assert.matches(bad.pattern, pe.message)
            named = named + 1
          end
        end
      end
      pe_seen = #rs.policy_error
    end
    assert.is_true(named >= 10, named .. " policy_errors named the hook")
    -- Every failure is counted, and reported once: alone, or in the
    -- `suppressed` count of a later report or of a summary.
    local function reported()
      local n = 0
      for _, pe in ipairs(rs.policy_error) do
        n = n + (pe.summary and 0 or 1) + (pe.suppressed or 0)
      end
      return n
    end
    h.wait(function() return reported() == srv:stat().policy_errors end, 5,
      "every policy error reported")
    -- drain: every message answered exactly once
    h.wait(function()
      local n = 0
      for i = 1, 50 do n = n + #replies[i] end
      return n == sent
    end, 20, "all replies")
    h.sleep(0.1)
    local total = 0
    for i = 1, 50 do
      local seen = {}
      for _, r in ipairs(replies[i]) do
        local tag, payload = r:match("^([^:]+):(.*)$")
        assert.truthy(tag == "d" or tag:match("^v%d+$"), r)
        assert.matches("^c" .. i .. ":", payload)
        assert.is_nil(seen[payload], "duplicate " .. payload)
        seen[payload] = true
        total = total + 1
      end
      assert.equal(200, #replies[i])
    end
    assert.equal(sent, total)
    assert.equal(sent, state.handled + state.default)
    -- every message was handled by the version in force at that moment
    assert.equal(0, state.wrong)
    assert.truthy(state.default > 0 and state.handled > 0)
    -- zero connections dropped, on either side
    assert.equal(0, #rs.disconnected)
    for i = 1, 50 do assert.equal(0, #recs[i].disconnected) end
    assert.equal(50, h.nconns(srv))
    -- the counts: 17 good, 51 rejected loads, 32 landed bad-hook versions
    assert.same({ good = 17, bad_load = 51, bad_hook = 32 }, loads)
    assert.equal(17 + 32, srv:stat().reloads)
    local by_hook = {}
    for _, pe in ipairs(rs.policy_error) do
      by_hook[pe.hook] = (by_hook[pe.hook] or 0) +
        (pe.summary and 0 or 1) + (pe.suppressed or 0)
    end
    assert.equal(51, by_hook.load)
    assert.equal(state.default, by_hook.message)
    h.close(srv)
    h.close(table.unpack(clients))
    h.rmdir(dir)
  end)

  it("runs stop/start around a swap, stops the old timers, and calls " ..
     "migrate(node, old_module); a failing migrate keeps the old version",
    function()
    local dir = h.tmpdir()
    local path = dir .. "/timers.lua"
    local function version(name, migrate_body)
      return string.format([[
return {
  name = "timers",
  start = function(node)
    node.state.log[#node.state.log + 1] = "start %s"
    node:every(0.01, function(n)
      n.state.ticks["%s"] = (n.state.ticks["%s"] or 0) + 1
    end)
  end,
  stop = function(node)
    node.state.log[#node.state.log + 1] = "stop %s"
  end,
  migrate = function(node, old)
    %s
  end,
}
]], name, name, name, name, migrate_body or "")
    end
    h.write_file(path, version("A"))
    local n = node{ policies = { { name = "init", check = function(nd)
      nd.state.log = nd.state.log or {}
      nd.state.ticks = nd.state.ticks or {}
      return true
    end }, path } }
    local rec = h.record(n)
    h.wait(function() return (n.state.ticks.A or 0) >= 3 end, 5, "A ticks")
    h.write_file(path, version("B",
      'node.state.log[#node.state.log + 1] = "migrate from " .. old.name'))
    assert(n:reload(path))
    local a_at_swap = n.state.ticks.A
    h.wait(function() return (n.state.ticks.B or 0) >= 3 end, 5, "B ticks")
    assert.equal(a_at_swap, n.state.ticks.A) -- A's timer was stopped
    assert.same({ "start A", "migrate from timers", "stop A", "start B" },
      n.state.log)
    assert.equal(1, #rec.reloaded)
    assert.equal(path, rec.reloaded[1].path)
    -- a migrate that fails: B stays, with its timer
    h.write_file(path, version("C", 'error("cannot migrate")'))
    local ok, err, code = n:reload(path)
    assert.is_nil(ok)
    assert.equal("EPOLICY", code)
    assert.equal("migrate", rec.policy_error[1].hook)
    assert.matches("cannot migrate", rec.policy_error[1].message)
    local b0 = n.state.ticks.B
    h.wait(function() return n.state.ticks.B > b0 + 2 end, 5, "B still")
    assert.is_nil(n.state.ticks.C)
    h.close(n)
    h.rmdir(dir)
  end)

  it("watch = true reloads on a file change (debounced), and rejects a " ..
     "broken edit", function()
    local dir = h.tmpdir()
    local path = dir .. "/watched.lua"
    local function ver(k)
      return string.format([[
return { name = "watched",
         message = function(node, conn, payload)
           conn:send("w%d:" .. payload); return true end }
]], k)
    end
    h.write_file(path, ver(1))
    local srv = node{ policies = { path }, watch = true }
    local cli = node{}
    local rs = h.record(srv)
    local got = {}
    assert(cli:connect(srv.addr))
    h.wait(function() return h.nconns(srv) == 1 and h.nconns(cli) == 1 end,
      5, "connected")
    local conn = cli:connection(srv.peer_id)
    conn:on("message", function(ev) got[#got + 1] = ev.payload end)
    local function ask(x)
      local n0 = #got
      assert(conn:send(x))
      h.wait(function() return #got == n0 + 1 end, 5, "reply " .. x)
      return got[#got]
    end
    assert.equal("w1:a", ask("a"))
    -- several quick writes: one reload (debounce), the last text wins
    h.write_file(path, ver(2))
    h.write_file(path, ver(3))
    h.wait(function() return #rs.reloaded >= 1 end, 5, "reloaded")
    h.sleep(0.2)
    assert.equal(1, #rs.reloaded)
    assert.equal("w3:b", ask("b"))
    -- a broken edit is rejected; version 3 keeps answering
    h.write_file(path, "return { name = 'watched', message = 42 }\n")
    h.wait(function() return #rs.policy_error >= 1 end, 5, "rejected")
    assert.equal(path, rs.policy_error[1].path)
    assert.equal("load", rs.policy_error[1].hook)
    assert.matches("hook 'message' must be a function",
      rs.policy_error[1].message)
    assert.equal("w3:c", ask("c"))
    assert.equal(0, #rs.disconnected)
    h.close(srv, cli)
    h.rmdir(dir)
  end)

  it("reload(path) of a path no policy came from says so (ENOENT), and " ..
     "reloads nothing", function()
    local dir = h.tmpdir()
    local path = dir .. "/p.lua"
    h.write_file(path, 'return { name = "p" }\n')
    local n = node{ policies = { path } }
    local before = n:stat().reloads
    local ok, err, code = n:reload(dir .. "/other.lua")
    assert.is_nil(ok)
    assert.equal("ENOENT", code)
    assert.equal("ENOENT: node:reload: no policy of this node came from " ..
      dir .. "/other.lua", err)
    assert.equal(before, n:stat().reloads)
    assert.is_true(n:reload(path)) -- the path it was loaded from
    assert.equal(before + 1, n:stat().reloads)
    h.close(n)
    h.rmdir(dir)
  end)
end)
