-- Busted output handler: the plain terminal report, then one closing line
-- "N passed, N failed[, N skipped]" that CI and humans read the same way.
-- Errors (a spec that raised) count as failed.
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
    return nil, true
  end

  busted.subscribe({ "exit" }, closing_line)
  return handler
end
