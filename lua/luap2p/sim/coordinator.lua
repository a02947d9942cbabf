-- luap2p.sim.coordinator: runs a simulation. It makes the plan, writes it
-- to the report directory, starts the worker processes (each a Lua
-- process running its share of the nodes), tells them to go (SIGUSR1)
-- once all are ready, stops and resumes processes for the faults
-- (SIGSTOP / SIGCONT), reads their JSON lines from pipes, and once a
-- sample period builds one sample of the whole network from their latest
-- reports. At the end it checks the scenario's properties and writes
-- samples.jsonl, summary.json and report.html.
--
-- Its loop is luv's (processes, pipes, signals); the nodes live only in
-- the workers.
local json = require "luap2p.json"
local metrics = require "luap2p.sim.metrics"
local report = require "luap2p.sim.report"
local scenario = require "luap2p.sim.scenario"

local io, ipairs, math, os, package, pairs, string, table, tostring =
      io, ipairs, math, os, package, pairs, string, table, tostring

local _M = {}

local READY_WAIT = 60 -- s for every worker to report ready
local END_GRACE = 30  -- s after the end for the workers to exit

-- The Lua interpreter running us: the lowest negative index of arg.
local function interpreter()
  local lua = os.getenv("LUAP2P_LUA")
  if lua then return lua end
  local a = _G.arg
  if a then
    local i = 0
    while a[i - 1] do i = i - 1 end
    if i < 0 and not a[i]:find("busted") then return a[i] end
  end
  return "lua5.4"
end

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return true
end

local function mkdir_p(dir)
  local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  return ok
end

