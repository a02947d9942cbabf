-- rpc deadline: the HTTP server's whole-request deadline, with real
-- sockets on loopback addresses. Without it, clients of enough IPs that
-- each drip one byte under the idle timeout hold every slot (the
-- per-IP cap does not help when they come from many IPs) and an honest
-- client is never served.
local p2p = require "luap2p"
local socket = require "socket"
local h = require "helper"

local core = p2p.core

-- A client that connects from `ip` and sends a request head one byte
-- per tick, forever: when the server cuts it, it connects again.
local HEAD = "GET /dripping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " ..
  string.rep("z", 4096)

local function dripper(ip, port, stats)
  local d = { ip = ip, cuts = 0 }
  function d:open()
    local s = assert(socket.tcp())
    assert(s:bind(ip, 0))
    s:settimeout(0)
    local ok, err = s:connect("127.0.0.1", port)
    assert(ok or err == "timeout", err)
    self.sock, self.sent, self.data = s, 0, ""
  end
  function d:tick()
    -- Cut by the server (EOF or reset, with or without a 408 first)?
    local _, err, got = self.sock:receive(4096)
    self.data = self.data .. (got or "")
    if err and err ~= "timeout" then
      if self.data:match("^HTTP/1%.1 408 ") then
        stats.timeouts = stats.timeouts + 1
      end
      self.sock:close()
      self.cuts = self.cuts + 1
      stats.cuts = stats.cuts + 1
      self:open()
      return
    end
    self.sent = self.sent + 1
    self.sock:send(HEAD:sub(self.sent, self.sent))
  end
  d:open()
  return d
end

describe("rpc deadline", function()
  local keep = h.keeper(before_each, after_each)

  it("drippers from many IPs hold no slot past request_timeout: they " ..
     "are cut, and an honest client is served while they hang on",
    function()
    local a = keep(h.quiet())
    local rpc = require "luap2p.rpc"
    -- Small bounds for a short run: 8 IPs x 4 connections fill the 32
    -- slots; each drips a byte every 0.2 s, well under the idle timeout.
    local srv, port = assert(rpc.new(a):serve("127.0.0.1", 0,
      { max_connections = 32, max_per_ip = 4, idle_timeout = 5,
        request_timeout = 1 }))
    local stats = { cuts = 0, timeouts = 0 }
    local drippers = {}
    for i = 1, 8 do
      for _ = 1, 4 do
        drippers[#drippers + 1] = dripper("127.0.0." .. (10 + i), port,
          stats)
      end
    end
    local tick = core.timer(0.2, 0.2, function()
      for _, d in ipairs(drippers) do d:tick() end
    end)
    local c
    finally(function()
      tick:stop()
      if c then c:close() end
      for _, d in ipairs(drippers) do d.sock:close() end
      srv:close()
    end)
    -- Every slot taken by a dripper.
    h.wait(function() return srv:clients() == 32 end, 10, "32 drippers in")
    -- The honest client, from another address, sends a whole request.
    c = h.raw("127.0.0.1:" .. port)
    assert(c:send("GET /network/self HTTP/1.1\r\nHost: 127.0.0.1\r\n" ..
      "Connection: close\r\n\r\n"))
    h.wait_raw({ c }, function() return c.closed end, 20,
      "the honest client answered")
    assert.matches("^HTTP/1%.1 200 ", c.data)
    assert.matches('"' .. a.peer_id .. '"', c.data, 1, true)
    -- The slots came back because the drippers were cut with a 408, and
    -- they hang on: connected again, they fill the slots once more.
    h.wait(function() return stats.timeouts >= 1 end, 10, "a 408")
    h.wait(function() return srv:clients() == 32 end, 10, "drippers back")
  end)

  it("a full server whose clients all time out accepts again (MHD " ..
     "takes its listening socket back only in a later run)", function()
    local srv, port = assert(core.http_serve("127.0.0.1", 0,
      function() return 200, {}, "ok" end,
      { max_connections = 4, idle_timeout = 1, request_timeout = 60 }))
    local idle = {}
    for i = 1, 4 do
      local s = assert(socket.tcp())
      s:settimeout(0)
      local ok, err = s:connect("127.0.0.1", port)
      assert(ok or err == "timeout", err)
      idle[i] = s
    end
    local ok, err = pcall(h.wait, function() return srv:clients() == 4 end,
      10, "4 idle clients in")
    if ok then
      -- Waiting in the backlog while the idle ones time out.
      local c = h.raw("127.0.0.1:" .. port)
      assert(c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close" ..
        "\r\n\r\n"))
      ok, err = pcall(h.wait_raw, { c }, function() return c.closed end, 10,
        "the waiting client answered")
      c:close()
      if ok then assert.matches("^HTTP/1%.1 200 .*\r\n\r\nok$", c.data) end
    end
    for _, s in ipairs(idle) do s:close() end
    srv:close()
    assert(ok, err)
  end)

  it("takes its deadline from the node config (rpc_request_timeout)",
    function()
    local rpc = require "luap2p.rpc"
    local a = keep(h.quiet({ rpc_request_timeout = 1 }))
    local srv, port = assert(rpc.new(a):serve("127.0.0.1", 0))
    local c = h.raw("127.0.0.1:" .. port)
    finally(function() c:close(); srv:close() end)
    -- Half a head, then silence: the idle timeout (10 s) is not what
    -- cuts it.
    assert(c:send("GET /network/self HTTP/1.1\r\n"))
    h.wait_raw({ c }, function() return c.closed end, 8, "cut")
    assert.matches("^HTTP/1%.1 408 ", c.data)
  end)

  it("does not cut a keep-alive client that sends each request at once",
    function()
    local srv, port = assert(core.http_serve("127.0.0.1", 0,
      function(_, path) return 200, {}, path end,
      { request_timeout = 2, idle_timeout = 60 }))
    local c = h.raw("127.0.0.1:" .. port)
    finally(function() c:close(); srv:close() end)
    -- Three requests on one connection, each sent whole, 1.2 s apart
    -- (3.6 s in all, past the deadline): answered every time, since the
    -- clock starts again after each answer.
    for i = 1, 3 do
      if i > 1 then h.sleep(1.2) end
      assert(c:send("GET /r" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
      h.wait_raw({ c }, function() return c.data:find("/r" .. i, 1, true) end,
        8, "answer " .. i)
    end
    assert.is_false(c.closed)
  end)
end)
