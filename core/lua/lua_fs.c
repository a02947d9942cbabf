/*
 * lua_fs.c - the few file-system and terminal calls Lua's io library lacks:
 * writing a private file (mode 0600, never clobbering unless asked) for
 * identity.json, and isatty() so the command line can tell a terminal
 * (live progress line) from a pipe (plain periodic lines).
 *
 * Errors are libuv's negative UV_E* codes, translated from errno, so the
 * Lua side sees "EEXIST", "EACCES", ... like everywhere else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua_lp2p.h"

/* Longest path accepted, including the temporary file's suffix. */
#define FS_PATH_MAX 4096
#define FS_TMP_SUFFIX ".tmp-XXXXXX"


/* Write all of data to fd, retrying short writes and EINTR. Returns 0 or a
 * negative UV_E* code. */
static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return uv_translate_sys_error(errno);
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}


/* Write, flush to disk and close fd. Returns 0 or a negative UV_E* code;
 * fd is closed either way. */
static int finish_file(int fd, const char *data, size_t len) {
  int rc = write_all(fd, data, len);
  if (rc == 0 && fsync(fd) != 0)
    rc = uv_translate_sys_error(errno);
  if (close(fd) != 0 && rc == 0)
    rc = uv_translate_sys_error(errno);
  return rc;
}


/* Create path with mode 0600; fails with UV_EEXIST when anything (even a
 * dangling symlink) is already there, since O_EXCL does not follow links. */
static int write_new(const char *path, const char *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  int rc = finish_file(fd, data, len);
  if (rc != 0)
    unlink(path); /* never leave a truncated identity behind */
  return rc;
}


/* Replace path atomically: a 0600 temporary file in the same directory
 * (mkstemp creates it 0600), then rename over the target. Opening the old
 * file with O_TRUNC instead would keep its old, maybe wider, mode. */
static int write_replace(const char *path, const char *data, size_t len) {
  char tmp[FS_PATH_MAX + sizeof FS_TMP_SUFFIX];
  snprintf(tmp, sizeof tmp, "%s" FS_TMP_SUFFIX, path);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  int rc = 0;
  if (fchmod(fd, 0600) != 0)
    rc = uv_translate_sys_error(errno);
  if (rc != 0)
    close(fd);
  else
    rc = finish_file(fd, data, len);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = uv_translate_sys_error(errno);
  if (rc != 0)
    unlink(tmp);
  return rc;
}


/* core.write_private(path, data [, overwrite]) -> true
 *                                  | nil, "ENAME: path: message", "ENAME"
 * Writes data to a new file of mode 0600. Without overwrite an existing
 * path fails with EEXIST; with it the file is replaced atomically. */
static int core_write_private(lua_State *L) {
  size_t plen, len;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &len);
  int overwrite = lua_toboolean(L, 3);
  luaL_argcheck(L, plen > 0 && plen <= FS_PATH_MAX &&
                   strlen(path) == plen, 1,
                "expected a non-empty path without NUL bytes");
  int rc = overwrite ? write_replace(path, data, len)
                     : write_new(path, data, len);
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


/* core.file_mode(path) -> permission bits (e.g. 0x180 for 0600)
 *                       | nil, "ENAME: ...", "ENAME": for checks and specs. */
static int core_file_mode(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    int rc = uv_translate_sys_error(errno);
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "%s: %s", path, lp2p_strerror(rc)));
  }
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  return 1;
}


void lp2p__open_fs(lua_State *L) {
  static const luaL_Reg funcs[] = {{"write_private", core_write_private},
                                   {"isatty", core_isatty},
                                   {"file_mode", core_file_mode},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
