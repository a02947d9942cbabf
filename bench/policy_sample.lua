-- A small file policy for the reload figure (bench/idle.lua): file
-- policies are what node:reload() swaps. It has an opinion on nothing, so
-- the node behaves as with the default stack alone.
local seen = 0

return {
  name = "bench_sample",
  description = "benchmark policy: counts events, decides nothing",
  event = function(node, ev)
    seen = seen + 1
  end,
  accept = function(node, point)
    return nil
  end,
  migrate = function(node, old)
    return true
  end,
}
