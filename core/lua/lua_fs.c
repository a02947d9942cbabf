/*
 * lua_fs.c - the few file-system and terminal calls Lua's io library lacks:
 * writing a private file (mode 0600, never clobbering unless asked; the
 * writing itself is core/net/fs.c) for identity.json, its mode, and
 * isatty() so the command line can tell a terminal (live progress line)
 * from a pipe (plain periodic lines).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lua_lp2p.h"
#include "../net/lp2p_node.h"

/* core.write_private(path, data [, overwrite]) -> true
 *                                  | nil, "ENAME: path: message", "ENAME"
 * Writes data to a new file of mode 0600. Without overwrite an existing
 * path fails with EEXIST; with it the file is replaced atomically. */
static int core_write_private(lua_State *L) {
  size_t plen, len;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &len);
  int overwrite = lua_toboolean(L, 3);
  luaL_argcheck(L, plen > 0 && plen <= LP2P_FILE_PATH_MAX &&
                   strlen(path) == plen, 1,
                "expected a non-empty path without NUL bytes");
  int rc = lp2p_file_write_private(path, data, len, overwrite);
  if (rc != 0)
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "%s: %s", path, lp2p_strerror(rc)));
  lua_pushboolean(L, 1);
  return 1;
}


/* core.isatty(file | fd) -> boolean. A closed Lua file is not a terminal. */
static int core_isatty(lua_State *L) {
  int fd;
  if (lua_isinteger(L, 1)) {
    fd = (int)lua_tointeger(L, 1);
  } else {
    luaL_Stream *s = luaL_checkudata(L, 1, LUA_FILEHANDLE);
    fd = s->closef != NULL && s->f != NULL ? fileno(s->f) : -1;
  }
  lua_pushboolean(L, fd >= 0 && isatty(fd));
  return 1;
}


/* core.file_mode(path) -> permission bits (e.g. 0x180 for 0600), type
 *                       | nil, "ENAME: ...", "ENAME": for checks and specs.
 * type is "file", "directory" or "other" (a device, a FIFO, a socket). */
static int core_file_mode(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  unsigned mode = 0;
  int rc = lp2p_file_mode(path, &mode);
  int type = rc == 0 ? lp2p_file_type(path) : rc;
  if (type < 0)
    return lp2p__push_error_msg(
        L, type, lua_pushfstring(L, "%s: %s", path, lp2p_strerror(type)));
  lua_pushinteger(L, (lua_Integer)mode);
  lua_pushstring(L, type == LP2P_FILE_REGULAR     ? "file"
                    : type == LP2P_FILE_DIRECTORY ? "directory"
                                                  : "other");
  return 2;
}


void lp2p__open_fs(lua_State *L) {
  static const luaL_Reg funcs[] = {{"write_private", core_write_private},
                                   {"isatty", core_isatty},
                                   {"file_mode", core_file_mode},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
