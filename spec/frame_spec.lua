-- frame: encrypted chunks (luap2p.Channel) and message reassembly
-- (luap2p.MsgReader). Known answers: TezEdge's crypto/src/nonce.rs and
-- crypto/src/crypto_box.rs (tezedge/tezedge @ feba75be45ce, copied here)
-- and spec/vectors/gen_frame.py (PyNaCl crypto_box_afternm, Octez's chunk
-- cutting written out in Python) -> spec/vectors/frame.lua.
local core = require "luap2p.core"
local C = require "check"
local fails, raises, unhex = C.fails, C.raises, C.unhex
local V = dofile("spec/vectors/frame.lua")

local function pattern(n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char((i * 7 + 3) % 256) end
  return table.concat(t)
end

-- The envelope of an application message, built here by hand.
local function app(tag, payload)
  return string.pack(">I4I2", #payload + 2, tag) .. payload
end

-- A sender and a receiver sharing key and nonce.
local function pair(key, nonce)
  key = key or V.streams.key
  nonce = nonce or V.streams.nonce
  local other = ("\0"):rep(24)
  return core.channel(key, nonce, other), core.channel(key, other, nonce)
end

-- Chunk lengths read from the u16 prefixes of a sealed stream.
local function chunk_sizes(sealed)
  local sizes, pos = {}, 1
  while pos <= #sealed do
    local l = string.unpack(">I2", sealed, pos)
    sizes[#sizes + 1] = l
    pos = pos + 2 + l
  end
  assert.are.equal(#sealed + 1, pos)
  return sizes
end

-- /proc/self/status VmSize in KiB, or nil off Linux.
local function vmsize()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmSize:%s*(%d+)"))
end

-- Runs bytes through open_stream and a reader, cut at the given offsets,
-- keeping the partial chunk between calls as open_stream documents.
local function receive(rx, reader, sealed, cuts)
  local msgs, held, last = {}, "", 0
  cuts[#cuts + 1] = #sealed
  for _, cut in ipairs(cuts) do
    local bytes = held .. sealed:sub(last + 1, cut)
    last = cut
    local plain, rest = assert(rx:open_stream(bytes))
    held = rest > 0 and bytes:sub(#bytes - rest + 1) or ""
    for _, m in ipairs(assert(reader:feed(plain))) do msgs[#msgs + 1] = m end
  end
  assert.are.equal("", held)
  return msgs
end


describe("frame", function()
  after_each(function() collectgarbage() collectgarbage() end)

  describe("nonce_increment", function()
    it("adds one to a 24-byte big-endian counter (VECTORS 1)", function()
      local n0 = unhex("0000000000cff52f4be9352787d333e616a67853640d72c5")
      local n1 = unhex("0000000000cff52f4be9352787d333e616a67853640d72c6")
      assert.are.equal(n1, core.nonce_increment(n0))
    end)

    it("carries across bytes and wraps at 2^192 (generator)", function()
      for _, c in ipairs(V.increments) do
        assert.are.equal(c.next, core.nonce_increment(c.nonce))
      end
    end)

    it("raises on a nonce that is not 24 bytes", function()
      raises("24-byte nonce", core.nonce_increment, ("\0"):rep(23))
      raises("string expected", core.nonce_increment, nil)
    end)
  end)

  describe("Channel", function()
    it("seals the VECTORS 2 plaintext to the exact chunk bytes", function()
      local v = V.vectors2
      assert.are.equal(unhex(
        "5228751a6f5a6494e38e1042f578e3a64ae3462b7899356f49e50be846c9609c"),
        v.key)
      local ct = unhex("45d82d5c4067f5c32748596c1bbc93a9f87b5b1f2058ddd82b6f"
        .. "081ca484b672395c7473ab897c64c01c33878ac1ccb6919a75c9938d8bcf0e79"
        .. "17ddac13a787cfb5c9a5aea50d24502cf86b5c9b000358c039334ec077afe989"
        .. "36feec0dabfff35f14cafd2cd3173bbd56a7c6e5bf6f5f57c92b59b129918a58"
        .. "95e883e7d999b191aad078c4a5b164144c1beaed58b49ba9be094abf3a3bd9")
      local tx = core.channel(v.key, v.nonce, ("\0"):rep(24))
      local chunk = tx:seal(v.plain)
      assert.are.equal(string.pack(">I2", 153) .. ct, chunk)
      assert.are.equal(v.chunk, chunk)
      local send = tx:nonces()
      assert.are.equal(v.next_nonce, send)
    end)

    it("opens the VECTORS 2 chunk back to the plaintext", function()
      local v = V.vectors2
      local rx = core.channel(v.key, ("\0"):rep(24), v.nonce)
      assert.are.equal(v.plain, rx:open(v.chunk))
      local _, recv = rx:nonces()
      assert.are.equal(v.next_nonce, recv)
    end)

    it("cuts streams into chunks like the generator at every size", function()
      for _, c in ipairs(V.streams.cases) do
        local stream = c.stream or pattern(c.pattern)
        local tx = core.channel(V.streams.key, V.streams.nonce,
          ("\0"):rep(24))
        local sealed = tx:seal(stream, c.chunk_size)
        assert.are.equal(#c.sealed, #sealed, c.name)
        assert.is_true(c.sealed == sealed, c.name)
        assert.are.equal(c.next_nonce, (tx:nonces()), c.name)
        for _, l in ipairs(chunk_sizes(sealed)) do
          assert.is_true(l + 2 <= c.chunk_size, c.name)
        end
      end
    end)

    it("opens generator streams with open_stream, whole and in pieces",
      function()
      for _, c in ipairs(V.streams.cases) do
        local stream = c.stream or pattern(c.pattern)
        local _, rx = pair()
        local plain, rest = rx:open_stream(c.sealed)
        assert.are.equal(0, rest)
        assert.is_true(plain == stream, c.name)
        assert.are.equal(c.next_nonce, select(2, rx:nonces()))
      end
    end)

    it("uses 65535-byte chunks by default (65517 bytes of payload)",
      function()
      local tx = pair()
      local sizes = chunk_sizes(tx:seal(("a"):rep(65517 * 2 + 1)))
      assert.are.same({ 65533, 65533, 17 }, sizes)
    end)

    it("seals nothing for an empty stream", function()
      local tx = pair()
      local before = tx:nonces()
      assert.are.equal("", tx:seal(""))
      assert.are.equal(before, (tx:nonces()))
    end)

    it("opens an empty chunk (length 16, a MAC over nothing)", function()
      local _, rx = pair()
      assert.are.equal("", rx:open(V.streams.empty_chunk))
      assert.are.equal(core.nonce_increment(V.streams.nonce),
        select(2, rx:nonces()))
      local _, rx2 = pair()
      fails("EAUTH", rx2:open(string.pack(">I2", 16) .. ("\0"):rep(16)))
    end)

    it("raises on a chunk_size outside 19..65535", function()
      local tx = pair()
      raises("chunk_size must be an integer in 19..65535", tx.seal, tx, "x",
        18)
      raises("chunk_size must be an integer in 19..65535", tx.seal, tx, "x",
        65536)
    end)

    it("raises on keys and nonces of the wrong size", function()
      raises("32-byte channel key", core.channel, ("k"):rep(31),
        ("\0"):rep(24), ("\0"):rep(24))
      raises("24-byte send nonce", core.channel, ("k"):rep(32),
        ("\0"):rep(25), ("\0"):rep(24))
      raises("24-byte receive nonce", core.channel, ("k"):rep(32),
        ("\0"):rep(24), "")
    end)

    it("fails with EAUTH on a flipped MAC or ciphertext bit", function()
      local v = V.vectors2
      for _, pos in ipairs({ 3, 18, 19, #v.chunk }) do
        local b = v.chunk:byte(pos)
        local bad = v.chunk:sub(1, pos - 1) .. string.char(b ~ 1)
          .. v.chunk:sub(pos + 1)
        local rx = core.channel(v.key, ("\0"):rep(24), v.nonce)
        fails("EAUTH", rx:open(bad))
        -- The receive nonce advanced anyway (Octez does the same).
        assert.are.equal(v.next_nonce, select(2, rx:nonces()))
      end
    end)

    it("fails with EAUTH when opened at the wrong nonce", function()
      local v = V.vectors2
      local rx = core.channel(v.key, ("\0"):rep(24), v.next_nonce)
      fails("EAUTH", rx:open(v.chunk))
    end)

    it("fails with EBADLEN on a length prefix of 0 or 15", function()
      for _, l in ipairs({ 0, 15 }) do
        local _, rx = pair()
        local msg = fails("EBADLEN",
          rx:open(string.pack(">I2", l) .. ("\0"):rep(l)))
        assert.is_truthy(msg:find("below 16", 1, true))
        local _, rx2 = pair()
        local plain, m2, code, before =
          rx2:open_stream(string.pack(">I2", l) .. ("\0"):rep(40))
        fails("EBADLEN", plain, m2, code)
        assert.are.equal("", before)
      end
    end)

    it("fails with ETRUNC on a truncated chunk, nonce untouched", function()
      local v = V.vectors2
      local rx = core.channel(v.key, ("\0"):rep(24), v.nonce)
      fails("ETRUNC", rx:open(v.chunk:sub(1, -2)))
      fails("ETRUNC", rx:open(v.chunk:sub(1, 1)))
      fails("ETRUNC", rx:open(""))
      assert.are.equal(v.nonce, select(2, rx:nonces()))
      fails("EEXTRA", rx:open(v.chunk .. "\0"))
      assert.are.equal(v.plain, rx:open(v.chunk))
    end)

    it("open_stream leaves a partial chunk to the caller at every cut",
      function()
      local c = V.streams.cases[2] -- four messages at 19: many chunks
      local stream = c.stream
      for cut = 0, #c.sealed do
        local _, rx = pair()
        local head = c.sealed:sub(1, cut)
        local p1, rest = assert(rx:open_stream(head))
        assert.is_true(rest >= 0 and rest <= cut)
        assert.is_true(rest < 19) -- never a whole chunk left behind
        local p2, rest2 = assert(rx:open_stream(
          head:sub(cut - rest + 1) .. c.sealed:sub(cut + 1)))
        assert.are.equal(0, rest2)
        assert.is_true(p1 .. p2 == stream)
      end
    end)

    it("open_stream returns the good plaintext before a bad chunk",
      function()
      local tx, rx = pair()
      local good = tx:seal("hello", 19)
      local bad = tx:seal("world", 19)
      bad = bad:sub(1, 5) .. string.char(bad:byte(6) ~ 0x80) .. bad:sub(7)
      local p, msg, code, before = rx:open_stream(good .. bad)
      fails("EAUTH", p, msg, code)
      assert.are.equal("hello", before)
    end)

    it("wipes itself on close; methods then raise", function()
      local tx = pair()
      assert.is_truthy(tostring(tx):find("luap2p.Channel", 1, true))
      tx:close()
      tx:close() -- idempotent
      assert.are.equal("luap2p.Channel (closed)", tostring(tx))
      raises("attempt to use a closed luap2p.Channel", tx.seal, tx, "x")
      raises("attempt to use a closed luap2p.Channel", tx.nonces, tx)
      do
        local ch <close> = pair()
        assert.is_truthy(ch:seal("x"))
      end
    end)
  end)

  describe("MsgReader", function()
    it("returns several messages from one feed", function()
      local r = core.msg_reader()
      local msgs = assert(r:feed(app(0x10, "a") .. app(0x11, "")
        .. "\0\0\0\2\0\2" .. app(0x12, ("z"):rep(1000))))
      assert.are.same({ "\0\16a", "\0\17", "\0\2", "\0\18" .. ("z"):rep(1000) },
        msgs)
      assert.are.equal(0, r:pending())
    end)

    it("reassembles a message cut at every offset, in 2 and 3 pieces",
      function()
      local env = app(0x10, "payload!") .. "\0\0\0\2\0\1"
      for i = 0, #env do
        for j = i, #env, 3 do
          local r = core.msg_reader()
          local got = {}
          for _, piece in ipairs({ env:sub(1, i), env:sub(i + 1, j),
            env:sub(j + 1) }) do
            for _, m in ipairs(assert(r:feed(piece))) do got[#got + 1] = m end
          end
          assert.are.same({ "\0\16payload!", "\0\1" }, got)
          assert.are.equal(0, r:pending())
        end
      end
    end)

    it("feeds byte by byte and counts what it holds", function()
      local env = app(0x20, ("q"):rep(300))
      local r = core.msg_reader()
      for k = 1, #env - 1 do
        assert.are.same({}, assert(r:feed(env:sub(k, k))))
        assert.are.equal(k, r:pending())
      end
      assert.are.same({ env:sub(5) }, assert(r:feed(env:sub(-1))))
      assert.are.equal(0, r:pending())
    end)

    it("fails with EPROTO on a length of 0 or 1 (VECTORS 6)", function()
      local r = core.msg_reader()
      fails("EPROTO", r:feed(unhex("00000000")))
      -- Sticky: the stream cannot be resynchronised.
      fails("EPROTO", r:feed(app(0x10, "x")))
      local r1 = core.msg_reader()
      fails("EPROTO", r1:feed("\0\0\0\1\0"))
    end)

    it("fails with EMSGSIZE over 100 MiB, without allocating", function()
      local r = core.msg_reader()
      local vm0 = vmsize()
      local msg = fails("EMSGSIZE",
        r:feed(string.pack(">I4", 100 * 1024 * 1024 - 3) .. "\0\16"))
      assert.is_truthy(msg:find("104857597", 1, true))
      assert.is_true(r:pending() <= 4)
      fails("EMSGSIZE", r:feed("more"))
      fails("EMSGSIZE", core.msg_reader():feed("\255\255\255\255"))
      -- The largest length Octez accepts (envelope of 100 MiB in all) is
      -- taken, and memory follows the bytes received, not the claim.
      local big = core.msg_reader()
      local gc0 = collectgarbage("count")
      assert.are.same({},
        assert(big:feed(string.pack(">I4", 100 * 1024 * 1024 - 4))))
      assert.are.same({}, assert(big:feed(("\0\16") .. ("x"):rep(998))))
      assert.are.equal(1004, big:pending())
      assert.is_true(collectgarbage("count") - gc0 < 1024)
      if vm0 then
        assert.is_true(vmsize() - vm0 < 50 * 1024,
          "virtual memory grew by " .. (vmsize() - vm0) .. " KiB")
      end
      big:close()
    end)

    it("honours a smaller max_len", function()
      local r = core.msg_reader(10)
      assert.are.same({ "\0\16" .. ("a"):rep(8) },
        assert(r:feed(app(0x10, ("a"):rep(8)))))
      fails("EMSGSIZE", r:feed(app(0x10, ("a"):rep(9))))
      raises("max_len", core.msg_reader, 1)
      raises("max_len", core.msg_reader, 2 ^ 32)
    end)

    it("returns the messages decoded before an error", function()
      local r = core.msg_reader()
      local v, msg, code, before = r:feed(app(0x10, "ok") .. "\0\0\0\0")
      fails("EPROTO", v, msg, code)
      assert.are.same({ "\0\16ok" }, before)
    end)

    it("frees on close; methods then raise", function()
      local r = core.msg_reader()
      assert.are.same({}, r:feed("\0\0"))
      r:close()
      r:close()
      assert.are.equal("luap2p.MsgReader (closed)", tostring(r))
      raises("attempt to use a closed luap2p.MsgReader", r.feed, r, "x")
    end)
  end)

  describe("channel + reader", function()
    it("round-trips payloads of 0, 1, 65517 and 65518 bytes", function()
      for _, n in ipairs({ 0, 1, 65511, 65512, 65517, 65518 }) do
        local payload = pattern(n)
        local env = app(0x10, payload)
        local tx, rx = pair()
        local sealed = tx:seal(env)
        -- ceil((n + 6) / 65517) chunks of at most 65535 bytes
        local want = (n + 6 + 65516) // 65517
        assert.are.equal(want, #chunk_sizes(sealed), "payload " .. n)
        local msgs = receive(rx, core.msg_reader(), sealed, {})
        assert.are.equal(1, #msgs)
        local t = assert(core.msg_decode(msgs[1]))
        assert.is_true(t.payload == payload, "payload " .. n)
      end
    end)

    it("round-trips a 5 MiB message split at many offsets", function()
      local payload = pattern(5 * 1024 * 1024)
      local env = app(0x10, payload) .. "\0\0\0\2\0\1"
      local tx0 = pair()
      local sealed = tx0:seal(env, 65535)
      local n = #sealed
      local plans = {
        {}, { 1 }, { 2 }, { 3 }, { 65536 }, { 65537 }, { n - 1 },
        { 7, 65535 + 2, 65535 + 3, 3 * 65535 }, { n // 2, n // 2 + 1 },
      }
      local regular = {}
      for cut = 1000, n - 1, 99991 do regular[#regular + 1] = cut end
      plans[#plans + 1] = regular
      for _, cuts in ipairs(plans) do
        local _, rx = pair()
        local r = core.msg_reader()
        local msgs = receive(rx, r, sealed, cuts)
        assert.are.equal(2, #msgs)
        assert.is_true(msgs[1] == "\0\16" .. payload)
        assert.are.equal("\0\1", msgs[2])
        assert.are.equal(0, r:pending())
      end
    end)

    it("round-trips at small chunk sizes, cut at every offset", function()
      local env = app(0x10, "abcdefghij") .. "\0\0\0\2\0\2"
        .. app(0x33, pattern(150))
      for _, cs in ipairs({ 19, 20, 100 }) do
        local tx = pair()
        local sealed = tx:seal(env, cs)
        for cut = 0, #sealed do
          local _, rx = pair()
          local msgs = receive(rx, core.msg_reader(), sealed, { cut })
          assert.are.same({ "\0\16abcdefghij", "\0\2",
            "\0\51" .. pattern(150) }, msgs)
        end
      end
    end)
  end)
end)
