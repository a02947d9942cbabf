-- A Sybil flood: once the network has settled, identities worth 30% of
-- the honest nodes, from two /24s, dial every honest point they learn
-- (5 a second each) and never let a connection go. The honest nodes must
-- stay one network, each keeping honest peers.
--   luap2p sim examples/sim/sybil.lua --nodes 300
return {
  name = "sybil",
  description = "Sybils worth 30% of the nodes, from two /24s, dial " ..
    "every honest point from t = 15 s.",
  nodes = 100,
  seconds = 60,
  seeds = 3,
  join = { over = 5 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  attacks = {
    { kind = "sybil", at = 15, over = 5, attackers = 0.3, prefixes = 2 },
  },
  properties = {
    { metric = "converged", max = 15 },
    { metric = "component", min = 0.99, from = 15 },
    { metric = "cut_off", max = 0.01, from = 15 },
    { metric = "adversary_share", max = 0.5, from = -10 },
    { metric = "policy_errors", max = 0 },
  },
}
