-- luap2p.policies.acl: the Octez access-control list (docs/PROTOCOL.md §7-8).
--
-- Greylist: an IP whose connection fails authentication or sends
-- malformed data (EPOW, EAUTH, EMSGSIZE, EPROTO, EBADLEN, ETRUNC, EEXTRA;
-- never ETIMEDOUT or EOF), or a message that does not decode (the
-- decoding_error event: a bad point in an Advertise, a shell message
-- that is not one) is banned for config.greylist_timeout seconds
-- (86 400 by default). The IP only, never the port. The greylist is an
-- LRU of at most config.greylist_size IPs kept in node.state: a flood of
-- fresh IPs evicts (and unbans) the least recently greylisted ones, so
-- memory stays bounded. The peer id of an authenticated connection that
-- misbehaves is greylisted too (a FIFO of 1023, as Octez).
--
-- Admin bans: every node:ban() that is not a greylist entry (an operator,
-- another policy) is recorded and, when config.ban_file is set, persisted
-- there as JSON and re-applied at start. node:unban() removes a target
-- from the bans, the greylists and the file.
--
-- A peer past a message rate limit ("rate_exceeded": Bootstrap, Advertise
-- and Swap messages, or application messages, over the node's
-- p2p_message_* / app_message_* buckets) is greylisted and closed too.
--
-- Trusted points and peers are never greylisted, nor the IP of a trusted
-- point; loopback addresses (127.0.0.0/8, ::1) are not either unless
-- config.greylist_loopback is true: a local test network or a probe run
-- on the node's own machine must not lock the operator out for a day.
local json = require "luap2p.json"
local p2p = require "luap2p"
local common = require "luap2p.policies.common"

local error, io, os, pairs, pcall, tonumber, tostring, type =
      error, io, os, pairs, pcall, tonumber, tostring, type

local now = p2p.now
local walltime = p2p.core.walltime

-- Octez greylists on these (bad proof of work, authentication or MAC,
-- oversize, encoding and chunking errors). Timeouts and EOF are not
-- misbehaviour.
local GREYLIST_CODES = {
  EPOW = true, EAUTH = true, EMSGSIZE = true, EPROTO = true, EBADLEN = true,
  ETRUNC = true, EEXTRA = true,
}
local PEER_GREYLIST_SIZE = 1023 -- Octez peer_greylist_size
local REFRESH = 1 -- s: a second report of the same IP within this is a no-op

local _M = {
  name = "acl",
  description = "IP and peer greylist (bounded LRU), persistent admin bans",
  -- What its event hook reads.
  events = { "auth_failed", "disconnected", "rate_exceeded",
             "decoding_error", "banned", "unbanned" },
  _GREYLIST_CODES = GREYLIST_CODES,
}

---------------------------------------------------------------- LRU

-- A bounded LRU of keys: a hash to doubly linked nodes, most recent at
-- head. Plain tables only, so it lives in node.state across reloads.
local function lru_new()
  return { map = {}, head = nil, tail = nil, size = 0 }
end

local function lru_unlink(l, n)
  if n.prev then n.prev.next = n.next else l.head = n.next end
  if n.next then n.next.prev = n.prev else l.tail = n.prev end
  n.prev, n.next = nil, nil
end

local function lru_push(l, n)
  n.next = l.head
  if l.head then l.head.prev = n end
  l.head = n
  if not l.tail then l.tail = n end
end

local function lru_remove(l, key)
  local n = l.map[key]
  if not n then return nil end
  lru_unlink(l, n)
  l.map[key] = nil
  l.size = l.size - 1
  return n
end

-- Insert or refresh key; returns its node.
local function lru_touch(l, key)
  local n = l.map[key]
  if n then
    lru_unlink(l, n)
  else
    n = { key = key }
    l.map[key] = n
    l.size = l.size + 1
  end
  lru_push(l, n)
  return n
end

---------------------------------------------------------------- state

-- node.state.acl (luap2p.policies.common: per-node state).
local function state(node)
  return common.state(node, "acl", function()
    return { ips = lru_new(), peers = lru_new(), admin = {}, dirty = false,
             loaded = false, own = { banned = {}, unbanned = {} } }
  end)
end

-- The IP of a point "a.b.c.d:port" / "[v6]:port", or the string itself
-- when it is already a bare address.
local function ip_of(point)
  if type(point) ~= "string" then return nil end
  local host = p2p.split_point(point)
  return host or point
