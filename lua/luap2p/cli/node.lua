local M={} function M.define(p) p:command('node') end function M.run() return 0 end return M
