-- bench/run.lua's results: the series the figures add samples to, the
-- notes, and the table of medians (rows per figure, the js-libp2p table,
-- the printer).
local proc = require "run.proc"

local _M = {}

local P, CPUS

-- E.P: the durations (run.lua).
function _M.init(E)
  P, CPUS = E.P, proc.CPUS
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local S = {} -- series name -> list of samples
local function add(name, v)
  if v == nil then return end
  S[name] = S[name] or {}
  table.insert(S[name], v)
end

local notes = {}
local function note(s)
  for _, n in ipairs(notes) do if n == s then return end end
  notes[#notes + 1] = s
end

local function si(v, unit)
  if v == nil then return "n/a" end
  local a = math.abs(v)
  if a >= 1e9 then return string.format("%.2f G%s", v / 1e9, unit) end
  if a >= 1e6 then return string.format("%.2f M%s", v / 1e6, unit) end
  if a >= 1e4 then return string.format("%.1f k%s", v / 1e3, unit) end
  return string.format("%.0f %s", v, unit)
end

local function kib(v)
  if v == nil then return "n/a" end
  return string.format("%.2f KiB", v / 1024)
end

local function ms(v)
  if v == nil then return "n/a" end
  return string.format("%.3f ms", v)
end

local function pct(r)
  if r == nil then return "n/a" end
  return string.format("%.1f%%", r * 100)
end

local function yesno(b)
  if b == nil then return "n/a" end
  return b and "yes" or "NO"
end

local rows = {}
local function row(fig, lp, base, ratio, goal, met)
  rows[#rows + 1] = { fig, lp, base, ratio, goal, met }
end

local function div(a, b)
  if a == nil or b == nil or b == 0 then return nil end
  return a / b
end

local function cmp(v, f)
  if v == nil then return nil end
  return f(v)
end

local function build_table()
  local M = {}
  for k, v in pairs(S) do M[k] = median(v) end
  local n = #(S.lp_stream or S.lp_hs or S.lp_pow or {})

  if M.lp_stream or M.tcp_stream then
    -- One connection between two processes: every byte is sealed on one
    -- core (the sender) and crosses the kernel; the receiver opens on the
    -- other. The sender's core does both in turn: 1/(1/seal + 1/raw TCP).
    local bound = M.box and M.tcp_stream and
      1 / (1 / M.box + 1 / M.tcp_stream)
    local r = div(M.lp_stream, bound)
    row("encrypted stream, 64 KiB msgs, 2 processes (payload B/s)",
      si(M.lp_stream, "B/s"),
      si(bound, "B/s") .. " = 1/(1/seal + 1/raw TCP)",
      pct(r), ">= 90%", yesno(cmp(r, function(x) return x >= 0.9 end)))
    row("  ref: raw TCP, 64 KiB writes, 2 processes", "",
      si(M.tcp_stream, "B/s"), pct(div(M.lp_stream, M.tcp_stream)), "", "")
  end
  if M.lp_small or M.tcp_small then
    row("64 B messages/s, end to end, one connection",
      si(M.lp_small, "msg/s"),
      si(M.tcp_small, "msg/s") .. " raw TCP, u32-framed",
      pct(div(M.lp_small, M.tcp_small)), ">= 1 M/s",
      yesno(cmp(M.lp_small, function(x) return x >= 1e6 end)))
  end
  if M.lp_small_rx_cpu then
    row("  ref: 64 B messages: CPU us per message, receiver / sender",
      string.format("%.2f / %.2f", M.lp_small_rx_cpu, M.lp_small_tx_cpu or 0),
      "", "", "", "")
  end
  if M.lp_hs or M.beforenm then
    -- A handshake here is a TCP cycle (connect, a few bytes each way,
    -- close) plus its crypto: 2 beforenm (one per side) and 1 keypair
    -- (the client's fresh identity), on every core:
    -- 1/(1/tcp_cycle + 1/crypto), both in handshakes/s for the machine.
    local crypto = M.beforenm and M.keypair and
      CPUS / (2 / M.beforenm + 1 / M.keypair)
    local bound = crypto and M.tcp_connect and
      1 / (1 / M.tcp_connect + 1 / crypto)
    local r = div(M.lp_hs, bound)
    row("full handshakes/s (TCP + handshake + Ack, fresh client id)",
      si(M.lp_hs, "/s"),
      si(bound, "/s") .. " = 1/(1/tcp_cycle + 1/crypto)",
      pct(r), ">= 60%", yesno(cmp(r, function(x) return x >= 0.6 end)))
    if crypto then
      row(string.format("  ref: crypto per handshake (2 beforenm + " ..
        "1 keypair) on %d cores", CPUS), "", si(crypto, "/s"),
        pct(div(M.lp_hs, crypto)), "", "")
    end
  end
  if M.lp_idle or M.tcp_idle then
    row(string.format("RSS per idle authenticated conn, %d conns " ..
      "(server end)", M.idle_n or P.idle_n),
      kib(M.lp_idle), kib(M.tcp_idle) .. " bare libuv server",
      M.tcp_idle and M.lp_idle and
        string.format("%.1fx", M.lp_idle / M.tcp_idle) or "n/a",
      "<= 16 KiB", yesno(cmp(M.lp_idle, function(x) return x <= 16384 end)))
    if M.lp_idle_client then
      local both = M.lp_idle + M.lp_idle_client
      row("  same, both processes (client: 1 node per conn)",
        kib(both), kib(M.tcp_idle) .. " bare libuv server",
        M.tcp_idle and string.format("%.1fx", both / M.tcp_idle) or "n/a",
        "<= 16 KiB", yesno(both <= 16384))
    end
  end
  if M.lp_hs_default or M.lp_hs then
    local r = div(M.lp_hs_default, M.lp_hs)
    row("accept rate, default Lua hooks vs default_policies=false",
      si(M.lp_hs_default, "/s"), si(M.lp_hs, "/s") .. " no policies",
      pct(r), ">= 85%", yesno(cmp(r, function(x) return x >= 0.85 end)))
  end
  if M.reload_ms then
    row(string.format("policy reload, %d live conns (median; dropped)",
      M.idle_n or P.idle_n),
      string.format("%s; %d dropped", ms(M.reload_ms),
        math.floor(M.reload_dropped or 0)),
      ms(M.load_ms) .. string.format(" load_file x%d", M.reload_files or 0),
      M.load_ms and string.format("%.1fx", M.reload_ms / M.load_ms) or "n/a",
      "< 5 ms, 0 dropped",
      yesno(M.reload_ms < 5 and (M.reload_dropped or 0) == 0))
  end
  for _, kind in ipairs({ "bootstrap", "app" }) do
    local med, p99 = M["rtt_" .. kind .. "_med"], M["rtt_" .. kind .. "_p99"]
    if med then
      local what = kind == "app" and "1-byte application messages" or
        "Bootstrap"
      row(string.format("honest ping RTT while one peer floods %s, " ..
        "median / p99", what),
        string.format("%.2f / %.2f ms", med, p99 or 0),
        string.format("%.2f / %.2f ms without the flood",
          M.rtt_none_med or 0, M.rtt_none_p99 or 0),
        string.format("%.1fx / %.1fx", div(med, M.rtt_none_med) or 0,
          div(p99, M.rtt_none_p99) or 0),
        "p99 < 50 ms, 0 lost",
        yesno(p99 ~= nil and p99 < 50 and
          (M["rtt_" .. kind .. "_lost"] or 0) == 0))
      row(string.format("  ref: %s flood: messages dispatched by the " ..
        "node (rate-limited) / sent by the flooder", kind),
        si(M["flood_" .. kind .. "_dispatched"], "msg"),
        si(M["flood_" .. kind .. "_sent"], "msg"), "", "", "")
    end
  end
  if M.lp_pow or M.blake2b then
    local r = div(M.lp_pow, M.blake2b)
    row(string.format("proof-of-work search rate (threads = %d)", CPUS),
      si(M.lp_pow, "H/s"),
      si(M.blake2b, "H/s") .. string.format(" BLAKE2b-256(56 B) x %d",
        CPUS),
      pct(r), ">= 90%", yesno(cmp(r, function(x) return x >= 0.9 end)))
  end
  if M.lp_pow_cpu and M.blake2b_cpu then
    row("  ref: proof of work per CPU-second (robust to other load)",
      si(M.lp_pow_cpu, "H/cpu-s"), si(M.blake2b_cpu, "H/cpu-s"),
      pct(M.lp_pow_cpu / M.blake2b_cpu), "", "")
  end
  -- Limits shown for reference (no goal).
  if M.box and M.open and M.pair then
    local serial = 1 / (1 / M.box + 1 / M.open)
    local bound = math.max(serial, M.pair)
    row("  ref: crypto bound of a stream here: max(seal & open at once, " ..
      "1/(1/seal + 1/open))", "", si(bound, "B/s"),
      M.lp_stream and pct(M.lp_stream / bound) or "", "", "")
    row("  ref: crypto_box_easy_afternm / open 64 KiB, 1 core alone",
      "", si(M.box, "B/s") .. " / " .. si(M.open, "B/s"), "", "", "")
    row("  ref: seal and open at once on 2 threads (slower side)",
      "", si(M.pair, "B/s"), "", "", "")
  end
  if M.lp_stream_rx_cpu and M.box and M.open then
    row("  ref: CPU s/GB of payload, receiver / sender (crypto alone: " ..
      "open / seal)",
      string.format("%.2f / %.2f", M.lp_stream_rx_cpu, M.lp_stream_tx_cpu or 0),
      string.format("%.2f / %.2f", 1e9 / M.open, 1e9 / M.box), "", "", "")
  end
  if M.lp_stream_rx_sleeps then
    row("  ref: sleeps per MB of payload, receiver / sender (voluntary " ..
      "context switches: who waited)",
      string.format("%.2f / %.2f", M.lp_stream_rx_sleeps,
        M.lp_stream_tx_sleeps or 0), "", "", "", "")
  end
  if M.sealed then
    row("  ref: C over TCP (1 MiB socket buffers), the same chunks, 1 per " ..
      "write, reads of 1 MiB",
      "",
      si(M.sealed, "B/s"), M.lp_stream and pct(M.lp_stream / M.sealed) or "",
      "", "")
  end
  if M.sealed_4x64k then
    row("  ref: C over TCP (1 MiB socket buffers), the same chunks, 4 per " ..
      "write, reads of 64 KiB",
      "", si(M.sealed_4x64k, "B/s"),
      M.lp_stream and pct(M.lp_stream / M.sealed_4x64k) or "", "", "")
  end
  if M.beforenm then
    row("  ref: crypto_box_beforenm, 1 core", "", si(M.beforenm, "/s"), "",
      "", "")
  end
  if M.lp_hs_cpu then
    local c = M.beforenm and M.keypair and
      (2 / M.beforenm + 1 / M.keypair) * 1e6
    row("  ref: CPU per handshake, server / client (crypto: beforenm / " ..
      "beforenm + keypair)",
      string.format("%.0f / %.0f us", M.lp_hs_cpu * 1e6,
        (M.lp_hs_cpu_client or 0) * 1e6),
      M.beforenm and M.keypair and string.format("%.0f / %.0f us",
        1e6 / M.beforenm, 1e6 / M.beforenm + 1e6 / M.keypair) or "",
      c and pct(c / 1e6 / (M.lp_hs_cpu + (M.lp_hs_cpu_client or 0))) or "",
      "", "")
  end
  if M.lp_hs_cpu_default and M.lp_hs_cpu_nopol then
    row("  ref: server CPU and calls into Lua per handshake, default " ..
      "policies / none",
      string.format("%.0f / %.0f us", M.lp_hs_cpu_default * 1e6,
        M.lp_hs_cpu_nopol * 1e6),
      M.lp_hs_calls_default and M.lp_hs_calls and
        string.format("%.1f / %.1f calls", M.lp_hs_calls_default,
          M.lp_hs_calls) or "", "", "", "")
  end
  if M.sys_server then
    local top = {}
    for k, v in pairs(M) do
      local name = k:match("^sys_server_(.+)$")
      if name then top[#top + 1] = { name, v } end
    end
    table.sort(top, function(a, b) return a[2] > b[2] end)
    local parts = {}
    for i = 1, math.min(6, #top) do
      parts[i] = string.format("%s %.1f", top[i][1], top[i][2])
    end
    row("  ref: syscalls per handshake, server / client (strace -c)",
      string.format("%.1f / %.1f", M.sys_server, M.sys_client or 0),
      "server: " .. table.concat(parts, ", "), "", "", "")
  end
  if M.lp_hs_w0 then
    row("  ref: server handshakes/s, key jobs on the loop / 1 / 2 workers",
      string.format("%s / %s / %s", si(M.lp_hs_w0, "/s"),
        si(M.lp_hs_w1, "/s"), si(M.lp_hs_w2, "/s")),
      string.format("server CPU %.0f / %.0f / %.0f us per handshake",
        (M.lp_hs_w0_cpu or 0) * 1e6, (M.lp_hs_w1_cpu or 0) * 1e6,
        (M.lp_hs_w2_cpu or 0) * 1e6),
      pct(div(M.lp_hs_w2, M.lp_hs_w0)), "", "")
  end
  if M.tcp_connect then
    row("  ref: TCP connect + 1 B each way + close, libuv, 16 in flight",
      "", si(M.tcp_connect, "/s"),
      M.lp_hs and pct(M.lp_hs / M.tcp_connect) or "", "", "")
  end
  if M.lp_idle_lua then
    row("  ref: of the server RSS per conn, Lua heap", kib(M.lp_idle_lua),
      "", "", "", "")
  end
  if M.lp_node_client then
    row("  ref: client node (identity + node, before connecting), RSS",
      kib(M.lp_node_client), "", "", "", "")
  end
  return M, n
end

-- peer_msg: the message size of the stream figure (figures.PEER_MSG).
local function peers_table(peer_msg)
  local M = {}
  for k, v in pairs(S) do M[k] = median(v) end
  local function ratio(a, b)
    local r = div(a, b)
    return r and string.format("%.1fx", r) or "n/a"
  end
  row(string.format("encrypted stream, %d KiB msgs, 2 processes " ..
    "(payload B/s)", peer_msg // 1024),
    si(M.lp_stream, "B/s"), si(M.js_stream, "B/s"),
    ratio(M.lp_stream, M.js_stream), "", "")
  row("  CPU s per GB, receiver / sender",
    string.format("%.2f / %.2f", M.lp_stream_rx_cpu or 0,
      M.lp_stream_tx_cpu or 0),
    string.format("%.2f / %.2f", M.js_stream_rx_cpu or 0,
      M.js_stream_tx_cpu or 0),
    ratio(M.js_stream_tx_cpu, M.lp_stream_tx_cpu) .. " less (sender)", "", "")
  row("full handshakes/s at the server, 2 client processes",
    si(M.lp_hs, "/s"), si(M.js_hs, "/s"), ratio(M.lp_hs, M.js_hs), "", "")
  row("  CPU per handshake, server / client",
    string.format("%.0f / %.0f us", (M.lp_hs_cpu or 0) * 1e6,
      (M.lp_hs_cpu_client or 0) * 1e6),
    string.format("%.0f / %.0f us", (M.js_hs_cpu or 0) * 1e6,
      (M.js_hs_cpu_client or 0) * 1e6),
    ratio(M.js_hs_cpu, M.lp_hs_cpu) .. " less (server)", "", "")
end

local function print_table(head)
  head = head or { "figure", "luap2p", "baseline (same run)", "ratio",
                   "goal", "met?" }
  local w = {}
  for i, h in ipairs(head) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i], #c) end
  end
  local function line(cells)
    local out = {}
    for i, c in ipairs(cells) do
      out[i] = c .. string.rep(" ", w[i] - #c)
    end
    return "| " .. table.concat(out, " | ") .. " |"
  end
  print(line(head))
  local sep = {}
  for i = 1, #head do sep[i] = string.rep("-", w[i]) end
  print("|-" .. table.concat(sep, "-|-") .. "-|")
  for _, r in ipairs(rows) do print(line(r)) end
end

_M.S = S
_M.notes = notes
_M.add = add
_M.note = note
_M.build_table = build_table
_M.peers_table = peers_table
_M.print_table = print_table

return _M
