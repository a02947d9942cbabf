-- luap2p identity generate | show: Octez identity.json files.
local core = require "luap2p.core"
local identity = require "luap2p.identity"
local util = require "luap2p.cli.util"

local io, string, tonumber = io, string, tonumber

local _M = {}

local DEFAULT_OUTPUT = "identity.json"
local PLAIN_PERIOD = 5 -- seconds between progress lines off a terminal
local SLOW_BITS = 24   -- warn from here: minutes on a small machine

function _M.define(parser)
  local cmd = parser:command("identity",
      "Create or inspect an Octez identity.json (keys + proof of work).")
    :command_target("action")
  local gen = cmd:command("generate",
      "Generate fresh keys and search a proof-of-work stamp on every core.")
    :epilog("Progress (tries, tries/s, time left) goes to stderr: a live " ..
      "line on a\nterminal, a line every 5 s otherwise. The file is " ..
      "written with mode 0600.")
  gen:option("--pow", "Proof-of-work bits (Octez nodes require 26).")
    :argname("BITS"):default("26")
    :convert(util.number(0, 64, "--pow"))
  gen:option("--output -o", "Where to write the identity.")
    :argname("FILE"):default(DEFAULT_OUTPUT)
  gen:flag("--force", "Replace an existing file.")
  gen:option("--threads", "Search threads (default: every core).")
    :argname("N"):convert(util.integer(1, 256, "--threads"))
  gen:flag("--json", "Print the result as one JSON object on stdout.")
  local show = cmd:command("show",
      "Print the peer id and proof-of-work bits of an identity; check " ..
      "its keys.")
  show:argument("FILE", "identity.json to read."):target("file")
  show:option("--pow", "Fail (exit 1) unless the stamp meets BITS.")
    :argname("BITS"):convert(util.number(0, 256, "--pow"))
  show:flag("--json", "Print the result as one JSON object on stdout.")
end

-- Progress reporter for identity.generate: a redrawn line on a terminal,
-- a plain line every PLAIN_PERIOD seconds otherwise. Always on stderr so
-- that stdout (and --json) stays clean.
local function reporter(bits, threads)
  local tty = util.isatty(io.stderr)
  local expected = identity.expected_tries(bits)
  local last_plain = 0
  local shown = false
  local function line(tries, elapsed)
    local rate = elapsed > 0 and tries / elapsed or 0
    local left = expected - tries
    local eta
    if rate <= 0 then
      eta = "time left: ?"
    elseif left > 0 then
      eta = "about " .. identity.format_duration(left / rate) .. " left"
    else
      eta = "past the expected count, any moment now"
    end
    return string.format("proof of work: %s tries, %s tries/s, %s " ..
      "(expected ~%s tries, %s)", util.si(tries), util.si(rate), eta,
      util.si(expected), identity.format_duration(elapsed))
  end
  local r = {}
  function r.progress(tries, elapsed)
    if tty then
      io.stderr:write("\r\27[K", line(tries, elapsed))
      shown = true
    elseif elapsed - last_plain >= PLAIN_PERIOD then
      last_plain = elapsed
      io.stderr:write(line(tries, elapsed), "\n")
    end
    io.stderr:flush()
  end
  function r.start()
    local msg = string.format("searching %g bits of proof of work on %d " ..
      "thread%s (expected ~%s tries)", bits, threads,
      threads == 1 and "" or "s", util.si(expected))
    if tty then
      io.stderr:write("\r\27[K", msg)
      shown = true
    else
      io.stderr:write(msg, "\n")
    end
    io.stderr:flush()
  end
  function r.done(tries, elapsed)
    if tty and shown then io.stderr:write("\r\27[K") end
    local rate = elapsed > 0 and tries / elapsed or 0
    io.stderr:write(string.format("proof of work found after %s tries " ..
      "in %s (%s tries/s)\n", util.si(tries),
      identity.format_duration(elapsed), util.si(rate)))
    io.stderr:flush()
  end
  return r
end

local function cpus()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return n or 1
end

local function generate(args)
  local path = args.output
  -- Fail before spending minutes of CPU on a file we may not write.
  if not args.force then
    local f = io.open(path, "r")
    if f then
      f:close()
      util.fail(string.format("%s already exists; use --force to replace " ..
        "it or --output to choose another file", path))
    end
  end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local probe = io.open(dir .. "/.", "r")
    if not probe then
      util.fail(string.format("cannot write %s: directory %s does not " ..
        "exist", path, dir))
    end
    probe:close()
  end
  local threads = args.threads or cpus()
  if args.pow >= SLOW_BITS then
    io.stderr:write(string.format("note: %g bits takes a while (about " ..
      "%s tries; the progress line shows the time left); use --pow 0 " ..
      "for tests\n",
      args.pow, util.si(identity.expected_tries(args.pow))))
  end
  local rep = reporter(args.pow, threads)
  rep.start()
  local t0 = core.now()
  local id, tries = identity.generate(args.pow,
    { threads = threads, progress = rep.progress })
  local elapsed = core.now() - t0
  if not id then util.fail(util.plain(tries)) end
  rep.done(tries, elapsed)
  local ok, err = identity.save(id, path, { force = args.force })
  if not ok then util.fail(util.plain(err)) end
  local peer_id = id:peer_id()
  if args.json then
    io.stdout:write(util.json({ peer_id = peer_id, file = path,
      pow_bits = args.pow, stamp_bits = identity.pow_bits(id),
      tries = tries, seconds = elapsed }), "\n")
  else
    io.stdout:write(string.format("peer id        %s\nproof of work  %g " ..
      "bits\nwritten        %s (mode 0600)\n", peer_id, args.pow, path))
  end
  id:close()
  return util.EXIT_OK
end

local function show(args)
  local id = util.load_identity(args.file)
  local bits = identity.pow_bits(id)
  local peer_id = id:peer_id()
  local pk = id:public_key():gsub(".", function(c)
    return string.format("%02x", c:byte())
  end)
  local meets = args.pow == nil or id:check_pow(args.pow)
  if args.json then
    io.stdout:write(util.json({ peer_id = peer_id, public_key = pk,
      pow_bits = bits, keys = "ok", file = args.file,
      meets = args.pow and meets or nil, required_bits = args.pow }), "\n")
  else
    io.stdout:write(string.format("peer id        %s\npublic key     %s\n" ..
      "proof of work  %d bits\nkeys           ok (secret key matches " ..
      "public key)\n", peer_id, pk, bits))
  end
  id:close()
  if not meets then
    util.fail(string.format("%s: the stamp does not meet %g bits of " ..
      "proof of work (it meets %d); generate a new identity with --pow %g",
      args.file, args.pow, bits, args.pow))
  end
  return util.EXIT_OK
end

function _M.run(args)
  if args.action == "generate" then return generate(args) end
  return show(args)
end

return _M
