-- Handshake state machine (core/wire/handshake.c, conn_msg.c) and its
-- binding (core/lua/lua_handshake.c). Known answers come from TezEdge's
-- tests (tezedge/tezedge @ feba75be45ce: real nodes' connection messages)
-- and from spec/vectors/gen_handshake.py (Python hashlib + PyNaCl,
-- independent of core/).
local core = require "luap2p.core"
local C = require "check"
local hex, unhex = C.hex, C.unhex
local V = require "vectors.handshake"

local function u16(n)
  return string.char(n >> 8 & 0xff, n & 0xff)
end

-- Identity of a generator side, with its fixed keys and stamp.
local function side_identity(name)
  local s = V.sides[name]
  local json = string.format(
    '{"peer_id": "%s", "public_key": "%s", "secret_key": "%s", '
      .. '"proof_of_work_stamp": "%s"}',
    s.peer_id, s.pk, s.sk, s.stamp)
  return assert(core.identity_from_json(json))
end

-- The versions 0..n, as a list.
local function upto(n)
  local t = {}
  for v = 0, n do t[#t + 1] = v end
  return t
end

-- Handshake of a generator side, pinned to its message nonce.
local function side_hs(name, incoming, extra)
  local s = V.sides[name]
  local opts = {
    identity = side_identity(name),
    incoming = incoming,
    pow_bits = 0,
    advertised_port = s.port,
    p2p_versions = upto(s.p2p),
    ddb_versions = upto(s.ddb),
    disable_mempool = s.disable_mempool,
    private_mode = s.private_node,
    message_nonce = unhex(s.message_nonce),
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return core.handshake(opts)
end

local function new_hs(opts)
  local o = { incoming = false, pow_bits = 0 }
  for k, v in pairs(opts) do o[k] = v end
  o.identity = o.identity or core.identity_generate()
  return core.handshake(o)
end

-- Feed `input` to hs until it stops. Returns the events seen, the
-- unconsumed rest, the error name if one happened, and whether the
-- handshake is finished. On "metadata" decide(hs) is called (default: ack);
-- it returns "done" when its decision (a Nack) ends the handshake.
local function drive(hs, input, decide)
  local events = {}
  while true do
    local ev, n, name = hs:feed(input)
    if ev == nil then return events, input, name, true end
    input = input:sub(n + 1)
    if ev ~= "need_more" then events[#events + 1] = ev end
    if ev == "metadata" then
      if decide then
        if decide(hs) == "done" then return events, input, nil, true end
      else
        assert(hs:ack())
      end
    elseif ev == "acked" or ev == "nacked" then
      return events, input, nil, true
    elseif ev == "need_more" then
      return events, input
    end
  end
end

-- Run two handshakes back to back, moving each one's output to the other's
-- input until neither moves. Returns per side: events, err, rest (bytes
-- that reached it and were not consumed).
local function pair(a, b, decide_a, decide_b)
  local res = { a = { events = {} }, b = { events = {} } }
  local pending = { a = "", b = "" }
  local hs = { a = a, b = b }
  local decide = { a = decide_a, b = decide_b }
  local done = { a = false, b = false }
  for _ = 1, 50 do
    pending.b = pending.b .. a:output()
    pending.a = pending.a .. b:output()
    local moved = false
    for _, k in ipairs { "a", "b" } do
      if not done[k] and #pending[k] > 0 then
        local evs, rest, err, finished = drive(hs[k], pending[k], decide[k])
        if #rest < #pending[k] or #evs > 0 then moved = true end
        pending[k] = rest
        for _, e in ipairs(evs) do table.insert(res[k].events, e) end
        res[k].err = err
        done[k] = finished or false
      end
    end
    if not moved then break end
  end
  pending.b = pending.b .. a:output()
  pending.a = pending.a .. b:output()
  res.a.rest, res.b.rest = pending.a, pending.b
  return res
end

local function last(t) return t[#t] end

describe("handshake", function()
  after_each(function()
    collectgarbage()
    collectgarbage()
  end)

  describe("nonces", function()
    -- TezEdge crypto/src/nonce.rs: raw connection chunks of a 2018 sandbox.
    local sent = unhex("00874d1b98317bd6efad8352a7144c9eb0b218c9130e0a8759"
      .. "73908ddc894b764ffc0d7f176cf800b978af9e919bdc35122585168475096d0ebcac"
      .. "a1f2a1172412b91b363ff484d1c64c03417e0e755e696c386a0000002d53414e4442"
      .. "4f5845445f54455a4f535f414c5048414e45545f323031382d31312d33305431353a"
      .. "33303a35365a00000000")
    local recv = unhex("00874d1ab3845960b32b039fef38ca5c9f8f867df1d522f27a"
      .. "83e07d9dfbe3b296a6c076412d98b369ab015d57247e5380d708b9edfcca0ca2c865"
      .. "346ef9c3d7ed00182cf4f613a6303c9b2a28cda8ff93687bd20000002d53414e4442"
      .. "4f5845445f54455a4f535f414c5048414e45545f323031382d31312d33305431353a"
      .. "33303a35365a00000000")

    it("match the outgoing side of the sandbox vectors (send with N_ri)",
      function()
        -- We opened the connection: our message is init_msg.
        local ir, ri = core.nonces(sent, recv)
        assert.equal("8dde158c55cff52f4be9352787d333e616a67853640d72c5",
          hex(ri)) -- local (send) nonce
        assert.equal("e67481a23cf9b404626a12bd405066e161b32dc53f469153",
          hex(ir)) -- remote (receive) nonce
      end)

    it("match the incoming side of the sandbox vectors (send with N_ir)",
      function()
        local ir, ri = core.nonces(recv, sent)
        assert.equal("ff0451d94af9f75a46d74a2a9f685cff20222a15829f121d",
          hex(ir)) -- local (send) nonce
        assert.equal("8a09a2c43a61aa6eccee084aa66da9bc94b441b17615be58",
          hex(ri)) -- remote (receive) nonce
      end)

    it("match the generator for its two connection messages", function()
      local ir, ri = core.nonces(unhex(V.sides.a.conn_msg),
        unhex(V.sides.b.conn_msg))
      assert.equal(V.scenarios[1].n_ir, hex(ir))
      assert.equal(V.scenarios[1].n_ri, hex(ri))
    end)
  end)

  describe("connection messages", function()
    local sandbox = {
      {
        msg = "00874d1b98317bd6efad8352a7144c9eb0b218c9130e0a875973908ddc89"
          .. "4b764ffc0d7f176cf800b978af9e919bdc35122585168475096d0ebcaca1f2a1"
          .. "172412b91b363ff484d1c64c03417e0e755e696c386a0000002d53414e44424f"
          .. "5845445f54455a4f535f414c5048414e45545f323031382d31312d3330543135"
          .. "3a33303a35365a00000000",
        port = 19739,
        pk = "98317bd6efad8352a7144c9eb0b218c9130e0a875973908ddc894b764ffc0d7f",
        stamp = "176cf800b978af9e919bdc35122585168475096d0ebcaca1",
        nonce = "f2a1172412b91b363ff484d1c64c03417e0e755e696c386a",
        peer_id = "idtBWDzTcpfNnDyoRbM1bFoXe2vuZK",
      },
      {
        msg = "00874d1ab3845960b32b039fef38ca5c9f8f867df1d522f27a83e07d9dfbe3"
          .. "b296a6c076412d98b369ab015d57247e5380d708b9edfcca0ca2c865346ef9c3"
          .. "d7ed00182cf4f613a6303c9b2a28cda8ff93687bd20000002d53414e44424f58"
          .. "45445f54455a4f535f414c5048414e45545f323031382d31312d33305431353a"
          .. "33303a35365a00000000",
        port = 19738,
        pk = "b3845960b32b039fef38ca5c9f8f867df1d522f27a83e07d9dfbe3b296a6c076",
        stamp = "412d98b369ab015d57247e5380d708b9edfcca0ca2c86534",
        nonce = "6ef9c3d7ed00182cf4f613a6303c9b2a28cda8ff93687bd2",
        peer_id = "idrcXJiU6wtDntNEso85aDg5nBEZyg",
      },
    }

    for i, v in ipairs(sandbox) do
      it("decode sandbox message " .. i .. " and re-encode it byte for byte",
        function()
          local raw = unhex(v.msg)
          assert.equal(135, #raw - 2)
          local m = assert(core.conn_msg_decode(raw:sub(3)))
          assert.equal(v.port, m.port)
          assert.equal(v.pk, hex(m.public_key))
          assert.equal(v.stamp, hex(m.proof_of_work_stamp))
          assert.equal(v.nonce, hex(m.message_nonce))
          assert.equal("SANDBOXED_TEZOS_ALPHANET_2018-11-30T15:30:56Z", m.chain)
          assert.equal(0, m.ddb_version)
          assert.equal(0, m.p2p_version)
          assert.equal(v.peer_id, m.peer_id)
          assert.equal(raw, core.conn_msg_encode(m))
        end)
    end

    local mainnet = unhex("260470387c4cbd115833626a88a9f2b9bbadd70705f5ad059f"
      .. "494655ac823620c6410ec0d9b1716ad6d59d0cc551c96992c8031df8c77735d21158"
      .. "dc510aabbca27bd5fff7f085912327012a4d91e587e3bc0000000d54455a4f535f4d"
      .. "41494e4e455400000001")

    it("decode a TEZOS_MAINNET node's message and re-encode it", function()
      assert.equal(103, #mainnet)
      local m = assert(core.conn_msg_decode(mainnet))
      assert.equal(9732, m.port)
      assert.equal(
        "70387c4cbd115833626a88a9f2b9bbadd70705f5ad059f494655ac823620c641",
        hex(m.public_key))
      assert.equal("0ec0d9b1716ad6d59d0cc551c96992c8031df8c77735d211",
        hex(m.proof_of_work_stamp))
      assert.equal("58dc510aabbca27bd5fff7f085912327012a4d91e587e3bc",
        hex(m.message_nonce))
      assert.equal("TEZOS_MAINNET", m.chain)
      assert.equal(0, m.ddb_version)
      assert.equal(1, m.p2p_version)
      assert.equal("idsjXqdHKtcRb6NfdKsAYqE4JN2kep", m.peer_id)
      assert.equal(u16(#mainnet) .. mainnet, core.conn_msg_encode(m))
    end)

    it("reject every strict prefix of a body with ETRUNC", function()
      for n = 0, #mainnet - 1 do
        local m, err, name = core.conn_msg_decode(mainnet:sub(1, n))
        assert.is_nil(m)
        assert.equal("ETRUNC", name, "prefix of " .. n .. " bytes")
        assert.equal("ETRUNC: ", err:sub(1, 8))
      end
    end)

    it("reject trailing bytes with EEXTRA", function()
      local _, _, name = core.conn_msg_decode(mainnet .. "\0")
      assert.equal("EEXTRA", name)
      _, _, name = core.conn_msg_decode(mainnet .. ("x"):rep(100))
      assert.equal("EEXTRA", name)
    end)

    it("reject a chain name length that overruns the body with ETRUNC",
      function()
        -- chain length field at offset 82: claim 14 bytes (13 + ddb byte
        -- would then be read as name, leaving 3 bytes for 4 of versions).
        for _, claimed in ipairs { 14, 17, 18, 0x7fffffff, 0xffffffff } do
          local b = mainnet:sub(1, 82) .. string.pack(">I4", claimed)
            .. mainnet:sub(87)
          local _, _, name = core.conn_msg_decode(b)
          assert.equal("ETRUNC", name, "claimed " .. claimed)
        end
        -- A shorter claim leaves bytes over: EEXTRA.
        local b = mainnet:sub(1, 82) .. string.pack(">I4", 5) .. mainnet:sub(87)
        local _, _, name = core.conn_msg_decode(b)
        assert.equal("EEXTRA", name)
      end)

    it("keep a chain name over 255 bytes with its real length", function()
      local body = mainnet:sub(1, 82) .. string.pack(">I4", 300)
        .. ("N"):rep(300) .. "\0\2\0\1"
      local m = assert(core.conn_msg_decode(body))
      assert.equal(300, m.chain_len)
      assert.equal(("N"):rep(255), m.chain)
      assert.equal(2, m.ddb_version)
      assert.equal(1, m.p2p_version)
    end)

    it("refuse to encode bad fields (misuse raises)", function()
      local m = assert(core.conn_msg_decode(mainnet))
      m.chain = ("x"):rep(256)
      assert.has_error(function() core.conn_msg_encode(m) end)
      m = assert(core.conn_msg_decode(mainnet))
      m.public_key = "short"
      assert.has_error(function() core.conn_msg_encode(m) end)
    end)
  end)

  describe("known-answer exchange with the generator", function()
    for _, sc in ipairs(V.scenarios) do
      it(sc.name .. ": every byte each side writes", function()
        local a = side_hs(sc.a, false)
        local b = side_hs(sc.b, true)
        local sa, sb = V.sides[sc.a], V.sides[sc.b]
        assert.equal(sa.conn_msg, hex(a:output()))
        assert.equal(sb.conn_msg, hex(b:output()))
        assert.equal("", a:output()) -- taken

        local ev, n = a:feed(unhex(sb.conn_msg))
        assert.equal("conn_msg", ev)
        assert.equal(#sb.conn_msg // 2, n)
        ev, n = b:feed(unhex(sa.conn_msg))
        assert.equal("conn_msg", ev)
        assert.equal(#sa.conn_msg // 2, n)
        assert.equal(sc.chunks_a[1], hex(a:output())) -- metadata
        assert.equal(sc.chunks_b[1], hex(b:output()))

        ev = a:feed(unhex(sc.chunks_b[1]))
        assert.equal("metadata", ev)
        ev = b:feed(unhex(sc.chunks_a[1]))
        assert.equal("metadata", ev)
        local ra, rb = a:remote(), b:remote()
        assert.equal(sb.disable_mempool, ra.disable_mempool)
        assert.equal(sb.private_node, ra.private_node)
        assert.equal(sa.disable_mempool, rb.disable_mempool)
        assert.equal(sa.private_node, rb.private_node)
        assert.equal(sb.peer_id, ra.peer_id)
        assert.equal(sa.peer_id, rb.peer_id)
        assert.equal(sb.pk, hex(ra.public_key))
        assert.is_nil(ra.version_status)
        assert.is_nil(rb.version_status)
        assert.equal(sa.p2p, rb.p2p_version)
        assert.equal(sa.p2p, rb.chosen_p2p_version)
        assert.equal(sa.ddb, rb.chosen_ddb_version)

        assert.is_true(a:ack())
        assert.equal(sc.chunks_a[2], hex(a:output()))
        if sc.answer_b == "00" then
          assert.is_true(b:ack())
        else
          local pts = {}
          for j, p in ipairs(sc.nack_points) do pts[j] = p end
          assert.is_true(b:nack(sc.nack_motive, pts))
        end
        assert.equal(sc.chunks_b[2], hex(b:output()))

        -- a reads b's answer; the bytes behind it are not consumed.
        local tail = sc.chunks_b[3] and unhex(sc.chunks_b[3]) or "trailing"
        local input = unhex(sc.chunks_b[2]) .. tail
        ev, n = a:feed(input)
        assert.equal(#sc.chunks_b[2] // 2, n)
        ra = a:remote()
        if sc.answer_b == "00" then
          assert.equal("acked", ev)
          assert.is_nil(ra.nack_motive)
          assert.equal("acked", (b:feed(unhex(sc.chunks_a[2]))))
          -- The channels continue where the handshake chunks left off.
          local ca, cb = assert(a:channel()), assert(b:channel())
          assert.equal(sc.chunks_a[3], hex(ca:seal(unhex("000000020002"))))
          assert.equal("000000020002", hex(cb:open(unhex(sc.chunks_a[3]))))
          assert.equal("000000020002", hex(ca:open(tail)))
        elseif sc.answer_b == "ff" then
          assert.equal("nacked", ev)
          assert.equal(-1, ra.nack_motive)
          assert.same({}, ra.nack_points)
        else
          assert.equal("nacked", ev)
          assert.equal(sc.nack_motive, ra.nack_motive)
          assert.same(sc.nack_points, ra.nack_points)
        end
        -- Finished: nothing more is read.
        local _, _, name = a:feed(tail)
        assert.equal("ESTATE", name)
      end)
    end

    it("answer Nack_v_0 to a peer that announced p2p version 0, whatever "
      .. "the motive", function()
        local sc = V.scenarios[4]
        assert.equal("ff", sc.answer_b)
        local a = side_hs("old", false, { p2p_versions = { 0 },
          ddb_versions = { 0 } })
        local b = side_hs("b", true)
        local nack
        local r = pair(a, b, function() end, function(h)
          assert.is_true(h:nack(5, { "1.2.3.4:5" }))
          nack = h:output()
          return "done"
        end)
        assert.same({ "conn_msg", "metadata" }, r.a.events)
        assert.equal(sc.chunks_b[2], hex(nack))
        assert.is_true(a:ack())
        assert.equal("nacked", (a:feed(nack)))
        assert.equal(-1, a:remote().nack_motive)
        assert.same({}, a:remote().nack_points)
      end)
  end)

  describe("two state machines back to back", function()
    for _, roles in ipairs { { false, true }, { true, false } } do
      local label = roles[1] and "incoming" or "outgoing"
      it("reach Ack with the first side " .. label
        .. ", and the channels carry messages both ways", function()
          local a = new_hs { incoming = roles[1], advertised_port = 9732 }
          local b = new_hs { incoming = roles[2], disable_mempool = true }
          local r = pair(a, b)
          assert.same({ "conn_msg", "metadata", "acked" }, r.a.events)
          assert.same({ "conn_msg", "metadata", "acked" }, r.b.events)
          assert.equal("", r.a.rest)
          assert.equal("", r.b.rest)
          assert.is_true(a:remote().disable_mempool)
          assert.is_false(b:remote().private_node)
          assert.equal(9732, b:remote().port)
          assert.equal(1, a:remote().chosen_p2p_version)
          assert.equal(2, a:remote().chosen_ddb_version)

          local ca, cb = assert(a:channel()), assert(b:channel())
          local max = core.CHUNK_PAYLOAD_MAX
          assert.equal(65517, max)
          for _, size in ipairs { 0, 1, max, max + 1, 5 * 1024 * 1024 } do
            local msg = string.rep("\1\2\3\4\5\6\7", size // 7 + 1)
              :sub(1, size)
            for _, dir in ipairs { { ca, cb }, { cb, ca } } do
              -- A raw stream of `size` bytes, chunk by chunk.
              local wire = dir[1]:seal(msg)
              local nchunks = (size + max - 1) // max
              assert.equal(size + 18 * nchunks, #wire)
              local got, pos = {}, 1
              while pos <= #wire do
                local len = string.unpack(">I2", wire, pos)
                local chunk = wire:sub(pos, pos + 1 + len)
                got[#got + 1] = assert(dir[2]:open(chunk))
                pos = pos + 2 + len
              end
              local all = table.concat(got)
              assert.equal(size, #all)
              assert.is_true(all == msg, "stream of " .. size .. " bytes")
              -- The same bytes as one application message (tag 0x10),
              -- reassembled from uneven pieces by open_stream + msg_reader.
              local env = string.pack(">I4", size + 2) .. "\0\16" .. msg
              wire = dir[1]:seal(env)
              local reader, held, msgs = core.msg_reader(), "", {}
              local step, p = 1, 1
              while p <= #wire do
                held = held .. wire:sub(p, p + step - 1)
                p = p + step
                step = step * 3 + 1
                local plain, rest = assert(dir[2]:open_stream(held))
                held = held:sub(#held - rest + 1)
                for _, m in ipairs(assert(reader:feed(plain))) do
                  msgs[#msgs + 1] = m
                end
              end
              assert.equal("", held)
              assert.equal(1, #msgs)
              assert.is_true(msgs[1] == "\0\16" .. msg,
                "message of " .. size .. " bytes")
            end
          end
        end)
    end

    it("deliver the Nack motive and points to whichever side is refused",
      function()
        for _, refuser in ipairs { "a", "b" } do
          local a = new_hs { incoming = false }
          local b = new_hs { incoming = true }
          local pts = { "1.2.3.4:9732", "[2001:db8::1]:19732" }
          local function nack(h) assert(h:nack(5, pts)); return "done" end
          local r = pair(a, b, refuser == "a" and nack or nil,
            refuser == "b" and nack or nil)
          local refused = refuser == "a" and b or a
          local other = refuser == "a" and "b" or "a"
          assert.equal("nacked", last(r[other].events))
          local rr = refused:remote()
          assert.equal(5, rr.nack_motive)
          assert.same(pts, rr.nack_points)
          -- The refuser is finished: it reads nothing more.
          local _, _, name = (refuser == "a" and a or b):feed("\0\16")
          assert.equal("ESTATE", name)
          assert.is_nil(select(1, (refuser == "a" and a or b):channel()))
        end
      end)

    it("keep motives Octez does not name as plain numbers", function()
      for _, motive in ipairs { 6, 1234, 32767, -1, -2, -32768 } do
        local a = new_hs { incoming = false }
        local b = new_hs { incoming = true }
        local r = pair(a, b, nil, function(h)
          assert(h:nack(motive, {}))
          return "done"
        end)
        assert.equal("nacked", last(r.a.events))
        assert.equal(motive, a:remote().nack_motive)
        assert.same({}, a:remote().nack_points)
      end
    end)

    it("let both sides Nack: each writes its Nack and reads nothing after",
      function()
        local a = new_hs { incoming = false }
        local b = new_hs { incoming = true }
        local nacked = {}
        local r = pair(a, b,
          function(h)
            assert(h:nack(1, { "5.6.7.8:1" }))
            nacked.a = true
            return "done"
          end,
          function(h)
            assert(h:nack(4, {}))
            nacked.b = true
            return "done"
          end)
        assert.is_true(nacked.a and nacked.b)
        assert.same({ "conn_msg", "metadata" }, r.a.events)
        assert.same({ "conn_msg", "metadata" }, r.b.events)
        -- Each Nack chunk is waiting at the other side: 2 + 16 + body.
        assert.equal(2 + 16 + 1 + 2 + 4 + 4 + 9, #r.b.rest)
        assert.equal(2 + 16 + 1 + 2 + 4, #r.a.rest)
      end)

    it("name a chain mismatch ECHAIN and carry Nack motive 2 back", function()
      local a = new_hs { incoming = false, chain = "TEZOS_MAINNET" }
      local b = new_hs { incoming = true, chain = "TEZOS_GHOSTNET" }
      local r = pair(a, b, nil, function(h)
        assert.equal("ECHAIN", h:remote().version_status)
        assert.equal("TEZOS_MAINNET", h:remote().chain)
        assert(h:nack(core.NACK_UNKNOWN_CHAIN_NAME, {}))
        return "done"
      end)
      assert.equal("ECHAIN", a:remote().version_status)
      assert.is_nil(a:remote().chosen_p2p_version)
      assert.equal("nacked", last(r.a.events))
      assert.equal(2, a:remote().nack_motive)
    end)

    it("name deprecated versions EP2PVER / EDDBVER (ddb first, as Octez)",
      function()
        local cases = {
          { { p2p_versions = { 0, 1 } }, { p2p_versions = { 2, 3 } },
            nil, "EP2PVER" },
          { { ddb_versions = { 0, 1 } }, { ddb_versions = { 2, 3, 4, 5 } },
            nil, "EDDBVER" },
          { { p2p_versions = { 1 }, ddb_versions = { 1 } },
            { p2p_versions = { 2 }, ddb_versions = { 2 } }, nil, "EDDBVER" },
        }
        for _, c in ipairs(cases) do
          local oa, ob = c[1], c[2]
          oa.incoming = false
          ob.incoming = true
          local a, b = new_hs(oa), new_hs(ob)
          local r = pair(a, b, nil, function(h)
            assert(h:nack(core.NACK_DEPRECATED_P2P_VERSION, {}))
            return "done"
          end)
          -- a supports less: the remote's higher versions are fine for it,
          -- it picks its own maximum.
          assert.equal(c[3], a:remote().version_status)
          assert.equal(c[4], b:remote().version_status)
          assert.equal(3, a:remote().nack_motive)
          assert.equal("nacked", last(r.a.events))
        end
        -- The remote's version when it is lower but supported.
        local a = new_hs { incoming = false, p2p_versions = { 0, 1 } }
        local b = new_hs { incoming = true, p2p_versions = upto(7) }
        pair(a, b)
        assert.equal(1, b:remote().chosen_p2p_version)
        assert.equal(1, a:remote().chosen_p2p_version)
      end)

    it("refuse a remote whose stamp misses our target with EPOW", function()
      -- Side a's stamp carries exactly pow_zero_bits bits of work.
      local bits = V.sides.a.pow_zero_bits
      local b = new_hs { incoming = true, pow_bits = bits + 1 }
      local a = side_hs("a", false)
      b:output()
      local _, _, name = b:feed(a:output())
      assert.equal("EPOW", name)
      assert.equal(V.sides.a.peer_id, b:remote().peer_id)
      assert.equal("", b:output()) -- no metadata for it
      _, _, name = b:feed("x")
      assert.equal("ESTATE", name)
      -- The same stamp at its own level passes.
      b = new_hs { incoming = true, pow_bits = bits }
      a = side_hs("a", false)
      assert.equal("conn_msg", (b:feed(a:output())))
    end)

    it("refuse a fresh identity without a stamp against an 8-bit target "
      .. "unless it is lucky", function()
        for _ = 1, 4 do
          local id = core.identity_generate()
          local b = new_hs { incoming = true, pow_bits = 8 }
          local a = new_hs { identity = id }
          local ev, _, name = b:feed(a:output())
          if id:check_pow(8) then
            assert.equal("conn_msg", ev)
          else
            assert.equal("EPOW", name)
          end
        end
      end)

    it("detect a connection to ourselves with EMYSELF after the metadata",
      function()
        local id = core.identity_generate()
        local a = new_hs { identity = id, incoming = false }
        local b = new_hs { identity = id, incoming = true }
        local r = pair(a, b)
        assert.same({ "conn_msg" }, r.a.events)
        assert.same({ "conn_msg" }, r.b.events)
        assert.equal("EMYSELF", r.a.err)
        assert.equal("EMYSELF", r.b.err)
      end)
  end)

  describe("a deferred key (defer_key)", function()
    -- What a node does when its key jobs run on worker threads.
    it("stops at key_needed, consumes nothing until key(), then writes " ..
      "the same bytes as the inline key", function()
      local a = side_hs("a", false)
      local b = side_hs("b", true, { defer_key = true })
      local twin = side_hs("b", true)
      local from_a = a:output()
      local b_conn = b:output()
      assert.equal(twin:output(), b_conn) -- our connection message
      assert.equal("conn_msg", (twin:feed(from_a)))
      local ev, used = b:feed(from_a .. "xyz")
      assert.equal("key_needed", ev)
      assert.equal(#from_a, used)
      assert.equal("", b:output()) -- no metadata before the key
      assert.same({ "need_more", 0 }, { b:feed("xyz") })
      assert.equal(b:remote().peer_id, twin:remote().peer_id)
      assert.equal("conn_msg", b:key())
      local meta = b:output()
      assert.equal(twin:output(), meta)
      -- The other side reads them as from any peer.
      assert.equal("conn_msg", (a:feed(b_conn)))
      assert.equal("metadata", (a:feed(meta)))
    end)

    it("reach Ack both ways when both sides defer", function()
      local a = new_hs { incoming = false, defer_key = true }
      local b = new_hs { incoming = true, defer_key = true }
      local events = { a = {}, b = {} }
      local input = { a = "", b = "" }
      local hs = { a = a, b = b }
      for _ = 1, 20 do
        input.b = input.b .. a:output()
        input.a = input.a .. b:output()
        for _, k in ipairs { "a", "b" } do
          if last(events[k]) == "acked" then goto next end
          local ev, used = assert(hs[k]:feed(input[k]))
          input[k] = input[k]:sub(used + 1)
          if ev == "key_needed" then ev = assert(hs[k]:key()) end
          if ev == "metadata" then assert(hs[k]:ack()) end
          if ev ~= "need_more" then table.insert(events[k], ev) end
          ::next::
        end
      end
      assert.same({ "conn_msg", "metadata", "acked" }, events.a)
      assert.same({ "conn_msg", "metadata", "acked" }, events.b)
      local ca, cb = assert(a:channel()), assert(b:channel())
      assert.equal("hello", cb:open(ca:seal("hello")))
    end)

    it("report EPOW from the key job and die", function()
      local bits = V.sides.a.pow_zero_bits
      local b = new_hs { incoming = true, pow_bits = bits + 1,
                         defer_key = true }
      local a = side_hs("a", false)
      b:output()
      assert.equal("key_needed", (b:feed(a:output())))
      local _, _, name = b:key()
      assert.equal("EPOW", name)
      assert.equal("", b:output())
      _, _, name = b:feed("x")
      assert.equal("ESTATE", name)
    end)

    it("answer ESTATE to key() at any other time", function()
      local b = new_hs { incoming = true, defer_key = true }
      local _, _, name = b:key()
      assert.equal("ESTATE", name)
      local inline = new_hs { incoming = true }
      local a = new_hs { incoming = false }
      assert.equal("conn_msg", (inline:feed(a:output())))
      _, _, name = inline:key()
      assert.equal("ESTATE", name)
    end)
  end)

  describe("bad input", function()
    local function fresh_a()
      local a = side_hs("a", false)
      a:output()
      return a
    end
    local sb = V.sides.b
    local conn_b = unhex(sb.conn_msg)

    local function expect(hs, input, name)
      local ev, err, ename = hs:feed(input)
      assert.is_nil(ev)
      assert.equal(name, ename)
      assert.equal(name .. ": ", err:sub(1, #name + 2))
      -- Dead for good.
      local _, _, again = hs:feed("\0\0\0")
      assert.equal("ESTATE", again)
    end

    it("reject length prefixes 0, 15, 89 and over the maximum with EBADLEN",
      function()
        for _, n in ipairs { 0, 15, 89 } do
          expect(fresh_a(), u16(n) .. ("\0"):rep(200), "EBADLEN")
        end
        local a = side_hs("a", false, { max_connection_message = 200 })
        expect(a, u16(65535), "EBADLEN")
        a = side_hs("a", false, { max_connection_message = 200 })
        expect(a, u16(201), "EBADLEN")
        -- 200 itself is accepted: the body is awaited.
        a = side_hs("a", false, { max_connection_message = 200 })
        local ev, n = a:feed(u16(200) .. ("\0"):rep(10))
        assert.equal("need_more", ev)
        assert.equal(12, n)
      end)

    it("reject a connection message cut short with ETRUNC", function()
      local body = conn_b:sub(3, -2)
      expect(fresh_a(), u16(#body) .. body, "ETRUNC")
    end)

    it("reject extra bytes in a connection message with EEXTRA", function()
      local body = conn_b:sub(3) .. "\0"
      expect(fresh_a(), u16(#body) .. body, "EEXTRA")
    end)

    it("wait with need_more while the connection message is incomplete",
      function()
        for k = 0, #conn_b - 1 do
          local a = fresh_a()
          local ev, n = a:feed(conn_b:sub(1, k))
          assert.equal("need_more", ev)
          assert.equal(k, n)
        end
      end)

    local function after_conn(a)
      assert.equal("conn_msg", (a:feed(conn_b)))
      a:output()
      return a
    end

    it("reject a flipped bit anywhere in the metadata chunk with EAUTH",
      function()
        local chunk = unhex(V.scenarios[1].chunks_b[1])
        for pos = 3, #chunk do
          for _, bit in ipairs { 1, 128 } do
            local bad = chunk:sub(1, pos - 1)
              .. string.char(chunk:byte(pos) ~ bit) .. chunk:sub(pos + 1)
            expect(after_conn(fresh_a()), bad, "EAUTH")
          end
        end
      end)

    it("reject a chunk shorter than its tag with EBADLEN", function()
      for _, n in ipairs { 0, 1, 15 } do
        expect(after_conn(fresh_a()), u16(n) .. ("\0"):rep(n), "EBADLEN")
      end
    end)

    for _, c in ipairs(V.bad_b) do
      it("reject " .. c.why .. " with " .. c.err, function()
        local a = after_conn(fresh_a())
        local input = unhex(c.bytes)
        if c.at == "ack" then
          local ev, n = a:feed(input)
          assert.equal("metadata", ev)
          input = input:sub(n + 1)
          assert.is_true(a:ack())
        end
        expect(a, input, c.err)
      end)
    end

    it("answer ESTATE to calls at the wrong time", function()
      local a = fresh_a()
      local function name(...) return select(3, ...) end
      assert.equal("ESTATE", name(a:ack()))
      assert.equal("ESTATE", name(a:nack(0, {})))
      assert.equal("ESTATE", name(a:channel()))
      assert.is_nil(a:remote())
      after_conn(a)
      assert.equal("ESTATE", name(a:ack()))
      assert.equal("metadata", (a:feed(unhex(V.scenarios[1].chunks_b[1]))))
      -- Waiting for the decision: nothing is consumed.
      local ev, n = a:feed("\0\17")
      assert.equal("need_more", ev)
      assert.equal(0, n)
      assert.is_true(a:ack())
      assert.equal("ESTATE", name(a:ack()))
      assert.equal("ESTATE", name(a:nack(0, {})))
      assert.equal("ESTATE", name(a:channel()))
    end)

    it("survive every split of the whole incoming byte stream", function()
      local sc = V.scenarios[1]
      local tail = unhex(sc.chunks_b[3])
      local stream = conn_b .. unhex(sc.chunks_b[1]) .. unhex(sc.chunks_b[2])
      local whole = stream .. tail
      local function run(pieces)
        local a = side_hs("a", false)
        local events, buf, finished = {}, "", false
        for _, p in ipairs(pieces) do
          buf = buf .. p
          if not finished then
            local evs, rest, err, fin = drive(a, buf)
            assert.is_nil(err)
            for _, e in ipairs(evs) do events[#events + 1] = e end
            buf, finished = rest, fin
          end
        end
        assert.same({ "conn_msg", "metadata", "acked" }, events)
        assert.equal(tail, buf) -- the framed stream is left alone
        assert.equal(sc.chunks_a[1] .. sc.chunks_a[2], hex(a:output())
          :sub(#V.sides.a.conn_msg + 1))
      end
      for k = 1, #whole - 1 do
        run { whole:sub(1, k), whole:sub(k + 1) }
      end
      local bytes = {}
      for k = 1, #whole do bytes[k] = whole:sub(k, k) end
      run(bytes)
      math.randomseed(20240601)
      for _ = 1, 200 do
        local pieces, pos = {}, 1
        while pos <= #whole do
          local n = math.random(1, 40)
          pieces[#pieces + 1] = whole:sub(pos, pos + n - 1)
          pos = pos + n
        end
        run(pieces)
      end
    end)
  end)

  describe("options", function()
    it("require an identity and the direction", function()
      assert.has_error(function() core.handshake { incoming = true } end,
        "core.handshake: config.identity: expected a luap2p.Identity")
      assert.has_error(function()
        core.handshake { identity = core.identity_generate() }
      end, "core.handshake: config.incoming: expected a boolean (required)")
    end)

    it("name an unknown option", function()
      assert.has_error(function()
        new_hs { chian = "TEZOS_MAINNET" }
      end, "core.handshake: unknown config key 'chian' (did you mean " ..
        "'chain'?)")
    end)

    it("name each bad value", function()
      local VERSIONS = "a non-empty list of consecutive versions in " ..
        "[0, 65535], e.g. {0, 1}"
      local bad = {
        { "chain", ("x"):rep(256), "a string of 1..255 bytes" },
        { "chain", 5, "a string of 1..255 bytes" },
        { "pow_bits", 300, "a number in [0, 256]" },
        { "pow_bits", "26", "a number in [0, 256]" },
        { "advertised_port", 65536, "an integer in [0, 65535]" },
        { "advertised_port", 1.5, "an integer in [0, 65535]" },
        { "p2p_versions", {}, VERSIONS },
        { "ddb_versions", { 0, -1 }, VERSIONS },
        { "p2p_versions", { 1, 0 }, VERSIONS },
        { "p2p_versions", { 0, 1, 5 }, VERSIONS },
        { "private_mode", 1, "a boolean" },
        { "disable_mempool", "yes", "a boolean" },
        { "max_connection_message", 89, "an integer in [90, 65535]" },
        { "max_connection_message", 65536, "an integer in [90, 65535]" },
        { "message_nonce", "short", "a 24-byte string" },
        { "incoming", "yes", "a boolean (required)" },
      }
      for _, c in ipairs(bad) do
        assert.has_error(function() new_hs { [c[1]] = c[2] } end,
          "core.handshake: config." .. c[1] .. ": expected " .. c[3])
      end
      assert.has_error(function() new_hs { port = 1 } end,
        "core.handshake: unknown config key 'port' (did you mean " ..
        "'advertised_port'?)")
      assert.has_error(function() new_hs { private_node = true } end,
        "core.handshake: unknown config key 'private_node' (did you " ..
        "mean 'private_mode'?)")
    end)

    it("announce the largest versions and the chosen port", function()
      local a = new_hs { advertised_port = 4242, p2p_versions = { 0, 1 },
        ddb_versions = { 0, 1, 2 }, chain = "X" }
      local m = assert(core.conn_msg_decode(a:output():sub(3)))
      assert.equal(4242, m.port)
      assert.equal(1, m.p2p_version)
      assert.equal(2, m.ddb_version)
      assert.equal("X", m.chain)
    end)

    it("raise on a closed handshake and on bad nack arguments", function()
      local a = new_hs {}
      assert.has_error(function() a:nack(40000, {}) end)
      assert.has_error(function() a:nack(1, { "not a point" }) end)
      local many = {}
      for k = 1, 101 do many[k] = "1.2.3.4:" .. k end
      assert.has_error(function() a:nack(1, many) end)
      a:close()
      a:close() -- idempotent
      assert.matches("closed", tostring(a))
      assert.has_error(function() a:output() end,
        "attempt to use a closed Handshake")
    end)
  end)
end)
