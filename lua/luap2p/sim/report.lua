-- luap2p.sim.report: the HTML report of a simulation, one self-contained
-- file (inline CSS and SVG, no script, nothing fetched), readable offline.
local ipairs, math, pairs, string, table, tostring, type =
      ipairs, math, pairs, string, table, tostring, type

local _M = {}

local W, H = 640, 230           -- plot size
local ML, MR, MT, MB = 48, 12, 38, 30 -- margins (title and legend above)
local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                 "#8c564b" }

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;",
    [">"] = "&gt;", ['"'] = "&quot;" }))
end
_M.escape = esc

local function num(v)
  if v == math.floor(v) and math.abs(v) < 1e15 then
    return string.format("%d", v)
  end
  return string.format("%.3g", v)
end

-- Tick values: about n round steps between lo and hi.
local function ticks(lo, hi, n)
  local span = hi - lo
  if span <= 0 then return { lo } end
  local raw = span / n
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * mag >= raw then
      step = m * mag
      break
    end
  end
  local out = {}
  local v = math.ceil(lo / step) * step
  while v <= hi + 1e-9 do
    out[#out + 1] = v
    v = v + step
  end
  return out
end

-- A chart's output list, its writer w(fmt, ...) and the <svg> opening
-- with the title already written.
local function svg(title)
  local o = {}
  local function w(fmt, ...) o[#o + 1] = string.format(fmt, ...) end
  w('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" ' ..
    'viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">', W, H,
    W, H)
  w('<text x="%d" y="15" font-size="13" font-weight="bold">%s</text>', ML,
    esc(title))
  return o, w
end

-- A line chart. opts: title, xlabel, ylabel, series = { {name, points =
-- {{x, y}...}, color, dash} }, ymin, ymax, band = {lo, hi, label},
-- vline = {x, label}.
function _M.line_chart(opts)
  local xs, ys = {}, {}
  for _, s in ipairs(opts.series) do
    for _, p in ipairs(s.points) do
      xs[#xs + 1] = p[1]
      ys[#ys + 1] = p[2]
    end
  end
  local xmin, xmax = opts.xmin or 0, opts.xmax or 1
  for _, x in ipairs(xs) do if x > xmax then xmax = x end end
  local ymin, ymax = opts.ymin, opts.ymax
  if not ymin or not ymax then
    local lo, hi = math.huge, -math.huge
    for _, y in ipairs(ys) do
      if y < lo then lo = y end
      if y > hi then hi = y end
    end
    if opts.band then
      lo, hi = math.min(lo, opts.band[1]), math.max(hi, opts.band[2])
    end
    if lo == math.huge then lo, hi = 0, 1 end
    ymin = ymin or math.min(0, lo)
    ymax = ymax or (hi > ymin and hi * 1.05 or ymin + 1)
  end
  local pw, ph = W - ML - MR, H - MT - MB
  local function X(x) return ML + (x - xmin) / (xmax - xmin) * pw end
  local function Y(y) return MT + ph - (y - ymin) / (ymax - ymin) * ph end
  local o, w = svg(opts.title)
  if opts.band then
    local y1, y2 = Y(math.min(opts.band[2], ymax)),
      Y(math.max(opts.band[1], ymin))
    w('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" ' ..
      'fill="#2ca02c" fill-opacity="0.12"/>', ML, y1, pw, y2 - y1)
    if opts.band[3] then
      w('<text x="%.1f" y="%.1f" fill="#2ca02c" text-anchor="end">%s' ..
        '</text>', ML + pw - 4, y1 + 12, esc(opts.band[3]))
    end
  end
  for _, v in ipairs(ticks(ymin, ymax, 5)) do
    w('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>', ML,
      ML + pw, Y(v), Y(v))
    w('<text x="%d" y="%.1f" text-anchor="end">%s</text>', ML - 4,
      Y(v) + 4, num(v))
  end
  for _, v in ipairs(ticks(xmin, xmax, 8)) do
    w('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999"/>', X(v),
      X(v), MT + ph, MT + ph + 4)
    w('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', X(v),
      MT + ph + 15, num(v))
  end
  w('<rect x="%d" y="%d" width="%d" height="%d" fill="none" ' ..
    'stroke="#999"/>', ML, MT, pw, ph)
  w('<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>',
    ML + pw // 2, H - 2, esc(opts.xlabel or "seconds"))
  if opts.vline and opts.vline[1] then
    local x = X(opts.vline[1])
    w('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#000" ' ..
      'stroke-dasharray="4 3"/>', x, x, MT, MT + ph)
    w('<text x="%.1f" y="%d" font-size="10">%s</text>', x + 3, MT + 10,
      esc(opts.vline[2] or ""))
  end
  local lx = ML
  for i, s in ipairs(opts.series) do
    local color = s.color or COLORS[(i - 1) % #COLORS + 1]
    local pts = {}
    for _, p in ipairs(s.points) do
      pts[#pts + 1] = string.format("%.1f,%.1f", X(p[1]), Y(p[2]))
    end
    if #pts > 0 then
      w('<polyline fill="none" stroke="%s" stroke-width="1.6"%s ' ..
        'points="%s"/>', color,
        s.dash and ' stroke-dasharray="5 3"' or "", table.concat(pts, " "))
    end
    w('<rect x="%d" y="%d" width="10" height="3" fill="%s"/>', lx, 25,
      color)
    w('<text x="%d" y="%d">%s</text>', lx + 13, 30, esc(s.name))
    lx = lx + 20 + 7 * #s.name
  end
  w('</svg>')
  return table.concat(o, "\n")
end

-- A bar chart of counts: bars = { {label, value, highlight} }.
function _M.bar_chart(opts)
  local bars = opts.bars
  local pw, ph = W - ML - MR, H - MT - MB
  local ymax = 1
  for _, b in ipairs(bars) do if b[2] > ymax then ymax = b[2] end end
  ymax = ymax * 1.1
  local o, w = svg(opts.title)
  for _, v in ipairs(ticks(0, ymax, 5)) do
    local y = MT + ph - v / ymax * ph
    w('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>', ML,
      ML + pw, y, y)
    w('<text x="%d" y="%.1f" text-anchor="end">%s</text>', ML - 4, y + 4,
      num(v))
  end
  local n = math.max(#bars, 1)
  local bw = pw / n
  for i, b in ipairs(bars) do
    local h = b[2] / ymax * ph
    local x = ML + (i - 1) * bw
    w('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>',
      x + 1, MT + ph - h, math.max(bw - 2, 1), h,
      b[3] and "#1f77b4" or "#d62728")
    if n <= 40 or i % math.ceil(n / 40) == 1 then
      w('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', x + bw / 2,
        MT + ph + 13, esc(b[1]))
    end
  end
  w('<rect x="%d" y="%d" width="%d" height="%d" fill="none" ' ..
    'stroke="#999"/>', ML, MT, pw, ph)
  w('<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>',
    ML + pw // 2, H - 2, esc(opts.xlabel or ""))
  w('</svg>')
  return table.concat(o, "\n")
end

local function series(samples, key, scale)
  local pts = {}
  for _, s in ipairs(samples) do
    local v = s[key]
    if type(v) == "number" then pts[#pts + 1] = { s.t, v * (scale or 1) } end
  end
  return pts
end

-- Per-second rate of a cumulative counter.
local function rate(samples, key)
  local pts = {}
  for k = 2, #samples do
    local a, b = samples[k - 1], samples[k]
    local dt = b.t - a.t
    if dt > 0 then
      local d = (b.counters[key] or 0) - (a.counters[key] or 0)
      pts[#pts + 1] = { b.t, d / dt }
    end
  end
  return pts
end

local CSS = [[
body{font-family:sans-serif;max-width:1340px;margin:1em auto;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.ok{color:#1a7f37;font-weight:bold}.bad{color:#c00;font-weight:bold}
.plots{display:flex;flex-wrap:wrap;gap:8px}
.plots svg{border:1px solid #eee;background:#fff}
.verdict{font-size:1.15em;padding:.4em .8em;display:inline-block}
code{background:#f4f4f4;padding:0 3px}
]]

function _M.html(plan, samples, summary)
  local o = {}
  local function w(fmt, ...) o[#o + 1] = string.format(fmt, ...) end
  local last = summary.final or {}
  local lo, hi = plan.bounds[1], plan.bounds[2]
  w('<!DOCTYPE html><html><head><meta charset="utf-8">')
  w('<title>luap2p sim: %s</title><style>%s</style></head><body>',
    esc(plan.name), CSS)
  w('<h1>luap2p sim: %s</h1>', esc(plan.name))
  if plan.description then w('<p>%s</p>', esc(plan.description)) end
  w('<p class="verdict %s">%s</p>', summary.ok and "ok" or "bad",
    summary.ok and "Every property held" or
    ("Some properties failed" .. (summary.failure and (": " ..
      esc(summary.failure)) or "")))
  w('<h2>Setup</h2><table>')
  local function row(k, v)
    w('<tr><th>%s</th><td>%s</td></tr>', esc(k),
      esc(type(v) == "number" and num(v) or v))
  end
  row("nodes", string.format("%d honest (%d seeds)%s", plan.honest,
    #plan.seeds, summary.adversaries > 0 and
    string.format(" + %d adversaries", summary.adversaries) or ""))
  row("processes", summary.processes)
  row("duration", num(plan.seconds) .. " s, a sample every " ..
    num(plan.sample) .. " s; seed " .. num(plan.seed))
  row("bounds", string.format("min_connections %d, max_connections %d " ..
    "(a node is within bounds when min <= connections <= max)", lo, hi))
  local keys = {}
  for k in pairs(plan.config) do keys[#keys + 1] = k end
  table.sort(keys)
  local cfg = {}
  for _, k in ipairs(keys) do
    local v = plan.config[k]
    cfg[#cfg + 1] = k .. " = " .. (type(v) == "number" and num(v) or
      tostring(v))
  end
  row("node config (over the defaults)", table.concat(cfg, ", "))
  for i, a in ipairs(plan.attacks) do
    row("attack " .. i, string.format("%s: %d nodes from t = %s s in %d " ..
      "/24%s%s", a.kind, #a.members, num(a.at), a.prefixes,
      a.prefixes > 1 and "s" or "",
      a.target and string.format(", target node %d (%s)", a.target,
        plan.nodes[a.target].point) or ""))
  end
  local churn, faults = 0, 0
  for _, a in ipairs(plan.actions) do
    if a.kind == "leave" then churn = churn + 1
    elseif a.kind ~= "join" then faults = faults + 1 end
  end
  if churn > 0 then row("churn", churn .. " departures") end
  if faults > 0 then row("faults", faults .. " resets and stops") end
  w('</table>')

  w('<h2>Properties</h2><table><tr><th></th><th>property</th>' ..
    '<th>measured</th></tr>')
  for _, p in ipairs(summary.properties) do
    w('<tr><td class="%s">%s</td><td>%s</td><td>%s</td></tr>',
      p.ok and "ok" or "bad", p.ok and "held" or "FAILED", esc(p.text),
      esc(p.detail or ""))
  end
  w('</table>')

  w('<h2>Outcome</h2><table>')
  row("convergence", summary.converged_at and string.format(
    "%.1f s after the start (%.1f s after the last initial join); " ..
    "converged = at least %.0f%% of honest nodes within bounds and " ..
    "%.0f%% in the largest component", summary.converged_at,
    summary.converged_at - summary.last_join,
    100 * (plan.converge.within or 0.95),
    100 * (plan.converge.component or 0.99)) or "did not converge")
  row("final degree", string.format("min %d, median %d, max %d; %.1f%% " ..
    "within bounds", last.deg_min or 0, last.deg_median or 0,
    last.deg_max or 0, 100 * (last.within or 0)))
  row("largest honest component", string.format("%.1f%% of %d live " ..
    "honest nodes (%d components), diameter ~%d hops",
    100 * (last.component or 0), last.honest_alive or 0,
    last.components or 0, last.diameter or 0))
  row("honest nodes cut off", string.format("%.1f%%",
    100 * (last.cut_off or 0)))
  if (last.adversary_alive or 0) > 0 then
    row("adversaries", string.format("%.1f%% of honest connections; " ..
      "%.1f%% of honest nodes touch one", 100 * last.adversary_share,
      100 * last.adversary_touched))
  end
  if last.target_share then
    row("eclipse target", string.format("%d honest and %d attacker " ..
      "connections (%.0f%% attackers)", last.target_honest,
      last.target_adversary, 100 * last.target_share))
  end
  local c = last.counters or {}
  row("handshakes", string.format("%d completed, %d connections never " ..
    "ran, %d authentication failures, %d refused at accept, %d Nacks",
    c.handshakes or 0, c.failed or 0, c.auth_failed or 0, c.refused or 0,
    c.nacks or 0))
  row("bans, policy errors", string.format("%d, %d", c.bans or 0,
    c.policy_errors or 0))
  row("traffic", string.format("%.1f MB in, %.1f MB out, %d messages in",
    (c.bytes_in or 0) / 1e6, (c.bytes_out or 0) / 1e6, c.msgs_in or 0))
  local cost = summary.cost
  row("cost", string.format("%.1f CPU s for %d nodes (%.1f ms CPU per " ..
    "node per simulated second), RSS %.0f MB (%.0f kB per node), " ..
    "wall %.0f s", cost.cpu_seconds, last.hosted or 0,
    1000 * cost.cpu_share_per_node, cost.rss_kb / 1024,
    cost.rss_kb_per_node, summary.wall_seconds))
  row("loop lag", string.format("at most %.2f s (a late timer in a worker; " ..
    "above ~0.5 s the machine was overloaded and times are stretched)",
    summary.max_lag or 0))
  w('</table>')

  w('<h2>Over time</h2><div class="plots">')
  local conv = summary.converged_at
  w('%s', _M.line_chart({
    title = "Convergence: share of honest nodes (%)", ymin = 0, ymax = 100,
    xmax = plan.seconds,
    series = {
      { name = "within bounds", points = series(samples, "within", 100) },
      { name = "largest component", points = series(samples, "component",
        100) },
      { name = "cut off", points = series(samples, "cut_off", 100) },
    },
    vline = conv and { conv, string.format("converged %.1f s", conv) },
  }))
  w('%s', _M.line_chart({
    title = "Connections per honest node", xmax = plan.seconds, ymin = 0,
    band = { lo, hi, string.format("bounds [%d, %d]", lo, hi) },
    series = {
      { name = "min", points = series(samples, "deg_min") },
      { name = "median", points = series(samples, "deg_median") },
      { name = "max", points = series(samples, "deg_max") },
    },
  }))
  local bars = {}
  local hist = {}
  for _, e in ipairs(summary.histogram or {}) do hist[e[1]] = e[2] end
  local dmax = 0
  for d in pairs(hist) do if d > dmax then dmax = d end end
  for d = 0, math.max(dmax, hi + 1) do
    bars[#bars + 1] = { tostring(d), hist[d] or 0, d >= lo and d <= hi }
  end
  w('%s', _M.bar_chart({ title = "Degree distribution at the end " ..
    "(blue: within bounds)", bars = bars, xlabel = "connections" }))
  w('%s', _M.line_chart({
    title = "Handshakes and failures per second", xmax = plan.seconds,
    series = {
      { name = "handshakes", points = rate(samples, "handshakes") },
      { name = "never ran", points = rate(samples, "failed") },
      { name = "refused", points = rate(samples, "refused") },
      { name = "Nacks", points = rate(samples, "nacks") },
    },
  }))
  w('%s', _M.line_chart({
    title = "Largest component diameter estimate (hops)",
    xmax = plan.seconds, ymin = 0,
    series = { { name = "diameter", points = series(samples, "diameter") } },
  }))
  if #plan.attacks > 0 then
    local s = {
      { name = "adversary share of honest links",
        points = series(samples, "adversary_share", 100) },
      { name = "honest nodes touching one",
        points = series(samples, "adversary_touched", 100), dash = true },
    }
    if last.target_share then
      s[#s + 1] = { name = "target: attacker share",
                    points = series(samples, "target_share", 100) }
    end
    w('%s', _M.line_chart({ title = "Attack share (%)", ymin = 0,
      ymax = 100, xmax = plan.seconds, series = s }))
    if last.target_share then
      w('%s', _M.line_chart({ title = "Eclipse target's connections",
        xmax = plan.seconds, ymin = 0, series = {
          { name = "honest", points = series(samples, "target_honest") },
          { name = "attackers", points = series(samples,
            "target_adversary") },
        } }))
    end
  end
  w('</div>')
  w('<p>Made by <code>luap2p sim</code>; the samples are in ' ..
    '<code>samples.jsonl</code>, the plan in <code>plan.json</code>.</p>')
  w('</body></html>')
  return table.concat(o, "\n")
end

return _M
