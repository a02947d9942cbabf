-- status page: GET / of the RPC (luap2p.status_page) loaded by Debian's
-- headless chromium against a node with two peers: once its script has
-- polled the RPC, the connections table lists both peers. A screenshot
-- goes to build/status_page.png.
local rpc = require "luap2p.rpc"
local metrics = require "luap2p.cli.metrics"
local h = require "helper"
local ROOT = require("cli_helper").ROOT

local function chromium()
  for _, name in ipairs({ "chromium", "chromium-browser" }) do
    local p = io.popen("command -v " .. name .. " 2>/dev/null")
    local path = p:read("l")
    p:close()
    if path and path ~= "" then return path end
  end
end

-- Run a shell command in the background while the loop keeps serving;
-- returns its exit code once it ends (bounded by `timeout`).
local function run_async(dir, name, cmd, timeout)
  local rc = dir .. "/" .. name .. ".rc"
  os.execute(string.format("sh -c %q >/dev/null 2>&1 &", string.format(
    "timeout %d %s; echo $? > %s", timeout, cmd, rc)))
  h.wait_raw({}, function()
    local text = h.read_file(rc)
    return text ~= nil and text:match("%d+") ~= nil
  end, timeout + 10, name .. " finished")
  return tonumber(h.read_file(rc):match("%d+"))
end

describe("status page", function()
  local keep = h.keeper(before_each, after_each)

  it("shows the node's peers in headless chromium", function()
    local path = chromium()
    if not path then
      pending("chromium is not installed (scripts/install-deps test)")
      return
    end
    -- Under `make sanitize` LD_PRELOAD carries libasan: not for chromium.
    local browser = "env -u LD_PRELOAD " .. path
    local dir = h.tmpdir()
    local a, b, c = keep(h.quiet(), h.quiet(),
                         h.quiet({ listen = "127.0.0.2:0" }))
    c.addr = "127.0.0.2:" .. c.port
    local srv, port = assert(rpc.new(a, { metrics = metrics.new(a) }):serve(
      "127.0.0.1", 0))
    assert(b:connect(a.addr))
    assert(a:connect(c.addr))
    h.wait(function() return h.nconns(a) == 2 end, 10, "two peers")
    local url = "http://127.0.0.1:" .. port .. "/"
    local flags = "--headless --no-sandbox --disable-gpu --hide-scrollbars " ..
      "--user-data-dir=" .. dir .. "/profile --virtual-time-budget=3000"
    local dom = dir .. "/dom.html"
    assert.equal(0, run_async(dir, "dump", string.format("%s %s " ..
      "--dump-dom %s > %s 2>/dev/null", browser, flags, url, dom), 60))
    local text = assert(h.read_file(dom))
    local conns = assert(text:match('<table id="connections">(.-)</table>'),
      "no connections table in:\n" .. text:sub(1, 2000))
    assert.matches('data%-key="' .. b.peer_id .. '"', conns)
    assert.matches('data%-key="' .. c.peer_id .. '"', conns)
    assert.matches("127%.0%.0%.2:" .. c.port, conns)
    local points = assert(text:match('<table id="points">(.-)</table>'))
    assert.matches("127%.0%.0%.2:" .. c.port, points)
    assert.matches(">running<", points)
    local events = assert(text:match('<table id="events">(.-)</table>'))
    assert.matches(">connected<", events)
    assert.matches('id="self">' .. a.peer_id .. "<", text)
    -- and a picture of it
    local shot = ROOT .. "/build/status_page.png"
    os.remove(shot)
    assert.equal(0, run_async(dir, "shot", string.format("%s %s " ..
      "--window-size=1100,900 --screenshot=%s %s >/dev/null 2>&1",
      browser, flags, shot, url), 60))
    local png = assert(h.read_file(shot))
    assert.equal("\137PNG", png:sub(1, 4))
    srv:close()
    h.rmdir(dir)
  end)
end)
