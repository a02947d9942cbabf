-- Helpers for specs that run scripts/luap2p as real processes (cli_spec,
-- ctl_spec): run one to completion, spawn one in the background, wait on
-- its output files, read its --log json events.
local cjson = require "cjson"
local identity = require "luap2p.identity"
local h = require "helper"
-- busted's assert lives in the specs' environment, not in modules.
local luassert = require "luassert"

local _M = {}

_M.ROOT = (function()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end)()
_M.CLI = _M.ROOT .. "/scripts/luap2p"

function _M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Run `args` (a shell fragment) through the CLI; returns stdout, stderr,
-- exit code. `pre` is an optional shell prefix (cd somewhere).
function _M.run(args, pre)
  local err = os.tmpname()
  local p = assert(io.popen(string.format("%stimeout 60 %s %s 2>%s",
    pre or "", _M.q(_M.CLI), args, _M.q(err))))
  local out = p:read("a")
  local _, _, code = p:close()
  local e = h.read_file(err) or ""
  os.remove(err)
  return out, e, code
end

function _M.lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- A usage or runtime failure: exactly one stderr line matching `pattern`,
-- nothing on stdout unless allowed.
function _M.fails(code, pattern, out, err, got, stdout_ok)
  luassert.equal(code, got, "exit code; stderr: " .. err)
  local l = _M.lines(err)
  luassert.equal(1, #l, "one line on stderr, got: " .. err)
  luassert.matches(pattern, l[1])
  if not stdout_ok then luassert.equal("", out) end
end

function _M.sleep(s) os.execute("sleep " .. s) end

-- Poll a file until pred(text) holds; returns the text.
function _M.wait_file(path, pred, timeout, what)
  local deadline = os.time() + (timeout or 10)
  while true do
    local text = h.read_file(path) or ""
    if pred(text) then return text end
    if os.time() > deadline then
      error("timed out waiting for " .. what .. "; file has:\n" .. text)
    end
    _M.sleep(0.05)
  end
end

-- JSON objects, one per line, of a --log json output.
function _M.events(text)
  local list = {}
  for l in text:gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, l)
    assert(ok, "not a JSON line: " .. l)
    list[#list + 1] = v
  end
  return list
end

function _M.find(evs, pred)
  for _, e in ipairs(evs) do if pred(e) then return e end end
end

-- A background CLI process: pid, stdout/stderr files, exit code file.
function _M.spawn(dir, name, args)
  local p = {
    out = dir .. "/" .. name .. ".out", err = dir .. "/" .. name .. ".err",
    pidf = dir .. "/" .. name .. ".pid", rcf = dir .. "/" .. name .. ".rc",
  }
  os.execute(string.format("sh -c %s >/dev/null 2>&1 &",
    _M.q(string.format("%s %s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s",
      _M.q(_M.CLI), args, _M.q(p.out), _M.q(p.err), _M.q(p.pidf),
      _M.q(p.rcf)))))
  p.pid = tonumber(_M.wait_file(p.pidf, function(t)
    return t:match("%d+\n") end, 5, name .. " pid"):match("%d+"))
  function p.kill(sig) os.execute("kill -" .. sig .. " " .. p.pid) end
  function p.wait_exit(timeout)
    return tonumber(_M.wait_file(p.rcf, function(t)
      return t:match("%d+") end, timeout or 10, name .. " exit"):match("%d+"))
  end
  function p.events() return _M.events(h.read_file(p.out) or "") end
  return p
end

function _M.write_identity(path, bits)
  local id = assert(identity.generate(bits or 0))
  assert(identity.save(id, path, { force = true }))
  return id:peer_id()
end

return _M
