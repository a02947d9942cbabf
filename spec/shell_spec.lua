-- shell: the Tezos shell message codec (luap2p.shell over core.shell_*).
-- Known answers:
--   spec/vectors/tezedge-carthagenet-session.txt: a recorded TezEdge <->
--     Octez session (tezedge/tezedge tezos/messages/benches, commit named
--     in its header), every message decoded and re-encoded byte for byte;
--   spec/vectors/shell_tezedge.lua: TezEdge's message tests (tezedge/tezedge
--     tezos/messages/tests/encoding_*.rs, commit 56b3129d), the values they
--     assert;
--   spec/vectors/tezedge/*.msg: TezEdge's message resources (tezedge/tezedge
--     tezos/messages/resources/, commit 56b3129d), mainnet bodies.
-- Bounds are Octez's (src/lib_shell/distributed_db_message.ml and
-- src/lib_base, tezos/tezos-mirror d26a8bef).
local core = require "luap2p.core"
local shell = require "luap2p.shell"
local C = require "check"
local fails, raises, unhex, hex = C.fails, C.raises, C.unhex, C.hex
local V = dofile("spec/vectors/shell_tezedge.lua")

local MIB = 1024 * 1024

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A hash of `kind` made of one repeated byte, as Base58Check text.
local function b58(kind, byte)
  local size = kind == "chain_id" and 4 or 32
  return shell.to_b58check(kind, string.rep(string.char(byte), size))
end

local function hashes(kind, n, from)
  local t = {}
  for i = 1, n do t[i] = b58(kind, ((from or 0) + i) % 256) end
  return t
end

local CHAIN = "NetXdQprcVkpaWU" -- Tezos mainnet

local function header(n, protocol_data)
  return { level = 1000 + n, proto_level = 2,
           predecessor = b58("block", n), timestamp = 1600000000 + n,
           validation_pass = 4, operations_hash = b58("operation_list_list", n),
           fitness = { "\1", "\0\0\0\0\0\0\0\42" },
           context = b58("context", n),
           protocol_data = protocol_data or ("proto" .. n) }
end

-- One message of every type Octez's Distributed_db_message has.
local SAMPLES = {
  get_current_branch = { chain_id = CHAIN },
  current_branch = { chain_id = CHAIN, head = header(1),
                     history = hashes("block", 3, 10) },
  deactivate = { chain_id = CHAIN },
  get_current_head = { chain_id = CHAIN },
  current_head = { chain_id = CHAIN, header = header(2),
                   mempool = { known_valid = hashes("operation", 2),
                               pending = hashes("operation", 1, 5) } },
  get_block_headers = { hashes = hashes("block", 2) },
  block_header = { header = header(3) },
  get_operations = { hashes = hashes("operation", 3) },
  operation = { branch = b58("block", 7), data = "\1\2\3" },
  get_protocols = { hashes = hashes("protocol", 1) },
  protocol = { protocol = shell.protocol_bytes{ expected_env = 5,
    components = { { name = "A", implementation = "let x = 1" },
                   { name = "B", interface = "val x : int",
                     implementation = "let x = 2" } } } },
  get_operations_for_blocks = { blocks = {
    { block = b58("block", 1), validation_pass = 0 },
    { block = b58("block", 2), validation_pass = -1 } } },
  operations_for_blocks = { block = b58("block", 9), validation_pass = 3,
    path = { { side = "left", hash = b58("operation_list_list", 1) },
             { side = "right", hash = b58("operation_list_list", 2) } },
    operations = { { branch = b58("block", 4), data = "x" },
                   { branch = b58("block", 5), data = "" } } },
  get_checkpoint = { chain_id = CHAIN },
  checkpoint = { chain_id = CHAIN, header = header(4) },
  get_protocol_branch = { chain_id = CHAIN, proto_level = 7 },
  protocol_branch = { chain_id = CHAIN, proto_level = 8, head = header(5),
                      history = hashes("block", 2, 20) },
  get_predecessor_header = { block = b58("block", 6), offset = -5 },
  predecessor_header = { block = b58("block", 6), offset = 12,
                         header = header(6) },
}

-- Types whose last field runs to the end of the message (Variable): a
-- prefix cut at an element boundary is itself a valid message.
local OPEN_ENDED = { current_branch = true, block_header = true,
  operation = true, operations_for_blocks = true, checkpoint = true,
  protocol_branch = true, predecessor_header = true }

local function with_type(name, t)
  local m = { type = name }
  for k, v in pairs(t) do m[k] = v end
  return m
end

-- The part of d that has t's shape (decoded tables carry extra hashes).
local function project(d, t)
  if type(t) ~= "table" or type(d) ~= "table" then return d end
  local r = {}
  for k, v in pairs(t) do r[k] = project(d[k], v) end
  return r
end

-- Encode, decode, compare, re-encode: returns payload and decoded table.
local function trip(name, t)
  local payload, tag = assert(shell.encode(with_type(name, t)))
  assert.are.equal(shell.TAGS[name], tag)
  local d = assert(shell.decode(payload, tag))
  assert.are.equal(name, d.type)
  assert.are.equal(tag, d.tag)
  assert.are.same(t, project(d, t))
  local again, tag2 = assert(shell.encode(d))
  assert.are.equal(payload, again)
  assert.are.equal(tag, tag2)
  return payload, d
end

-- One enveloped message -> tag, payload (through the P2P message layer).
local function open_envelope(envelope)
  local msgs = assert(core.msg_reader():feed(envelope))
  assert.are.equal(1, #msgs)
  local m = assert(core.msg_decode(msgs[1]))
  return m.tag, m.payload
end


describe("shell", function()
  after_each(function() collectgarbage() collectgarbage() end)

  describe("Base58Check", function()
    it("encodes each kind with Octez's prefix and decodes it back", function()
      local lead = { block = { "B", 51 }, operation = { "o", 51 },
        operation_list = { "Lo", 52 }, operation_list_list = { "LLo", 53 },
        protocol = { "P", 51 }, context = { "Co", 52 },
        chain_id = { "Net", 15 } }
      for _, kind in ipairs(shell.KINDS) do
        for _, byte in ipairs{ 0, 1, 0x7f, 0xff } do
          local size = kind == "chain_id" and 4 or 32
          local raw = string.rep(string.char(byte), size)
          local text = shell.to_b58check(kind, raw)
          assert.are.equal(lead[kind][1], text:sub(1, #lead[kind][1]), text)
          assert.are.equal(lead[kind][2], #text, text)
          assert.are.equal(raw, shell.of_b58check(kind, text))
        end
      end
    end)

    it("names the mainnet and Carthagenet chain ids", function()
      assert.are.equal("NetXdQprcVkpaWU",
        shell.to_b58check("chain_id", unhex("7a06a770")))
      assert.are.equal(unhex("9caecab9"),
        shell.of_b58check("chain_id", "NetXjD3HPJJjmcd"))
    end)

    it("refuses a bad checksum, another kind's prefix and junk", function()
      local text = b58("block", 3)
      local last = text:sub(-1) == "1" and "2" or "1"
      fails("EPROTO", shell.of_b58check("block", text:sub(1, -2) .. last))
      fails("EPROTO", shell.of_b58check("operation", text))
      fails("EPROTO", shell.of_b58check("block", "1" .. text))
      fails("EPROTO", shell.of_b58check("block", text .. "1"))
      fails("EPROTO", shell.of_b58check("block", "0OIl"))
      fails("EPROTO", shell.of_b58check("chain_id", ""))
      raises("unknown hash kind 'nope'", shell.to_b58check, "nope", "")
      raises("expected a 32-byte block", shell.to_b58check, "block", "abc")
    end)
  end)

  describe("round trip", function()
    it("has a sample of each of Octez's 19 shell messages", function()
      local n = 0
      for name, tag in pairs(shell.TAGS) do
        n = n + 1
        assert.is_table(SAMPLES[name], name)
        assert.are.equal(name, shell.NAMES[tag])
      end
      assert.are.equal(19, n)
      for name in pairs(SAMPLES) do assert.is_number(shell.TAGS[name]) end
    end)

    for name, t in pairs(SAMPLES) do
      it("encodes, decodes and re-encodes " .. name, function()
        trip(name, t)
      end)
    end

    it("takes hashes as raw bytes or Base58Check alike", function()
      local raw = {}
      for i, h in ipairs(SAMPLES.get_block_headers.hashes) do
        raw[i] = shell.of_b58check("block", h)
      end
      assert.are.equal(
        shell.encode(with_type("get_block_headers", SAMPLES.get_block_headers)),
        shell.encode{ type = "get_block_headers", hashes = raw })
      assert.are.equal(shell.encode{ type = "deactivate", chain_id = CHAIN },
        shell.encode{ type = "deactivate", chain_id = unhex("7a06a770") })
    end)

    it("gives the hashes of headers, operations and protocols", function()
      -- A block hash is its header's, wherever the header travels; the
      -- known answer is TezEdge's, in "reads a Block_header" below.
      local seen = {}
      for _, name in ipairs{ "block_header", "checkpoint",
                             "predecessor_header", "current_head" } do
        local t = with_type(name, SAMPLES[name])
        t.header = header(3)
        local d = shell.decode(assert(shell.encode(t)), shell.TAGS[name])
        seen[d.header.hash] = (seen[d.header.hash] or 0) + 1
      end
      local h3 = next(seen)
      assert.are.same({ [h3] = 4 }, seen)
      assert.are.equal("B", h3:sub(1, 1))
      local other = shell.decode(shell.encode{ type = "block_header",
        header = header(3, "proto3.") }, 0x21).header.hash
      assert.are_not.equal(h3, other)
      local op = shell.decode(shell.encode(with_type("operation",
        SAMPLES.operation)), 0x31)
      local ofb = shell.decode(shell.encode{ type = "operations_for_blocks",
        block = b58("block", 1), validation_pass = 0,
        operations = { SAMPLES.operation } }, 0x61)
      assert.are.equal(op.hash, ofb.operations[1].hash)
      assert.are.equal("o", op.hash:sub(1, 1))
      local p = shell.decode(SAMPLES.protocol.protocol, 0x41)
      assert.are.equal("P", p.hash:sub(1, 1))
      assert.are.equal(5, p.expected_env)
      assert.are.same({ { name = "A", implementation = "let x = 1" },
        { name = "B", interface = "val x : int", implementation = "let x = 2" }
      }, p.components)
    end)

    it("builds a protocol from its components", function()
      local p = SAMPLES.protocol.protocol
      local d = assert(shell.decode(p, 0x41))
      assert.are.equal(p, shell.encode{ type = "protocol",
        expected_env = d.expected_env, components = d.components })
    end)

    it("fills absent lists, mempool and protocol data with empty ones", function()
      local h = header(9)
      h.fitness, h.protocol_data = nil, nil
      local d = shell.decode(assert(shell.encode{ type = "current_head",
        chain_id = CHAIN, header = h }), 0x14)
      assert.are.same({ known_valid = {}, pending = {} }, d.mempool)
      assert.are.same({}, d.header.fitness)
      assert.are.equal("", d.header.protocol_data)
      -- The empty mempool is TezEdge's encoding_mempool.rs answer.
      local payload = shell.encode{ type = "current_head", chain_id = CHAIN,
        header = h }
      assert.are.equal(V.empty_mempool, hex(payload:sub(-12)))
    end)
  end)

  describe("recorded TezEdge <-> Octez session", function()
    it("decodes all 1385 messages and re-encodes each byte for byte", function()
      local count, by_type, chains = 0, {}, {}
      for line in io.lines("spec/vectors/tezedge-carthagenet-session.txt") do
        if not line:match("^#") then
          local index, dir, h = line:match("^(%d+) (%a+) (%x+)$")
          assert.is_truthy(index, line)
          assert.is_truthy(dir == "Sent" or dir == "Received")
          local raw = unhex(h)
          local tag = string.unpack(">I2", raw)
          local body = raw:sub(3)
          local name
          if tag < 0x10 then -- P2P messages (Advertise) of the same session
            local m = assert(core.msg_decode(raw))
            assert.are.equal(string.pack(">I4", #raw) .. raw,
              core.msg_encode(m))
            name = m.type
          else
            local m, err = shell.decode(body, tag)
            assert.is_table(m, index .. ": " .. tostring(err))
            local again, tag2 = shell.encode(m)
            assert.are.equal(hex(body), hex(again), index)
            assert.are.equal(tag, tag2)
            name = m.type
            if m.chain_id then chains[m.chain_id] = true end
          end
          by_type[name] = (by_type[name] or 0) + 1
          count = count + 1
        end
      end
      assert.are.equal(1385, count)
      assert.are.same({ NetXjD3HPJJjmcd = true }, chains)
      assert.are.same({ advertise = 3, get_current_branch = 8,
        current_branch = 2, get_block_headers = 518, get_operations = 8,
        get_operations_for_blocks = 846 }, by_type)
    end)
  end)

  describe("TezEdge known answers", function()
    local function check_header(h, e)
      for _, k in ipairs{ "level", "proto_level", "validation_pass",
                          "timestamp", "predecessor", "operations_hash",
                          "context" } do
        if e[k] ~= nil then
          local want = e[k]
          if type(want) == "string" and #want == 64 then
            want = shell.to_b58check(k == "context" and "context" or
              k == "operations_hash" and "operation_list_list" or "block",
              unhex(want))
          end
          assert.are.equal(want, h[k], k)
        end
      end
      if e.protocol_data then
        assert.are.equal(e.protocol_data, hex(h.protocol_data))
      end
      if e.fitness then
        local f = {}
        for i, x in ipairs(h.fitness) do f[i] = hex(x) end
        assert.are.same(e.fitness, f)
      end
      if e.fitness_count then assert.are.equal(e.fitness_count, #h.fitness) end
      if e.hash then assert.are.equal(e.hash, h.hash) end
    end

    -- Decode an envelope vector, check it re-encodes to the same envelope.
    local function envelope(v)
      local tag, payload = open_envelope(unhex(v.envelope))
      local m = assert(shell.decode(payload, tag))
      local again, tag2 = assert(shell.encode(m))
      assert.are.equal(hex(payload), hex(again))
      assert.are.equal(tag, tag2)
      return m
    end

    it("reads Get_current_head, Get_current_branch and Deactivate", function()
      for name, v in pairs{ get_current_head = V.get_current_head,
                            get_current_branch = V.get_current_branch,
                            deactivate = V.deactivate } do
        local m = envelope(v)
        assert.are.equal(name, m.type)
        assert.are.equal(v.chain_id,
          hex(shell.of_b58check("chain_id", m.chain_id)))
        -- and writes them as TezEdge does
        local payload, tag = shell.encode{ type = name, chain_id = m.chain_id }
        assert.are.equal(v.envelope, hex(core.msg_encode{ type = "message",
          tag = tag, payload = payload }))
      end
    end)

    it("reads Current_head with a known_valid mempool", function()
      local v = V.current_head_known_valid
      local m = envelope(v)
      assert.are.equal("current_head", m.type)
      check_header(m.header, v)
      assert.are.same({ shell.to_b58check("operation", unhex(v.known_valid[1])) },
        m.mempool.known_valid)
      assert.are.same({}, m.mempool.pending)
    end)

    it("reads Current_head with a pending mempool", function()
      local v = V.current_head_pending
      local m = envelope(v)
      check_header(m.header, v)
      assert.are.same({}, m.mempool.known_valid)
      assert.are.same({ shell.to_b58check("operation", unhex(v.pending[1])),
        shell.to_b58check("operation", unhex(v.pending[2])) },
        m.mempool.pending)
    end)

    it("reads a Block_header and its block hash", function()
      local v = V.block_header
      local m = assert(shell.decode(unhex(v.body), 0x21))
      check_header(m.header, v)
      assert.are.equal(v.body, hex(shell.encode(m)))
    end)

    it("reads Get_block_headers", function()
      local m = envelope(V.get_block_headers)
      assert.are.same(V.get_block_headers.hashes, m.hashes)
    end)

    it("reads an Operation", function()
      local v = V.operation
      local m = assert(shell.decode(unhex(v.body), 0x31))
      assert.are.equal(v.branch, m.branch)
      assert.are.equal(v.data, hex(m.data))
      assert.are.equal(v.body, hex(shell.encode(m)))
    end)

    it("reads a Current_branch of 141 hashes", function()
      local v = V.current_branch
      local m = envelope(v)
      assert.are.equal(v.chain_id,
        hex(shell.of_b58check("chain_id", m.chain_id)))
      check_header(m.head, v)
      assert.are.equal(v.protocol_data_len, #m.head.protocol_data)
      assert.are.equal(v.history_count, #m.history)
    end)

    it("reads Get_operations_for_blocks", function()
      local v = V.get_operations_for_blocks
      local m = envelope(v)
      assert.are.equal(v.count, #m.blocks)
      assert.are.equal(v.first, m.blocks[1].block)
      assert.are.equal(v.first_pass, m.blocks[1].validation_pass)
    end)

    it("reads Operations_for_blocks with right and left paths", function()
      for _, v in ipairs{ V.operations_for_blocks_right,
                          V.operations_for_blocks_left } do
        local m = envelope(v)
        assert.are.equal(v.block, m.block)
        assert.are.same(v.path, m.path)
        assert.are.equal(v.operations, #m.operations)
      end
    end)

    it("round-trips TezEdge's mainnet message resources", function()
      local files = { ["block-header"] = 0x21, ["current-branch.big"] = 0x11,
        ["current-head.big"] = 0x14, ["get-block-headers"] = 0x20,
        ["get-current-branch"] = 0x10, ["get-current-head"] = 0x13,
        ["get-operations-for-blocks"] = 0x60,
        ["operations-for-blocks.huge"] = 0x61 }
      for name, tag in pairs(files) do
        local body = read("spec/vectors/tezedge/" .. name .. ".msg")
        local m = assert(shell.decode(body, tag))
        assert.are.equal(body, shell.encode(m), name)
        if m.chain_id then assert.are.equal(CHAIN, m.chain_id) end
      end
    end)
  end)

  describe("malformed input", function()
    for name, t in pairs(SAMPLES) do
      it("refuses truncated and extended " .. name, function()
        local payload, tag = assert(shell.encode(with_type(name, t)))
        local refused = 0
        for cut = 0, #payload - 1 do
          local prefix = payload:sub(1, cut)
          local m, err, code = shell.decode(prefix, tag)
          if m then
            -- Only where the message may end: a whole message again.
            assert.is_true(OPEN_ENDED[name] or false, name .. " cut at " .. cut)
            assert.are.equal(prefix, shell.encode(m))
          else
            assert.are.equal("EPROTO", code, err)
            assert.are.equal(1, err:find("EPROTO: " .. name .. ": ", 1, true))
            refused = refused + 1
          end
        end
        assert.is_true(refused > 0)
        local m, err, code = shell.decode(payload .. "\0", tag)
        if m then
          assert.is_true(OPEN_ENDED[name] or false)
          assert.are.equal(payload .. "\0", shell.encode(m))
        else
          assert.are.equal("EPROTO", code)
          if not OPEN_ENDED[name] then
            assert.are.equal("EPROTO: " .. name ..
              ": trailing bytes after the message", err)
          end
        end
      end)
    end

    it("refuses unknown tags, the P2P ones included", function()
      assert.are.equal(
        "EPROTO: unknown shell message tag (tag 0x0050)",
        select(2, shell.decode(unhex("7a06a770"), 0x50)))
      fails("EPROTO", shell.decode("", 0x03))
      fails("EPROTO", shell.decode(unhex("7a06a770"), 0x51))
    end)

    it("refuses a bad option tag and bad path tags", function()
      local p = SAMPLES.protocol.protocol
      local at = p:find("\255", 1, true) -- B's interface option
      fails("EPROTO", shell.decode(p:sub(1, at - 1) .. "\1" .. p:sub(at + 1),
        0x41))
      local ofb = shell.encode(with_type("operations_for_blocks",
        { block = b58("block", 1), validation_pass = 0 }))
      assert.are.equal("\0", ofb:sub(34, 34))
      local err = fails("EPROTO", shell.decode(ofb:sub(1, 33) .. "\1", 0x61))
      assert.are.equal(
        "EPROTO: operations_for_blocks: bad operation path tag", err)
    end)

    it("refuses lists that are not whole numbers of elements", function()
      fails("EPROTO", shell.decode(string.pack(">s4", ("h"):rep(33)), 0x20))
      fails("EPROTO", shell.decode(string.pack(">s4", ("h"):rep(32)), 0x60))
      local cb = shell.encode(with_type("current_branch",
        SAMPLES.current_branch))
      fails("EPROTO", shell.decode(cb:sub(1, -2), 0x11))
      -- Mempool pending: outer size disagreeing with the inner list.
      local ch = shell.encode(with_type("current_head", SAMPLES.current_head))
      local bad = ch:sub(1, -(32 + 9)) .. string.pack(">I4I4", 32 + 4, 0)
        .. ch:sub(-32)
      local e = fails("EPROTO", shell.decode(bad, 0x14))
      assert.are.equal("EPROTO: current_head: mempool pending sizes disagree",
        e)
    end)
  end)

  describe("Octez bounds", function()
    -- Encode at the limit: accepted, decodes back. One past: EMSGSIZE
    -- from the encoder, and the same bytes built by hand are refused by
    -- the decoder with the same message.
    local function at_limit(name, t)
      local payload, tag = assert(shell.encode(with_type(name, t)))
      assert.is_table(shell.decode(payload, tag))
      return payload, tag
    end

    local function past_limit(name, t, why)
      local msg = fails("EMSGSIZE", shell.encode(with_type(name, t)))
      assert.are.equal("EMSGSIZE: " .. name .. ": " .. why, msg)
    end

    local function refused(payload, tag, why)
      local msg = fails("EMSGSIZE", shell.decode(payload, tag))
      assert.are.equal("EMSGSIZE: " .. shell.NAMES[tag] .. ": " .. why, msg)
    end

    it("caps request lists at 10 items", function()
      for name, kind in pairs{ get_block_headers = "block",
                               get_operations = "operation",
                               get_protocols = "protocol" } do
        local payload, tag = at_limit(name, { hashes = hashes(kind, 10) })
        assert.are.equal(4 + 320, #payload)
        past_limit(name, { hashes = hashes(kind, 11) },
          "request list over 10 items")
        refused(string.pack(">s4", payload:sub(5) .. ("h"):rep(32)), tag,
          "request list over 10 items")
      end
      local blocks = {}
      for i = 1, 11 do blocks[i] = { block = b58("block", i),
                                     validation_pass = i % 4 } end
      past_limit("get_operations_for_blocks", { blocks = blocks },
        "request list over 10 items")
      blocks[11] = nil
      local payload, tag = at_limit("get_operations_for_blocks",
        { blocks = blocks })
      refused(string.pack(">s4", payload:sub(5) .. ("h"):rep(33)), tag,
        "request list over 10 items")
    end)

    it("caps a locator's history at 1000 hashes", function()
      for _, name in ipairs{ "current_branch", "protocol_branch" } do
        local t = with_type(name, SAMPLES[name])
        t.history = hashes("block", 1000)
        local payload, tag = at_limit(name, t)
        assert.are.equal(1000, #shell.decode(payload, tag).history)
        t.history[1001] = b58("block", 1)
        past_limit(name, t, "locator history over 1000 hashes")
        refused(payload .. ("h"):rep(32), tag,
          "locator history over 1000 hashes")
      end
    end)

    it("caps a block header at 8 MiB", function()
      local fixed = 4 + 1 + 32 + 8 + 1 + 32 + 4 + 32 -- no fitness
      local h = header(1, ("p"):rep(8 * MIB - fixed))
      h.fitness = {}
      local payload, tag = at_limit("block_header", { header = h })
      assert.are.equal(8 * MIB, #payload)
      h.protocol_data = h.protocol_data .. "p"
      past_limit("block_header", { header = h }, "block header over 8 MiB")
      refused(payload .. "p", tag, "block header over 8 MiB")
      -- Inside Current_head, the header's size prefix is what is refused.
      local ch = at_limit("current_head", { chain_id = CHAIN,
        header = header(1, ("p"):rep(8 * MIB - fixed - 17)) })
      assert.are.equal(4 + 4 + 8 * MIB + 12, #ch)
      past_limit("current_head", { chain_id = CHAIN, header = h },
        "block header over 8 MiB")
      refused(ch:sub(1, 4) .. string.pack(">I4", 8 * MIB + 1)
        .. ch:sub(9) .. "p", 0x14, "block header over 8 MiB")
    end)

    it("caps an operation at 128 KiB", function()
      local data = ("d"):rep(128 * 1024 - 32)
      local payload, tag = at_limit("operation",
        { branch = b58("block", 1), data = data })
      assert.are.equal(128 * 1024, #payload)
      past_limit("operation", { branch = b58("block", 1), data = data .. "d" },
        "operation over 128 KiB")
      refused(payload .. "d", tag, "operation over 128 KiB")
      -- The same bound on each operation of Operations_for_blocks.
      local t = { block = b58("block", 2), validation_pass = 0,
                  operations = { { branch = b58("block", 1), data = data } } }
      local ofb = at_limit("operations_for_blocks", t)
      t.operations[1].data = data .. "d"
      past_limit("operations_for_blocks", t, "operation over 128 KiB")
      refused(ofb:sub(1, 34) .. string.pack(">s4", ofb:sub(39) .. "d"), 0x61,
        "operation over 128 KiB")
    end)

    it("caps the operations of one Operations_for_blocks at 1 MiB", function()
      -- 8 elements of [u32][128 KiB - 4]: exactly 1 MiB.
      local ops = {}
      for i = 1, 8 do
        ops[i] = { branch = b58("block", i), data = ("o"):rep(128 * 1024 - 36) }
      end
      local t = { block = b58("block", 9), validation_pass = 1,
                  operations = ops }
      local payload = at_limit("operations_for_blocks", t)
      assert.are.equal(32 + 1 + 1 + MIB, #payload)
      ops[1].data = ops[1].data .. "o"
      past_limit("operations_for_blocks", t, "operation list over 1 MiB")
      refused(payload .. string.pack(">s4", ("b"):rep(32)), 0x61,
        "operation list over 1 MiB")
    end)

    it("caps a protocol at 2 MiB", function()
      -- u16 env, u32 list size, one component: name "", no interface.
      local impl = ("i"):rep(2 * MIB - (2 + 4 + 4 + 1 + 4))
      local p = shell.protocol_bytes{ expected_env = 0,
        components = { { name = "", implementation = impl } } }
      assert.are.equal(2 * MIB, #p)
      at_limit("protocol", { protocol = p })
      local over = shell.protocol_bytes{ expected_env = 0,
        components = { { name = "", implementation = impl .. "i" } } }
      past_limit("protocol", { protocol = over }, "protocol over 2 MiB")
      refused(over, 0x41, "protocol over 2 MiB")
    end)

    it("caps a mempool at 128008 bytes: 3999 operation hashes", function()
      local why = "mempool over 128008 bytes (3999 operation hashes)"
      local t = { chain_id = CHAIN, header = header(1),
        mempool = { known_valid = hashes("operation", 3999), pending = {} } }
      local payload = at_limit("current_head", t)
      t.mempool.known_valid[4000] = b58("operation", 1)
      past_limit("current_head", t, why)
      -- Split between the two lists: the bound is on both together.
      t.mempool = { known_valid = hashes("operation", 2000),
                    pending = hashes("operation", 1999) }
      local split = at_limit("current_head", t)
      t.mempool.pending[2000] = b58("operation", 1)
      past_limit("current_head", t, why)
      -- By hand: one more hash in either list.
      local n = #payload - 3999 * 32 - 12
      refused(payload:sub(1, n) .. string.pack(">I4", 4000 * 32)
        .. payload:sub(n + 5, -9) .. ("h"):rep(32) .. payload:sub(-8),
        0x14, why)
      refused(split:sub(1, -(1999 * 32 + 9)) ..
        string.pack(">I4I4", 2000 * 32 + 4, 2000 * 32) ..
        split:sub(-(1999 * 32)) .. ("h"):rep(32), 0x14, why)
    end)

    it("caps an operation path at 3 steps (8 validation passes)", function()
      local path = {}
      for i = 1, 3 do
        path[i] = { side = i % 2 == 0 and "left" or "right",
                    hash = b58("operation_list_list", i) }
      end
      local t = { block = b58("block", 1), validation_pass = 2, path = path }
      local payload = at_limit("operations_for_blocks", t)
      assert.are.equal(32 + 1 + 3 * 33 + 1, #payload)
      path[4] = { side = "left", hash = b58("operation_list_list", 4) }
      past_limit("operations_for_blocks", t,
        "operation path deeper than 3 steps (over 100 bytes)")
      refused(payload:sub(1, 33) .. "\15" .. ("h"):rep(32) ..
        payload:sub(34), 0x61,
        "operation path deeper than 3 steps (over 100 bytes)")
    end)
  end)

  describe("misuse", function()
    it("raises on a bad table, naming the field", function()
      raises("shell.encode: table expected, got string", shell.encode, "x")
      raises("unknown shell message type 'nope'", shell.encode,
        { type = "nope" })
      raises("type: string expected", shell.encode, {})
      raises("chain_id: chain_id hash expected (4 raw bytes or Base58Check "
        .. "Net...), got a string that is neither", shell.encode,
        { type = "deactivate", chain_id = "NetXdQprcVkpaWV" })
      raises("chain_id: chain_id hash expected (4 raw bytes or Base58Check "
        .. "Net...), got nil", shell.encode, { type = "deactivate" })
      local h = header(1)
      h.level = 2 ^ 31
      raises("header.level: integer in", shell.encode,
        { type = "block_header", header = h })
      h = header(1)
      h.fitness = { "a", 2 }
      raises("header.fitness[2]: string expected, got number", shell.encode,
        { type = "block_header", header = h })
      raises("blocks[1].validation_pass: integer in -128..127", shell.encode,
        { type = "get_operations_for_blocks",
          blocks = { { block = b58("block", 1), validation_pass = 128 } } })
      raises("path[1]: side must be \"left\" or \"right\"", shell.encode,
        { type = "operations_for_blocks", block = b58("block", 1),
          validation_pass = 0, path = { { side = "up" } } })
      raises("mempool.known_valid[1]: operation hash expected", shell.encode,
        { type = "current_head", chain_id = CHAIN, header = header(1),
          mempool = { known_valid = { b58("block", 1) } } })
      raises("protocol: string expected, got nil", shell.encode,
        { type = "protocol" })
    end)

    it("raises on a bad tag and returns EPROTO for bad protocol bytes", function()
      raises("bad argument #2", shell.decode, "", "x")
      raises("tag in 0..65535 expected", shell.decode, "", 70000)
      fails("EPROTO", shell.encode{ type = "protocol", protocol = "\0" })
    end)
  end)

  it("is require('luap2p').shell too", function()
    assert.are.equal(shell, require("luap2p").shell)
  end)
end)
