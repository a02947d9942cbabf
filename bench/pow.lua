-- Proof-of-work search rate: core.pow_search with every CPU (threads =
-- all online CPUs by default) against an unreachable target, canceled
-- after `secs` seconds from its progress callback.
--
--   lua5.4 bench/pow.lua secs=S [threads=T]
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" ..
  package.path
local B = require "common"
local core = B.core

local a = B.args(arg)
local secs = a.secs or 1

B.hello()
local id = core.identity_generate()
local tries, elapsed = 0, 0
local c0 = B.cpu_seconds()
-- 200 bits: never found in our lifetime, so the search runs until canceled.
local stamp = core.pow_search(id:public_key(), 200, {
  threads = a.threads,
  every = 8192, -- publish often: the count read at cancel time is exact-ish
  progress = function(n, t)
    tries, elapsed = n, t
    return t >= secs
  end,
})
if stamp then B.fail("found a 200-bit stamp?") end
B.out("tries_per_s", tries / elapsed)
-- Per CPU-second of the process (all threads): robust to other load.
B.out("tries_per_cpu_s", tries / (B.cpu_seconds() - c0))
B.out("threads", a.threads or "all")
os.exit(0)
