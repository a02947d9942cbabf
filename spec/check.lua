-- Small assertions and hex helpers shared by the specs of the pure core.
local assert = require "luassert"

local _M = {}

function _M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function _M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Checks the nil, "ENAME: ...", "ENAME" triple; returns the message.
function _M.fails(name, v, msg, ename)
  assert.is_nil(v)
  assert.are.equal(name, ename)
  assert.are.equal("string", type(msg))
  assert.are.equal(name .. ": ", msg:sub(1, #name + 2))
  return msg
end

-- Calls fn and checks that it raised an error containing `text`.
function _M.raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing: " .. text)
  assert.is_truthy(tostring(err):find(text, 1, true),
    "error was: " .. tostring(err))
end

-- Run `lua5.4 <script>` as a process (bounded by `secs`), assert it
-- exited 0 and return everything it printed.
function _M.run_lua(script, secs)
  local p = assert(io.popen(string.format("timeout %d lua5.4 %s 2>&1",
    secs or 20, script)))
  local out = p:read("a")
  local ok, _, code = p:close()
  assert.is_true(ok, "exit " .. tostring(code) .. ": " .. out)
  return out
end

return _M
