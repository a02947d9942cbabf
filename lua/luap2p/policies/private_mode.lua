-- luap2p.policies.private_mode: Octez private mode (docs/PROTOCOL.md §7-8).
--
-- Active only when node.config.private_mode is set; otherwise every hook
-- returns nil (no opinion). In private mode:
--   * outgoing: node:connect() to a point that is not trusted is refused;
--   * incoming: after authentication, a peer whose point and peer id are
--     both untrusted is closed (after the hard checks, in Octez order:
--     a Too_many_connections Nack still wins, Already_connected does not);
--   * Bootstrap, Advertise, Swap_request and Swap_ack from peers are
--     consumed and ignored (the answerer never sees them).
-- The metadata flag private_node = true is sent by the core itself
-- (config.private_mode), which asks peers not to advertise us.
local _M = {
  name = "private_mode",
  description = "only trusted points and peers, in and out",
}

local function on(node) return node.config.private_mode == true end

function _M.connect(node, point, opts)
  if not on(node) then return nil end
  local rec = node.points[point]
  if (opts and opts.trusted) or node:trusted(point, rec and rec.peer_id) then
    return nil
  end
  return false, "private mode: point not trusted"
end

function _M.authenticated(node, info)
  if not on(node) then return nil end
  -- Hard refusals that Octez checks before private mode keep their
  -- default verdict (a Nack with its motive, or a close).
  if info.refusal and info.refusal ~= "EALREADY" then return nil end
  if node:trusted(info.point, info.peer_id) then return nil end
  return "close", "private mode: point or peer not trusted"
end

-- Peers' discovery messages are logged by the event stream, never acted on.
local function ignore(node)
  if on(node) then return true end
  return nil
end

_M.bootstrap = ignore
_M.advertise = ignore
_M.swap_request = ignore
_M.swap_ack = ignore

return _M
