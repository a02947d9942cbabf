-- luap2p sim: run a network simulation scenario (luap2p.sim.coordinator)
-- and exit 0 only when every property it states held.
local util = require "luap2p.cli.util"

local io, ipairs, math, string = io, ipairs, math, string

local _M = {}

local LAG_WARN = 0.5 -- s of loop lag worth a warning
local PORT_TRIES = 5 -- runs on a random port before giving up

function _M.define(parser)
  local cmd = parser:command("sim",
      "Simulate a network of nodes on loopback addresses and check the " ..
      "scenario's properties.")
    :epilog("Each node listens on its own 127.x.y.z address; nodes run " ..
      "in worker processes\n(many per process). Writes DIR/report.html, " ..
      "DIR/summary.json, DIR/samples.jsonl.\nExit 0 when every property " ..
      "of the scenario held, 1 otherwise.\n" ..
      "Example: luap2p sim examples/sim/cold_start.lua --nodes 200")
  cmd:argument("scenario", "Scenario file (Lua, returns a table).")
  cmd:option("--nodes", "Honest nodes (the scenario's count otherwise).")
    :argname("N"):convert(util.integer(2, 50000, "--nodes"))
  cmd:option("--processes", "Worker processes.")
    :argname("K"):convert(util.integer(1, 256, "--processes"))
  cmd:option("--seconds", "Simulated seconds.")
    :argname("S"):convert(util.number(1, 86400, "--seconds"))
  cmd:option("--report", "Report directory (default build/sim/NAME).")
    :argname("DIR")
  cmd:option("--seed", "Seed of the plan (joins, churn, targets).")
    :argname("N"):convert(util.integer(1, 2 ^ 31, "--seed"))
  cmd:option("--port", "Port every node listens on (default random).")
    :argname("PORT"):convert(util.integer(1024, 65535, "--port"))
  cmd:flag("--quiet", "Print only the summary.")
end

function _M.run(args)
  util.line_buffered()
  util.check_readable(args.scenario, "scenario file")
  local coordinator = require "luap2p.sim.coordinator"
  local res, err
  for _ = 1, args.port and 1 or PORT_TRIES do
    res, err = coordinator.run({
      scenario = args.scenario, nodes = args.nodes,
      processes = args.processes, seconds = args.seconds,
      report = args.report, seed = args.seed,
      -- Lua 5.4 seeds math.random per process (time and address): two
      -- runs at once pick different ports, and a clash (another program
      -- on that port of some 127.x address) retries with another one.
      port = args.port or math.random(20000, 32000),
      say = not args.quiet and function(line)
        io.stdout:write(line, "\n")
      end,
    })
    local failure = res and res.summary.failure or err
    if not (failure and failure:find("EADDRINUSE", 1, true)) then break end
    if not args.quiet then
      io.stdout:write("sim: port in use, starting again on another\n")
    end
  end
  if not res then util.fail(err) end
  local s = res.summary
  local w = function(fmt, ...) io.stdout:write(string.format(fmt, ...)) end
  w("%s: %d honest nodes, bounds [%d, %d]: %s\n", s.scenario, s.honest,
    s.bounds[1], s.bounds[2], s.converged_at and string.format(
      "converged in %.1f s (%.1f s after the last join)", s.converged_at,
      s.converged_at - s.last_join) or "did not converge")
  w("cost: %.1f CPU s, %.2f ms CPU per node per simulated second, " ..
    "%.0f kB RSS per node\n", s.cost.cpu_seconds,
    1000 * s.cost.cpu_share_per_node, s.cost.rss_kb_per_node)
  if s.max_lag > LAG_WARN then
    w("warning: worker loops ran up to %.1f s late: the machine is " ..
      "overloaded and every time above is stretched\n", s.max_lag)
  end
  local failed = 0
  for _, p in ipairs(res.properties) do
    w("  [%s] %s: %s\n", p.ok and "ok" or "FAILED", p.text, p.detail or "")
    if not p.ok then failed = failed + 1 end
  end
  w("report: %s/report.html\n", res.report_dir)
  io.stdout:flush()
  if s.failure then util.fail(s.failure) end
  if failed > 0 then
    util.fail(string.format("%d of %d properties failed", failed,
      #res.properties))
  end
  return util.EXIT_OK
end

return _M
