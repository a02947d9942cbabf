-- Helpers for spec/hostile_spec.lua: one luv loop drives everything (the
-- attackers' raw sockets and, through the embedding bridge, luap2p's own
-- loop), raw peers that speak the handshake with core.handshake and then
-- whatever bytes a test wants, honest peers exchanging numbered messages
-- with the node under attack, event tallies and memory readings.
local uv = require "luv"
local p2p = require "luap2p"
local core = p2p.core
local check = require "luassert"

local _M = {}

---------------------------------------------------------------- loops

-- The bridge of examples/embed_luv.lua: luap2p's backend fd in luv's poll,
-- luap2p's next timeout in a luv timer, run_nowait after every wake-up.
local bridge
local function pump()
  local alive = p2p.run_nowait()
  bridge.timer:stop()
  bridge.idle:stop()
  if not alive then return end
  local ms = p2p.backend_timeout()
  if ms == 0 then
    bridge.idle:start(pump)
  elseif ms > 0 then
    bridge.timer:start(ms, 0, pump)
  end
end

function _M.start()
  if bridge then return end
  bridge = { poll = uv.new_poll(p2p.backend_fd()), timer = uv.new_timer(),
             idle = uv.new_idle(), beat = uv.new_timer() }
  bridge.poll:start("r", pump)
  -- A heartbeat bounds every uv.run("once") to 10 ms.
  bridge.beat:start(10, 10, function() end)
end

function _M.stop()
  if not bridge then return end
  for _, k in ipairs{ "poll", "timer", "idle", "beat" } do
    local hnd = bridge[k]
    if not hnd:is_closing() then hnd:close() end
  end
  bridge = nil
  for _ = 1, 10 do
    uv.run("nowait")
    p2p.run_nowait()
  end
end

local function now() return uv.hrtime() / 1e9 end
_M.now = now

-- Drive both loops until pred() holds; raise after timeout seconds.
function _M.wait(pred, timeout, what)
  local deadline = now() + (timeout or 10)
  while not pred() do
    if now() > deadline then
      error("timed out waiting for " .. (what or "condition"), 2)
    end
    pump()
    uv.run("once")
  end
  pump()
end

-- Drive both loops for secs seconds.
function _M.run_for(secs)
  local deadline = now() + secs
  while now() < deadline do
    pump()
    uv.run("once")
  end
  pump()
end

---------------------------------------------------------------- memory

function _M.rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- Under `make sanitize` (LUAP2P_SANITIZE) ASan's quarantine and shadow
-- memory dominate VmRSS: bounds are reported, not enforced.
_M.SANITIZED = os.getenv("LUAP2P_SANITIZE") ~= nil

-- Assert that VmRSS grew by less than bound_kb (not under ASan).
function _M.check_rss(grew_kb, bound_kb, what)
  if _M.SANITIZED then return end
  check.is_true(grew_kb < bound_kb, string.format(
    "%sVmRSS grew by %d KiB (bound %d KiB)", what and (what .. ": ") or "",
    grew_kb, bound_kb))
end

-- Lua heap (KiB, after a full collection) and VmRSS (KiB).
function _M.mem()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count"), _M.rss_kb()
end

---------------------------------------------------------------- events

-- Count every event of node by type and by "type:code"; keep the first
-- few of each type for the report.
function _M.tally(node)
  local t = { by = {}, first = {} }
  node:on("*", function(ev)
    local k = ev.type
    t.by[k] = (t.by[k] or 0) + 1
    if ev.code then
      local kc = k .. ":" .. tostring(ev.code)
      t.by[kc] = (t.by[kc] or 0) + 1
    end
    if not t.first[k] then t.first[k] = ev end
  end)
  function t.count(k) return t.by[k] or 0 end
  function t.summary()
    local keys = {}
    for k in pairs(t.by) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. t.by[k] end
    return table.concat(parts, " ")
  end
  return t
end

-- One report line per test: what the node did and the memory it took.
function _M.report(name, tally, extra)
  io.stdout:write(string.format("\n  [hostile] %s: %s%s\n", name,
    tally and tally.summary() or "", extra and ("; " .. extra) or ""))
  io.stdout:flush()
end

---------------------------------------------------------------- nodes

-- A node on 127.0.0.1 for these specs (default policies on: the acl
-- greylists misbehaving IPs as a deployed node would; the attackers are
-- on 127.x addresses, hence greylist_loopback).
function _M.node(cfg)
  local c = { identity = core.identity_generate(), pow_bits = 0,
              listen = "127.0.0.1:0", min_connections = 0,
              maintenance_interval = 3600, app_messages = "raw",
              greylist_loopback = true }
  for k, v in pairs(cfg or {}) do c[k] = v end
  local node = assert(p2p.new(c))
  node.addr = "127.0.0.1:" .. node.port
  return node
