-- event order: an event that a policy's event hook causes (the acl closes
-- a connection on rate_exceeded) reaches every consumer after the event
-- that caused it: the JSON log, later policies, node:on listeners. Before,
-- the disconnected of that close was dispatched inside the acl's hook, so
-- the log (last in the stack) printed it before the rate_exceeded.
local p2p = require "luap2p"
local json = require "luap2p.json"
local h = require "helper"

describe("event order", function()
  local keep = h.keeper(before_each, after_each)

  it("rate_exceeded comes before the disconnected it caused, in the " ..
     "JSON log and for listeners", function()
    local path = os.tmpname()
    local log = assert(io.open(path, "w"))
    finally(function() log:close(); os.remove(path) end)
    -- a: the acl and the log; one Bootstrap per second, burst 1.
    local a = keep(h.quiet({ log = "json", log_file = log,
      p2p_message_rate = 1, p2p_message_burst = 1 }))
    local b = keep(h.quiet())
    local seen = {}
    a:on("*", function(ev)
      if ev.type == "rate_exceeded" or ev.type == "disconnected" then
        seen[#seen + 1] = ev.type
      end
    end)
    local conn
    p2p.spawn(function() conn = assert(b:dial(a.addr)) end)
    h.wait(function() return conn ~= nil end, 10, "connected")
    for _ = 1, 5 do conn:send_msg({ type = "bootstrap" }) end
    h.wait(function() return #seen >= 2 end, 10, "cut for its rate")
    assert.same({ "rate_exceeded", "disconnected" }, seen)
    log:flush()
    local types = {}
    for line in io.lines(path) do
      local ev = json.decode(line)
      if ev.type == "rate_exceeded" or ev.type == "disconnected" then
        types[#types + 1] = ev.type
      end
    end
    assert.same({ "rate_exceeded", "disconnected" }, types)
  end)
end)
