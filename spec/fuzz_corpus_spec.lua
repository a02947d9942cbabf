-- Replays the fuzz corpora through the Lua binding on every `make test`:
-- the committed seeds (fuzz/corpus/<target>/) and any crash reproducer
-- kept as a regression (spec/regress/fuzz/<target>/). Each input goes to
-- the decoder its target fuzzes, laid out as that target reads it (see the
-- comment at the top of fuzz/<target>.c); the decoder must return a value
-- or one of its documented error names, never raise or crash.
local core = require "luap2p.core"

local function files(dir)
  local p = io.popen("ls -1 " .. dir .. " 2>/dev/null")
  local list = {}
  for name in p:lines() do list[#list + 1] = dir .. "/" .. name end
  p:close()
  table.sort(list)
  return list
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function set(...)
  local t = {}
  for _, k in ipairs{ ... } do t[k] = true end
  return t
end

-- The result of a decoder: "ok", or its error name, which must be listed.
local function outcome(allowed, ok, _, code)
  if ok ~= nil and ok ~= false then return "ok" end
  assert.is_true(allowed[code] or false, "unexpected error " ..
    tostring(code))
  return code
end

local KEY = string.rep("\17", 32)
local NONCE = string.rep("\64", 24)

local TARGETS = {
  conn_msg = function(data)
    return outcome(set("ETRUNC", "EEXTRA"), core.conn_msg_decode(data))
  end,
  point = function(data)
    return outcome(set("EPOINT"), core.point_parse(data))
  end,
  identity_json = function(data)
    return outcome(set("EIDENTITY"), core.identity_from_json(data:sub(2)))
  end,
  chunk = function(data)
    local body = data:sub(2)
    if #body > 65535 then return "skipped" end
    local ch = core.channel(KEY, NONCE, NONCE)
    local r = outcome(set("EBADLEN", "EAUTH", "ETRUNC"),
      ch:open(string.pack(">I2", #body) .. body))
    ch:close()
    -- As the fuzz target does: the body sealed as a plaintext opens back.
    local plain = body:sub(1, 65517)
    local tx, rx = core.channel(KEY, NONCE, NONCE),
                   core.channel(KEY, NONCE, NONCE)
    if #plain > 0 then -- an empty stream seals to no chunk at all
      assert.are.equal(plain, rx:open(tx:seal(plain)))
    end
    tx:close()
    rx:close()
    return r
  end,
  message = function(data)
    local caps = { [0] = nil, 2, 64, 1024 }
    local r = core.msg_reader(caps[data:byte(1) % 4])
    local msgs, err, code = r:feed(data:sub(3))
    local last = "ok"
    if not msgs then
      last = outcome(set("EMSGSIZE", "EPROTO"), nil, err, code)
    end
    for _, m in ipairs(msgs or {}) do
      outcome(set("EPROTO", "EEXTRA", "ETRUNC", "EPOINT"),
        core.msg_decode(m))
    end
    r:close()
    return last
  end,
  shell = function(data)
    if #data < 2 then return "skipped" end
    local tag = string.unpack(">I2", data)
    local body = data:sub(3)
    local r = outcome(set("EPROTO", "EMSGSIZE"), core.shell_decode(body, tag))
    -- As the fuzz target does: whatever decodes re-encodes to itself.
    if r == "ok" then
      assert.are.equal(body, core.shell_encode(core.shell_decode(body, tag)))
    end
    return r
  end,
  admission = function(data)
    -- The sources of fuzz/admission.c, as text.
    local function src(b)
      local kind = b >> 6
      if kind == 0 then
        return string.format("198.51.%d.%d", b >> 3 & 7, b & 7)
      elseif kind == 1 then
        return string.format("2001:0:0:%x::%x", b >> 4 & 3, b & 15)
      elseif kind == 2 then
        return string.format("::ffff:198.51.%d.%d", b >> 3 & 7, b & 7)
      end
      return "127.0.0." .. (b & 63)
    end
    local adm = core.admission_new{ table_size = 2 + data:byte(1) % 64,
      max_per_ip = data:byte(2) % 5, max_per_prefix = 12 }
    local t, last = 1000000, "ok"
    for pos = 3, #data - 3, 4 do
      local op, b, dt, pending = data:byte(pos, pos + 3)
      t = (op & 3) == 3 and math.max(0, t - dt) or t + dt
      if (op & 3) == 2 then
        adm:closed(src(b))
      else
        local ok, err, code = adm:check(src(b), t, pending)
        last = outcome(set("EREFUSED", "ETOOMANY"), ok, err, code)
        if ok and (op & 3) == 1 then adm:opened(src(b), t) end
      end
      assert.is_true(adm:stats().entries <= adm:stats().capacity)
    end
    adm:close()
    return last
  end,
  handshake = function(data)
    -- Raw bytes only: the records' sealed plaintexts need the harness's
    -- channel, so here every record's bytes go to feed() as they are.
    local hs = core.handshake{ identity = core.identity_generate(),
      incoming = data:byte(1) % 2 == 1, pow_bits = 0 }
    local pos, last = 3, "ok"
    while pos + 2 <= #data do
      local len = string.unpack(">I2", data, pos + 1)
      local bytes = data:sub(pos + 3, pos + 2 + len)
      pos = pos + 3 + len
      local ev, used, code = hs:feed(bytes)
      if not ev then
        last = outcome(set("EBADLEN", "ETRUNC", "EEXTRA", "EPOW", "EPROTO",
          "EAUTH", "EMYSELF", "EPOINT", "ESTATE"), nil, used, code)
        break
      end
    end
    hs:close()
    return last
  end,
}

describe("fuzz corpus", function()
  for target, run in pairs(TARGETS) do
    it("replays every " .. target .. " input through the binding", function()
      local inputs = files("fuzz/corpus/" .. target)
      for _, f in ipairs(files("spec/regress/fuzz/" .. target)) do
        inputs[#inputs + 1] = f
      end
      assert.is_true(#inputs > 0, "no corpus for " .. target)
      local seen = {}
      for _, path in ipairs(inputs) do
        local ok, res = pcall(run, read(path))
        assert.is_true(ok, path .. ": " .. tostring(res))
        seen[res] = (seen[res] or 0) + 1
      end
      -- The seeds hold good and bad inputs alike: both outcomes occur.
      if target ~= "handshake" and target ~= "chunk" then
        assert.is_true((seen.ok or 0) > 0, target .. ": no input decoded")
        assert.is_true(#inputs - (seen.ok or 0) > 0,
          target .. ": no input refused")
      end
    end)
  end
end)
