-- chain_policy.lua: a policy that plays a Tezos chain with fabricated block
-- headers and answers the shell's requests as an Octez node does
-- (src/lib_shell/p2p_reader.ml):
--   Get_current_branch -> Current_branch (head and a locator); the peer
--                         becomes active for the chain
--   Get_current_head   -> Current_head (head, empty mempool), to active
--                         peers only, as Octez
--   Get_block_headers  -> one Block_header per known hash
--   Deactivate         -> the peer is no longer active
--   a new connection   -> Get_current_branch sent to the peer, as Octez
--                         does (P2p_reader.on_launch)
-- and every `interval` seconds a new block is "baked" and its Current_head
-- sent to the active peers (Distributed_db.Advertise.current_head).
-- Needs app_messages = "shell" (the default on TEZOS_* chains).
--
--   luap2p node --identity id.json --listen 127.0.0.1:9732 \
--       --policy examples/chain_policy.lua
--   p2p.new{ ..., policies = { dofile("examples/chain_policy.lua")._new{
--              interval = 1 } } }
--
-- State lives in node.state.chain: { chain_id, head (a header with its
-- hash), headers (hash -> header, the last `keep`), active (conn id ->
-- true), baked (count) }.
local shell = require "luap2p.shell"

local math, os, pairs, string, table =
      math, os, pairs, string, table

local DEFAULTS = {
  interval = 5,       -- seconds between blocks
  keep = 1000,        -- headers kept for Get_block_headers
  locator = 20,       -- hashes in a Current_branch history
  -- A fabricated chain id: 4 bytes "luap" (not a real network's).
  chain_id = shell.to_b58check("chain_id", "luap"),
}

-- 32 bytes from a label and a number: stand-ins for the hashes a real
-- block commits to.
local function fake32(label, n)
  local s = string.format("%s:%d:", label, n)
  return (s .. string.rep("\0", 32)):sub(1, 32)
end

-- A header after `prev` (nil: genesis); returns it with its block hash.
local function make_header(prev, now)
  local level = prev and prev.level + 1 or 0
  local h = {
    level = level, proto_level = 1,
    predecessor = prev and prev.hash or shell.to_b58check("block",
      fake32("genesis", 0)),
    timestamp = math.max(now, prev and prev.timestamp + 1 or 0),
    validation_pass = 4,
    operations_hash = shell.to_b58check("operation_list_list",
      fake32("ops", level)),
    fitness = { "\2", string.pack(">I4", level) },
    context = shell.to_b58check("context", fake32("ctx", level)),
    protocol_data = string.pack(">I4", level),
  }
  -- The block hash, as Octez computes it, comes back from the codec.
  local payload, tag = assert(shell.encode{ type = "block_header",
                                            header = h })
  h.hash = assert(shell.decode(payload, tag)).header.hash
  return h
end

local function new(opts)
  local cfg = {}
  for k, v in pairs(DEFAULTS) do cfg[k] = v end
  for k, v in pairs(opts or {}) do cfg[k] = v end

  local M = { name = "chain",
              description = "plays a chain of fabricated blocks" }

  local function state(node) return node.state.chain end

  local function header_fields(h)
    local t = {}
    for k, v in pairs(h) do if k ~= "hash" then t[k] = v end end
    return t
  end

  -- Current_head to every active peer.
  local function advertise(node)
    local s = state(node)
    for id in pairs(s.active) do
      local conn = node.conns[id]
      if conn and not conn.closed then
        conn:send_shell{ type = "current_head", chain_id = s.chain_id,
                         header = header_fields(s.head) }
      else
        s.active[id] = nil
      end
    end
  end

  -- Bake one block: it becomes the head; active peers hear of it.
  function M._bake(node)
    local s = state(node)
    local h = make_header(s.head, os.time())
    s.head = h
    s.headers[h.hash] = h
    s.order[#s.order + 1] = h.hash
    if #s.order > cfg.keep then
      s.headers[table.remove(s.order, 1)] = nil
    end
    s.baked = s.baked + 1
    advertise(node)
    return h
  end

  function M.start(node)
    if not node.state.chain then
      node.state.chain = { chain_id = cfg.chain_id, headers = {}, order = {},
                           active = {}, baked = 0 }
      M._bake(node) -- genesis
    end
    if cfg.interval > 0 then
      node:every(cfg.interval, M._bake)
    end
  end

  -- A locator: the head's predecessors, 1, 2, 4, ... blocks back.
  local function history(s)
    local out, step, h = {}, 1, s.head
    while #out < cfg.locator do
      for _ = 1, step do
        h = h and s.headers[h.predecessor]
      end
      if not h then break end
      out[#out + 1] = h.hash
      step = step * 2
    end
    return out
  end

  function M.shell(node, conn, msg)
    local s = state(node)
    local t = msg.type
    if t == "get_current_branch" then
      if msg.chain_id ~= s.chain_id then return true end -- not ours
      s.active[conn.id] = true
      conn:send_shell{ type = "current_branch", chain_id = s.chain_id,
                       head = header_fields(s.head), history = history(s) }
      return true
    elseif t == "get_current_head" then
      if msg.chain_id == s.chain_id and s.active[conn.id] then
        conn:send_shell{ type = "current_head", chain_id = s.chain_id,
                         header = header_fields(s.head) }
      end
      return true
    elseif t == "get_block_headers" then
      for _, hash in pairs(msg.hashes or {}) do
        local h = s.headers[hash]
        if h then
          conn:send_shell{ type = "block_header", header = header_fields(h) }
        end
      end
      return true
    elseif t == "deactivate" then
      if msg.chain_id == s.chain_id then s.active[conn.id] = nil end
      return true
    elseif t == "current_branch" or t == "current_head" then
      return true -- other chains' heads: this chain is made up, ignore
    end
    return nil -- others reach the application
  end

  -- Like Octez (P2p_reader.on_launch): every new peer is asked for its
  -- branch of our chain, which also tells it our chain id.
  function M.event(node, ev)
    if ev.type ~= "connected" then return end
    local conn = ev.conn
    local s = state(node)
    if conn and s then
      conn:send_shell{ type = "get_current_branch", chain_id = s.chain_id }
    end
  end

  function M.disconnect(node, conn)
    local s = state(node)
    if s then s.active[conn.id] = nil end
  end

  M._new = new
  M._config = cfg
  return M
end

return new()
