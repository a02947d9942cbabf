-- Bootstrap poisoning: one of the four bootstrap points every node starts
-- with belongs to a poisoner, who accepts everyone and answers Bootstrap,
-- Nacks and unasked Advertises (every 2 s) with points where nothing
-- listens (127.199/16). The network must still form. (With 5 poisoners
-- among 8 bootstrap points it does not: see README, Network simulation.)
--   luap2p sim examples/sim/poison.lua --nodes 300
return {
  name = "poison",
  description = "A poisoned bootstrap point answers with 200 points " ..
    "where nothing listens.",
  nodes = 100,
  seconds = 60,
  seeds = 3,
  join = { over = 10 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  attacks = {
    { kind = "poison", at = 0, attackers = 1, unreachable = 200 },
  },
  properties = {
    { metric = "converged", max = 40 },
    { metric = "within", min = 0.95, from = -10 },
    { metric = "component", min = 0.99, from = -10 },
    { metric = "policy_errors", max = 0 },
  },
}
