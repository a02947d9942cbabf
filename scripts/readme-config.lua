-- Regenerate README.md's config table from the schema in
-- lua/luap2p/config.lua (run by `make readme-config`; spec/config_spec.lua
-- fails when the README has drifted from the schema).
--   lua5.4 scripts/readme-config.lua [README.md]
local config = require "luap2p.config"

local path = arg[1] or "README.md"
local BEGIN = "<!-- config table: generated from lua/luap2p/config.lua " ..
  "by `make readme-config` -->\n"
local END = "<!-- end of the config table -->\n"

local f = assert(io.open(path, "rb"))
local text = f:read("a")
f:close()
local a = text:find(BEGIN, 1, true)
local b = text:find(END, 1, true)
if not a or not b then
  io.stderr:write(path .. ": the config table markers are missing\n")
  os.exit(1)
end
local new = text:sub(1, a - 1) .. BEGIN .. config.markdown() ..
  text:sub(b)
if new ~= text then
  f = assert(io.open(path, "wb"))
  f:write(new)
  f:close()
  print(path .. ": config table updated")
else
  print(path .. ": config table up to date")
end
