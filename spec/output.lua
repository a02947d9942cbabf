-- Busted output handler: the plain terminal report, then one closing line
-- "N passed, N failed[, N skipped]" that CI and humans read the same way.
-- Errors (a spec that raised) count as failed. With LUAP2P_PENDING_FILE
-- set, the pending (skipped) tests are listed in that file for CI.
local plain = require "busted.outputHandlers.plainTerminal"

return function(options)
  local busted = require "busted"
  local handler = plain(options)

  local function closing_line()
    local failed = #handler.failures + #handler.errors
    local line = string.format("%d passed, %d failed",
      #handler.successes, failed)
    if #handler.pendings > 0 then
      line = line .. string.format(", %d skipped", #handler.pendings)
    end
    io.write(line, "\n")
    io.flush()
    -- CI reads the pending tests from here and fails on any that is not
    -- on its allow-list (.ci/allowed-pending): one line each,
    -- "<spec file>\t<full test name>\t<message>".
    local path = os.getenv("LUAP2P_PENDING_FILE")
    if path then
      local f = assert(io.open(path, "w"))
      for _, p in ipairs(handler.pendings) do
        local file = p.trace and p.trace.short_src or "?"
        local msg = tostring(p.message or ""):gsub("[\t\n]", " ")
        f:write(file, "\t", tostring(p.name):gsub("[\t\n]", " "), "\t",
          msg, "\n")
      end
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ "exit" }, closing_line)
  return handler
end
