-- luap2p.status_page: the live status page served at GET / by luap2p.rpc.
-- Static HTML + JavaScript, no external resource (no CDN, no build step):
-- it polls the node's own RPC once a second (/network/stat,
-- /network/connections, /network/points, /luap2p/bans, /luap2p/events)
-- and redraws four tables and a small rate chart (canvas).
return [==[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>luap2p node</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 18px; margin: 0 0 .2em; }
h2 { font-size: 14px; margin: 1.2em 0 .3em; }
table { border-collapse: collapse; min-width: 40em; }
th, td { text-align: left; padding: 2px 10px 2px 0;
         border-bottom: 1px solid #eee; }
th { color: #666; font-weight: 600; }
code, td { font-family: ui-monospace, monospace; font-size: 12px; }
#summary span { margin-right: 2em; }
#error { color: #b00; }
.empty { color: #999; }
canvas { border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>luap2p node <code id="self">…</code></h1>
<div id="summary"><span id="conn-count">connections: …</span>
<span id="totals"></span><span id="error"></span></div>
<h2>Rate (bytes/s, last 2 minutes): <span style="color:#1565c0">in</span>,
<span style="color:#c62828">out</span></h2>
<canvas id="chart" width="600" height="120"></canvas>
<h2>Connections</h2>
<table id="connections"><thead><tr><th>peer id</th><th>dir</th>
<th>point</th><th>socket port</th><th>p2p/ddb</th><th>private</th></tr>
</thead><tbody></tbody></table>
<h2>Bans and greylist</h2>
<table id="bans"><thead><tr><th>target</th><th>kind</th><th>until</th>
<th>reason</th></tr></thead><tbody></tbody></table>
<h2>Known points</h2>
<table id="points"><thead><tr><th>point</th><th>state</th><th>peer id</th>
<th>trusted</th><th>last established</th></tr></thead><tbody></tbody></table>
<h2>Events</h2>
<table id="events"><thead><tr><th>time</th><th>type</th><th>peer id</th>
<th>point</th><th>detail</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const rates = [];
let lastSeq = 0;
const events = [];

function get(path) {
  return fetch(path, { cache: "no-store" }).then(r => {
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  });
}

function fill(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.textContent = "";
  if (rows.length === 0) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = 6;
    td.className = "empty";
    td.textContent = empty;
    return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    if (row.key) tr.dataset.key = row.key;
    for (const cell of row.cells) tr.insertCell().textContent = cell;
  }
}

function pointText(p) {
  if (!p) return "";
  let a = String(p.addr).replace(/^::ffff:/, "");
  if (a.includes(":")) a = "[" + a + "]";
  return a + ":" + (p.port === undefined ? "?" : p.port);
}

function drawChart() {
  const c = document.getElementById("chart");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...rates.map(r => Math.max(r[0], r[1])));
  for (const [i, color] of [[0, "#1565c0"], [1, "#c62828"]]) {
    g.strokeStyle = color;
    g.beginPath();
    rates.forEach((r, k) => {
      const x = c.width - (rates.length - 1 - k) * (c.width / 120);
      const y = c.height - 4 - (r[i] / max) * (c.height - 8);
      if (k === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
  g.fillStyle = "#666";
  g.fillText(Math.round(max) + " B/s", 4, 12);
}

async function refresh() {
  try {
    const [self, stat, conns, bans, points, ev] = await Promise.all([
      get("/network/self"), get("/network/stat"),
      get("/network/connections"), get("/luap2p/bans"),
      get("/network/points"), get("/luap2p/events?since=" + lastSeq)]);
    document.getElementById("self").textContent = self;
    const inc = conns.filter(c => c.incoming).length;
    document.getElementById("conn-count").textContent =
      "connections: " + conns.length + " (" + inc + " in, " +
      (conns.length - inc) + " out)";
    document.getElementById("totals").textContent =
      "sent " + stat.total_sent + " B, received " + stat.total_recv + " B";
    rates.push([stat.current_inflow, stat.current_outflow]);
    if (rates.length > 120) rates.shift();
    drawChart();
    fill("connections", conns.map(c => ({ key: c.peer_id, cells: [
      c.peer_id, c.incoming ? "in" : "out", pointText(c.id_point),
      c.remote_socket_port,
      c.announced_version.p2p_version + "/" +
        c.announced_version.distributed_db_version,
      c.private ? "yes" : "no"] })), "no connections");
    fill("bans", bans.map(b => ({ key: b.target, cells: [
      b.target, b.kind, b.until || "never", b.reason || ""] })), "no bans");
    fill("points", points.map(([p, i]) => ({ key: p, cells: [
      p, i.state.event_kind, i.p2p_peer_id || "", i.trusted ? "yes" : "",
      i.last_established_connection ? i.last_established_connection[1]
                                    : ""] })), "no known points");
    lastSeq = ev.seq;
    for (const e of ev.events) events.unshift(e);
    events.splice(50);
    fill("events", events.map(e => ({ cells: [
      new Date(e.ts * 1000).toISOString().substring(11, 19), e.type,
      e.peer_id || "", e.point || "", e.detail || ""] })), "no events yet");
    document.getElementById("error").textContent = "";
  } catch (err) {
    document.getElementById("error").textContent = String(err);
  }
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
]==]
