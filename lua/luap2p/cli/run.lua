-- luap2p run FILE [ARGS...]: run a Lua script with luap2p on the module
-- paths (from a checkout, the launcher adds lua/ and build/), the way
-- lua5.4 would: the global `arg` holds FILE at 0 and ARGS from 1; an
-- error prints its traceback and exits 1, Ctrl-C one line and exits 130.
local core = require "luap2p.core"
local util = require "luap2p.cli.util"

local _G, debug, io, ipairs, loadfile, os, table, tostring, xpcall =
      _G, debug, io, ipairs, loadfile, os, table, tostring, xpcall

local _M = {}

function _M.define(parser)
  local cmd = parser:command("run",
      "Run a Lua script with luap2p on the module paths.")
    :epilog("Examples:\n" ..
      "  luap2p run examples/hello.lua\n" ..
      "  luap2p run examples/crawler.lua 127.0.0.1:9732\n" ..
      "Arguments after FILE go to the script (global arg), not to " ..
      "luap2p.")
  cmd:argument("FILE", "Lua script."):target("file")
  cmd:argument("ARGS", "Arguments of the script."):args("*"):target("args")
end

-- Run file with the list args; returns an exit code (errors propagate:
-- the interpreter prints them with their traceback).
function _M.exec(file, args)
  local chunk, err = loadfile(file)
  if not chunk then
    io.stderr:write("luap2p run: ", err, "\n")
    return util.EXIT_RUNTIME
  end
  local a = { [0] = file }
  for i, v in ipairs(args) do a[i] = v end
  _G.arg = a
  -- Ctrl-C while the loop runs (tasks, callbacks): one line, exit 130.
  -- (lua5.4's own SIGINT error would land in whichever callback runs.)
  core.signal("SIGINT", function()
    io.stderr:write("luap2p run: interrupted\n")
    os.exit(util.EXIT_INTERRUPTED)
  end)
  local ok, err = xpcall(chunk, function(e)
    if util.is_interrupt(e) then return e end
    return debug.traceback(tostring(e), 2)
  end, table.unpack(a, 1, #a))
  if ok then return util.EXIT_OK end
  if util.is_interrupt(err) then
    io.stderr:write("luap2p run: interrupted\n")
    return util.EXIT_INTERRUPTED
  end
  io.stderr:write("luap2p run: ", tostring(err), "\n")
  return util.EXIT_RUNTIME
end

function _M.run(args)
  return _M.exec(args.file, args.args or {})
end

return _M
