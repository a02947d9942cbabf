-- A cold start: every node starts knowing only the seeds (1% of the
-- nodes, at least 3), all within the first 10 seconds. With the default policies (Bootstrap, Advertise, Nack
-- points, maintenance) the network must organise itself: almost every
-- node ends within its connection bounds, in one connected component.
--   luap2p sim examples/sim/cold_start.lua --nodes 1000
return {
  name = "cold_start",
  description = "Every node knows only the seeds and starts within 10 s.",
  nodes = 100,
  seconds = 60,
  seeds = { share = 0.01, min = 3 },
  join = { over = 10 },
  config = { min_connections = 4, expected_connections = 8,
             max_connections = 12 },
  properties = {
    { metric = "converged", max = 45 },
    { metric = "within", min = 0.95, from = -15 },
    { metric = "component", min = 0.99, from = -15 },
    { metric = "policy_errors", max = 0 },
  },
}
