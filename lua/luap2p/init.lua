-- luap2p: an Octez-compatible peer-to-peer connection handler.
--
--   local p2p = require "luap2p"
--   local node = assert(p2p.new{ identity = id, listen = "127.0.0.1:9732" })
--   node:on("message", function(conn, payload, tag) ... end)
--   p2p.run()
--
-- The C core (luap2p.core) accepts, connects, authenticates, encrypts and
-- frames; this module owns node state (connections, known points, trust)
-- and runs the policy stack for every decision. See README.md.
local core = require "luap2p.core"
local policy = require "luap2p.policy"

local error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tostring, type =
      error, ipairs, math, pairs, pcall, setmetatable, string, table,
      tostring, type

local REQUIRED_CORE = "0.1.0"
if core.version ~= REQUIRED_CORE then
  error(string.format("luap2p requires core %s, got %s", REQUIRED_CORE,
    tostring(core.version)))
end

local _M = {
  VERSION = "0.1.0",
  APP_TAG = 0x10, -- default tag of application messages
  core = core,
  policy = policy,
  MOTIVES = { no_motive = 0, too_many_connections = 1,
              unknown_chain_name = 2, deprecated_p2p_version = 3,
              deprecated_distributed_db_version = 4, already_connected = 5 },
}

local Node = {}
Node.__index = Node

-- Nodes that listen or have dialled stay alive until node:close(), like
-- active libuv handles: dropping the last reference must not silently
-- kill a node's connections. A node that never did either may be
-- collected (and is closed by __gc).
local live = {} -- luacheck: ignore (held for its strong references)
local Conn = {}
Conn.__index = Conn

-- The default policy stack, after any user policies (PROTOCOL.md §8).
_M.DEFAULT_POLICIES = {
  "luap2p.policies.private_mode",
  "luap2p.policies.acl",
  "luap2p.policies.answerer",
  "luap2p.policies.maintenance",
  "luap2p.policies.log",
}

-- Config keys: type, and for the Lua-only ones a default.
local CONFIG = {
  identity = "userdata", listen = "string", peers = "table",
  trusted = "table", policies = "table", default_policies = "boolean",
  watch = "boolean", hook_budget = "number", log = "string",
  log_level = "string", log_file = "userdata", expected_connections = "number",
  incoming_app_message_queue_size = "number", greylist_timeout = "number",
  greylist_size = "number", ban_file = "string", known_points_max = "number",
  maintenance_interval = "number", swap_linger = "number",
  -- read by the C core (lua_node.c)
  chain = "string", pow_bits = "number", p2p_versions = "table",
  ddb_versions = "table", advertised_port = "number", private_mode = "boolean",
  disable_mempool = "boolean", disable_peer_discovery = "boolean",
  min_connections = "number", max_connections = "number",
  max_incoming_connections = "number",
  outgoing_message_queue_size = "number", outgoing_queue_bytes = "number",
  binary_chunks_size = "number", max_message_size = "number",
  connection_timeout = "number", authentication_timeout = "number",
  ban_table_size = "number", backlog = "number",
  admission_rate = "number", admission_burst = "number",
  admission_prefix_rate = "number", admission_prefix_burst = "number",
  max_connections_per_ip = "number", max_connections_per_prefix = "number",
  admission_table_size = "number", admission_exempt_loopback = "boolean",
  load_threshold = "number", max_connection_message = "number",
}

local DEFAULTS = {
  hook_budget = policy.DEFAULT_BUDGET, expected_connections = nil,
  incoming_app_message_queue_size = 1000, greylist_timeout = 86400,
  greylist_size = 4096, known_points_max = 400, maintenance_interval = 120,
  swap_linger = 30, min_connections = 10, max_connections = 100,
  default_policies = true, log_level = "info",
}

-- Safe answers when a verdict hook fails: fail closed at the door,
-- ignore in the answerer.
local SAFE = {
  accept = { false, "policy error" },
  connect = { false, "policy error" },
  authenticated = { "close", "policy error" },
}

-- Verdict shapes: a hook returning anything else is a policy error.
local VALID = {
  accept = function(v) return type(v) == "boolean" end,
  connect = function(v) return type(v) == "boolean" end,
  authenticated = function(v, motive)
    return v == "ack" or v == "close" or
      (v == "nack" and (motive == nil or math.type(motive) == "integer"))
  end,
}

