-- Application messages: app_messages = "shell" (the default on TEZOS_*
-- chains: only Octez shell messages go out, one that does not decode
-- coming in is a decoding error, greylisted as Octez does) or "raw";
-- conn:send_shell, the shell hook and event; examples/chain_policy.lua.
local p2p = require "luap2p"
local shell = require "luap2p.shell"
local h = require "helper"

local CHAIN = "NetXdQprcVkpaWU"

local function shell_node(cfg)
  local c = { app_messages = "shell", maintenance_interval = 0,
              swap_linger = 0 }
  for k, v in pairs(cfg or {}) do c[k] = v end
  return h.node(c)
end

local function link(a, b)
  assert(b:connect(a.addr))
  h.wait(function()
    return a:connection(b.peer_id) and b:connection(a.peer_id)
  end, 5, "connection")
  return b:connection(a.peer_id), a:connection(b.peer_id)
end

describe("app_messages", function()
  local keep = h.keeper(before_each, after_each)

  it("is shell on Tezos chains, raw elsewhere; other values raise",
    function()
    local id = h.identity()
    assert.equal("shell", keep(p2p.new{ identity = id }).config.app_messages)
    assert.equal("shell", keep(p2p.new{ identity = id,
      chain = "TEZOS_GHOSTNET_2022-01-25T15:00:00Z" }).config.app_messages)
    assert.equal("raw", keep(p2p.new{ identity = id,
      chain = "LUAP2P_LAB" }).config.app_messages)
    assert.has_error(function()
      p2p.new{ identity = id, app_messages = "json" }
    end, "p2p.new: config.app_messages: expected one of 'shell', 'raw', " ..
      'got "json"')
  end)

  it("shell: refuses before sending what is not a shell message; " ..
     "send_shell encodes; the peer gets a shell event and the message",
    function()
    local a, b = keep(shell_node()), keep(shell_node())
    local got, raw = {}, {}
    a:on("shell", function(ev) got[#got + 1] = ev end)
    a:on("message", function(ev)
      raw[#raw + 1] = { ev.payload, ev.tag }
    end)
    local cb = link(a, b)
    local before = cb:stat().msgs_out
    local ok, err, code = cb:send("hello")
    assert.is_nil(ok)
    assert.equal("EPROTO", code)
    assert.matches("^EPROTO: not a shell message", err)
    -- 11 hashes: over Octez's bound of 10 (Octez would not decode it)
    local hashes = {}
    for i = 1, 11 do
      hashes[i] = shell.to_b58check("block", string.rep(string.char(i), 32))
    end
    ok, err, code = cb:send_shell{ type = "get_block_headers",
                                   hashes = hashes }
    assert.is_nil(ok)
    assert.equal("EMSGSIZE", code)
    assert.equal(before, cb:stat().msgs_out) -- nothing went out
    assert.is_true(cb:send_shell{ type = "get_current_head",
                                  chain_id = CHAIN })
    -- A payload that is the shell message of its tag goes as it is:
    -- "ping" is a Get_current_branch of chain id "ping" (4 bytes).
    assert.is_true(cb:send("ping"))
    h.wait(function() return #got == 2 and #raw == 2 end, 5, "two messages")
    assert.equal("get_current_head", got[1].msg.type)
    assert.equal(CHAIN, got[1].msg.chain_id)
    assert.equal(0x13, got[1].tag)
    assert.equal("get_current_branch", got[2].msg.type)
    assert.equal(shell.to_b58check("chain_id", "ping"), got[2].msg.chain_id)
    assert.same({ "ping", 0x10 }, raw[2])
  end)

  it("shell: a message that does not decode is a decoding error: the " ..
     "peer and its IP are greylisted and the connection closed", function()
    -- greylist_loopback: the peer is on 127.0.0.1, which the acl spares
    -- by default.
    local a = keep(shell_node{ greylist_loopback = true })
    local b = keep(h.quiet{ app_messages = "raw" })
    local ra = h.record(a)
    local shells = 0
    a:on("shell", function() shells = shells + 1 end)
    local cb = link(a, b)
    assert.is_true(cb:send("not a shell message", 0x13))
    h.wait(function() return h.nconns(a) == 0 end, 5, "closed")
    assert.equal(1, #ra.decoding_error)
    assert.equal("EPROTO", ra.decoding_error[1].code)
    assert.equal(0x13, ra.decoding_error[1].tag)
    assert.equal(0, shells)
    assert.is_true(a:banned("127.0.0.1"))
    assert.is_true(a:banned(b.peer_id))
  end)

  it("raw: any payload both ways, no shell event", function()
    local a = keep(h.quiet{ app_messages = "raw" })
    local b = keep(h.quiet{ app_messages = "raw" })
    local shells, got = 0, nil
    a:on("shell", function() shells = shells + 1 end)
    a:on("message", function(ev) got = ev.payload end)
    local cb = link(a, b)
    assert.is_true(cb:send("anything at all"))
    h.wait(function() return got end, 5, "message")
    assert.equal("anything at all", got)
    assert.equal(0, shells)
  end)

  it("a shell hook that returns true consumes the message", function()
    local seen = {}
    local eater = { name = "eater", shell = function(_, _, msg)
      seen[#seen + 1] = msg.type
      return msg.type == "deactivate" or nil
    end }
    local a = keep(shell_node{ policies = { eater } })
    local b = keep(shell_node())
    local events, raw = {}, 0
    a:on("shell", function(ev) events[#events + 1] = ev.msg.type end)
    a:on("message", function() raw = raw + 1 end)
    local cb = link(a, b)
    assert(cb:send_shell{ type = "deactivate", chain_id = CHAIN })
    assert(cb:send_shell{ type = "get_current_head", chain_id = CHAIN })
    h.wait(function() return #events == 1 end, 5, "one event")
    assert.same({ "deactivate", "get_current_head" }, seen)
    assert.same({ "get_current_head" }, events)
    assert.equal(1, raw)
  end)
end)

describe("examples/chain_policy.lua", function()
  local keep = h.keeper(before_each, after_each)

  it("answers Get_current_branch, Get_current_head, Get_block_headers " ..
     "and sends each new head to active peers", function()
    local chain = dofile("examples/chain_policy.lua")._new{ interval = 0 }
    local srv = keep(shell_node{ policies = { chain } })
    local cli = keep(shell_node())
    local got = {}
    local asked
    cli:on("shell", function(ev)
      -- The server asks every new peer for its branch, as Octez does.
      if ev.msg.type == "get_current_branch" then
        asked = ev.msg.chain_id
      else
        got[#got + 1] = ev.msg
      end
    end)
    local c = link(srv, cli)
    local id = chain._config.chain_id
    h.wait(function() return asked end, 5, "asked for our branch")
    assert.equal(id, asked)
    -- Not active yet: Octez ignores Get_current_head from such a peer.
    assert(c:send_shell{ type = "get_current_head", chain_id = id })
    assert(c:send_shell{ type = "get_current_branch", chain_id = id })
    h.wait(function() return #got == 1 end, 5, "current_branch")
    local br = got[1]
    assert.equal("current_branch", br.type)
    assert.equal(id, br.chain_id)
    assert.equal(0, br.head.level)
    local genesis = br.head.hash
    -- Three blocks: each reaches the active peer as a Current_head.
    for i = 1, 3 do
      local made = chain._bake(srv)
      h.wait(function() return #got == 1 + i end, 5, "head " .. i)
      assert.equal("current_head", got[1 + i].type)
      assert.equal(i, got[1 + i].header.level)
      assert.equal(made.hash, got[1 + i].header.hash)
    end
    local head = got[4].header
    assert(c:send_shell{ type = "get_current_head", chain_id = id })
    assert(c:send_shell{ type = "get_block_headers",
                         hashes = { genesis, head.predecessor } })
    h.wait(function() return #got == 7 end, 5, "answers")
    assert.equal("current_head", got[5].type)
    assert.equal(head.hash, got[5].header.hash)
    assert.equal("block_header", got[6].type)
    assert.equal(genesis, got[6].header.hash)
    assert.equal(2, got[7].header.level)
    assert.equal(head.predecessor, got[7].header.hash)
    -- A locator now: predecessors of the head, 1, 2 blocks back.
    assert(c:send_shell{ type = "get_current_branch", chain_id = id })
    h.wait(function() return #got == 8 end, 5, "branch")
    assert.equal(3, got[8].head.level)
    assert.equal(head.predecessor, got[8].history[1])
    assert.equal(genesis, got[8].history[#got[8].history])
  end)
end)
