-- ctl: `luap2p ctl` against real node processes (`luap2p node
-- --rpc-addr`): human tables and --json, every action, writes refused
-- without --rpc-allow-write, an unreachable RPC, usage errors.
local cjson = require "cjson"
local h = require "helper"
local c = require "cli_helper"

local q, run, fails, wait_file, events, spawn, write_identity =
      c.q, c.run, c.fails, c.wait_file, c.events, c.spawn, c.write_identity

-- Start `luap2p node` with args; returns the process, its point and its
-- RPC address (HOST:PORT) from the "started" event.
local function start(dir, name, args)
  local path = dir .. "/" .. name .. ".json"
  local peer_id = write_identity(path)
  local p = spawn(dir, name, string.format("node --identity %s --listen " ..
    "127.0.0.1:0 --pow 0 --log json --min-connections 0 %s", q(path), args))
  -- A failing assertion must not leave the node running.
  finally(function() os.execute("kill " .. p.pid .. " 2>/dev/null") end)
  local started = events(wait_file(p.out, function(t)
    return t:find('"started"', 1, true) end, 10, name .. " started"))[1]
  p.peer_id = peer_id
  p.point = started.point
  p.rpc = started.rpc and started.rpc:match("^http://(.*)$")
  return p
end

local function stop(p)
  p.kill("TERM")
  assert.equal(0, p.wait_exit(10))
end

describe("ctl", function()
  local dir
  setup(function() dir = h.tmpdir() end)
  teardown(function() h.rmdir(dir) end)

  it("shows and steers a running node", function()
    local a = start(dir, "a", "--rpc-addr 127.0.0.1:0 --rpc-allow-write")
    local b = start(dir, "b", "--peer " .. a.point)
    assert.matches("^127%.0%.0%.1:%d+$", a.rpc)
    wait_file(a.out, function(t)
      return t:find('"connected"', 1, true) and t:find(b.peer_id, 1, true)
    end, 10, "a connected to b")
    local ctl = "ctl --rpc " .. a.rpc .. " "

    -- stat
    local out, err, code = run(ctl .. "stat")
    assert.equal(0, code, err)
    assert.matches("peer id%s+" .. a.peer_id, out)
    assert.matches("connections%s+1 %(1 incoming, 0 outgoing%)", out)
    out, err, code = run(ctl .. "stat --json")
    assert.equal(0, code, err)
    local v = cjson.decode(out)
    assert.matches("^%d+$", v.total_sent)
    assert.is_true(tonumber(v.total_recv) > 0)

    -- connections
    out, err, code = run(ctl .. "connections")
    assert.equal(0, code, err)
    assert.matches("^PEER ID%s+DIR%s+POINT%s+SOCKET%s+P2P/DDB%s+PRIVATE\n",
      out)
    assert.matches(b.peer_id .. "%s+in%s+" .. b.point:gsub("%.", "%%.") ..
      "%s+%d+%s+1/2%s+no\n", out)
    out = run(ctl .. "connections --json")
    v = cjson.decode(out)
    assert.equal(1, #v)
    assert.equal(b.peer_id, v[1].peer_id)

    -- ban, bans, unban (a prefix: its "/" travels escaped)
    out, err, code = run(ctl .. "ban 10.7.0.0/16 --for 600 --reason test")
    assert.equal(0, code, err)
    assert.equal("banned 10.7.0.0/16 for 600s\n", out)
    out = run(ctl .. "bans")
    assert.matches("^TARGET%s+KIND%s+UNTIL%s+REASON\n", out)
    assert.matches("\n10%.7%.0%.0/16%s+ban%s+%d%d%d%d%-%d%d%-%d%dT[%d:.]+" ..
      "%-00:00%s+test\n", out)
    v = cjson.decode((run(ctl .. "bans --json")))
    assert.equal("10.7.0.0/16", v[1].target)
    out, err, code = run(ctl .. "unban 10.7.0.0/16")
    assert.equal(0, code, err)
    assert.equal("unbanned 10.7.0.0/16\n", out)
    assert.equal("no bans\n", (run(ctl .. "bans")))
    assert.equal("10.7.0.0/16 was not banned\n",
      (run(ctl .. "unban 10.7.0.0/16")))

    -- trust a peer id and a point
    out, err, code = run(ctl .. "trust " .. b.peer_id .. " --json")
    assert.equal(0, code, err)
    assert.is_true(cjson.decode(out).trusted)
    out, err, code = run(ctl .. "trust 127.0.0.1:9")
    assert.equal(0, code, err)
    assert.equal("trusted 127.0.0.1:9\n", out)

    -- reload
    out, err, code = run(ctl .. "reload")
    assert.equal(0, code, err)
    assert.matches("^reloaded: ", out)

    -- kick: b hears a Disconnect, a has no connection left
    out, err, code = run(ctl .. "kick " .. b.peer_id)
    assert.equal(0, code, err)
    assert.equal("closed the connection to " .. b.peer_id .. "\n", out)
    wait_file(b.out, function(t)
      return t:find('"disconnected"', 1, true) end, 10, "b disconnected")
    assert.equal("no connections\n", (run(ctl .. "connections")))
    out, err, code = run(ctl .. "kick " .. b.peer_id)
    fails(1, "DELETE /network/connections/" .. b.peer_id ..
      ": 404: no such connection", out, err, code)

    stop(b)
    stop(a)
  end)

  it("writes are refused by a node without --rpc-allow-write", function()
    local a = start(dir, "ro", "--rpc-addr 127.0.0.1:0")
    local ctl = "ctl --rpc " .. a.rpc .. " "
    for _, action in ipairs({ "ban 10.0.0.1", "unban 10.0.0.1",
                              "trust 10.0.0.1:1", "reload",
                              "kick idtzzzzzzzzzzzzzzzzzzzzzzzzzzz" }) do
      local out, err, code = run(ctl .. action)
      fails(1, ": 403: write RPCs are disabled on this node; start it " ..
        "with %-%-rpc%-allow%-write", out, err, code)
    end
    local out, err, code = run(ctl .. "bans")
    assert.equal(0, code, err)
    assert.equal("no bans\n", out)
    stop(a)
  end)

  it("fails with one line when the RPC is unreachable or the usage bad",
    function()
    -- A port bound but never listened on: connecting is refused, and no
    -- other process can take the port meanwhile (a closed one could be).
    local holder = assert(require("socket").tcp())
    assert(holder:bind("127.0.0.1", 0))
    local _, port = holder:getsockname()
    local out, err, code = run("ctl --rpc 127.0.0.1:" .. port .. " stat")
    holder:close()
    fails(1, "cannot reach the node's RPC at 127%.0%.0%.1:%d+: " ..
      "connection refused; is the node running with %-%-rpc%-addr", out,
      err, code)
    out, err, code = run("ctl kick not-a-peer")
    fails(2, "bad PEER 'not%-a%-peer'", out, err, code)
    out, err, code = run("ctl ban")
    fails(2, "missing argument 'TARGET'", out, err, code)
    out, err, code = run("ctl ban 10.0.0.1 --for 0")
    fails(2, "bad %-%-for '0'", out, err, code)
  end)
end)
