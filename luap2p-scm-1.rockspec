-- LuaRocks package of luap2p: the C core (luap2p.core, libuv + libsodium),
-- the Lua modules and the `luap2p` command.
--   luarocks --lua-version 5.4 make                  (from a checkout)
--   luarocks --lua-version 5.4 make --deps-mode=none (Debian: lua-cjson and
--                                 lua-argparse installed with apt)
-- When core/ gains a .c file, add it to sources below (the Makefile finds
-- them by itself; builtin rockspecs list them).
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
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  SODIUM = { header = "sodium.h", library = "sodium" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "builtin",
  modules = {
    ["luap2p.core"] = {
      sources = {
        "core/lua/lua_admission.c",
        "core/lua/lua_config.c",
        "core/lua/lua_core.c",
        "core/lua/lua_frame.c",
        "core/lua/lua_fs.c",
        "core/lua/lua_guard.c",
        "core/lua/lua_handshake.c",
        "core/lua/lua_http.c",
        "core/lua/lua_identity.c",
        "core/lua/lua_loop.c",
        "core/lua/lua_message.c",
        "core/lua/lua_node.c",
        "core/lua/lua_shell.c",
        "core/net/conn.c",
        "core/net/fs.c",
        "core/net/handler.c",
        "core/net/http.c",
        "core/net/pow_workers.c",
        "core/wire/admission.c",
        "core/wire/ban.c",
        "core/wire/base58.c",
        "core/wire/conn_msg.c",
        "core/wire/error.c",
        "core/wire/frame.c",
        "core/wire/handshake.c",
        "core/wire/identity.c",
        "core/wire/identity_json.c",
        "core/wire/message.c",
        "core/wire/point.c",
        "core/wire/shell.c",
      },
      defines = { "_GNU_SOURCE" },
      -- libmicrohttpd is dlopen()ed on first use (core/net/http.c)
      libraries = { "uv", "sodium", "dl", "pthread", "m" },
      incdirs = { "$(LIBUV_INCDIR)", "$(SODIUM_INCDIR)",
                  "$(MICROHTTPD_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)", "$(SODIUM_LIBDIR)",
                  "$(MICROHTTPD_LIBDIR)" },
    },
    ["luap2p.cli.ban_policy"] = "lua/luap2p/cli/ban_policy.lua",
    ["luap2p.cli.ctl"] = "lua/luap2p/cli/ctl.lua",
    ["luap2p.cli.demo"] = "lua/luap2p/cli/demo.lua",
    ["luap2p.cli.identity"] = "lua/luap2p/cli/identity.lua",
    ["luap2p.cli"] = "lua/luap2p/cli/init.lua",
    ["luap2p.cli.metrics"] = "lua/luap2p/cli/metrics.lua",
    ["luap2p.cli.node"] = "lua/luap2p/cli/node.lua",
    ["luap2p.cli.probe"] = "lua/luap2p/cli/probe.lua",
    ["luap2p.cli.run"] = "lua/luap2p/cli/run.lua",
    ["luap2p.cli.util"] = "lua/luap2p/cli/util.lua",
    ["luap2p.config"] = "lua/luap2p/config.lua",
    ["luap2p.conn"] = "lua/luap2p/conn.lua",
    ["luap2p.dispatch"] = "lua/luap2p/dispatch.lua",
    ["luap2p.node"] = "lua/luap2p/node.lua",
    ["luap2p.points"] = "lua/luap2p/points.lua",
    ["luap2p.stack"] = "lua/luap2p/stack.lua",
    ["luap2p.task"] = "lua/luap2p/task.lua",
    ["luap2p.identity"] = "lua/luap2p/identity.lua",
    ["luap2p"] = "lua/luap2p/init.lua",
    ["luap2p.luv"] = "lua/luap2p/luv.lua",
    ["luap2p.policies.acl"] = "lua/luap2p/policies/acl.lua",
    ["luap2p.policies.answerer"] = "lua/luap2p/policies/answerer.lua",
    ["luap2p.policies.common"] = "lua/luap2p/policies/common.lua",
    ["luap2p.policies.log"] = "lua/luap2p/policies/log.lua",
    ["luap2p.policies.maintenance"] = "lua/luap2p/policies/maintenance.lua",
    ["luap2p.policies.private_mode"] = "lua/luap2p/policies/private_mode.lua",
    ["luap2p.policy"] = "lua/luap2p/policy.lua",
    ["luap2p.report"] = "lua/luap2p/report.lua",
    ["luap2p.rpc"] = "lua/luap2p/rpc.lua",
    ["luap2p.shell"] = "lua/luap2p/shell.lua",
  },
  install = {
    bin = { luap2p = "scripts/luap2p" },
  },
  copy_directories = { "examples" },
}
test = {
  type = "busted",
}
