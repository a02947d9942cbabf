-- The send path: small messages share chunks through the plaintext queue;
-- of a large one only the envelope and head are copied, the rest is lent
-- (the Lua string stays referenced) and sealed later in whole chunks
-- straight from the string. Whatever the
-- mix, sizes at and around chunk boundaries, backpressure from a peer
-- that stops reading, or a close with data pending: every message
-- arrives once, whole and in order, and the queue keeps its bounds.
local p2p = require "luap2p"
local h = require "helper"
local core = p2p.core

-- Deterministic bytes that differ at every offset (a misplaced or
-- repeated chunk changes what arrives): a xorshift stream, 1 MiB.
local BASE do
  local t, x = {}, 0x9e3779b97f4a7c15
  for i = 1, 1 << 17 do
    x = x ~ (x << 13)
    x = x ~ (x >> 7)
    x = x ~ (x << 17)
    t[i] = string.pack("<i8", x)
  end
  BASE = table.concat(t)
end

-- Message i of `size` bytes: its number first (when it fits), then BASE
-- from an offset that depends on i.
local function message(i, size)
  local head = string.pack(">I4", i)
  if size < 4 then return head:sub(5 - size) end
  local body, off = {}, (i * 7919) % #BASE
  local need = size - 4
  while need > 0 do
    local piece = BASE:sub(off + 1, off + need)
    body[#body + 1] = piece
    need = need - #piece
    off = 0
  end
  return head .. table.concat(body)
end

local function pair(keep, acfg, bcfg)
  local a = keep(h.quiet(acfg))
  local b = keep(h.quiet(bcfg))
  assert(b:connect(a.addr))
  h.wait(function() return h.nconns(a) == 1 and h.nconns(b) == 1 end, 5,
    "connection")
  return a, b, a:connections()[1], b:connections()[1]
end

-- Send every message of `sizes` from cb to ca (in pull mode) and check
-- that each arrives whole and in order. lazy: ca's inbox is drained only
-- when send says EQUEUEFULL (ca stops reading while its inbox is full,
-- so TCP and then the sender's queue fill up), else after every send.
-- Returns how many sends met EQUEUEFULL and the most bytes queued.
local function stream(ca, cb, sizes, lazy, timeout)
  local got, sent, full, max_queued = 0, 0, 0, 0
  local function take()
    while true do
      local payload, tag = ca:recv()
      if payload == nil then return end
      got = got + 1
      assert.equal(0x10 + got % 0x100, tag)
      local want = message(got, sizes[got])
      if payload ~= want then
        error(string.format("message %d of %d bytes: got %d bytes, %s",
          got, #want, #payload, payload:sub(1, 4) == want:sub(1, 4) and
          "same number, other content" or "another message"))
      end
    end
  end
  h.wait(function()
    while sent < #sizes do
      local ok, err, code = cb:send(message(sent + 1, sizes[sent + 1]),
        0x10 + (sent + 1) % 0x100)
      if not ok then
        assert.equal("EQUEUEFULL", code, err)
        full = full + 1
        break
      end
      sent = sent + 1
      local q = cb:stat().queued_bytes
      if q > max_queued then max_queued = q end
      if not lazy then take() end
    end
    -- Reading resumes as the inbox drains: the loop has work to wake on.
    take()
    return got == #sizes
  end, timeout or 20, "every message")
  return full, max_queued
end

-- Each size alone, then after a small message that leaves the queue
-- holding a partial chunk, then alone again.
local function around(sizes, small)
  local out = {}
  for _, s in ipairs(sizes) do
    out[#out + 1] = s
    out[#out + 1] = small
    out[#out + 1] = s
  end
  return out
end

describe("send path", function()
  local keep = h.keeper(before_each, after_each)

  it("keeps messages at and around chunk boundaries whole and in order",
    function()
    -- 1000-byte chunks: 982 bytes of plaintext each, 976 of payload with
    -- the envelope.
    local P = 1000 - 18
    local _, _, ca, cb = pair(keep, nil, { binary_chunks_size = 1000 })
    ca:pull(true)
    stream(ca, cb, around({ 0, 1, 3, P - 7, P - 6, P - 5, P - 1, P, P + 1,
                            2 * P - 6, 2 * P - 1, 2 * P, 2 * P + 1, 3 * P,
                            10 * P, 10 * P + 5, 64 * 1024, 300000 }, 5),
      false)
  end)

  it("writes a large message cut into small chunks in few, large writes",
    function()
    -- This process's write calls (Linux /proc/self/io: syscw); the two
    -- nodes are the only writers here.
    local function writes()
      local f = assert(io.open("/proc/self/io"))
      local n = tonumber(f:read("a"):match("syscw:%s*(%d+)"))
      f:close()
      return n
    end
    local _, _, ca, cb = pair(keep, nil, { binary_chunks_size = 1000 })
    ca:pull(true)
    local before = writes()
    stream(ca, cb, { 1 << 20 }, false)
    local n = writes() - before
    -- 1 MiB is 1068 chunks of 1000 bytes: batches of about 64 KiB make
    -- some 17 writes; a write per chunk would make over a thousand.
    assert.is_true(n < 100, n .. " writes for 1 MiB in 1000-byte chunks")
  end)

  it("holds little of a peer that floods small messages: reads stay " ..
     "small while it cannot dispatch them all", function()
    -- The receiver dispatches read_pass_messages (256) per loop pass;
    -- what a read brought beyond that waits in the connection's stash.
    -- Reads of 1 MiB would stash about 1 MiB; after a read that yields,
    -- reads are 64 KiB.
    local _, _, ca, cb = pair(keep, { incoming_app_message_queue_size =
      100000, app_message_rate = 0 }, { outgoing_queue_bytes = 64 << 20,
      outgoing_message_queue_size = 1 << 20 })
    local a = ca.node
    ca:pull(true)
    local N, msg = 100000, string.rep("x", 100)
    for _ = 1, N do assert(cb:send(msg, 0x10)) end
    local got, most = 0, 0
    h.wait(function()
      local stashed = a:stat().buffered_stashed
      if stashed > most then most = stashed end
      while ca:recv() do got = got + 1 end
      return got == N
    end, 30, "every message")
    assert.is_true(most > 0, "nothing was ever stashed: the test is moot")
    assert.is_true(most < 256 * 1024, most .. " bytes stashed at most")
  end)

  it("keeps messages at the largest chunk's boundaries whole and in order",
    function()
    local P = 65535 - 18
    local _, _, ca, cb = pair(keep)
    ca:pull(true)
    stream(ca, cb, around({ P - 6, P - 1, P, P + 1, 2 * P, 2 * P + 7,
                            64 * 1024, 1 << 20 }, 17), false)
  end)

  it("keeps a mix of small and large messages in order under backpressure",
    function()
    -- The receiver's inbox holds 4 messages and it reads only when the
    -- sender is stuck: its TCP window fills, the sender's queue (256 KiB)
    -- fills and send says EQUEUEFULL, many times over.
    local QUEUE = 256 * 1024
    local _, _, ca, cb = pair(keep,
      { incoming_app_message_queue_size = 4 },
      { outgoing_queue_bytes = QUEUE, binary_chunks_size = 4096 })
    ca:pull(true)
    local sizes, x = {}, 12345
    for i = 1, 1500 do
      x = (x * 1103515245 + 12345) % 2147483648
      local r = x % 100
      -- mostly small, some around a chunk (4078 bytes), some large
      sizes[i] = r < 60 and x % 200 or r < 80 and 4070 + x % 16 or
        r < 95 and 20000 + x % 50000 or 200000 + x % 300000
    end
    local full, max_queued = stream(ca, cb, sizes, true, 60)
    assert.is_true(full > 0, "send never met EQUEUEFULL")
    -- One message may overshoot the bound only when the queue was empty.
    assert.is_true(max_queued <= QUEUE + 500000 + 6, "queued " .. max_queued)
  end)

  it("lets a peer that stopped reading take everything once it reads " ..
     "again, then closes gracefully with data pending", function()
    local QUEUE = 1 << 20
    local a, _, ca, cb = pair(keep, { incoming_app_message_queue_size = 2 },
      { outgoing_queue_bytes = QUEUE })
    ca:pull(true)
    -- The receiver stops reading (pull mode, inbox never drained): send
    -- until the queue is full, and check that it stays within its bound.
    local sizes, sent, max_queued = {}, 0, 0
    local deadline = core.now() + 20
    while true do
      assert(core.now() < deadline, "timed out waiting for EQUEUEFULL")
      local size = sent % 3 == 0 and 100000 or 300
      local ok, err, code = cb:send(message(sent + 1, size), 0x10)
      if not ok then
        assert.equal("EQUEUEFULL", code, err)
        break
      end
      sent = sent + 1
      sizes[sent] = size
      local q = cb:stat().queued_bytes
      if q > max_queued then max_queued = q end
      core.run("nowait")
    end
    assert.is_true(max_queued <= QUEUE + 100000 + 6, "queued " .. max_queued)
    assert.is_true(cb:stat().queued_bytes > 0)
    -- Close with all that pending: it is sent first, the Disconnect last.
    local reason
    ca:on("close", function(ev) reason = ev.reason end)
    assert(cb:close("done"))
    local got = 0
    h.wait(function()
      while true do
        local payload = ca:recv()
        if payload == nil then break end
        got = got + 1
        assert.equal(message(got, sizes[got]), payload)
      end
      return got == sent and reason ~= nil
    end, 20, "every message, then the Disconnect")
    assert.equal("disconnected by peer", reason)
    assert.equal(0, h.nconns(a))
  end)

  it("drops what is pending when the node closes, holding nothing",
    function()
    local a, b, ca, cb = pair(keep)
    local big = message(1, 3 << 20)
    for _ = 1, 3 do
      local ok, _, code = cb:send(big)
      assert.is_true(ok or code == "EQUEUEFULL")
    end
    assert.is_true(cb:stat().queued_bytes > 0)
    b:close()
    h.wait(function() return ca.closed ~= nil end, 5, "the peer's close")
    assert.equal(0, h.nconns(a))
  end)

  -- Payloads of 16 KiB and more are lent to the core (a registry
  -- reference to the Lua string) until sealed or dropped: none may stay
  -- referenced, or every one would stay in the Lua heap.
  local function heap_kib()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
  end

  it("gives every lent payload back once it is sent", function()
    local _, _, ca, cb = pair(keep)
    local got = 0
    ca:on("message", function() got = got + 1 end)
    local before = heap_kib()
    local sent = 0
    h.wait(function()
      while sent < 40 do
        -- 40 distinct strings of 512 KiB: 20 MiB if they were kept
        local ok, err, code = cb:send(message(sent + 1, 512 * 1024))
        if not ok then
          assert.equal("EQUEUEFULL", code, err)
          break
        end
        sent = sent + 1
      end
      return got == 40
    end, 20, "every message")
    local grown = heap_kib() - before
    assert.is_true(grown < 4096, string.format("heap grew %.0f KiB", grown))
  end)

  it("gives every lent payload back when the connection closes with them " ..
     "pending", function()
    local a, _, ca, cb = pair(keep, { incoming_app_message_queue_size = 1 })
    ca:pull(true) -- reads one message, then stops
    local before = heap_kib()
    local sent = 0
    while sent < 40 do
      local ok, err, code = cb:send(message(sent + 1, 512 * 1024))
      if not ok then
        assert.equal("EQUEUEFULL", code, err)
        break
      end
      sent = sent + 1
    end
    assert.is_true(cb:stat().queued_bytes > 512 * 1024)
    -- The receiver goes away: the sender's connection fails (a close of
    -- our own would linger to send what is queued).
    a:close()
    h.wait(function() return cb.closed ~= nil end, 5, "the close")
    local grown = heap_kib() - before
    assert.is_true(grown < 4096, string.format("heap grew %.0f KiB", grown))
  end)
end)
