local M={} function M.define(p) p:command('demo') end function M.run() return 0 end return M