end

-- Ban through the node while counting it as ours, so the "banned" event
-- that node:ban emits is not mistaken for an admin ban. The event reaches
-- the hook once the event being delivered is (events come in causal
-- order), so a count per target, not a flag around the call, says which
-- are ours.
local function own(s, kind, target, d)
  s.own = s.own or { banned = {}, unbanned = {} } -- state of an older acl
  local n = (s.own[kind][target] or 0) + d
  s.own[kind][target] = n > 0 and n or nil
end

local function quiet_ban(node, s, target, seconds, reason)
  own(s, "banned", target, 1)
  local ok, done = pcall(node.ban, node, target, seconds, reason,
    { kick = false })
  if not (ok and done) then own(s, "banned", target, -1) end -- no event
  if not ok then error(done, 0) end
end

local function quiet_unban(node, s, target)
  own(s, "unbanned", target, 1)
  local ok, err = pcall(node.unban, node, target)
  if not ok then
    own(s, "unbanned", target, -1)
    error(err, 0)
  end
end

-- Drop from the LRU l every entry over cap or already expired (the tail
-- is the oldest, and every entry lives the same timeout).
local function evict(node, s, l, cap)
  local t = now()
  while l.tail and (l.size > cap or l.tail.expires <= t) do
    local n = l.tail
    lru_remove(l, n.key)
    if not s.admin[n.key] and n.expires > t then
      quiet_unban(node, s, n.key)
    end
  end
end

local function greylisted(l, key)
  local n = l.map[key]
  return n ~= nil and n.expires > now()
end

local function loopback(ip)
  return ip ~= nil and (ip:match("^127%.%d+%.%d+%.%d+$") ~= nil or
    ip == "::1" or ip:match("^::ffff:127%.") ~= nil)
end
_M._loopback = loopback

-- True when ip is the address of a trusted point.
local function trusted_ip(node, ip)
  for p, rec in pairs(node.points) do
    if rec.trusted and p2p.split_point(p) == ip then return true end
  end
  return false
end

-- Put key (an IP or a peer id; nil: nothing) on one greylist, an LRU of
-- at most cap entries, unless an admin ban holds it or it was put there
-- less than REFRESH ago. True when it was (re)added.
local function grey(node, s, list, key, secs, why, cap)
  if not key or s.admin[key] then return false end
  local t = now()
  local n = list.map[key]
  if n and t - n.added < REFRESH then return false end
  n = lru_touch(list, key)
  n.added, n.expires = t, t + secs
  quiet_ban(node, s, key, secs, "greylist: " .. tostring(why))
  evict(node, s, list, cap)
  return true
end

-- Greylist an IP (and, for an authenticated connection, its peer id).
-- Returns true when something was added.
function _M._greylist(node, ip, peer_id, why)
  local s = state(node)
  local cfg = node.config
  local secs = cfg.greylist_timeout
  if secs <= 0 or cfg.greylist_size <= 0 then return false end
  if ip and ((loopback(ip) and not cfg.greylist_loopback) or
             trusted_ip(node, ip)) then
    ip = nil
  end
  local ip_added = grey(node, s, s.ips, ip, secs, why, cfg.greylist_size)
  return grey(node, s, s.peers, peer_id, secs, why, PEER_GREYLIST_SIZE) or
    ip_added
end

-- Read-only views for operators and specs.
function _M._greylist_size(node)
  local s = state(node)
  return s.ips.size, s.peers.size
end

function _M._is_greylisted(node, target)
  local s = state(node)
  return greylisted(s.ips, target) or greylisted(s.peers, target)
end

---------------------------------------------------------------- ban file

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- Write the admin bans to config.ban_file, atomically (temp + rename).
local function flush(node, s)
  local path = node.config.ban_file
  s.dirty = false
  if not path then return end
  local bans = {}
  local wall = walltime()
  for target, b in pairs(s.admin) do
    if not b.until_wall or b.until_wall > wall then
      bans[target] = { ["until"] = b.until_wall, reason = b.reason }
    end
  end
  local text = json.encode({ version = 1, bans = bans })
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("ban_file: cannot write: " .. tostring(err), 0) end
  f:write(text, "\n")
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("ban_file: cannot rename: " .. tostring(rerr), 0) end
end

local function mark_dirty(node, s)
  if s.dirty or not node.config.ban_file then return end
  s.dirty = true
  -- Coalesce a burst of bans into one write, off the hook's call path.
  node:after(0, function()
    if s.dirty then flush(node, s) end
  end)
