-- luap2p.sim.metrics: from the workers' latest reports to one sample of
-- the whole network (degrees against the bounds, components, diameter,
-- attack shares, counters, cost), and the scenario's properties checked
-- against the samples. Pure Lua: no I/O.
local ipairs, math, pairs, string, table, tostring, type =
      ipairs, math, pairs, string, table, tostring, type

local _M = {}

-- Sample fields a property may name, with what they mean (README).
_M.METRICS = {
  within = "share of live honest nodes with min <= connections <= max",
  component = "share of live honest nodes in the largest honest component",
  cut_off = "share of live honest nodes without any honest neighbour",
  deg_min = "fewest connections of a live honest node",
  deg_median = "median connections of live honest nodes",
  deg_max = "most connections of a live honest node",
  diameter = "diameter estimate of the largest honest component (hops)",
  adversary_share = "share of honest nodes' connections held by adversaries",
  target_honest = "honest connections of the eclipse target",
  target_share = "share of the eclipse target's connections held by " ..
    "attackers",
  honest_alive = "live honest nodes",
  policy_errors = "policy errors in every node so far",
}

local function bfs(adj, start, allowed)
  local dist = { [start] = 0 }
  local queue, head = { start }, 1
  local far, fard = start, 0
  while head <= #queue do
    local v = queue[head]
    head = head + 1
    local d = dist[v]
    for u in pairs(adj[v] or {}) do
      if dist[u] == nil and allowed[u] then
        dist[u] = d + 1
        queue[#queue + 1] = u
        if d + 1 > fard then far, fard = u, d + 1 end
      end
    end
  end
  return dist, far, fard, queue
end

-- One sample from reports (worker -> its latest "sample" line).
-- plan: the plan; t: seconds since go. Also returns the degree histogram
-- of the honest nodes (degree -> count).
function _M.sample(plan, reports, t)
  local nodes = plan.nodes
  local adj, deg, alive = {}, {}, {}
  local counters, causes = {}, {}
  local cpu, rss, hosted = 0, 0, 0
  local stale, lag = 0, 0
  for _, r in pairs(reports) do
    if r.stale then stale = stale + 1 end
    for _, row in ipairs(r.nodes) do
      local i = row[1]
      alive[i] = true
      deg[i] = #row - 1
    end
    for k, v in pairs(r.counters or {}) do
      counters[k] = (counters[k] or 0) + v
    end
    for k, v in pairs(r.causes or {}) do
      causes[k] = (causes[k] or 0) + v
    end
    if (r.lag or 0) > lag then lag = r.lag end
    cpu = cpu + (r.cpu or 0)
    rss = rss + (r.rss or 0)
    hosted = hosted + (r.hosted or 0)
  end
  -- Edges between live nodes, from either end's report.
  for _, r in pairs(reports) do
    for _, row in ipairs(r.nodes) do
      local i = row[1]
      for k = 2, #row do
        local j = row[k]
        if j ~= 0 and j ~= i and alive[j] then
          adj[i] = adj[i] or {}
          adj[j] = adj[j] or {}
          adj[i][j] = true
          adj[j][i] = true
        end
      end
    end
  end
  local lo, hi = plan.bounds[1], plan.bounds[2]
  local honest, degs = {}, {}
  local within, cut, adv_links, links, touched = 0, 0, 0, 0, 0
  local hist = {}
  for i in pairs(alive) do
    if nodes[i].role ~= "adversary" then
      honest[i] = true
      local d = deg[i]
      degs[#degs + 1] = d
      hist[d] = (hist[d] or 0) + 1
      if d >= lo and d <= hi then within = within + 1 end
      local h, a = 0, 0
      for j in pairs(adj[i] or {}) do
        if nodes[j].role == "adversary" then a = a + 1 else h = h + 1 end
      end
      if h == 0 then cut = cut + 1 end
      if a > 0 then touched = touched + 1 end
      adv_links = adv_links + a
      links = links + a + h
    end
  end
  table.sort(degs)
  local nh = #degs
  -- Largest component of the honest subgraph.
  local seen, best, best_size, ncomp = {}, nil, 0, 0
  local order = {}
  for i in pairs(honest) do order[#order + 1] = i end
  table.sort(order)
  for _, i in ipairs(order) do
    if not seen[i] then
      ncomp = ncomp + 1
      local _, _, _, q = bfs(adj, i, honest)
      for _, v in ipairs(q) do seen[v] = true end
      if #q > best_size then best, best_size = i, #q end
    end
  end
  -- Diameter: two double sweeps (BFS to the farthest node, then from
  -- it), from the smallest index and from a node in the middle.
  local diameter = 0
  if best then
    local _, _, _, comp = bfs(adj, best, honest)
    for _, start in ipairs({ comp[1], comp[(#comp + 1) // 2] }) do
      local _, far = bfs(adj, start, honest)
      local _, _, d = bfs(adj, far, honest)
      if d > diameter then diameter = d end
    end
  end
  local s = {
    t = t, honest_alive = nh, within = nh > 0 and within / nh or 0,
    component = nh > 0 and best_size / nh or 0, components = ncomp,
    cut_off = nh > 0 and cut / nh or 0,
    deg_min = degs[1] or 0, deg_max = degs[nh] or 0,
    deg_median = nh > 0 and degs[(nh + 1) // 2] or 0,
    diameter = diameter, adversary_share = links > 0 and adv_links / links
      or 0, adversary_touched = nh > 0 and touched / nh or 0,
    counters = counters, causes = causes, cpu = cpu, rss = rss, hosted = hosted,
    stale = stale, lag = lag, policy_errors = counters.policy_errors or 0,
  }
  local edges = 0
  for _, set in pairs(adj) do
    for _ in pairs(set) do edges = edges + 1 end
  end
  s.edges = edges // 2
  local adv = 0
  for i in pairs(alive) do
    if nodes[i].role == "adversary" then adv = adv + 1 end
  end
  s.adversary_alive = adv
  for _, att in ipairs(plan.attacks) do
    if att.target then
      local h, a = 0, 0
      for j in pairs(adj[att.target] or {}) do
        if nodes[j].role == "adversary" then a = a + 1 else h = h + 1 end
      end
      s.target_honest, s.target_adversary = h, a
      s.target_share = (h + a) > 0 and a / (h + a) or 0
      s.target_alive = alive[att.target] or false
      break
    end
  end
  return s, hist
end

-- When the network first converged: the first sample at or after the last
-- initial join with `within` and `component` at least plan.converge's.
function _M.convergence(plan, samples)
  local last_join = 0
  for _, n in ipairs(plan.nodes) do
    if n.role ~= "adversary" and n.join > last_join then
      last_join = n.join
    end
  end
  local c = plan.converge
  for _, s in ipairs(samples) do
    if s.t >= last_join and s.within >= (c.within or 0.95) and
       s.component >= (c.component or 0.99) then
      return s.t, last_join
    end
  end
  return nil, last_join
end

local function fmt(v)
  if type(v) ~= "number" then return tostring(v) end
  if math.type(v) == "integer" or v == math.floor(v) then
    return string.format("%d", v)
  end
  return string.format("%.3g", v)
end
_M.fmt = fmt

-- A property's text when the scenario gives none.
function _M.describe(p)
  if p.text then return p.text end
  local parts = { p.metric }
  if p.min then parts[#parts + 1] = ">= " .. fmt(p.min) end
  if p.max then
    parts[#parts + 1] = (p.min and "and <= " or "<= ") .. fmt(p.max)
  end
  if p.metric == "converged" then
    return "converged within " .. fmt(p.max or math.huge) .. " s"
  end
  if p.final then
    parts[#parts + 1] = "at the end"
  else
    local function at(v)
      if v < 0 then return fmt(-v) .. " s before the end" end
      return fmt(v) .. " s"
    end
    if (p.from or 0) < 0 and not p.to then
      parts[#parts + 1] = "in the last " .. fmt(-p.from) .. " s"
    else
      parts[#parts + 1] = string.format("from %s to %s", at(p.from or 0),
        p.to and at(p.to) or "the end")
    end
  end
  return table.concat(parts, " ")
end

-- Check each property against the samples. Returns a list of
-- { text, ok, detail } and whether all held.
function _M.check(plan, samples, converged_at)
  local out, all = {}, true
  local last = samples[#samples]
  for _, p in ipairs(plan.properties) do
    local ok, detail
    if p.metric == "converged" then
      ok = converged_at ~= nil and converged_at <= (p.max or math.huge)
      detail = converged_at and string.format("converged at %.1f s",
        converged_at) or "never converged"
    elseif not _M.METRICS[p.metric] then
      ok, detail = false, "unknown metric " .. tostring(p.metric)
    else
      -- Negative times count back from the end of the run.
      local t_end = last and last.t or 0
      local from = p.from or 0
      if from < 0 then from = t_end + from end
      local to = p.to or math.huge
      if to < 0 then to = t_end + to end
      local worst, worst_t, n = nil, nil, 0
      ok = true
      for k, s in ipairs(samples) do
        local in_window = p.final and k == #samples or
          (not p.final and s.t >= from - 1e-6 and s.t <= to + 1e-6)
        local v = s[p.metric]
        if in_window and v ~= nil then
          n = n + 1
          local bad = (p.min and v < p.min) or (p.max and v > p.max)
          if bad then ok = false end
          -- Report the value farthest from the bound.
          if worst == nil or (p.min and v < worst) or
             (not p.min and p.max and v > worst) then
            worst, worst_t = v, s.t
          end
        end
      end
      if n == 0 then
        ok, detail = false, "no sample in the window"
      else
        detail = string.format("worst %s at %.0f s (%d samples)", fmt(worst),
          worst_t, n)
      end
    end
    out[#out + 1] = { text = _M.describe(p), ok = ok, detail = detail }
    all = all and ok
  end
  return out, all
end

return _M
