-- luap2p.identity: Octez identity.json files.
--
--   local identity = require "luap2p.identity"
--   local id = assert(identity.generate(26, { progress = fn }))
--   assert(identity.save(id, "identity.json"))        -- mode 0600, no clobber
--   local id2 = assert(identity.load("identity.json"))
--   print(id2:peer_id(), identity.pow_bits(id2))
local core = require "luap2p.core"

local error, io, math, string, tostring, type =
      error, io, math, string, tostring, type

local _M = {}

-- errno values io.open reports (Linux), mapped to stable error names.
local ERRNO = { [2] = "ENOENT", [13] = "EACCES", [21] = "EISDIR",
                [20] = "ENOTDIR", [40] = "ELOOP", [36] = "ENAMETOOLONG" }

-- An identity file is a few hundred bytes: reading stops past this, so
-- `--identity /dev/zero` is an error, not a process that eats memory.
_M.MAX_FILE_BYTES = 64 * 1024

-- Load an identity.json: Identity, or nil, "ENAME: message", "ENAME".
-- ENAME is ENOENT/EACCES/... when the file cannot be read, EPERM when group
-- or others may access it (its secret key is readable: like ssh with a
-- private key, refuse; opts.check_mode = false loads it anyway), EFBIG over
-- MAX_FILE_BYTES, EIDENTITY when its content is not a valid identity
-- (wrong JSON, keys that do not match).
function _M.load(path, opts)
  if type(path) ~= "string" then
    error("identity.load: expected a file path, got " .. type(path), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("identity.load: expected an options table, got " .. type(opts), 2)
  end
  local f, err, errno = io.open(path, "rb")
  if not f then
    local name = ERRNO[errno] or "EIO"
    return nil, name .. ": cannot read identity file: " .. tostring(err),
      name
  end
  local mode, kind = core.file_mode(path)
  if kind == "directory" then
    f:close()
    return nil, string.format("EISDIR: identity file %s is a directory",
      path), "EISDIR"
  end
  -- The mode of a device or a pipe (/dev/zero, <(...)) says nothing of
  -- who can read the key: only a regular file is checked (a device is
  -- still bounded by MAX_FILE_BYTES below).
  if kind == "file" and not (opts and opts.check_mode == false) then
    if mode & 63 ~= 0 then -- 0077: any bit for group or others
      f:close()
      return nil, string.format("EPERM: identity file %s is accessible " ..
        "by others (mode %04o): run chmod 600 %s", path, mode, path), "EPERM"
    end
  end
  local text, rerr = f:read(_M.MAX_FILE_BYTES + 1)
  f:close()
  if text == nil and rerr == nil then text = "" end -- an empty file
  if not text then
    return nil, "EIO: cannot read identity file " .. path .. ": " ..
      tostring(rerr), "EIO"
  end
  if #text > _M.MAX_FILE_BYTES then
    return nil, string.format("EFBIG: identity file %s is larger than " ..
      "%d KiB", path, _M.MAX_FILE_BYTES // 1024), "EFBIG"
  end
  local id, jerr, code = core.identity_from_json(text)
  if not id then return nil, jerr .. " (in " .. path .. ")", code end
  local ok, kerr = id:check_keys()
  if not ok then
    id:close()
    return nil, kerr .. " (in " .. path .. ")", "EIDENTITY"
  end
  return id
end

-- Write id as Octez identity.json to path with mode 0600. An existing file
-- is an error (EEXIST) unless opts.force, which replaces it atomically.
-- Returns true, or nil, "ENAME: message", "ENAME".
function _M.save(id, path, opts)
  if type(path) ~= "string" then
    error("identity.save: expected a file path, got " .. type(path), 2)
  end
  local force = opts and opts.force or false
  local ok, err, code = core.write_private(path, id:to_json() .. "\n", force)
  if not ok then
    if code == "EEXIST" then
      err = "EEXIST: " .. path .. " already exists (use --force to replace it)"
    end
    return nil, err, code
  end
  return true
end

-- The largest whole number of bits whose target the stamp meets (0..256).
-- Targets only get harder as bits grow, so a binary search is exact.
function _M.pow_bits(id)
  local lo, hi = 0, 256
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if id:check_pow(mid) then lo = mid else hi = mid - 1 end
  end
  return lo
end

-- Expected number of tries to meet a target of `bits` bits.
function _M.expected_tries(bits)
  return 2.0 ^ bits
end

-- A new identity whose stamp meets `bits` of proof of work, searched on
-- opts.threads threads (default: every core). opts.progress(tries, elapsed)
-- is called about every 0.25 s; returning true cancels.
-- Returns Identity, tries | nil, "ECANCELED: ...", "ECANCELED".
function _M.generate(bits, opts)
  bits = bits or core.POW_DEFAULT_BITS
  if type(bits) ~= "number" or bits < 0 or bits > 256 then
    error("identity.generate: bits must be a number in [0, 256]", 2)
  end
  opts = opts or {}
  local id = core.identity_generate()
  if bits == 0 then return id, 0 end
  local stamp, tries, code = core.pow_search(id:public_key(), bits,
    { threads = opts.threads, progress = opts.progress })
  if not stamp then
    id:close()
    return nil, tries, code
  end
  id:set_stamp(stamp)
  return id, tries
end

-- Human-readable duration: "850ms", "42s", "3m20s", "1h05m".
function _M.format_duration(s)
  if s ~= s or s == math.huge then return "?" end
  if s < 1 then return string.format("%dms", math.floor(s * 1000)) end
  if s < 60 then return string.format("%ds", math.floor(s + 0.5)) end
  if s < 3600 then
    return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
  end
  return string.format("%dh%02dm", math.floor(s / 3600),
    math.floor(s % 3600 / 60))
end

return _M