end

-- Re-apply the bans saved in config.ban_file (expired ones are dropped).
local function load_bans(node, s)
  local path = node.config.ban_file
  if not path then return end
  local text = read_file(path)
  if not text or text:match("^%s*$") then return end
  local doc, err = json.decode(text)
  if type(doc) ~= "table" or type(doc.bans) ~= "table" then
    error("ban_file " .. path .. ": not a luap2p ban file (" ..
      tostring(doc and "no 'bans' object" or err) .. ")", 0)
  end
  local wall = walltime()
  for target, b in pairs(doc.bans) do
    local u = type(b) == "table" and tonumber(b["until"]) or nil
    local reason = type(b) == "table" and type(b.reason) == "string" and
      b.reason or nil
    if type(target) == "string" and (not u or u > wall) then
      s.admin[target] = { until_wall = u, reason = reason }
      local secs = u and (u - wall) or nil
      quiet_ban(node, s, target, secs, reason)
    end
  end
end

---------------------------------------------------------------- hooks

function _M.check(node)
  local c = node.config
  if type(c.greylist_timeout) ~= "number" or c.greylist_timeout < 0 then
    return false, "config.greylist_timeout must be a number >= 0"
  end
  if type(c.greylist_size) ~= "number" or c.greylist_size < 0 then
    return false, "config.greylist_size must be a number >= 0"
  end
  return true
end

function _M.start(node)
  local s = state(node)
  if not s.loaded then
    s.loaded = true
    load_bans(node, s)
  end
end

function _M.stop(node)
  local s = state(node)
  if s.dirty then flush(node, s) end
end

local function trusted(node, point, peer_id)
  return node:trusted(point, peer_id)
end

function _M.event(node, ev)
  local t = ev.type
  if (t == "auth_failed" or t == "disconnected") and ev.code and
     GREYLIST_CODES[ev.code] then
    if trusted(node, ev.point, ev.peer_id) then return end
    -- The peer id of a connection that never authenticated is not proven
    -- (anyone can send another node's public key): greylist it only for
    -- an established connection.
    local peer = t == "disconnected" and ev.conn and ev.peer_id or nil
    _M._greylist(node, ip_of(ev.point), peer, ev.code)
  elseif t == "rate_exceeded" then
    -- A peer past its message rate limit (the core already throttles it):
    -- greylist its IP and peer id and close, as Octez does with peers
    -- that misbehave. A trusted peer is only throttled.
    local conn = ev.conn
    if trusted(node, ev.point, ev.peer_id) then return end
    _M._greylist(node, ip_of(conn and conn.addr or ev.point), ev.peer_id,
      "rate exceeded (" .. tostring(ev.kind) .. ")")
    if conn and not conn.closed then conn:close("rate exceeded") end
  elseif t == "decoding_error" then
    -- A message that does not decode: greylist the peer and its IP
    -- (Octez p2p_conn.ml: greylister ~motive:"decoding error"). Whoever
    -- reports it closes the connection (the core, with the error's code).
    local conn = ev.conn
    if not trusted(node, ev.point, ev.peer_id) then
      _M._greylist(node, ip_of(conn and conn.addr or ev.point), ev.peer_id,
        ev.code or "EPROTO")
    end
  elseif t == "banned" then
    local s = state(node)
    if type(ev.target) ~= "string" then return end
    if s.own and s.own.banned[ev.target] then
      return own(s, "banned", ev.target, -1)
    end
    -- An admin ban wins over a greylist entry for the same target.
    lru_remove(s.ips, ev.target)
    lru_remove(s.peers, ev.target)
    s.admin[ev.target] = {
      -- Sub-second: a 0.2 s ban saved now has expired 0.2 s later, not
      -- at the next whole second.
      until_wall = ev.seconds and ev.seconds > 0 and
        walltime() + ev.seconds or nil,
      reason = ev.reason,
    }
    mark_dirty(node, s)
  elseif t == "unbanned" then
    local s = state(node)
    if type(ev.target) ~= "string" then return end
    if s.own and s.own.unbanned[ev.target] then
      return own(s, "unbanned", ev.target, -1)
    end
    lru_remove(s.ips, ev.target)
    lru_remove(s.peers, ev.target)
    if s.admin[ev.target] then
      s.admin[ev.target] = nil
      mark_dirty(node, s)
    end
  end
end

return _M
