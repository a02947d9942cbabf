-- LuaRocks package of luap2p: the C core (luap2p.core, libuv + libsodium),
-- the Lua modules and the `luap2p` command.
--   luarocks --lua-version 5.4 make                  (from a checkout)
--   luarocks --lua-version 5.4 make --deps-mode=none (Debian: lua-cjson and
--                                 lua-argparse installed with apt)
rockspec_format = "3.0"
package = "luap2p"
version = "scm-1"
source = {
  url = "git+https://github.com/luap2p/luap2p.git",
}
description = {
  summary = "Octez-compatible peer-to-peer connection handler for Lua",
  detailed = [[
luap2p speaks the Tezos Octez p2p wire (identity and proof of work,
authenticated handshake, encrypted chunks, P2P messages) from a small C core
on libuv and libsodium, and leaves every decision (who to accept, ban,
advertise, dial) to Lua policy modules that can be reloaded live.
Includes the `luap2p` command: identity, node, probe and demo.]],
  license = "MIT",
  labels = { "p2p", "tezos", "libuv", "networking" },
}
dependencies = {
  "lua >= 5.4",
  "lua-cjson >= 2.1.0",
  "argparse >= 0.7.0",
  "luasocket >= 3.0",
}
test_dependencies = {
  "busted >= 2.0",
  "luv",
  "luasocket",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  SODIUM = { header = "sodium.h", library = "sodium" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
}
-- One build: LuaRocks runs the Makefile (`make`, then `make install`),
-- so a rock gets the same flags, defines and single exported symbol
-- (luaopen_luap2p_core, -fvisibility=hidden) as a checkout, and new source
-- files need no listing here.
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    EXTRA_CFLAGS = "-I$(LIBUV_INCDIR) -I$(SODIUM_INCDIR) " ..
      "-I$(MICROHTTPD_INCDIR)",
    EXTRA_LDFLAGS = "-L$(LIBUV_LIBDIR) -L$(SODIUM_LIBDIR)",
  },
  install_target = "install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
  copy_directories = { "examples", "docs" },
}
test = {
  type = "busted",
}
