-- message: the P2P message codec (core.msg_encode / core.msg_decode).
-- Known answers: TezEdge tezos/messages/tests/ (tezedge/tezedge @ feba75be45ce;
-- encoding_peer.rs, encoding_peer_message.rs; copied here) and
-- spec/vectors/gen_frame.py (envelopes built in Python from Octez
-- p2p_message.ml) -> spec/vectors/frame.lua.
local core = require "luap2p.core"
local C = require "check"
local fails, raises, unhex = C.fails, C.raises, C.unhex
local V = dofile("spec/vectors/frame.lua")

-- The decoded table a case's input table should give back.
local function expected(t, tag)
  local e = { type = t.type, tag = tag }
  for k, v in pairs(t) do e[k] = v end
  return e
end

local TAGS = { disconnect = 1, bootstrap = 2, advertise = 3,
               swap_request = 4, swap_ack = 5 }

-- TezEdge tezos/messages/tests/encoding_peer.rs.
local ADVERTISE_PAYLOAD = "0000001e5b666538303a3a653832383a323039643a32306"
  .. "53a633061655d3a333735000000133233342e3132332e3132342e39313a39383736"
  .. "000000133132332e3132332e3132342e32313a39383736"
local ADVERTISE_POINTS = { "[fe80::e828:209d:20e:c0ae]:375",
  "234.123.124.91:9876", "123.123.124.21:9876" }