end

-- An identity whose stamp meets `bits` of proof of work.
function _M.identity_with_pow(bits)
  local id = core.identity_generate()
  if bits > 0 then
    local stamp = core.pow_search(id:public_key(), bits)
    id:set_stamp(stamp)
  end
  return id
end

local function nconns(node)
  local n = 0
  for _ in pairs(node.conns) do n = n + 1 end
  return n
end
_M.nconns = nconns

--[[ Honest traffic. n honest nodes connect to victim; every `period`
seconds each sends "seq:<i>" to the victim, which echoes it back. After
stop(), every message must have come back, in order, and no honest node
may have seen an error event or a disconnection. ]]
function _M.honest(victim, n, opts)
  opts = opts or {}
  local H = { peers = {}, errors = {}, sent = 0, echoed = 0 }
  victim:on("message", function(ev)
    local payload = ev.payload
    if payload:sub(1, 4) == "seq:" then ev.conn:send(payload) end
  end)
  for i = 1, n do
    local peer = _M.node{ identity = opts.identity and opts.identity(i) or
                            core.identity_generate(),
                          default_policies = false }
    local rec = { node = peer, next_send = 1, next_echo = 1, gaps = 0 }
    peer:on("message", function(ev)
      local k = tonumber(ev.payload:match("^seq:%d+:(%d+)$"))
      if k ~= rec.next_echo then rec.gaps = rec.gaps + 1 end
      rec.next_echo = (k or rec.next_echo) + 1
      H.echoed = H.echoed + 1
    end)
    peer:on("*", function(ev)
      if ev.type == "disconnected" or ev.type == "auth_failed" or
         ev.type == "policy_error" or ev.type == "decoding_error" or
         ev.type == "nacked" then
        H.errors[#H.errors + 1] = ev.type .. " " .. tostring(ev.code) ..
          " " .. tostring(ev.reason or ev.message)
      end
    end)
    assert(peer:connect(victim.addr))
    H.peers[i] = rec
  end
  _M.wait(function()
    for _, r in ipairs(H.peers) do
      if nconns(r.node) ~= 1 then return false end
    end
    return true
  end, 10, "honest peers connected")
  local period = opts.period or 0.02
  H.timer = p2p.every(period, function()
    for i, r in ipairs(H.peers) do
      local conn = r.node:connections()[1]
      if conn then
        local ok, err = conn:send(string.format("seq:%d:%d", i, r.next_send))
        if ok then
          r.next_send = r.next_send + 1
          H.sent = H.sent + 1
        else
          H.errors[#H.errors + 1] = "send " .. tostring(err)
        end
      end
    end
  end)
  -- Stop sending, collect every echo, then check: no loss, no gap, no
  -- error. Returns a short text for the report.
  function H.finish(timeout)
    H.timer:stop()
    _M.wait(function() return H.echoed >= H.sent end, timeout or 10,
      "honest echoes")
    for _, r in ipairs(H.peers) do
      check.are.equal(0, r.gaps, "a gap in the honest echoes")
      check.are.equal(r.next_send, r.next_echo)
    end
    check.are.same({}, H.errors)
    return string.format("honest: %d peers, %d messages sent, %d echoed, " ..
      "0 lost, 0 errors", #H.peers, H.sent, H.echoed)
  end
  function H.close()
    for _, r in ipairs(H.peers) do r.node:close() end
  end
  return H
end

---------------------------------------------------------------- raw peers

local function envelope(tag, payload)
  return string.pack(">I4I2", #payload + 2, tag) .. payload
end
_M.envelope = envelope

local Raw = {}
Raw.__index = Raw

--[[ A raw TCP peer from source address src (any 127.x.y.z) to the node's
port. opts.handshake: run the client side of the handshake (identity
opts.identity, default a fresh one without proof of work), then call
opts.on_established(raw). opts.on_connect(raw): called once TCP is up.
raw.closed is set (with raw.why) when the node closes the socket. ]]
function _M.raw(port, src, opts)
  opts = opts or {}
  local self = setmetatable({ tcp = uv.new_tcp(), buf = "", state =
    "connecting", received = 0, opts = opts }, Raw)
  if src then
    local ok, err = self.tcp:bind(src, 0)
    if not ok then
      self:close(err)
      return self
    end
  end
  local ok, err = self.tcp:connect("127.0.0.1", port, function(cerr)
    if cerr then return self:close(cerr) end
    if self.state == "closed" then return end
    self.state = "connected"
    if opts.handshake then
      self.hs = core.handshake{ identity = opts.identity or
        core.identity_generate(), incoming = false, pow_bits = 0,
        advertised_port = opts.port }
      self:write(self.hs:output())
    end
    if opts.on_connect then opts.on_connect(self) end
    if self.state ~= "closed" and not opts.no_read then
      self.tcp:read_start(function(rerr, data) self:_on_read(rerr, data) end)
    end
  end)
  if not ok then self:close(err) end
  return self
end

function Raw:_on_read(err, data)
  if err or not data then return self:close(err or "EOF") end
  self.received = self.received + #data
  if self.state ~= "connected" or not self.hs then return end
  self.buf = self.buf .. data
  while true do
    local ev, used = self.hs:feed(self.buf)
    if not ev then return self:close("handshake: " .. tostring(used)) end
    self.buf = self.buf:sub(used + 1)
    local out = self.hs:output()
    if #out > 0 then self:write(out) end
    if ev == "metadata" then
      assert(self.hs:ack())
      self:write(self.hs:output())
    elseif ev == "acked" then
      self.ch = assert(self.hs:channel())
      self.state = "established"
      if self.opts.on_established then self.opts.on_established(self) end
      return
    elseif ev == "nacked" then
      return self:close("nacked")
    elseif used == 0 or #self.buf == 0 then
      return
    end
  end
end

function Raw:write(bytes)
  if self.state == "closed" or #bytes == 0 then return end
  self.tcp:write(bytes)
end

-- An application message sealed with the channel (one or more chunks).
function Raw:seal_app(payload, tag)
  return self.ch:seal(envelope(tag or 0x10, payload))
end

function Raw:close(why)
  if self.state == "closed" then return end
  self.state = "closed"
  self.closed = true
  self.why = why
  if self.hs then self.hs:close() end
  if self.ch then self.ch:close() end
  if not self.tcp:is_closing() then self.tcp:close() end
end

--[[ Flood: write `sealed` (bytes already sealed with raw's channel, so
in nonce order) as fast as the socket takes it, keeping at most `window`
bytes queued in luv. Returns a handle; flood.sent counts bytes written,
flood:stop() stops it. ]]
function _M.flood(raw, sealed, window)
  local F = { sent = 0, pos = 1 }
  window = window or 256 * 1024
  F.timer = uv.new_timer()
  local function push()
    if raw.closed or F.pos > #sealed then return end
    while raw.tcp:get_write_queue_size() < window and F.pos <= #sealed do
      local piece = sealed:sub(F.pos, F.pos + 65535)
      F.pos = F.pos + #piece
      F.sent = F.sent + #piece
      raw:write(piece)
      if raw.closed then return end
    end
  end
  F.timer:start(0, 1, push)
  function F.stop()
    if not F.timer:is_closing() then F.timer:close() end
  end
  return F
end

--[[ Ping round trips: peer (a luap2p node connected to victim, which
echoes "rtt:<i>") sends one ping every `period` s; rtts[i] in seconds.
stop() stops sending; lost() counts pings not answered. ]]
function _M.pinger(victim, peer, period)
  local P = { sent = {}, rtts = {}, n = 0 }
  victim:on("message", function(ev)
    if ev.payload:sub(1, 4) == "rtt:" then ev.conn:send(ev.payload) end
  end)
  peer:on("message", function(ev)
    local i = tonumber(ev.payload:match("^rtt:(%d+)$"))
    if i and P.sent[i] then
      P.rtts[#P.rtts + 1] = now() - P.sent[i]
      P.sent[i] = nil
    end
  end)
  P.timer = p2p.every(period or 0.01, function()
    local conn = peer:connections()[1]
    if not conn then return end
    P.n = P.n + 1
    P.sent[P.n] = now()
    conn:send("rtt:" .. P.n)
  end)
  function P.stop() P.timer:stop() end
  function P.reset() P.rtts = {} end
  function P.lost()
    local k = 0
    for _ in pairs(P.sent) do k = k + 1 end
    return k
  end
  -- median and p99 of the round trips so far, in ms
  function P.stats()
    local s = {}
    for i, v in ipairs(P.rtts) do s[i] = v end
    table.sort(s)
    if #s == 0 then return 0, 0, 0 end
    local med = s[(#s + 1) // 2]
    local p99 = s[math.max(1, math.ceil(#s * 0.99))]
    return med * 1e3, p99 * 1e3, #s
  end
  return P
end

-- Source address number i in 127.<a>.<b>.<c> (never 127.0.0.1).
function _M.src(a, i)
  return string.format("127.%d.%d.%d", a, (i // 250) % 250, i % 250 + 2)
end

return _M
