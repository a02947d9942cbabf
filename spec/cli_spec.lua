-- cli: scripts/luap2p run as real processes (the README's command line
-- contract): outputs, exit codes (0 ok, 1 runtime, 2 usage) and every bad
-- input giving one clear line on stderr; identity files; node processes
-- probed, reloaded with SIGHUP and scraped for metrics; the demo; the
-- crawler example; the rockspec.
local cjson = require "cjson"
local core = require "luap2p.core"
local identity = require "luap2p.identity"
local h = require "helper"

local c = require "cli_helper"
local ROOT, CLI, q, run, lines, fails, sleep, wait_file, events, find,
      spawn, write_identity =
      c.ROOT, c.CLI, c.q, c.run, c.lines, c.fails, c.sleep, c.wait_file,
      c.events, c.find, c.spawn, c.write_identity

-- GET path from 127.0.0.1:port with a raw TCP client (bash /dev/tcp).
local function http_get(port, path)
  local p = assert(io.popen(string.format("timeout 5 bash -c %s", q(
    string.format("exec 3<>/dev/tcp/127.0.0.1/%d; printf 'GET %s " ..
      "HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3", port, path)))))
  local text = p:read("a")
  p:close()
  return text
end

describe("cli", function()
  local dir
  setup(function() dir = h.tmpdir() end)
  teardown(function() h.rmdir(dir) end)

  describe("help and usage", function()
    it("prints --help for every command and exits 0", function()
      for _, c in ipairs({ "", "identity", "identity generate",
                           "identity show", "node", "probe", "ctl",
                           "ctl ban", "ctl stat", "demo" }) do
        local out, err, code = run(c .. " --help")
        assert.equal(0, code, c .. ": " .. err)
        assert.matches("Usage: luap2p" .. (c ~= "" and " " ..
          c:gsub(" ", " ") or ""), out, 1, true)
        assert.equal("", err)
      end
    end)

    it("node --help shows every default one way, unquoted", function()
      local out = run("node --help"):gsub("%s+", " ") -- unwrapped
      assert.is_nil(out:find("'\"", 1, true), "a quoted default: " .. out)
      assert.is_nil(out:find("; default", 1, true), out)
      assert.matches("%(config%.max_connections%)%. %(default: 100%)", out)
      assert.matches("'random_extra' %(Octez up to v24%.2", out)
      assert.matches("%(default: TEZOS_MAINNET%)", out)
    end)

    it("prints the version, also from another directory", function()
      local out, err, code = run("--version", "cd / && ")
      assert.equal(0, code, err)
      assert.matches("^luap2p %d+%.%d+%.%d+\n$", out)
    end)

    it("exits 2 with one line on an unknown flag, for every command",
      function()
      for _, c in ipairs({ "", "identity generate", "identity show x",
                           "node", "probe 127.0.0.1:1", "ctl stat",
                           "demo" }) do
        local out, err, code = run(c .. " --bogus")
        fails(2, "unknown option '%-%-bogus'", out, err, code)
        assert.matches("see 'luap2p.*%-%-help'", err)
      end
    end)

    it("exits 2 on an unknown command or a missing argument", function()
      local out, err, code = run("frobnicate")
      fails(2, "unknown command 'frobnicate'", out, err, code)
      out, err, code = run("node --listen 127.0.0.1:0")
      fails(2, "missing option '%-%-identity'", out, err, code)
      out, err, code = run("probe")
      fails(2, "missing argument 'HOST:PORT'", out, err, code)
      out, err, code = run("node --identity x --listen 127.0.0.1:0 " ..
        "--log yaml")
      fails(2, "argument for option '%-%-log' must be one of", out, err,
        code)
    end)

    it("exits 2 on a bad HOST:PORT and says what is expected", function()
      local cases = {
        { "node --identity x --listen localhost:9732", "--listen",
          "use an IP address" },
        { "node --identity x --listen 127.0.0.1", "--listen",
          "expected HOST:PORT" },
        { "node --identity x --listen 127.0.0.1:70000", "--listen",
          "port out of range" },
        { "node --identity x --listen 127.0.0.1:0 --peer 127.0.0.1:0",
          "--peer", "port 0 cannot be dialled" },
        { "node --identity x --listen 127.0.0.1:0 --metrics ::1:80",
          "--metrics", "brackets" },
        { "probe 300.1.2.3:9732", "HOST:PORT", "bad HOST:PORT '300.1.2.3:9732'" },
        { "probe nohost", "HOST:PORT", "expected HOST:PORT" },
      }
      for _, c in ipairs(cases) do
        local out, err, code = run(c[1])
        fails(2, "bad " .. c[2]:gsub("%p", "%%%0") .. " '", out, err, code)
        assert.matches(c[3], err, 1, true)
      end
    end)

    it("exits 2 on bad numbers", function()
      local out, err, code = run("identity generate --pow lots")
      fails(2, "bad %-%-pow 'lots'", out, err, code)
      out, err, code = run("node --identity x --listen 127.0.0.1:0 " ..
        "--min-connections 5 --max-connections 3")
      fails(2, "%-%-min%-connections %(5%) is larger than " ..
        "%-%-max%-connections %(3%)", out, err, code)
      out, err, code = run("demo --duration=-1")
      fails(2, "bad %-%-duration '%-1'", out, err, code)
      -- a negative number is the option's value, not an option "-1"
      out, err, code = run("demo --duration -1")
      fails(2, "bad %-%-duration '%-1'", out, err, code)
    end)

    -- Every option that takes a checked value, in every command: a bad
    -- value exits 2 with one line that names the option (or the
    -- positional argument's form), the value, and what it accepts.
    local ID = "node --identity x --listen 127.0.0.1:0 "
    local BAD_VALUES = {
      { "identity generate --pow lots", "--pow", "lots", "a number in 0..64" },
      { "identity generate --pow -1", "--pow", "-1", "a number in 0..64" },
      { "identity generate --threads 0", "--threads", "0", "an integer in 1..256" },
      { "identity show x --pow -3", "--pow", "-3", "a number in 0..256" },
      { "node --identity x --listen localhost:9732", "--listen", "localhost:9732", "use an IP address" },
      { ID .. "--peer 10.0.0.1", "--peer", "10.0.0.1", "expected HOST:PORT" },
      { ID .. "--trusted x", "--trusted", "x", "expected HOST:PORT" },
      { ID .. "--rpc-addr foo", "--rpc-addr", "foo", "expected HOST:PORT" },
      { ID .. "--metrics 1.2.3.4:99999", "--metrics", "1.2.3.4:99999", "expected HOST:PORT" },
      { ID .. "--chain ''", "--chain", "", "a chain name of 1..255 bytes" },
      { ID .. "--pow -1", "--pow", "-1", "a number in 0..256" },
      { ID .. "--min-connections x", "--min-connections", "x", "an integer in 0..1048576" },
      { ID .. "--max-connections -1", "--max-connections", "-1", "an integer in 0..1048576" },
      { ID .. "--max-incoming 2000000", "--max-incoming", "2000000", "an integer in 0..1048576" },
      { ID .. "--greylist-timeout -5", "--greylist-timeout", "-5", "a number in 0..inf" },
      { ID .. "--rpc-request-timeout 0", "--rpc-request-timeout", "0", "an integer in 1..86400" },
      { ID .. "--too-many-rule x", "--too-many-rule", nil, "'random_extra', 'threshold'" },
      { ID .. "--app-messages x", "--app-messages", nil, "'shell', 'raw'" },
      { ID .. "--log yaml", "--log", nil, "'human', 'json'" },
      { "probe nohost", "HOST:PORT", "nohost", "expected HOST:PORT" },
      { "probe 127.0.0.1:1 --chain ''", "--chain", "", "a chain name of 1..255 bytes" },
      { "probe 127.0.0.1:1 --pow 100", "--pow", "100", "a number in 0..64" },
      { "probe 127.0.0.1:1 --timeout -1", "--timeout", "-1", "a number in 0.1..3600" },
      { "ctl --rpc foo stat", "--rpc", "foo", "expected HOST:PORT" },
      { "ctl --timeout x stat", "--timeout", "x", "a number in 0.1..3600" },
      { "ctl ban 192.0.2.1 --for -1", "--for", "-1", "a number in 1..315360000" },
      { "crawl x", "HOST:PORT", "x", "expected HOST:PORT" },
      { "crawl 127.0.0.1:1 --max-peers -5", "--max-peers", "-5", "an integer in 1..1000000" },
      { "crawl 127.0.0.1:1 --concurrency 0", "--concurrency", "0", "an integer in 1..4096" },
      { "crawl 127.0.0.1:1 --timeout x", "--timeout", "x", "a number in 0.1..3600" },
      { "crawl 127.0.0.1:1 --allow foo", "--allow", "foo", "a.b.c.d/n or an IPv6 address" },
      { "crawl 127.0.0.1:1 --chain-id foo", "--chain-id", "foo", "a Base58Check chain id" },
      { "crawl 127.0.0.1:1 --chain ''", "--chain", "", "a chain name of 1..255 bytes" },
      { "crawl 127.0.0.1:1 --pow -1", "--pow", "-1", "a number in 0..64" },
      { "monitor 127.0.0.1:0", "HOST:PORT", "127.0.0.1:0", "port 0 cannot be dialled" },
      { "monitor 127.0.0.1:1 --count 0", "--count", "0", "an integer in 1..1000000000" },
      { "monitor 127.0.0.1:1 --give-up -1", "--give-up", "-1", "a number in 0..1000000000 (see" },
      { "monitor 127.0.0.1:1 --timeout 0", "--timeout", "0", "a number in 0.1..3600" },
      { "monitor 127.0.0.1:1 --chain-id foo", "--chain-id", "foo", "a Base58Check chain id" },
      { "monitor 127.0.0.1:1 --chain ''", "--chain", "", "a chain name of 1..255 bytes" },
      { "demo --duration -1", "--duration", "-1", "a number in 1..86400" },
      { "demo --interval 0", "--interval", "0", "a number in 0.2..3600" },
      { "sim x.lua --nodes 1", "--nodes", "1", "an integer in 2..50000" },
      { "sim x.lua --processes -2", "--processes", "-2", "an integer in 1..256" },
      { "sim x.lua --seconds 0", "--seconds", "0", "a number in 1..86400" },
      { "sim x.lua --port 80", "--port", "80", "an integer in 1024..65535" },
    }

    it("exits 2 on a bad value of any option, naming it and what it " ..
       "accepts (every command)", function()
      for _, c in ipairs(BAD_VALUES) do
        local out, err, code = run(c[1])
        local what = c[3] and ("bad " .. c[2] .. " '" .. c[3] .. "': ") or
          ("argument for option '" .. c[2] .. "' must be one of ")
        assert.equal(2, code, c[1] .. ": " .. err)
        assert.equal(1, #lines(err), c[1] .. ": " .. err)
        assert.equal("", out, c[1])
        assert.equal("luap2p ", err:sub(1, 7), c[1] .. ": " .. err)
        assert.truthy(err:find(": " .. what, 1, true), c[1] .. ": " .. err)
        assert.truthy(err:find(c[4], 1, true), c[1] .. ": " .. err)
      end
    end)
  end)

  describe("identity", function()
    it("generates with --pow 16, shows it, and the library reads it",
      function()
      local path = dir .. "/id16.json"
      local out, err, code = run("identity generate --pow 16 --output " ..
        q(path))
      assert.equal(0, code, err)
      local peer_id = out:match("peer id%s+(id%w+)")
      assert.truthy(peer_id, out)
      assert.matches("proof of work found after", err)
      assert.equal(tonumber("600", 8), core.file_mode(path))
      -- show: same peer id, at least 16 bits, keys checked
      local sout, serr, scode = run("identity show " .. q(path))
      assert.equal(0, scode, serr)
      assert.equal(peer_id, sout:match("peer id%s+(id%w+)"))
      assert.is_true(tonumber(sout:match("proof of work%s+(%d+) bits")) >= 16)
      assert.matches("keys%s+ok", sout)
      -- the library
      local id = assert(identity.load(path))
      assert.equal(peer_id, id:peer_id())
      assert.is_true(id:check_pow(16))
      assert.is_true(id:check_keys())
      assert.equal(identity.pow_bits(id),
        tonumber(sout:match("proof of work%s+(%d+) bits")))
    end)

    it("refuses to overwrite without --force, replaces with it", function()
      local path = dir .. "/idforce.json"
      local first = write_identity(path)
      local before = h.read_file(path)
      local out, err, code = run("identity generate --pow 0 --output " ..
        q(path))
      fails(1, "already exists; use %-%-force", out, err, code)
      assert.equal(before, h.read_file(path))
      os.execute("chmod 644 " .. q(path))
      out, err, code = run("identity generate --pow 0 --force -o " ..
        q(path))
      assert.equal(0, code, err)
      local id = assert(identity.load(path))
      assert.are_not.equal(first, id:peer_id())
      assert.equal(tonumber("600", 8), core.file_mode(path))
    end)

    it("keeps --json output clean: progress only on stderr", function()
      local path = dir .. "/idjson.json"
      local out, err, code = run("identity generate --pow 12 --json -o " ..
        q(path))
      assert.equal(0, code, err)
      assert.equal(1, #lines(out))
      local v = cjson.decode(out)
      assert.equal(path, v.file)
      assert.equal(12, v.pow_bits)
      assert.is_true(v.tries >= 1)
      assert.matches("searching 12 bits", err)
      assert.matches("tries/s", err)
      assert.is_nil(out:find("tries/s", 1, true))
      assert.is_nil(err:find("\27[", 1, true)) -- not a terminal: no redraw
      local sout, serr, scode = run("identity show --json " .. q(path))
      assert.equal(0, scode, serr)
      local s = cjson.decode(sout)
      assert.equal(v.peer_id, s.peer_id)
      assert.equal("ok", s.keys)
      assert.is_true(s.pow_bits >= 12)
    end)

    it("draws a live progress line when stderr is a terminal", function()
      local path = dir .. "/idtty.json"
      local json = dir .. "/idtty.out"
      -- script(1) gives the command a pseudo-terminal; stdout goes to a
      -- file, so what script captures is stderr alone.
      local p = assert(io.popen(string.format(
        "timeout 60 script -qec %s /dev/null", q(string.format(
          "%s identity generate --pow 18 --json -o %s >%s", q(CLI), q(path),
          q(json))))))
      local tty = p:read("a")
      p:close()
      assert.truthy(tty:find("\r\27[K", 1, true), "redrawn line: " .. tty)
      assert.matches("searching 18 bits", tty)
      assert.matches("proof of work found after", tty)
      local v = cjson.decode(h.read_file(json))
      assert.equal(18, v.pow_bits)
    end)

    it("fails with one line on an unreadable or bad identity", function()
      local bad = dir .. "/bad.json"
      h.write_file(bad, "{\"peer_id\": 1}")
      local mismatch = dir .. "/mismatch.json"
      local a = core.identity_generate()
      local b = core.identity_generate()
      local text = a:to_json():gsub('"secret_key"%s*:%s*"[^"]*"',
        '"secret_key": "' .. b:to_json():match(
          '"secret_key"%s*:%s*"([^"]*)"') .. '"')
      h.write_file(mismatch, text)
      -- identity files are private (0600), or refused before their content
      os.execute("chmod 600 " .. q(bad) .. " " .. q(mismatch))
      local open = dir .. "/open.json"
      h.write_file(open, core.identity_generate():to_json())
      os.execute("chmod 644 " .. q(open))
      local huge = dir .. "/huge.json"
      h.write_file(huge, string.rep(" ", 65537))
      os.execute("chmod 600 " .. q(huge))
      local cases = {
        { open, "identity file .*open.json is accessible by others %(mode " ..
          "0644%): run chmod 600 .*open.json %(EPERM%)$" },
        -- a device's mode says nothing of the key: no "chmod 600 /dev/zero"
        { "/dev/zero", "identity file /dev/zero is larger than 64 KiB " ..
          "%(EFBIG%)$" },
        { huge, "larger than 64 KiB %(EFBIG%)$" },
        { dir .. "/missing.json", "cannot read identity file.*No such " ..
          "file.*ENOENT.*luap2p identity generate" },
        { dir, "identity file .* is a directory %(EISDIR%)$" },
        { bad, "EIDENTITY" },
        { mismatch, "EIDENTITY" },
      }
      for _, c in ipairs(cases) do
        local out, err, code = run("identity show " .. q(c[1]))
        fails(1, c[2], out, err, code)
        out, err, code = run("node --identity " .. q(c[1]) ..
          " --listen 127.0.0.1:0")
        fails(1, c[2], out, err, code)
        out, err, code = run("probe 127.0.0.1:1 --identity " .. q(c[1]))
        fails(1, c[2], out, err, code)
      end
    end)

    it("fails when the stamp does not meet show --pow", function()
      local path = dir .. "/weak.json"
      write_identity(path, 0)
      local out, err, code = run("identity show --pow 40 " .. q(path))
      fails(1, "does not meet 40 bits", out, err, code, true)
    end)

    it("fails with one line when the output directory is missing",
      function()
      local out, err, code = run("identity generate --pow 0 -o " ..
        q(dir .. "/no/such/dir/id.json"))
      fails(1, "does not exist", out, err, code)
    end)
  end)

  describe("node and probe", function()
    it("fails with one line when the port is in use", function()
      local path = dir .. "/busy.json"
      write_identity(path)
      local holder = h.node({ default_policies = false })
      local out, err, code = run(string.format(
        "node --identity %s --listen 127.0.0.1:%d --pow 0", q(path),
        holder.port))
      fails(1, "cannot listen on 127%.0%.0%.1:%d+: address already in use",
        out, err, code)
      assert.matches("choose another %-%-listen port", err)
      out, err, code = run(string.format("node --identity %s --listen " ..
        "127.0.0.1:0 --pow 0 --metrics 127.0.0.1:%d", q(path), holder.port))
      fails(1, "cannot serve %-%-metrics on 127%.0%.0%.1:%d+: address " ..
        "already in use", out, err, code, true)
      h.close(holder)
    end)

    it("fails with one line on a missing policy file or a broken one",
      function()
      local path = dir .. "/pol.json"
      write_identity(path)
      local out, err, code = run(string.format("node --identity %s " ..
        "--listen 127.0.0.1:0 --pow 0 --policy %s", q(path),
        q(dir .. "/nope.lua")))
      fails(1, "cannot read policy file", out, err, code)
      local broken = dir .. "/broken.lua"
      h.write_file(broken, "return {")
      out, err, code = run(string.format("node --identity %s " ..
        "--listen 127.0.0.1:0 --pow 0 --policy %s", q(path), q(broken)))
      fails(1, "policy error: .*broken%.lua", out, err, code)
    end)

    it("probe exits 1 with one line when nobody listens", function()
      local holder = h.node({ default_policies = false })
      local port = holder.port
      h.close(holder)
      local out, err, code = run("probe 127.0.0.1:" .. port)
      fails(1, "no answer from 127%.0%.0%.1:%d+: connection refused",
        out, err, code)
      out, err, code = run("probe --json 127.0.0.1:" .. port)
      assert.equal(1, code)
      local v = cjson.decode(out)
      assert.is_false(v.ok)
      assert.equal("ECONNREFUSED", v.code)
    end)

    it("probe explains a close during the handshake", function()
      local path = dir .. "/strict.json"
      write_identity(path)
      -- a node that wants 20 bits of proof of work closes on our 0
      local n = spawn(dir, "strict", string.format("node --identity %s " ..
        "--listen 127.0.0.1:0 --pow 20 --log json --min-connections 0",
        q(path)))
      local started = events(wait_file(n.out, function(t)
        return t:find('"started"', 1, true) end, 10, "strict started"))[1]
      local out, err, code = run("probe " .. started.point)
      fails(1, "no answer from " .. started.point:gsub("%.", "%%.") ..
        ": the remote closed during the handshake: it likely requires " ..
        "more proof of work %(try %-%-pow 26%) or another chain " ..
        "%(%-%-chain%)", out, err, code)
      n.kill("TERM")
      assert.equal(0, n.wait_exit(10))
    end)

    it("runs nodes: probe, SIGHUP after a policy edit, metrics, clean " ..
       "shutdown", function()
      local ida, idb = dir .. "/a.json", dir .. "/b.json"
      local peer_a, peer_b = write_identity(ida), write_identity(idb)
      local pol = dir .. "/door.lua"
      h.write_file(pol, 'return { name = "door" }\n')
      local a = spawn(dir, "a", string.format("node --identity %s " ..
        "--listen 127.0.0.1:0 --pow 0 --log json --min-connections 0 " ..
        "--policy %s --metrics 127.0.0.1:0", q(ida), q(pol)))
      local started = events(wait_file(a.out, function(t)
        return t:find('"started"', 1, true) end, 10, "a started"))[1]
      assert.equal("started", started.type)
      assert.equal(peer_a, started.peer_id)
      local a_point = started.point
      local mport = tonumber(started.metrics:match(":(%d+)/metrics$"))
      assert.matches("^127%.0%.0%.1:%d+$", a_point)

      -- b, human log, dials a
      local b = spawn(dir, "b", string.format("node --identity %s " ..
        "--listen 127.0.0.1:0 --pow 0 --min-connections 0 --peer %s",
        q(idb), a_point))
      local bstart = wait_file(b.out, function(t)
        return t:find("listening on", 1, true) end, 10, "b started")
      assert.matches("luap2p node " .. peer_b .. " listening on " ..
        "127%.0%.0%.1:%d+ %(chain TEZOS_MAINNET%)", bstart)
      wait_file(a.out, function(t)
        return t:find('"connected"', 1, true) and t:find(peer_b, 1, true)
      end, 10, "a connected to b")

      -- probe a: Ack, its peer id and versions
      local out, err, code = run("probe --json " .. a_point)
      assert.equal(0, code, err)
      local v = cjson.decode(out)
      assert.is_true(v.ok)
      assert.equal("ack", v.answer)
      assert.equal(peer_a, v.peer_id)
      assert.equal(a_point, v.point)
      assert.equal("TEZOS_MAINNET", v.chain)
      assert.equal(1, v.versions.p2p)
      assert.equal(2, v.versions.distributed_db)
      assert.is_false(v.metadata.private_node)
      assert.equal("", err)
      out, err, code = run("probe " .. a_point)
      assert.equal(0, code, err)
      assert.matches("peer id%s+" .. peer_a, out)
      assert.matches("answer%s+Ack", out)
      -- another chain: what the remote is on, and how to probe it
      out, err, code = run("probe --chain FOO " .. a_point)
      fails(1, "^luap2p probe: " .. a_point:gsub("%.", "%%.") .. " is on " ..
        "chain 'TEZOS_MAINNET', not 'FOO': probe it with %-%-chain " ..
        "TEZOS_MAINNET$", out, err, code, true)
      assert.matches("chain%s+TEZOS_MAINNET", out)

      -- edit the policy, SIGHUP: reloaded, and the door is now shut
      h.write_file(pol, 'return { name = "door", accept = function() ' ..
        'return false, "closed for maintenance" end }\n')
      a.kill("HUP")
      local text = wait_file(a.out, function(t)
        return t:find('"reloaded"', 1, true) end, 10, "reloaded")
      local rel = find(events(text), function(e)
        return e.type == "reloaded" and e.path == pol end)
      assert.truthy(rel, text)
      assert.equal("door", rel.policy)
      out, err, code = run("probe " .. a_point)
      fails(1, "no answer from " .. a_point:gsub("%.", "%%."), out, err, code)
      -- a broken edit keeps the old policy and says why
      h.write_file(pol, "return {")
      a.kill("HUP")
      text = wait_file(a.out, function(t)
        return t:find('"policy_error"', 1, true) end, 10, "policy_error")
      assert.truthy(find(events(text), function(e)
        return e.type == "policy_error" and e.path == pol end))
      out, err, code = run("probe " .. a_point)
      assert.equal(1, code) -- still shut: the old policy stayed

      -- metrics
      local page = http_get(mport, "/metrics")
      assert.matches("^HTTP/1%.[01] 200 OK\r\n", page)
      assert.matches("Content%-Type: text/plain; version=0%.0%.4", page)
      assert.matches('\nluap2p_connections{state="running",' ..
        'direction="incoming"} 1\n', page)
      assert.matches('\nluap2p_refusals_total{stage="accept",' ..
        'reason="closed for maintenance"} 2\n', page)
      assert.matches("\nluap2p_reloads_total [1-9]%d*\n", page)
      assert.matches("\nluap2p_policy_errors_total [1-9]%d*\n", page)
      assert.matches("\nluap2p_errors_total 0\n", page)
      assert.matches("\nluap2p_bytes_in_total [1-9]%d*\n", page)
      assert.matches("\nluap2p_bytes_out_total [1-9]%d*\n", page)
      assert.matches('\nluap2p_events_total{type="reloaded"} [1-9]', page)
      assert.matches('\nluap2p_info{peer_id="' .. peer_a, page)
      assert.matches("^HTTP/1%.[01] 404", http_get(mport, "/nope"))
      -- an oversized request head is refused, and the server lives on
      local p = assert(io.popen(string.format("timeout 5 bash -c %s", q(
        string.format("exec 3<>/dev/tcp/127.0.0.1/%d; head -c 40000 " ..
          "/dev/zero | tr '\\0' a >&3; cat <&3", mport)))))
      assert.matches("^HTTP/1%.[01] 414 ", p:read("a"))
      p:close()
      assert.matches("^HTTP/1%.[01] 200 OK\r\n", http_get(mport, "/metrics"))

      -- SIGTERM a: exit 0, and b hears the Disconnect
      a.kill("TERM")
      assert.equal(0, a.wait_exit(10))
      local aev = a.events()
      assert.equal("stopped", aev[#aev].type)
      assert.truthy(find(aev, function(e) return e.type == "stopping" and
        e.signal == "SIGTERM" end))
      wait_file(b.out, function(t)
        return t:find("disconnected", 1, true) end, 10, "b sees a leave")
      b.kill("INT") -- Ctrl-C: the same clean stop, exit 130
      assert.equal(130, b.wait_exit(10))
      assert.matches("SIGINT, closing connections", h.read_file(b.out))
      assert.equal("", h.read_file(a.err))
    end)
  end)

  describe("demo", function()
    it("runs a network, meets its expectations and exits 0", function()
      local out, err, code = run("demo --duration 5 --check")
      assert.equal(0, code, err .. out)
      for _, name in ipairs({ "seed", "alice", "bob", "carol", "vault",
                              "guard", "tiny", "mallory" }) do
        assert.matches("\n" .. name .. "%s+%d+%s+id", out)
      end
      assert.matches("summary after %d+s: %d+ connections between 8 nodes",
        out)
      assert.matches("REFUSALS", out)
      assert.matches("private mode: point or peer not trusted x%d", out)
      assert.matches("banned: blocklisted x%d", out)
      assert.is_nil(out:find("NOT MET", 1, true))
      assert.equal(5, select(2, out:gsub("%[ok%]", "")))
    end)
  end)

  describe("Ctrl-C", function()
    it("stops identity generate with one line, exit 130 and no file",
       function()
      local path = dir .. "/interrupted.json"
      local g = spawn(dir, "gen", "identity generate --pow 60 --threads 1 " ..
        "--output " .. q(path))
      wait_file(g.err, function(t) return t:match("searching") end, 10,
        "the search to start")
      g.kill("INT")
      assert.equal(130, g.wait_exit(10))
      local err = h.read_file(g.err)
      assert.matches("\nluap2p identity: interrupted\n$", err)
      assert.is_nil(err:find("traceback", 1, true))
      assert.is_nil(h.read_file(path))
      -- nor a temporary file
      local p = io.popen("ls " .. q(dir))
      assert.is_nil(p:read("a"):find("interrupted.json", 1, true))
      p:close()
    end)

    it("stops a probe waiting for an answer and a script run by 'run'",
       function()
      local socket = require "socket"
      local srv = assert(socket.bind("127.0.0.1", 0)) -- never answers
      local _, port = srv:getsockname()
      local pr = spawn(dir, "probe_int", "probe 127.0.0.1:" .. port ..
        " --timeout 60")
      local script = dir .. "/forever.lua"
      local f = assert(io.open(script, "w"))
      f:write("local p2p = require 'luap2p'\n",
        "p2p.spawn(function() while true do p2p.sleep(0.05) end end)\n",
        "print('running')\np2p.run()\n")
      f:close()
      local mo = spawn(dir, "monitor_int", "monitor 127.0.0.1:" .. port)
      local r = spawn(dir, "run_int", "run " .. q(script))
      wait_file(r.out, function(t) return t:match("running") end, 10,
        "the script to start")
      sleep(0.3) -- the probe and the monitor are dialling by now
      pr.kill("INT")
      mo.kill("INT")
      r.kill("INT")
      assert.equal(130, pr.wait_exit(10))
      assert.equal(130, mo.wait_exit(10))
      assert.equal(130, r.wait_exit(10))
      srv:close()
      assert.equal("luap2p probe: interrupted\n", h.read_file(pr.err))
      assert.equal("luap2p run: interrupted\n", h.read_file(r.err))
    end)
  end)

  describe("monitor", function()
    it("gives up when no node can be reached: exit 1, one line naming " ..
       "each point and its error, after --give-up seconds", function()
      -- Ports bound and never listened on: connecting is refused.
      local socket = require "socket"
      local holders, points = {}, {}
      for i = 1, 2 do
        holders[i] = assert(socket.tcp())
        assert(holders[i]:bind("127.0.0.1", 0))
        points[i] = "127.0.0.1:" .. select(2, holders[i]:getsockname())
      end
      local out, err, code = run("monitor " .. points[1] .. " " ..
        points[2] .. " --count 1 --give-up 1")
      for _, s in ipairs(holders) do s:close() end
      fails(1, "^luap2p monitor: no node connected for 1s %(" ..
        points[1]:gsub("%p", "%%%0") .. ": connection refused " ..
        "%(ECONNREFUSED%), " .. points[2]:gsub("%p", "%%%0") ..
        ": connection refused %(ECONNREFUSED%)%); check the points, or " ..
        "wait longer with %-%-give%-up S", out, err, code, true)
      -- what it tried, as it went
      assert.matches("lost " .. points[1]:gsub("%p", "%%%0") ..
        ": ECONNREFUSED", out)
      -- the default is bounded too
      local help = run("monitor --help")
      assert.matches("%-%-give%-up S .-%(default: 30%)", help)
    end)
  end)

  describe("run", function()
    it("runs a script with its arguments from any directory", function()
      local script = dir .. "/args.lua"
      local f = assert(io.open(script, "w"))
      f:write("local p2p = require 'luap2p'\n",
        "print(arg[0], table.concat({ ... }, ' '), select('#', ...),\n",
        "  p2p.VERSION)\n")
      f:close()
      local out, err, code = run("run " .. q(script) .. " --x y",
        "cd / && env -u LUA_PATH -u LUA_CPATH ")
      assert.equal(0, code, err)
      assert.equal(script .. "\t--x y\t2\t0.1.0\n", out)
      out, err, code = run("run " .. q(dir .. "/missing.lua"))
      fails(1, "^luap2p run: cannot open .*missing.lua", out, err, code)
    end)
  end)

  describe("examples/crawler.lua", function()
    it("walks a local demo network from its seed", function()
      local out = require("check").run_lua("examples/crawler.lua", 30)
      -- every public node: 7 of 8 (the private one is never advertised)
      local n, answered = out:match("crawled (%d+) point%(s%): (%d+) answered")
      assert.equal("7", n, out)
      assert.equal("7", answered, out)
      assert.matches("id%w+ Ack%s+[1-9]%d* new point", out)
    end)
  end)

  describe("luap2p-scm-1.rockspec", function()
    it("builds with the Makefile and lists every test dependency",
      function()
      local env = {}
      local chunk = assert(loadfile("luap2p-scm-1.rockspec", "t", env))
      chunk()
      assert.equal("make", env.build.type)
      assert.equal("install", env.build.install_target)
      assert.same({ header = "uv.h", library = "uv" },
        env.external_dependencies.LIBUV)
      local deps = table.concat(env.test_dependencies, " ")
      for _, rock in ipairs{ "busted", "luv", "luasocket" } do
        assert.matches(rock, deps)
      end
    end)

    it("installs every Lua module, the core and the command (make install)",
      function()
      local dir = h.tmpdir()
      local f = io.popen(string.format("make -s install INST_LIBDIR=%s/lib " ..
        "INST_LUADIR=%s/lua INST_BINDIR=%s/bin 2>&1; echo rc=$?", dir, dir,
        dir))
      local out = f:read("a")
      f:close()
      assert.matches("rc=0\n$", out)
      local p = io.popen("cd lua && find luap2p -name '*.lua'")
      local n = 0
      for path in p:lines() do
        n = n + 1
        assert.truthy(h.read_file(dir .. "/lua/" .. path), path)
      end
      p:close()
      assert.is_true(n > 20)
      assert.truthy(h.read_file(dir .. "/lib/luap2p/core.so"))
      assert.truthy(h.read_file(dir .. "/bin/luap2p"))
      h.rmdir(dir)
    end)
  end)

  describe("build/luap2p/core.so", function()
    it("exports luaopen_luap2p_core and nothing else", function()
      local p = io.popen("nm -D --defined-only build/luap2p/core.so 2>&1")
      local out = p:read("a")
      p:close()
      local names = {}
      for kind, name in out:gmatch("%x+ (%u) ([%w_]+)") do
        if kind ~= "U" and kind ~= "w" then names[#names + 1] = name end
      end
      assert.same({ "luaopen_luap2p_core" }, names)
    end)
  end)
end)
