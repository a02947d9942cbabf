-- Reproducer (found by `make sanitize` on examples/hello.lua):
-- close both nodes right after a message exchange and let the process end
-- without running the loop again. The graceful close of the connection
-- waits for its Disconnect write; when the Lua state closes, lua_loop.c's
-- loop __gc closes the remaining handles with a NULL close callback, so
-- conn.c's on_handle_closed never runs: the connection and its node
-- (about 1.3 MB with its buffers and ban table) are never freed.
--   LD_PRELOAD=$(gcc -print-file-name=libasan.so) \
--     LUA_CPATH="build/?.so;;" lua5.4 spec/regress/exit_after_close.lua
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local p2p = require "luap2p"

local function node()
  return assert(p2p.new{ identity = p2p.core.identity_generate(),
                         pow_bits = 0, listen = "127.0.0.1:0",
                         default_policies = false, min_connections = 0 })
end

local a, b = node(), node()
local got = false
a:on("message", function(ev) ev.conn:send("pong") end)
b:on("message", function() got = true end)
b:on("connected", function(ev) ev.conn:send("ping") end)
assert(b:connect("127.0.0.1:" .. a.port))
assert(p2p.wait(function() return got end, 5))
a:close()
b:close()
print("closed")