local function split_point(s)
  local host, port = s:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  return host, tonumber(port)
end
_M.split_point = split_point

---------------------------------------------------------------- identity

-- Identity from a userdata, a JSON string or a file path.
local function resolve_identity(v)
  if type(v) == "userdata" then return v end
  if type(v) ~= "string" then
    return nil, "config.identity: expected an Identity or a file path"
  end
  return require("luap2p.identity").load(v)
end

---------------------------------------------------------------- config

local function check_config(cfg)
  if type(cfg) ~= "table" then
    error("p2p.new: expected a config table, got " .. type(cfg), 3)
  end
  for k, v in pairs(cfg) do
    local want = CONFIG[k]
    if not want then
      error(string.format("p2p.new: unknown config key '%s'", tostring(k)),
        3)
    end
    if k ~= "identity" and type(v) ~= want then
      error(string.format("p2p.new: config.%s: expected a %s, got %s", k,
        want, type(v)), 3)
    end
  end
  local c = {}
  for k, v in pairs(DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  if c.min_connections > c.max_connections then
    error(string.format(
      "p2p.new: config.min_connections (%d) > max_connections (%d)",
      c.min_connections, c.max_connections), 3)
  end
  c.expected_connections = c.expected_connections or
    math.floor((c.min_connections + c.max_connections) / 2)
  if c.expected_connections < c.min_connections or
     c.expected_connections > c.max_connections then
    error("p2p.new: config.expected_connections must lie between " ..
      "min_connections and max_connections", 3)
  end
  return c
end

---------------------------------------------------------------- node

-- Emit a policy_error, reported to event hooks (never recursively).
function Node:_policy_error(entry, hook, msg)
  self:_event({ type = "policy_error", policy = entry and entry.name,
                path = entry and entry.path, hook = hook, message = msg })
end

-- Call hook of one policy entry, guarded. Returns ok, results...
function Node:_call(entry, hook, ...)
  local fn = entry.module[hook]
  local prev = self._current
  self._current = entry
  local res = table.pack(policy.guard(self.config.hook_budget, fn, self, ...))
  self._current = prev
  if not res[1] and not self._closed then
    self:_policy_error(entry, hook, res[2])
  end
  return table.unpack(res, 1, res.n)
end

-- Verdict hooks: the first policy with an opinion decides.
function Node:_verdict(hook, ...)
  for _, entry in ipairs(self._stack) do
    if entry.module[hook] then
      local ok, a, b, c = self:_call(entry, hook, ...)
      if not ok then
        local safe = SAFE[hook]
        if safe then return safe[1], safe[2] end
        return nil
      end
      if a ~= nil then
        local valid = VALID[hook]
        if valid and not valid(a, b) then
          self:_policy_error(entry, hook, string.format(
            "bad verdict %s%s", tostring(a), b ~= nil and
            (", " .. tostring(b)) or ""))
          local safe = SAFE[hook]
          return safe[1], safe[2]
        end
        return a, b, c
      end
    end
  end
end

-- "all" hooks: every policy, in stack order.
function Node:_all(hook, ...)
  for _, entry in ipairs(self._stack) do
    if entry.module[hook] then self:_call(entry, hook, ...) end
  end
end

function Node:_listeners(kind, ...)
  local list = self._on[kind]
  if not list then return end
  for _, fn in ipairs(list) do
    local ok, err = pcall(fn, ...)
    if not ok then
      io.stderr:write("luap2p: ", kind, " listener error: ", tostring(err),
        "\n")
    end
  end
end

---------------------------------------------------------------- points

-- The known-point record for "ip:port", created on first sight.
function Node:point(p, create)
  local rec = self.points[p]
  if not rec and create ~= false then
    rec = { point = p, state = "disconnected", trusted = false,
            delay = 0, first_seen = core.now() }
    self.points[p] = rec
    self._npoints = self._npoints + 1
    self:_event({ type = "new_point", point = p })
  end
  return rec
end

function Node:known_count() return self._npoints end

-- Forget a known point (its record and count); false when unknown.
function Node:forget(p)
  if not self.points[p] then return false end
  self.points[p] = nil
  self._npoints = self._npoints - 1
  return true
end

function Node:peer(id, create)
  local rec = self.peers[id]
  if not rec and create ~= false then
    rec = { peer_id = id, trusted = false }
    self.peers[id] = rec
    self:_event({ type = "new_peer", peer_id = id })
  end
  return rec
end

-- Up to n known points that may be advertised: public, not ours, not
-- banned; random order. opts.exclude: a point to leave out.
function Node:known_points(n, opts)
  local out = {}
  for p, rec in pairs(self.points) do
    if not rec.private and not rec.ours and not p:find(":0$") and
       not self._c:banned(p) and not (opts and opts.exclude == p) then
      out[#out + 1] = p
    end
  end
  for i = #out, 2, -1 do
    local j = math.random(i)
    out[i], out[j] = out[j], out[i]
  end
  for i = #out, (n or #out) + 1, -1 do out[i] = nil end
  return out
end

---------------------------------------------------------------- events

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Keep node state in step with what the core reports.
function Node:_track(ev)
  local t = ev.type
  if t == "connecting" then
    local rec = self:point(ev.point)
    rec.state = "requested"
  elseif t == "authenticated" then
    -- An incoming connection's point is known only once it runs (its
    -- listening port, from its connection message, when it has one).
    if ev.point and not ev.incoming then
      self:point(ev.point).peer_id = ev.peer_id
    end
    self:peer(ev.peer_id)
  elseif t == "connected" then
    local conn = setmetatable({ node = self, id = ev.conn, _on = {},
                                inbox = {}, _head = 1 }, Conn)
    conn:_refresh()
    self.conns[ev.conn] = conn
    if conn.point then
      local rec = self:point(conn.point)
      rec.state = "running"
      rec.private = conn.metadata.private_node
      rec.last_established = core.now()
      rec.delay = 0
      rec.peer_id = conn.peer_id
    end
    ev.connection = conn
  elseif t == "disconnected" then
    local conn = self.conns[ev.conn]
    self.conns[ev.conn] = nil
    local rec = ev.point and self.points[ev.point]
    if rec and (not conn or rec.state == "running" or
                rec.state == "requested") then
      rec.state = "disconnected"
      rec.last_disconnect = core.now()
      if conn then
        rec.failures = 0
      else
        rec.failures = (rec.failures or 0) + 1
        rec.last_failed = core.now()
      end
    end
    if conn then
      conn.closed = ev.reason or "closed"
      ev.connection = conn
      self:_all("disconnect", conn, ev)
      conn:_emit("close", ev.reason, ev.code)
    end
  elseif t == "auth_failed" and ev.code == "EMYSELF" and ev.point then
    self:point(ev.point).ours = true
  elseif t == "nacked" and ev.points and
         not self.config.disable_peer_discovery then
    for _, p in ipairs(ev.points) do self:point(p) end
  end
end

function Node:_event(ev)
  if self._closed then return end
  if ev.type ~= "policy_error" then self:_track(ev) end
  ev.ts = ev.ts or os.time()
  if ev.type == "policy_error" then
    -- An event hook that fails on a policy_error must not loop.
    if self._in_policy_error then
      io.stderr:write("luap2p: policy_error while reporting one: ",
        tostring(ev.message), "\n")
      return
    end
    self._in_policy_error = true
    self._counters.policy_errors = self._counters.policy_errors + 1
    self:_all("event", ev)
    self._in_policy_error = false
  else
    self:_all("event", ev)
  end
  self:_listeners(ev.type, ev.connection or ev, ev)
  self:_listeners("*", ev)
end

---------------------------------------------------------------- messages

local P2P_HOOKS = { bootstrap = true, advertise = true, swap_request = true,
                    swap_ack = true }

function Node:_message(id, tag, payload)
  local conn = self.conns[id]
  if not conn then return end
  if tag < _M.APP_TAG then
    local m, err = core.msg_decode(string.pack(">I2", tag) .. payload)
    if not m then
      self:_event({ type = "protocol_error", conn = id, point = conn.point,
                    peer_id = conn.peer_id, reason = err })
      return
    end
    if P2P_HOOKS[m.type] then
      local arg1 = m.points or m.point
      local answer = self:_verdict(m.type, conn, arg1, m.peer_id)
      -- bootstrap may return the points to advertise.
      if m.type == "bootstrap" and type(answer) == "table" and
         #answer > 0 and not conn.closed then
        conn:send_msg({ type = "advertise", points = answer })
      end
    end
    return
  end
  -- A policy may take an application message (return true).
  if self:_verdict("message", conn, payload, tag) then return end
  return conn:_deliver(payload, tag)
end

---------------------------------------------------------------- dispatch

-- The dispatcher holds the node weakly: the registry keeps the dispatcher,
-- and a node nobody uses must still be collected (and closed by __gc).
local function dispatcher(weak)
  return function(kind, a, b, c)
    local node = weak.node
    if not node then return end
    if kind == "message" then
      return node:_message(a, b, c)
    elseif kind == "event" then
      return node:_event(a)
    elseif kind == "accept" then
      local ok, why = node:_verdict("accept", a)
      if ok == nil then return true end
      return ok, why
    elseif kind == "authenticated" then
      local v, x, y = node:_verdict("authenticated", a)
      if v == nil then
        -- Octez default: Nack with known points on a hard refusal.
        if a.refusal and a.motive then
          local pts = node.config.disable_peer_discovery and {} or
            node:known_points(50, { exclude = a.point })
          return "nack", a.motive, pts
        end
        return a.refusal and "close" or "ack", a.refusal
      end
      if v == "nack" and y == nil and not node.config.disable_peer_discovery
      then
        y = node:known_points(50, { exclude = a.point })
      end
      return v, x, y
    end
  end
end

---------------------------------------------------------------- stack

-- Build the stack from config.policies then the defaults.
function Node:_load_stack()
  local specs = {}
  for _, s in ipairs(self.config.policies or {}) do specs[#specs + 1] = s end
  if self.config.default_policies then
    for _, s in ipairs(_M.DEFAULT_POLICIES) do specs[#specs + 1] = s end
  end
  local stack = {}
  for _, spec in ipairs(specs) do
    local entry, err = policy.resolve(spec, self.config.hook_budget)
    if not entry then return nil, err end
    local bad = policy.run_check(entry, self, self.config.hook_budget)
    if bad then
      return nil, string.format("%s: check failed: %s", entry.name, bad)
    end
    entry.spec = spec
    entry.timers = setmetatable({}, { __mode = "k" })
    stack[#stack + 1] = entry
  end
  return stack
end

function Node:_stop_entry(entry)
  if entry.module.stop then self:_call(entry, "stop") end
  for t in pairs(entry.timers) do pcall(t.stop, t) end
end

function Node:_start_entry(entry)
  if entry.module.start then self:_call(entry, "start") end
end

-- Reload every policy that came from a file (or only `path`): load,
-- validate, check(), then swap each one between two callbacks. A failure
-- keeps the old policy and emits policy_error. Returns true, or nil, msg.
function Node:reload(path)
  local failed
  for i, old in ipairs(self._stack) do
    if old.path and (path == nil or old.path == path) then
      local entry, err = policy.resolve(old.path, self.config.hook_budget)
      if entry then
        err = policy.run_check(entry, self, self.config.hook_budget)
        if err then err = entry.name .. ": check failed: " .. err end
      end
      if not entry or err then
        failed = err
        self:_policy_error(old, "load", err)
      else
        entry.spec = old.spec
        entry.timers = setmetatable({}, { __mode = "k" })
        if entry.module.migrate then
          local ok = self:_call(entry, "migrate", old.module)
          if not ok then entry = nil end
        end
        if entry then
          self:_stop_entry(old)
          self._stack[i] = entry
          self._counters.reloads = self._counters.reloads + 1
          self:_start_entry(entry)
          self:_event({ type = "reloaded", policy = entry.name,
                        path = entry.path })
        else
          failed = "migrate failed"
        end
      end
    end
  end
  if failed then return nil, "EPOLICY: " .. failed, "EPOLICY" end
  return true
end

-- Watch policy files; a change reloads that file after a short debounce.
-- Directories are watched, since editors replace files by renaming.
function Node:_watch()
  local dirs = {}
  for _, entry in ipairs(self._stack) do
    if entry.path then
      local dir, base = entry.path:match("^(.*)/([^/]+)$")
      dir, base = dir or ".", base or entry.path
      dirs[dir] = dirs[dir] or {}
      dirs[dir][base] = entry.path
    end
  end
  self._watches = {}
  for dir, files in pairs(dirs) do
    local w = core.watch(dir, function(name)
      local path = files[name]
      if not path or self._closed then return end
      if self._debounce[path] then self._debounce[path]:stop() end
      self._debounce[path] = core.timer(0.05, nil, function()
        self._debounce[path] = nil
        if not self._closed then self:reload(path) end
      end)
    end)
    if w then self._watches[#self._watches + 1] = w end
  end
end

---------------------------------------------------------------- public

-- p2p.new(config) -> node | nil, "ENAME: message", "ENAME"
function _M.new(cfg)
  local c = check_config(cfg)
  if c.identity == nil then
    error("p2p.new: config.identity is required", 2)
  end
  local id, err, code = resolve_identity(c.identity)
  if not id then return nil, err, code or "EIDENTITY" end
  local node = setmetatable({
    config = c, identity = id, peer_id = id:peer_id(),
    conns = {}, points = {}, peers = {}, state = {}, _npoints = 0,
    _on = {}, _timers = setmetatable({}, { __mode = "k" }), _debounce = {},
    _counters = { policy_errors = 0, reloads = 0 },
  }, Node)
  local stack, serr = node:_load_stack()
  if not stack then return nil, "EPOLICY: " .. serr, "EPOLICY" end
  node._stack = stack
  node._c = core.node(c, id,
    dispatcher(setmetatable({ node = node }, { __mode = "v" })))
  for _, entry in ipairs(stack) do node:_start_entry(entry) end
  for _, p in ipairs(c.trusted or {}) do node:trust(p) end
  if c.watch then node:_watch() end
  if c.listen then
    local host, port = split_point(c.listen)
    if not host then
      node:close()
      return nil, "EPOINT: bad listen address '" .. c.listen ..
        "' (expected HOST:PORT)", "EPOINT"
    end
    local ok, lerr, lcode = node:listen(host, port)
    if not ok then
      node:close()
      return nil, lerr, lcode
    end
  end
  for _, p in ipairs(c.peers or {}) do node:connect(p) end
  return node
end

function Node:listen(host, port)
  if port == nil then host, port = split_point(host) end
  local bound, err, code = self._c:listen(host, port)
  if not bound then return nil, err, code end
  live[self] = true
  self.port = self.port or bound
  self.listen_host = self.listen_host or host
  return bound
end

-- node:connect(point, {trusted, expected_peer_id, timeout}) -> id
function Node:connect(p, opts)
  opts = opts or {}
  if type(p) ~= "string" or not split_point(p) then
    error("node:connect: expected a point 'HOST:PORT', got " .. tostring(p),
      2)
  end
  local rec = self:point(p)
  if opts.trusted then rec.trusted = true end
  if opts.expected_peer_id then rec.expected_peer_id = opts.expected_peer_id end
  local ok, why = self:_verdict("connect", p, opts)
  if ok == false then
    return nil, "EREFUSED: " .. tostring(why or "refused by policy"),
      "EREFUSED"
  end
  local id, err, code = self._c:connect(p, rec.expected_peer_id,
    opts.timeout)
  if id then live[self] = true end
  if not id then
    if code == "ECONNREFUSED" or code == "ENETUNREACH" then
      rec.failures = (rec.failures or 0) + 1
      rec.last_failed = core.now()
    end
    return nil, err, code
  end
  return id
end

-- Trust a point ("ip:port") or a peer id ("id...").
function Node:trust(target, trusted)
  trusted = trusted ~= false
  if type(target) ~= "string" then
    error("node:trust: expected a point or a peer id", 2)
  end
  if target:match("^id") and not target:find(":") then
    self:peer(target).trusted = trusted
  else
    self:point(target).trusted = trusted
  end
  return true
end

function Node:untrust(target) return self:trust(target, false) end

function Node:trusted(point, peer_id)
  local rec = point and self.points[point]
  local prec = peer_id and self.peers[peer_id]
  return (rec and rec.trusted) or (prec and prec.trusted) or false
end

-- Ban an IP, IP/prefix, point or peer id for `seconds` (nil: forever).
-- A ban also drops the matching connections, unless opts.kick == false
-- (a greylist entry only keeps newcomers out, as in Octez).
function Node:ban(target, seconds, reason, opts)
  local ok, err, code = self._c:ban(target, seconds)
  if not ok then return nil, err, code end
  if not (opts and opts.kick == false) then
    for _, conn in pairs(self.conns) do
      if conn.peer_id == target or self._c:banned(conn.addr) or
         (conn.point and self._c:banned(conn.point)) then
        conn:close("banned")
      end
    end
  end
  self:_event({ type = "banned", target = target, seconds = seconds,
                reason = reason })
  return true
end

function Node:unban(target)
  local removed = self._c:unban(target)
  self:_event({ type = "unbanned", target = target })
  return removed
end

function Node:banned(target) return self._c:banned(target) end

function Node:connections()
  local list = {}
  for _, conn in pairs(self.conns) do list[#list + 1] = conn end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

function Node:connection(peer_id)
  for _, conn in pairs(self.conns) do
    if conn.peer_id == peer_id then return conn end
  end
end

function Node:stat()
  local s = self._c:stat()
  s.connections = count(self.conns)
  s.known_points = self._npoints
  s.policy_errors = self._counters.policy_errors
  s.reloads = self._counters.reloads
  return s
end

-- Disconnect a connection, a peer id or a point.
function Node:disconnect(target, reason)
  if type(target) == "table" then return target:close(reason) end
  for _, conn in pairs(self.conns) do
    if conn.peer_id == target or conn.point == target then
      return conn:close(reason)
    end
  end
  return false
end

-- node:after(seconds, fn) / node:every(seconds, fn): timers whose errors
-- are policy errors; a policy's timers stop when it is swapped out.
function Node:_timer(after, every, fn)
  local owner = self._current
  local weak = setmetatable({ node = self }, { __mode = "v" })
  local t = core.timer(after, every, function()
    local node = weak.node
    if not node or node._closed then return end
    -- Timers made inside this one belong to the same policy.
    local prev = node._current
    node._current = owner
    local ok, err = policy.guard(node.config.hook_budget, fn, node)
    node._current = prev
    if not ok then node:_policy_error(owner, "timer", err) end
  end)
  self._timers[t] = true
  if owner then owner.timers[t] = true end
  return t
end

function Node:after(seconds, fn) return self:_timer(seconds, nil, fn) end

function Node:every(seconds, fn) return self:_timer(seconds, seconds, fn) end

-- node:on(event_type | "message" | "*", fn)
function Node:on(kind, fn)
  if type(fn) ~= "function" then error("node:on: expected a function", 2) end
  self._on[kind] = self._on[kind] or {}
  table.insert(self._on[kind], fn)
  return self
end

function Node:policies()
  local names = {}
  for i, e in ipairs(self._stack) do names[i] = e.name end
  return names
end

-- Close every connection (Disconnect sent) and the listeners.
function Node:close()
  if self._closed then return end
  for _, conn in pairs(self.conns) do conn:close("node closing") end
  for _, entry in ipairs(self._stack or {}) do self:_stop_entry(entry) end
  self._closed = true
  live[self] = nil
  for t in pairs(self._timers) do pcall(t.stop, t) end
  for _, w in ipairs(self._watches or {}) do w:close() end
  for _, t in pairs(self._debounce) do pcall(t.stop, t) end
  self._c:close()
end
Node.__close = Node.close
Node.__gc = Node.close

---------------------------------------------------------------- conn

function Conn:_refresh()
  local info = self.node._c:info(self.id)
  if not info then return end
  self.peer_id = info.peer_id
  self.point = info.point
  self.addr = info.addr
  self.incoming = info.incoming
  self.direction = info.direction
  self.metadata = { private_node = info.private_node,
                    disable_mempool = info.disable_mempool }
  self.version = { p2p = info.p2p_version, ddb = info.ddb_version }
end

function Conn:_emit(kind, ...)
  for _, fn in ipairs(self._on[kind] or {}) do
    local ok, err = pcall(fn, self, ...)
    if not ok then
      io.stderr:write("luap2p: conn ", kind, " handler error: ",
        tostring(err), "\n")
    end
  end
end

-- Deliver an application message: handlers, else the inbox (pull mode).
-- Returns true to pause reading when the inbox is full.
function Conn:_deliver(payload, tag)
  local node = self.node
  if self._on.message or node._on.message then
    self:_emit("message", payload, tag)
    node:_listeners("message", self, payload, tag)
    return
  end
  local n = #self.inbox
  self.inbox[n + 1] = { payload, tag }
  if n + 1 - self._head + 1 >= node.config.incoming_app_message_queue_size
  then
    self._paused = true
    return true
  end
end

-- conn:recv() -> payload, tag | nil when the inbox is empty.
function Conn:recv()
  local item = self.inbox[self._head]
  if not item then return nil end
  self.inbox[self._head] = nil
  self._head = self._head + 1
  if self._head > #self.inbox then
    self.inbox, self._head = {}, 1
  end
  if self._paused and not self.closed then
    self._paused = false
    self.node._c:pause(self.id, false)
  end
  return item[1], item[2]
end

-- conn:send(payload[, tag]) -> true | false, "ENAME: message", "ENAME"
function Conn:send(payload, tag)
  if type(payload) ~= "string" then
    error("conn:send: expected a string payload, got " .. type(payload), 2)
  end
  if self.closed then return false, "ECLOSED: connection closed", "ECLOSED" end
  local ok, err, code = self.node._c:send(self.id, payload, tag)
  if not ok then return false, err, code end
  return true
end

-- conn:send_msg{type = "bootstrap" | "advertise" | ...}: a P2P message.
function Conn:send_msg(m)
  if self.closed then return false, "ECLOSED: connection closed", "ECLOSED" end
  local ok, err, code = self.node._c:send_raw(self.id, core.msg_encode(m))
  if not ok then return false, err, code end
  return true
end

function Conn:on(kind, fn)
  if kind ~= "message" and kind ~= "close" then
    error("conn:on: expected 'message' or 'close', got " .. tostring(kind), 2)
  end
  if type(fn) ~= "function" then error("conn:on: expected a function", 2) end
  self._on[kind] = self._on[kind] or {}
  table.insert(self._on[kind], fn)
  return self
end

function Conn:close(reason)
  if self.closed then return false end
  return self.node._c:disconnect(self.id, reason or "closed locally", true)
end

function Conn:stat()
  local info = self.node._c:info(self.id)
  if not info then return nil, "ECLOSED: connection closed", "ECLOSED" end
  return { bytes_in = info.bytes_in, bytes_out = info.bytes_out,
           msgs_in = info.msgs_in, msgs_out = info.msgs_out,
           rate_in = info.rate_in, rate_out = info.rate_out,
           queued_msgs = info.queued_msgs, queued_bytes = info.queued_bytes }
end

function Conn:__tostring()
  return string.format("luap2p.Conn(%s %s %s%s)", tostring(self.peer_id),
    self.direction or "?", tostring(self.point or self.addr),
    self.closed and " closed" or "")
end

---------------------------------------------------------------- loop

_M.run = function() return core.run("default") end
_M.run_once = function() return core.run("once") end
_M.run_nowait = function() return core.run("nowait") end
_M.stop = core.stop
_M.backend_fd = core.backend_fd
_M.backend_timeout = core.backend_timeout
_M.now = core.now
_M.after = function(seconds, fn) return core.timer(seconds, nil, fn) end
_M.every = function(seconds, fn) return core.timer(seconds, seconds, fn) end

-- Run the loop until pred() is true or `timeout` seconds pass.
-- Returns true, or nil, "ETIMEDOUT: ...", "ETIMEDOUT".
function _M.wait(pred, timeout)
  local deadline = core.now() + (timeout or 10)
  local expired = false
  local t = core.timer(timeout or 10, nil, function() expired = true end)
  while not pred() do
    if expired or core.now() > deadline then
      t:stop()
      return nil, "ETIMEDOUT: condition not met in time", "ETIMEDOUT"
    end
    core.run("once")
  end
  t:stop()
  return true
end

return _M
