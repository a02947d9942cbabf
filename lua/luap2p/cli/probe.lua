local M={} function M.define(p) p:command('probe') end function M.run() return 0 end return M