-- opts: scenario (path), nodes, processes, seconds, seed, port, report
-- (dir), say (function(line), progress output). Returns a result table:
-- { ok, properties, summary, report_dir } or nil, message.
function _M.run(opts)
  local say = opts.say or function() end
  local ok_uv, uv = pcall(require, "luv")
  if not ok_uv then
    return nil, "ENOENT: luap2p sim needs luv (Debian: apt-get install " ..
      "lua-luv; LuaRocks: luarocks install luv)"
  end
  local sc, err = scenario.load(opts.scenario)
  if not sc then return nil, err end
  local okp, plan = pcall(scenario.plan, sc, {
    nodes = opts.nodes, processes = opts.processes, seconds = opts.seconds,
    seed = opts.seed, port = opts.port })
  if not okp then return nil, tostring(plan) end
  local dir = opts.report or ("build/sim/" .. plan.name)
  if not mkdir_p(dir) then return nil, "cannot create " .. dir end
  local plan_path = dir .. "/plan.json"
  local wok, werr = write_file(plan_path, scenario.encode(plan))
  if not wok then return nil, werr end
  local out = assert(io.open(dir .. "/samples.jsonl", "w"))

  local nadv = #plan.nodes - plan.honest
  say(string.format("sim %s: %d honest nodes%s in %d process(es), %d s, " ..
    "bounds [%d, %d], port %d", plan.name, plan.honest,
    nadv > 0 and string.format(" + %d adversaries", nadv) or "",
    plan.workers, plan.seconds, plan.bounds[1], plan.bounds[2], plan.port))

  local lua = interpreter()
  local env = {
    "LUA_PATH=" .. package.path, "LUA_CPATH=" .. package.cpath,
    "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
  }
  local workers = {}
  local nready, nexited = 0, 0
  local started, t_go = false, nil
  local reports = {}
  local samples, hist = {}, {}
  local failure
  local timers = {}
  local stopped = {} -- worker -> true while SIGSTOPped
  local max_lag = 0   -- s: the worst loop lag a worker reported

  local function timer(ms, rep, fn)
    uv.update_time() -- the loop's time is stale after work outside it
    local t = uv.new_timer()
    t:start(ms, rep or 0, fn)
    timers[#timers + 1] = t
    return t
  end

  local function kill_all(sig)
    for _, wk in ipairs(workers) do
      if wk.handle and not wk.exited then
        if stopped[wk.w] then pcall(wk.handle.kill, wk.handle, "sigcont") end
        pcall(wk.handle.kill, wk.handle, sig)
      end
    end
  end

  local function abort(msg)
    if failure then return end
    failure = msg
    say("sim: " .. msg)
    kill_all("sigterm")
  end

  local function elapsed() return (uv.hrtime() - t_go) / 1e9 end

  local last_said = -math.huge
  local function take_sample(final)
    if not t_go then return end
    for w, r in pairs(reports) do r.stale = stopped[w] or nil end
    local t = final and plan.seconds or elapsed()
    -- The workers are done: the final sample comes from their "end".
    if not final and t > plan.seconds then return end
    local s, h = metrics.sample(plan, reports, t)
    samples[#samples + 1] = s
    hist = h
    if s.lag > max_lag then max_lag = s.lag end
    out:write(json.encode(s), "\n")
    if t - last_said >= 5 or final then
      last_said = t
      say(string.format("t=%5.1fs honest %d, degree %d/%d/%d " ..
        "(min/median/max), within bounds %.1f%%, largest component " ..
        "%.1f%%, diameter~%d%s%s", t, s.honest_alive, s.deg_min,
        s.deg_median, s.deg_max, 100 * s.within, 100 * s.component,
        s.diameter, s.target_share and string.format(", target: %d " ..
        "honest, attackers %.0f%%", s.target_honest, 100 * s.target_share)
        or "", s.stale > 0 and " (" .. s.stale .. " stopped)" or ""))
    end
  end

  local function go()
    started = true
    t_go = uv.hrtime()
    for _, wk in ipairs(workers) do wk.handle:kill("sigusr1") end
    -- Samples half a period after the workers' own.
    timer(math.floor(plan.sample * 1500), math.floor(plan.sample * 1000),
      function() take_sample(false) end)
    for _, a in ipairs(plan.actions) do
      if a.kind == "stop" then
        local wk = workers[a.worker]
        timer(math.floor(a.at * 1000), 0, function()
          if wk and not wk.exited then
            stopped[wk.w] = true
            wk.handle:kill("sigstop")
          end
        end)
        timer(math.floor((a.at + a.seconds) * 1000), 0, function()
          if wk and not wk.exited then
            wk.handle:kill("sigcont")
            stopped[wk.w] = nil
            wk.resumed = uv.hrtime()
          end
        end)
      end
    end
    timer(math.floor((plan.seconds + END_GRACE) * 1000), 0, function()
      abort("workers did not finish in time")
      kill_all("sigkill")
    end)
  end

  local function on_line(wk, line)
    local msg = json.decode(line)
    if type(msg) ~= "table" then
      io.stderr:write("sim worker ", wk.w, ": ", line, "\n")
      return
    end
    if msg.type == "ready" then
      nready = nready + 1
      if nready == #workers and not started and not failure then go() end
    elseif msg.type == "sample" or msg.type == "end" then
      -- The lag of a process just resumed from SIGSTOP is the stop, not
      -- the machine: not counted.
      if stopped[wk.w] or (wk.resumed and
          uv.hrtime() - wk.resumed < (plan.sample + 1) * 1e9) then
        msg.lag = 0
      end
      reports[wk.w] = msg
      -- A node that cannot start (its address in use: another run on
      -- the same port?) makes the whole run meaningless.
      if msg.errors and not wk.reported then
        wk.reported = true
        abort(string.format("worker %d cannot start %s", wk.w,
          table.concat(msg.errors, "; ")))
      end
      if msg.type == "end" then wk.ended = true end
    end
  end

  for w = 1, plan.workers do
    local wk = { w = w, buf = "" }
    workers[w] = wk
    local pipe = uv.new_pipe(false)
    local code = string.format(
      "os.exit(require('luap2p.sim.worker').main(%q, %d))", plan_path, w)
    -- Each worker may use every descriptor the hard limit allows.
    local handle, pid = uv.spawn("/bin/sh", {
      args = { "-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"',
               lua, "-e", code },
      stdio = { nil, pipe, 2 }, env = env,
    }, function(status, signal)
      wk.exited = true
      nexited = nexited + 1
      if (status ~= 0 or signal ~= 0) and not wk.ended and not failure then
        abort(string.format("worker %d exited (status %d, signal %d)", w,
          status, signal))
      end
      if nexited == #workers then uv.stop() end
    end)
    if not handle then
      abort("cannot start a worker: " .. tostring(pid))
      break
    end
    wk.handle, wk.pid, wk.pipe = handle, pid, pipe
    pipe:read_start(function(rerr, data)
      if rerr or not data then
        if not pipe:is_closing() then pipe:close() end
        return
      end
      wk.buf = wk.buf .. data
      while true do
        local nl = wk.buf:find("\n", 1, true)
        if not nl then break end
        local line = wk.buf:sub(1, nl - 1)
        wk.buf = wk.buf:sub(nl + 1)
        on_line(wk, line)
      end
    end)
  end
  timer(READY_WAIT * 1000, 0, function()
    if not started then abort("workers not ready in time") end
  end)
  local sigs = {}
  for _, name in ipairs({ "sigint", "sigterm" }) do
    local s = uv.new_signal()
    s:start(name, function() abort("interrupted") end)
    sigs[#sigs + 1] = s
  end

  local wall0 = uv.hrtime()
  if #workers > 0 then uv.run() end
  for _, t in ipairs(timers) do if not t:is_closing() then t:close() end end
  for _, s in ipairs(sigs) do s:close() end
  for _, wk in ipairs(workers) do
    if wk.handle and not wk.handle:is_closing() then wk.handle:close() end
    if wk.pipe and not wk.pipe:is_closing() then wk.pipe:close() end
  end
  -- Every handle is closing: this returns once their callbacks ran (luv
  -- crashes at exit on handles still closing).
  uv.run()
  if failure and #samples == 0 then
    out:close()
    return nil, failure
  end
  take_sample(true)
  out:close()

  local conv, last_join = metrics.convergence(plan, samples)
  local props, all = metrics.check(plan, samples, conv)
  if failure then all = false end
  local last = samples[#samples]
  local histogram = {}
  for d, n in pairs(hist) do histogram[#histogram + 1] = { d, n } end
  table.sort(histogram, function(a, b) return a[1] < b[1] end)
  local wall = (uv.hrtime() - wall0) / 1e9
  local summary = {
    scenario = plan.name, description = plan.description,
    honest = plan.honest, adversaries = nadv, processes = plan.workers,
    seconds = plan.seconds, bounds = plan.bounds, config = plan.config,
    converged_at = conv, last_join = last_join, final = last,
    histogram = histogram, properties = props, ok = all, failure = failure,
    wall_seconds = wall, seed = plan.seed, max_lag = max_lag,
    cost = {
      cpu_seconds = last.cpu, rss_kb = last.rss,
      cpu_per_node = last.hosted > 0 and last.cpu / last.hosted or 0,
      cpu_share_per_node = last.hosted > 0 and
        last.cpu / last.hosted / plan.seconds or 0,
      rss_kb_per_node = last.hosted > 0 and last.rss / last.hosted or 0,
    },
  }
  write_file(dir .. "/summary.json", json.encode(summary))
  write_file(dir .. "/report.html", report.html(plan, samples, summary))
  return { ok = all, properties = props, summary = summary,
           report_dir = dir, samples = samples }
end

return _M
