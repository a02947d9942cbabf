-- luap2p.rpc.reply: the answers every RPC resource gives (JSON bodies,
-- Octez-shaped errors) and the reading of request bodies. Shared by
-- luap2p.rpc (routing, luap2p's own resources) and luap2p.rpc.network
-- (the Octez /network resources).
local json = require "luap2p.json"

local string, tostring, type = string, tostring, type

local _M = {}

_M.JSON = "application/json"
_M.TEXT = "text/plain; charset=utf-8"

-- status, headers, body: v as JSON and a newline.
function _M.json(status, v)
  return status, { ["Content-Type"] = _M.JSON }, json.encode(v) .. "\n"
end

-- Octez answers errors as a JSON list of { kind, id, ... }; ours carry a
-- human message too.
function _M.fail(status, id, msg)
  return _M.json(status, json.array({ { kind = "permanent",
    id = "luap2p." .. id, msg = msg } }))
end

function _M.not_found(what, key)
  return _M.fail(404, "not_found", string.format("no such %s: %s", what,
    tostring(key)))
end

-- A request body as a JSON object ("" is {}), or nil when it is not one.
function _M.body(text)
  if text == "" then return {} end
  local v = json.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

return _M
