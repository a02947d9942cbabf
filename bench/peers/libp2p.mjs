// js-libp2p (TCP + Noise + Yamux) next to luap2p: the same two figures as
// bench/stream.lua and bench/handshake.lua, with the same shape, for
// `make bench-peers` (bench/run.lua --peers). Runs from build/bench-peers/,
// where the Makefile installs bench/peers/package.json and copies this file
// (ES modules resolve packages next to the importing file).
//
//   node libp2p.mjs stream recv secs=S        prints ADDR, then results
//   node libp2p.mjs stream send addr=A secs=S size=N
//   node libp2p.mjs hs server secs=S          counts opened connections
//   node libp2p.mjs hs client addr=A secs=S conc=K fresh=0|1
//
// Output: "PID n", "ADDR multiaddr", "RESULT key value", "ERROR msg", as the
// Lua children print them. The stream receiver counts payload bytes of one
// Yamux stream from its first byte for S seconds; the handshake server
// counts "connection:open" (TCP + multistream-select + Noise XX + Yamux)
// for S seconds from the first.

// Node 20 lacks Promise.withResolvers (Node 22 has it); libp2p uses it.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { multiaddr } = await import('@multiformats/multiaddr')

const PROTO = '/luap2p-bench/1.0.0'
const out = (k, v) => process.stdout.write(`RESULT ${k} ${v}\n`)
const fail = (msg) => {
  process.stdout.write(`ERROR ${String(msg).replace(/\n/g, ' ')}\n`)
  process.exit(1)
}
const now = () => Number(process.hrtime.bigint()) / 1e9
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

const args = {}
for (const a of process.argv.slice(4)) {
  const m = a.match(/^(\w+)=(.*)$/)
  if (m) args[m[1]] = isNaN(Number(m[2])) ? m[2] : Number(m[2])
}
const secs = args.secs ?? 2

// Limits that are the machine's, not the config's (as bench/common.lua
// does for luap2p): no per-host inbound rate, no pending cap, no monitor
// pings.
function config (listen) {
  return {
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: 1e6,
      maxIncomingPendingConnections: 1e6,
      inboundConnectionThreshold: 1e9,
      maxParallelDials: 1e6
    },
    connectionMonitor: { enabled: false }
  }
}

async function listen () {
  const node = await createLibp2p(config(true))
  process.stdout.write(`ADDR ${node.getMultiaddrs()[0].toString()}\n`)
  return node
}

// Resolve when pred() holds, checking every 10 ms; false after `limit` s.
async function until (pred, limit) {
  const deadline = now() + limit
  while (!pred()) {
    if (now() > deadline) return false
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  return true
}

process.stdout.write(`PID ${process.pid}\n`)
const [what, role] = process.argv.slice(2)

if (what === 'stream' && role === 'recv') {
  const node = await listen()
  let bytes = 0
  await node.handle(PROTO, async ({ stream }) => {
    try {
      for await (const chunk of stream.source) bytes += chunk.byteLength
    } catch (e) {}
  })
  if (!await until(() => bytes > 0, 20)) fail('no data within 20 s')
  const t0 = now(); const b0 = bytes; const c0 = cpu()
  await new Promise(resolve => setTimeout(resolve, secs * 1000))
  const t = now()
  out('bytes_per_s', ((bytes - b0) / (t - t0)).toFixed(0))
  out('cpu_s_per_gb', ((cpu() - c0) / (bytes - b0) * 1e9).toFixed(3))
  process.exit(0)
} else if (what === 'stream' && role === 'send') {
  const node = await createLibp2p(config(false))
  const stream = await node.dialProtocol(multiaddr(args.addr), PROTO)
  const payload = new Uint8Array(args.size ?? 65536).fill(120)
  const deadline = now() + secs
  let sent = 0
  const c0 = cpu()
  try {
    await stream.sink((async function * () {
      while (now() < deadline) {
        sent++
        yield payload
      }
    })())
  } catch (e) {}
  out('sent', sent)
  out('cpu_s_per_gb', ((cpu() - c0) / (sent * payload.length) * 1e9).toFixed(3))
  process.exit(0)
} else if (what === 'hs' && role === 'server') {
  const node = await listen()
  let done = 0
  node.addEventListener('connection:open', () => { done++ })
  if (!await until(() => done > 0, 20)) fail('no connection within 20 s')
  const t0 = now(); const d0 = done; const c0 = cpu()
  await new Promise(resolve => setTimeout(resolve, secs * 1000))
  const t = now()
  out('hs_per_s', ((done - d0) / (t - t0)).toFixed(1))
  out('cpu_per_hs', ((cpu() - c0) / Math.max(done - d0, 1)).toFixed(6))
  process.exit(0)
} else if (what === 'hs' && role === 'client') {
  const addr = multiaddr(args.addr)
  const deadline = now() + secs
  let done = 0; let failed = 0; let streak = 0
  const c0 = cpu()
  // fresh=1: one fresh node (a fresh Ed25519 identity) per connection,
  // stopped once connected, as bench/handshake.lua does; fresh=0: one
  // node per worker dialling again once its connection is closed (every
  // dial is a full Noise XX handshake with fresh ephemeral keys; creating
  // a js-libp2p node costs more than its handshake). K workers at once.
  const fresh = (args.fresh ?? 1) === 1
  async function worker () {
    let node = fresh ? null : await createLibp2p(config(false))
    while (now() < deadline && streak <= 100) {
      if (fresh) node = await createLibp2p(config(false))
      try {
        const conn = await node.dial(addr)
        done++
        streak = 0
        if (!fresh) await conn.close()
      } catch (e) {
        failed++
        streak++
      }
      if (fresh) await node.stop()
    }
    if (!fresh) await node.stop()
  }
  await Promise.all(Array.from({ length: args.conc ?? 16 }, worker))
  out('client_done', done)
  out('client_failed', failed)
  out('client_cpu_per_hs', ((cpu() - c0) / Math.max(done, 1)).toFixed(6))
  process.exit(0)
} else {
  fail('usage: libp2p.mjs stream recv|send | hs server|client key=value...')
}
