-- luap2p.cli: the `luap2p` command line (scripts/luap2p is a thin launcher).
--
-- Each subcommand lives in luap2p.cli.<name> and exports define(parser),
-- which adds its command to the argparse parser, and run(args) -> exit code.
-- Exit codes (the README's command-line section): 0 ok, 1 runtime failure
-- (one line on stderr), 2 usage error (one line on stderr).
local argparse = require "argparse"
local util = require "luap2p.cli.util"

local debug, io, ipairs, os, pcall, require, string, table, tostring,
      xpcall =
      debug, io, ipairs, os, pcall, require, string, table, tostring,
      xpcall

local _M = {}

_M.COMMANDS = { "identity", "node", "probe", "ctl", "crawl", "monitor",
                 "demo", "run", "sim" }

-- argparse prints the whole usage and exits 1 on a bad command line; the
-- contract wants one line and exit 2, so every parser gets this handler.
local function usage_error(parser, msg)
  local ok, name = pcall(parser._get_fullname, parser)
  if not ok then name = parser._name end
  -- argparse may add a second line ("Did you mean ...?"): keep one.
  msg = tostring(msg):gsub("\n+", "; ")
  io.stderr:write(string.format("%s: %s (see '%s --help')\n", name, msg,
    name))
  os.exit(util.EXIT_USAGE)
end

local function install_handler(parser)
  parser.error = usage_error
  for _, cmd in ipairs(parser._commands or {}) do install_handler(cmd) end
end

function _M.parser()
  local p2p_version = "?"
  local ok, p2p = pcall(require, "luap2p")
  if ok then p2p_version = p2p.VERSION end
  local parser = argparse("luap2p",
      "An Octez-compatible peer-to-peer node, prober and demo network.")
    :epilog("Run 'luap2p COMMAND --help' for the options of a command.\n" ..
      "Exit codes: 0 ok, 1 runtime failure, 2 usage error, 130 " ..
      "interrupted.")
    :help_max_width(80)
    :command_target("command")
  parser:flag("--version", "Print the version and exit.")
    :action(function()
      io.stdout:write("luap2p ", p2p_version, "\n")
      os.exit(util.EXIT_OK)
    end)
  local modules = {}
  for _, name in ipairs(_M.COMMANDS) do
    modules[name] = require("luap2p.cli." .. name)
    modules[name].define(parser)
  end
  install_handler(parser)
  return parser, modules
end

-- argparse reads a negative number after an option ("--max-connections
-- -1") as an unknown option "-1". No luap2p option or argument starts
-- with a digit, so such a word is the value of the long option before it:
-- pass it as "--max-connections=-1", and the option's own check says what
-- it accepts.
function _M.join_negatives(args)
  local out = {}
  for _, a in ipairs(args) do
    local prev = out[#out]
    if (a:match("^%-%d") or a:match("^%-%.%d")) and prev and
       prev:match("^%-%-%a[%w%-]*$") then
      out[#out] = prev .. "=" .. a
    else
      out[#out + 1] = a
    end
  end
  return out
end

-- Run the command line `args` (a list of strings); returns the exit code.
function _M.main(args)
  -- `luap2p run FILE ...`: the script's own options are not luap2p's.
  if args[1] == "run" and args[2] and not args[2]:match("^%-") then
    return require("luap2p.cli.run").exec(args[2],
      { table.unpack(args, 3, #args) })
  end
  local parser, modules = _M.parser()
  local parsed = parser:parse(_M.join_negatives(args))
  local mod = modules[parsed.command]
  local code
  local ok, err = xpcall(function() code = mod.run(parsed) end,
    function(e)
      if util.is_failure(e) then return e end
      -- Ctrl-C while Lua runs (lua5.4 turns SIGINT into this error).
      if util.is_interrupt(e) then
        return util.failure("interrupted", util.EXIT_INTERRUPTED)
      end
      return debug.traceback(tostring(e), 2)
    end)
  if ok then return code or util.EXIT_OK end
  io.stdout:flush()
  if util.is_failure(err) then
    if err.code == util.EXIT_INTERRUPTED and util.isatty(io.stderr) then
      io.stderr:write("\r\27[K") -- over a live progress line
    end
    io.stderr:write("luap2p ", parsed.command, ": ", err.msg, "\n")
    return err.code
  end
  io.stderr:write("luap2p ", parsed.command, ": internal error: ",
    tostring(err), "\n")
  return util.EXIT_RUNTIME
end

return _M
