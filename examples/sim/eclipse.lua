-- An eclipse attempt: once the network has settled, 30 attackers from one
-- /24 go after one target. They dial it again as soon as a connection
-- ends, answer Bootstrap and Swap_request with each other's points only,
-- and advertise each other to everyone they meet. The target must keep
-- honest connections; the rest of the network must not be cut off.
--   luap2p sim examples/sim/eclipse.lua --nodes 1000
return {
  name = "eclipse",
  description = "30 attackers from one /24 try to fill one target's " ..
    "connection slots from t = 15 s.",
  nodes = 100,
  seconds = 60,
  seeds = 3,
  join = { over = 5 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  attacks = {
    { kind = "eclipse", at = 15, attackers = 30, prefixes = 1,
      target = "random" },
  },
  properties = {
    { metric = "converged", max = 15 },
    { metric = "target_honest", min = 3, from = 15 },
    { metric = "target_share", max = 0.75, from = 15 },
    { metric = "component", min = 0.99, from = 15 },
    { metric = "policy_errors", max = 0 },
  },
}
