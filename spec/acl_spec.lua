-- luap2p.policies.acl: the Octez greylist (docs/PROTOCOL.md §7: the IP, never
-- the port, on bad proof of work / auth / size / encoding; not on
-- timeouts or EOF), bounded as an LRU, and admin bans persisted to
-- config.ban_file across restarts.
local p2p = require "luap2p"
local cjson = require "cjson"
local h = require "helper"

local node = h.quiet

local function acl(n) return h.policy(n, "acl").module end

-- Random valid peer ids, for the peer greylist.
local function peer_id()
  local bytes = {}
  for i = 1, 16 do bytes[i] = string.char(math.random(0, 255)) end
  return p2p.core.peer_id_encode(table.concat(bytes))
end

describe("acl greylist", function()
  local keep = h.keeper(before_each, after_each)

  it("greylists the IP (not the port) of a peer with bad proof of work, " ..
     "refuses it at accept, and forgets it after greylist_timeout",
    function()
    local dir = h.tmpdir()
    local ban_file = dir .. "/bans.json"
    -- The server wants 20 bits; the client's identity has none.
    local srv = keep(node{ pow_bits = 20, greylist_timeout = 0.6,
                           ban_file = ban_file, greylist_loopback = true })
    local cli = keep(node{})
    local rs = h.record(srv)
    assert(cli:connect(srv.addr))
    h.wait(function() return #rs.banned == 1 end, 5, "greylisted")
    assert.equal("EPOW", rs.auth_failed[1].code)
    assert.equal("127.0.0.1", rs.banned[1].target)
    assert.equal(0.6, rs.banned[1].seconds)
    assert.matches("^greylist", rs.banned[1].reason)
    assert.is_true(srv:banned("127.0.0.1"))
    assert.is_true(srv:banned("127.0.0.1:1")) -- any port of that IP
    assert.is_false(srv:banned("127.0.0.2"))
    assert.equal(1, (acl(srv)._greylist_size(srv)))
    -- The next connection from that IP is refused before any byte.
    local other = keep(node{})
    assert(other:connect(srv.addr))
    h.wait(function() return #rs.refused == 1 end, 5, "refused")
    assert.equal("banned", rs.refused[1].reason)
    -- Greylist entries are not admin bans: nothing persisted.
    h.sleep(0.1)
    local text = h.read_file(ban_file)
    assert.is_true(text == nil or next(cjson.decode(text).bans) == nil)
    -- Timed: gone after greylist_timeout.
    h.wait(function() return not srv:banned("127.0.0.1") end, 3, "expiry")
    h.rmdir(dir)
  end)

  it("does not greylist on a handshake timeout nor on EOF", function()
    local srv = keep(node{ authentication_timeout = 0.3 })
    local rs = h.record(srv)
    local silent = h.raw(srv.addr)  -- says nothing: times out
    local quitter = h.raw(srv.addr) -- leaves at once: EOF
    quitter:close()
    h.wait_raw({ silent }, function() return #rs.auth_failed == 2 end, 5,
      "two failures")
    local codes = {}
    for _, ev in ipairs(rs.auth_failed) do codes[ev.code] = true end
    assert.is_true(codes.ETIMEDOUT)
    assert.is_true(codes.EOF)
    assert.equal(0, #rs.banned)
    assert.is_false(srv:banned("127.0.0.1"))
    silent:close()
  end)

  it("greylists IP and peer id of a peer sending an undecodable P2P " ..
     "message (the core closes it)", function()
    local srv = keep(node{ greylist_loopback = true })
    local cli = keep(node{})
    local rs = h.record(srv)
    assert(cli:connect(srv.addr))
    h.wait(function() return h.nconns(srv) == 1 and h.nconns(cli) == 1 end,
      5, "connected")
    local conn = cli:connection(srv.peer_id)
    -- tag 0x0004 (Swap_request) with a 3-byte body: truncated
    assert(cli._c:send_raw(conn.id, "\0\0\0\5\0\4abc"))
    h.wait(function() return h.nconns(srv) == 0 end, 5, "closed")
    assert.equal("ETRUNC", rs.disconnected[1].code)
    assert.is_true(srv:banned("127.0.0.1"))
    assert.is_true(srv:banned(cli.peer_id))
    assert.is_true(acl(srv)._is_greylisted(srv, "127.0.0.1"))
    assert.is_true(acl(srv)._is_greylisted(srv, cli.peer_id))
  end)

  it("greylists IP and peer id of a peer advertising a malformed point " ..
     "(a decoding_error event, as Octez), not only closes", function()
    local srv = keep(node{ greylist_loopback = true })
    local cli = keep(node{})
    local rs = h.record(srv)
    assert(cli:connect(srv.addr))
    h.wait(function() return h.nconns(srv) == 1 and h.nconns(cli) == 1 end,
      5, "connected")
    local conn = cli:connection(srv.peer_id)
    -- Advertise (tag 0x0003) of one point "not-a-point:1" (u32 length +
    -- text): the envelope decodes, the point does not.
    local pt = "not-a-point:1"
    local body = string.pack(">s4", pt)
    assert(cli._c:send_raw(conn.id,
      string.pack(">I4I2", 2 + #body, 3) .. body))
    h.wait(function() return h.nconns(srv) == 0 end, 5, "closed")
    assert.equal(1, #rs.decoding_error)
    assert.equal("EPOINT", rs.decoding_error[1].code)
    assert.equal(cli.peer_id, rs.decoding_error[1].peer_id)
    assert.is_true(srv:banned("127.0.0.1"))
    assert.is_true(srv:banned(cli.peer_id))
    assert.is_true(acl(srv)._is_greylisted(srv, "127.0.0.1"))
    assert.is_true(acl(srv)._is_greylisted(srv, cli.peer_id))
  end)

  it("on a decoding_error event reported by Lua (a message a policy " ..
     "cannot decode): greylists; the reporter closes", function()
    local srv = keep(node{ greylist_loopback = true })
    local cli = keep(node{})
    assert(cli:connect(srv.addr))
    h.wait(function() return h.nconns(srv) == 1 end, 5, "connected")
    local conn = srv:connection(cli.peer_id)
    srv:_event({ type = "decoding_error", conn = conn.id, point = conn.point,
                 peer_id = conn.peer_id, reason = "EPROTO: simulated" })
    conn:close("decoding error")
    h.wait(function() return h.nconns(srv) == 0 end, 5, "closed")
    assert.is_true(acl(srv)._is_greylisted(srv, "127.0.0.1"))
    assert.is_true(acl(srv)._is_greylisted(srv, cli.peer_id))
  end)

  it("never greylists a trusted point or peer; nothing when timeout is 0",
    function()
    local srv = keep(node{})
    srv:trust("10.0.0.1:9732")
    local pid = peer_id()
    srv:trust(pid)
    srv:_event({ type = "auth_failed", code = "EAUTH",
                 point = "10.0.0.1:9732" })
    srv:_event({ type = "disconnected", conn = 0, code = "EPROTO",
                 point = "10.0.0.2:9732", peer_id = pid, connection = {} })
    assert.is_false(srv:banned("10.0.0.1"))
    assert.is_false(srv:banned("10.0.0.2"))
    assert.is_false(srv:banned(pid))
    local off = keep(node{ greylist_timeout = 0 })
    off:_event({ type = "auth_failed", code = "EPOW",
                 point = "10.0.0.3:1" })
    assert.is_false(off:banned("10.0.0.3"))
    -- and a greylisted one with the feature on, for contrast
    srv:_event({ type = "auth_failed", code = "EMSGSIZE",
                 point = "[2001:db8::7]:9732" })
    assert.is_true(srv:banned("2001:db8::7"))
  end)

  it("never greylists loopback by default (no localhost trap), nor the " ..
     "IP of a trusted point", function()
    -- A real failure from 127.0.0.1: bad proof of work.
    local srv = keep(node{ pow_bits = 20 })
    local cli = keep(node{})
    local rs = h.record(srv)
    assert(cli:connect(srv.addr))
    h.wait(function() return #rs.auth_failed == 1 end, 5, "auth failed")
    assert.equal("EPOW", rs.auth_failed[1].code)
    h.sleep(0.05)
    assert.equal(0, #rs.banned)
    assert.is_false(srv:banned("127.0.0.1"))
    for _, ip in ipairs({ "127.0.0.1", "127.8.9.10", "::1" }) do
      assert.is_false(acl(srv)._greylist(srv, ip, nil, "EAUTH"), ip)
      assert.is_false(srv:banned(ip), ip)
    end
    -- the peer id of a misbehaving local peer is still greylisted
    local pid = peer_id()
    assert.is_true(acl(srv)._greylist(srv, "127.0.0.1", pid, "EAUTH"))
    assert.is_true(srv:banned(pid))
    assert.is_false(srv:banned("127.0.0.1"))
    -- a trusted point's IP, connecting from any port
    srv:trust("10.0.0.9:9732")
    srv:_event({ type = "auth_failed", code = "EAUTH",
                 point = "10.0.0.9:40123" })
    assert.is_false(srv:banned("10.0.0.9"))
    srv:_event({ type = "auth_failed", code = "EAUTH",
                 point = "10.0.0.8:40123" })
    assert.is_true(srv:banned("10.0.0.8"))
  end)

  it("keeps 100 000 distinct failing IPs at its greylist_size cap",
    function()
    local cap = 1000
    -- Only the acl: the other default policies are not under test here.
    local srv = keep(node{ default_policies = false, greylist_size = cap,
                           policies = { "luap2p.policies.acl" } })
    local mem0
    for i = 1, 100000 do
      local ip = string.format("10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255,
        i & 255)
      srv:_event({ type = "auth_failed", code = "EAUTH",
                   point = ip .. ":9732" })
      if i == 2 * cap then
        collectgarbage()
        mem0 = collectgarbage("count")
      end
    end
    collectgarbage()
    local mem = collectgarbage("count")
    local ips = acl(srv)._greylist_size(srv)
    assert.equal(cap, ips)
    assert.equal(cap, h.count(srv.state.acl.ips.map))
    -- the C ban table holds exactly the greylist
    assert.equal(cap, srv:stat().bans)
    -- the newest are greylisted, the oldest were evicted and unbanned
    assert.is_true(srv:banned("10.1.134.160")) -- i = 100000
    assert.is_true(srv:banned(string.format("10.1.%d.%d",
      (100000 - cap + 1) >> 8 & 255, (100000 - cap + 1) & 255)))
    assert.is_false(srv:banned(string.format("10.1.%d.%d",
      (100000 - cap) >> 8 & 255, (100000 - cap) & 255)))
    assert.is_false(srv:banned("10.0.0.1"))
    -- memory did not grow with the flood (beyond noise)
    assert.truthy(mem < mem0 * 1.5 + 256,
      string.format("memory %.0f KiB after, %.0f KiB at 2*cap", mem, mem0))
  end)

  it("keeps the peer-id greylist at 1023 (Octez FIFO size)", function()
    local srv = keep(node{ default_policies = false,
                           policies = { "luap2p.policies.acl" } })
    local first, last
    for i = 1, 1500 do
      local pid = peer_id()
      first = first or pid
      last = pid
      acl(srv)._greylist(srv, nil, pid, "EPROTO")
    end
    local _, peers = acl(srv)._greylist_size(srv)
    assert.equal(1023, peers)
    assert.is_true(srv:banned(last))
    assert.is_false(srv:banned(first))
  end)

  it("unban removes an IP from the greylist; an admin ban wins over it",
    function()
    local srv = keep(node{})
    local a = acl(srv)
    a._greylist(srv, "10.5.5.5", nil, "EPOW")
    a._greylist(srv, "10.6.6.6", nil, "EPOW")
    assert.equal(2, (a._greylist_size(srv)))
    assert.is_true(srv:unban("10.5.5.5"))
    assert.equal(1, (a._greylist_size(srv)))
    assert.is_false(srv:banned("10.5.5.5"))
    -- admin ban of a greylisted IP: it leaves the greylist (so eviction
    -- or expiry of the greylist entry can never lift the admin ban)
    assert(srv:ban("10.6.6.6", nil, "operator"))
    assert.equal(0, (a._greylist_size(srv)))
    assert.is_true(srv:banned("10.6.6.6"))
    -- and a failure from an admin-banned IP does not turn it into a
    -- timed greylist entry
    a._greylist(srv, "10.6.6.6", nil, "EPOW")
    assert.equal(0, (a._greylist_size(srv)))
  end)
end)

describe("acl admin bans", function()
  it("persists IPs, v4/v6 prefixes, points and peer ids, timed or " ..
     "permanent, to ban_file and restores them at start", function()
    local dir = h.tmpdir()
    local file = dir .. "/bans.json"
    local id = h.identity()
    local pid = peer_id()
    local a = node{ identity = id, ban_file = file }
    assert(a:ban("203.0.113.9", nil, "by hand"))
    assert(a:ban("198.51.100.0/24", 3600))
    assert(a:ban("2001:db8:42::/48"))
    assert(a:ban("192.0.2.1:9732", 3600))
    assert(a:ban(pid, nil, "bad peer"))
    assert(a:ban("192.0.2.77", 0.2)) -- expires before the restart
    -- a greylist entry is not an admin ban
    acl(a)._greylist(a, "10.9.9.9", nil, "EPOW")
    h.wait(function() return h.read_file(file) end, 3, "ban file written")
    local doc = cjson.decode(h.read_file(file))
    assert.equal(1, doc.version)
    assert.equal("by hand", doc.bans["203.0.113.9"].reason)
    assert.is_nil(doc.bans["203.0.113.9"]["until"]) -- permanent
    local u = doc.bans["198.51.100.0/24"]["until"]
    assert.truthy(math.abs(u - (p2p.core.walltime() + 3600)) <= 2)
    -- expiry kept to the sub-second: the 0.2 s ban ends 0.2 s after it
    -- began, not at the next whole second
    local u77 = doc.bans["192.0.2.77"]["until"]
    assert.truthy(u77 > p2p.core.walltime() - 5 and u77 % 1 ~= 0, u77)
    assert.truthy(doc.bans["2001:db8:42::/48"])
    assert.truthy(doc.bans["192.0.2.1:9732"])
    assert.equal("bad peer", doc.bans[pid].reason)
    assert.is_nil(doc.bans["10.9.9.9"])
    h.close(a)
    -- restart once that ban has expired: the stored expiry says when
    h.sleep(math.max(0, u77 - p2p.core.walltime()) + 0.01)
    assert.truthy(p2p.core.walltime() > u77)
    -- restart on the same file
    local b = node{ ban_file = file }
    local br = h.record(b)
    assert.is_true(b:banned("203.0.113.9"))
    assert.is_true(b:banned("198.51.100.200"))
    assert.is_false(b:banned("198.51.101.1"))
    assert.is_true(b:banned("2001:db8:42:ffff::1"))
    assert.is_false(b:banned("2001:db8:43::1"))
    assert.is_true(b:banned("192.0.2.1:9732"))
    assert.is_false(b:banned("192.0.2.1:9733"))
    assert.is_true(b:banned(pid))
    assert.is_false(b:banned("192.0.2.77"))
    assert.is_false(b:banned("10.9.9.9"))
    -- unban is persisted too; restoring did not rewrite anything new
    assert.is_true(b:unban("203.0.113.9"))
    h.wait(function()
      return not cjson.decode(h.read_file(file)).bans["203.0.113.9"]
    end, 3, "unban written")
    assert.equal(0, #br.policy_error)
    h.close(b)
    local c = node{ ban_file = file }
    assert.is_false(c:banned("203.0.113.9"))
    assert.is_true(c:banned(pid))
    h.close(c)
    h.rmdir(dir)
  end)

  it("reports a corrupt ban_file as a policy_error and keeps running",
    function()
    local dir = h.tmpdir()
    local file = dir .. "/bans.json"
    h.write_file(file, "{ this is not json")
    local errs = {}
    local n = node{ ban_file = file, policies = { {
      name = "catch",
      event = function(_, ev)
        if ev.type == "policy_error" then errs[#errs + 1] = ev end
      end,
    } } }
    assert.equal(1, #errs)
    assert.equal("acl", errs[1].policy)
    assert.equal("start", errs[1].hook)
    assert.matches("not a luap2p ban file", errs[1].message)
    -- still serving
    local cli = node{}
    assert(cli:connect(n.addr))
    h.wait(function() return h.nconns(n) == 1 end, 5, "connected")
    h.close(n, cli)
    h.rmdir(dir)
  end)
end)