describe("message", function()
  after_each(function() collectgarbage() collectgarbage() end)

  describe("VECTORS 6", function()
    it("encodes and decodes Bootstrap as 000000020002", function()
      assert.are.equal(unhex("000000020002"),
        core.msg_encode({ type = "bootstrap" }))
      local r = core.msg_reader()
      local msgs = assert(r:feed(unhex("000000020002")))
      assert.are.same({ type = "bootstrap", tag = 2 },
        assert(core.msg_decode(msgs[1])))
    end)

    it("encodes Disconnect as 000000020001", function()
      assert.are.equal(unhex("000000020001"),
        core.msg_encode({ type = "disconnect" }))
    end)

    it("decodes the Advertise payload to its three points", function()
      local body = "\0\3" .. unhex(ADVERTISE_PAYLOAD)
      assert.are.same({ type = "advertise", tag = 3,
        points = ADVERTISE_POINTS }, assert(core.msg_decode(body)))
      assert.are.equal(string.pack(">I4", #body) .. body,
        core.msg_encode({ type = "advertise", points = ADVERTISE_POINTS }))
    end)

    it("rejects the empty envelope 00000000 (EPROTO)", function()
      fails("EPROTO", core.msg_reader():feed(unhex("00000000")))
    end)

    it("rejects two messages in one envelope (EEXTRA)", function()
      local msgs = assert(core.msg_reader():feed(unhex("0000000400020001")))
      assert.are.equal(1, #msgs)
      fails("EEXTRA", core.msg_decode(msgs[1]))
    end)

    it("bounds the swap point at 47 bytes and the peer id at 16", function()
      -- swap_max has a point of allowed length but 47 'x' are no address:
      -- Octez's P2p_point.Id.of_string_exn rejects it too. The same
      -- layout with a real 47-byte point decodes.
      local swap_max = unhex("0000002f" .. ("78"):rep(47) .. ("79"):rep(16))
      fails("EPOINT", core.msg_decode("\0\4" .. swap_max))
      local p47 = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
      assert.are.equal(47, #p47)
      assert.are.same({ type = "swap_request", tag = 4, point = p47,
        peer_id = ("y"):rep(16) },
        core.msg_decode("\0\4" .. string.pack(">s4", p47) .. ("y"):rep(16)))
      fails("EPOINT", core.msg_decode("\0\4" .. unhex("00000030"
        .. ("78"):rep(48) .. ("79"):rep(16))))
      fails("EPOINT", core.msg_decode("\0\4" .. unhex("0000002f"
        .. ("78"):rep(46) .. ("79"):rep(17))))
    end)
  end)

  describe("generator cases", function()
    it("encodes every case to the generator's bytes", function()
      for _, c in ipairs(V.messages) do
        assert.are.equal(c.env, core.msg_encode(c.t), c.name)
      end
    end)

    it("decodes every case back to its table", function()
      for _, c in ipairs(V.messages) do
        local r = core.msg_reader()
        local msgs = assert(r:feed(c.env))
        assert.are.equal(1, #msgs, c.name)
        local tag = c.t.tag or TAGS[c.t.type]
        assert.are.same(expected(c.t, tag), assert(core.msg_decode(msgs[1])),
          c.name)
      end
    end)

    it("rejects every bad body with the expected error", function()
      for _, c in ipairs(V.bad_messages) do
        local v, msg, code = core.msg_decode(c.body)
        assert.is_nil(v, c.name)
        assert.are.equal(c.err, code, c.name)
        assert.are.equal(c.err .. ": ", msg:sub(1, #c.err + 2), c.name)
      end
    end)

    it("names the tag of an unknown message", function()
      local msg = fails("EPROTO", core.msg_decode("\0\6"))
      assert.is_truthy(msg:find("0x0006", 1, true))
      fails("EPROTO", core.msg_decode("\0\0"))
      fails("EPROTO", core.msg_decode("\0\15"))
    end)
  end)

  describe("application messages", function()
    it("keeps tags >= 0x10 and their payload opaque", function()
      for _, tag in ipairs({ 0x10, 0x11, 0x20, 0x60, 0x100, 0xffff }) do
        local payload = "\0\1\2" .. string.char(tag % 256) .. "\255"
        local env = core.msg_encode({ type = "message", tag = tag,
          payload = payload })
        assert.are.equal(string.pack(">I4I2", #payload + 2, tag) .. payload,
          env)
        assert.are.same({ type = "message", tag = tag, payload = payload },
          core.msg_decode(env:sub(5)))
      end
    end)

    it("defaults the payload to empty", function()
      assert.are.equal("\0\0\0\2\0\16",
        core.msg_encode({ type = "message", tag = 16 }))
    end)

    it("refuses an envelope over 100 MiB (EMSGSIZE)", function()
      local payload = ("x"):rep(100 * 1024 * 1024 - 5)
      fails("EMSGSIZE", core.msg_encode({ type = "message", tag = 16,
        payload = payload }))
      payload = nil
      collectgarbage()
    end)
  end)

  describe("bad tables", function()
    local cases = {
      { "type: string expected", {} },
      { "type: unknown message type 'hello'", { type = "hello" } },
      { "points: array of point strings expected", { type = "advertise" } },
      { "points[2]: EPOINT: no port",
        { type = "advertise", points = { "1.2.3.4:1", "1.2.3.4" } } },
      { "points[1]: point string expected, got number",
        { type = "advertise", points = { 7 } } },
      { "point: point string expected, got nil",
        { type = "swap_request", peer_id = ("i"):rep(16) } },
      { "point: EPOINT: port out of range",
        { type = "swap_ack", point = "1.2.3.4:65536",
          peer_id = ("i"):rep(16) } },
      { "peer_id: 16-byte string expected",
        { type = "swap_ack", point = "1.2.3.4:1" } },
      { "peer_id: 16 bytes expected, got 15",
        { type = "swap_request", point = "1.2.3.4:1",
          peer_id = ("i"):rep(15) } },
      { "tag: integer in 16..65535 expected", { type = "message", tag = 15 } },
      { "tag: integer in 16..65535 expected",
        { type = "message", tag = 65536 } },
      { "tag: integer in 16..65535 expected", { type = "message" } },
      { "payload: string expected",
        { type = "message", tag = 16, payload = {} } },
    }
    for _, c in ipairs(cases) do
      it("raises '" .. c[1] .. "'", function()
        raises("msg_encode' (" .. c[1], core.msg_encode,
          c[2])
      end)
    end

    it("raises on Advertise with 101 points, takes 100", function()
      local pts = {}
      for i = 1, 101 do pts[i] = "10.0.0." .. (i % 256) .. ":" .. i end
      raises("points: at most 100 points, got 101", core.msg_encode,
        { type = "advertise", points = pts })
      pts[101] = nil
      local env = core.msg_encode({ type = "advertise", points = pts })
      assert.are.equal(100, #core.msg_decode(env:sub(5)).points)
    end)

    it("raises when the argument is not a table", function()
      raises("table expected", core.msg_encode, "bootstrap")
      raises("string expected", core.msg_decode, {})
    end)
  end)
end)
