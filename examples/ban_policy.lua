-- A custom ban policy for `luap2p node --policy examples/ban_policy.lua`
-- (or p2p.new{ policies = { "examples/ban_policy.lua" } }).
--
--   * A peer that sends more than MSG_LIMIT application messages within
--     WINDOW seconds, or more than BOOTSTRAP_LIMIT Bootstrap requests, is
--     banned for BAN_SECONDS; banning drops its connection, and the core's
--     ban table refuses it afterwards before any policy runs.
--   * BLOCKLIST: peer ids, IPs, IP/prefixes or points banned for good. Edit
--     the table and send SIGHUP (kill -HUP <pid>): the file is reloaded,
--     new entries are banned and removed ones unbanned, and no other
--     connection is dropped.
-- Hooks get the node first. Returning nil means "no opinion": the next
-- policy (in the end the Octez defaults) decides.
local BLOCKLIST = {
  -- ["idtsDq6fbavcCzg41K4uZBvocZAhZ9"] = "known spammer",
  -- ["203.0.113.0/24"] = "abusive network",
  -- ["198.51.100.7:9732"] = "misbehaving point",
}
local WINDOW = 10          -- seconds
local MSG_LIMIT = 100      -- application messages per window
local BOOTSTRAP_LIMIT = 10 -- Bootstrap requests per window
local BAN_SECONDS = 600

local _M = {
  name = "ban_policy",
  description = "ban message and Bootstrap floods; a static blocklist",
}

-- State that must survive a reload lives in node.state.
local function state(node)
  local s = node.state.ban_policy
  if not s then
    s = { applied = {}, rates = {} }
    node.state.ban_policy = s
  end
  return s
end

-- At start and after each reload: apply the list, lift what was removed.
function _M.start(node)
  local s = state(node)
  for target in pairs(s.applied) do
    if not BLOCKLIST[target] then
      node:unban(target)
      s.applied[target] = nil
    end
  end
  for target, why in pairs(BLOCKLIST) do
    if not s.applied[target] then
      node:ban(target, nil, why)
      s.applied[target] = true
    end
  end
end

-- Count one `kind` from conn's peer; true when it went over `limit`.
local function over(node, conn, kind, limit)
  local s = state(node)
  local key = kind .. " " .. tostring(conn.peer_id)
  local now = os.time()
  local r = s.rates[key]
  if not r or now - r.since >= WINDOW then
    r = { since = now, count = 0 }
    s.rates[key] = r
  end
  r.count = r.count + 1
  return r.count > limit
end

local function punish(node, conn, why)
  -- Messages already queued on the connection still arrive once: ban once.
  if not node:banned(conn.peer_id) then
    node:ban(conn.peer_id, BAN_SECONDS, why)
  end
  return true -- handled: nothing more for this message
end

function _M.message(node, conn)
  if over(node, conn, "message", MSG_LIMIT) then
    return punish(node, conn, "message flood")
  end
  return nil -- deliver it as usual
end

function _M.bootstrap(node, conn)
  if over(node, conn, "bootstrap", BOOTSTRAP_LIMIT) then
    return punish(node, conn, "bootstrap flood")
  end
  return nil -- let the answerer reply
end

function _M.disconnect(node, conn)
  local s = state(node)
  s.rates["message " .. tostring(conn.peer_id)] = nil
  s.rates["bootstrap " .. tostring(conn.peer_id)] = nil
end

return _M
