-- Slow peers: 10% of the nodes live in a process that is stopped for 2 s
-- out of every 4 (they stall mid-handshake and mid-message). The other
-- nodes must still converge and stay connected.
--   luap2p sim examples/sim/slow.lua --nodes 300
return {
  name = "slow",
  description = "10% of the nodes stall 2 s in every 4.",
  nodes = 100,
  seconds = 60,
  seeds = 3,
  join = { over = 5 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  attacks = {
    { kind = "slow", at = 0, nodes = 0.1, stop = 2, every = 4 },
  },
  properties = {
    { metric = "converged", max = 30 },
    { metric = "within", min = 0.95, from = -10 },
    { metric = "component", min = 0.99, from = 10 },
    { metric = "policy_errors", max = 0 },
  },
}
