-- luap2p.cli.ban_policy: the blocklist policy of the `luap2p demo` guard
-- node. A peer whose id is in node.state.blocklist (peer id -> reason) is
-- banned for an hour as soon as it authenticates, and its connection is
-- closed before any Ack: later attempts meet the core's ban table.
-- examples/ban_policy.lua is a fuller version for `luap2p node --policy`.
local _M = {
  name = "ban_policy",
  description = "ban the peer ids listed in node.state.blocklist",
}

local BAN_SECONDS = 3600

function _M.authenticated(node, info)
  local list = node.state.blocklist
  local why = list and list[info.peer_id]
  if not why then return nil end -- no opinion: the next policy decides
  node:ban(info.peer_id, BAN_SECONDS, why)
  return "close", "banned: " .. why
end

return _M
