-- Churn: after a cold start, nodes leave and come back 3-10 s later (a
-- fresh identity on the same address, as a restarted node without its
-- identity file) for 25 s, while 5% of the nodes reset all their
-- connections and one worker process is stopped (SIGSTOP) for 5 s. The network must stay connected
-- and most nodes within bounds throughout, and recover by the end.
--   luap2p sim examples/sim/churn.lua --nodes 1000
return {
  name = "churn",
  description = "2% of the nodes leave per second for 25 s and return " ..
    "3-10 s later; connection resets; a process stopped for 5 s.",
  nodes = 100,
  seconds = 60,
  seeds = 3,
  join = { over = 5 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  churn = { from = 15, to = 40, rate = 0.02, downtime = { 3, 10 },
            fresh_identity = true },
  faults = {
    { at = 25, kind = "reset", nodes = 0.05 },
    { at = 30, kind = "stop", process = "random", seconds = 5 },
  },
  properties = {
    { metric = "converged", max = 20 },
    -- During the churn: still one network, few nodes below bounds.
    { metric = "component", min = 0.90, from = 15, to = 50 },
    { metric = "within", min = 0.80, from = 15, to = 50 },
    -- Once every node is back (by 50 s): within bounds, one network.
    { metric = "within", min = 0.95, from = -5 },
    { metric = "component", min = 0.99, from = -5 },
    { metric = "policy_errors", max = 0 },
  },
}
