-- Child of spec/loop_pool_spec.lua: nodes made and closed one after
-- another on one loop, then the loop closed as lua_close closes it (its
-- __gc); prints the process's thread count at each step, "<step> <n>".
--   LUA_CPATH="build/?.so;;" lua5.4 spec/loop_pool.lua
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local p2p = require "luap2p"
local core = p2p.core

local function threads()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("Threads:%s*(%d+)"))
end

local function step(name) print(name .. " " .. threads()) end

-- A closed node's handles close on the loop's next pass, and its memory
-- (the last node of the loop: what the loop's nodes share too) goes in
-- their close callbacks, in that same pass.
local function close(n)
  n:close()
  core.run("nowait")
end

local function node()
  return assert(p2p.new{ identity = core.identity_generate(), pow_bits = 0,
                         listen = "127.0.0.1:0", default_policies = false,
                         min_connections = 0, crypto_workers = 2 })
end

step("start")
local a = node()
step("first")
close(a)
step("first_closed")
local b = node()
step("second")
-- A handshake on the pool after it outlived a node: its key jobs still run.
local c = node()
local connected = false
c:on("connected", function() connected = true end)
assert(c:connect("127.0.0.1:" .. b.port))
assert(p2p.wait(function() return connected end, 10), "no handshake")
close(b)
close(c)
step("second_closed")
-- What lua_close does to the loop (lua_loop.c, loop_gc).
for _, v in pairs(debug.getregistry()) do
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__name == "luap2p.Loop" then mt.__gc(v) end
end
step("loop_closed")
