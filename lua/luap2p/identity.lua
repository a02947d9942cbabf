-- luap2p.identity: Octez identity.json files.
local core = require "luap2p.core"

local _M = {}

-- Load an identity.json: Identity, or nil, "ENAME: message", "ENAME".
function _M.load(path)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, "ENOENT: cannot read identity file: " .. err, "ENOENT"
  end
  local text = f:read("a")
  f:close()
  local id, jerr, code = core.identity_from_json(text)
  if not id then return nil, jerr .. " (in " .. path .. ")", code end
  return id
end

return _M
