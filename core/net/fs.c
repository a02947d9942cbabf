/*
 * fs.c - writing private files: mode 0600, never clobbering unless asked,
 * and atomically when replacing (identity.json, ban files).
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

#include "lp2p_node.h"

#define FS_PATH_MAX LP2P_FILE_PATH_MAX
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


/* Write data to a new 0600 temporary file next to path (mkstemp creates
 * it 0600), flushed and closed. Returns 0 with its name in tmp, or a
 * negative UV_E* code with nothing left behind. */
static int write_tmp(const char *path, char *tmp, size_t tmpsz,
                     const char *data, size_t len) {
  snprintf(tmp, tmpsz, "%s" FS_TMP_SUFFIX, path);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  int rc = 0;
  if (fchmod(fd, 0600) != 0) {
    rc = uv_translate_sys_error(errno);
    close(fd);
  } else {
    rc = finish_file(fd, data, len);
  }
  if (rc != 0)
    unlink(tmp);
  return rc;
}


/* Create path with mode 0600, whole or not at all: the data goes to a
 * temporary file first, then link() gives it its name, which fails with
 * UV_EEXIST when anything (even a dangling symlink) is already there. An
 * interruption at any point (Ctrl-C, a crash) leaves no truncated
 * identity behind, at worst an unused temporary file. */
static int write_new(const char *path, const char *data, size_t len) {
  char tmp[FS_PATH_MAX + sizeof FS_TMP_SUFFIX];
  int rc = write_tmp(path, tmp, sizeof tmp, data, len);
  if (rc != 0)
    return rc;
  if (link(tmp, path) != 0)
    rc = uv_translate_sys_error(errno);
  unlink(tmp);
  return rc;
}


/* Replace path atomically: the temporary file is renamed over the target.
 * Opening the old file with O_TRUNC instead would keep its old, maybe
 * wider, mode. */
static int write_replace(const char *path, const char *data, size_t len) {
  char tmp[FS_PATH_MAX + sizeof FS_TMP_SUFFIX];
  int rc = write_tmp(path, tmp, sizeof tmp, data, len);
  if (rc != 0)
    return rc;
  if (rename(tmp, path) != 0) {
    rc = uv_translate_sys_error(errno);
    unlink(tmp);
  }
  return rc;
}


int lp2p_file_write_private(const char *path, const void *data, size_t len,
                            int overwrite) {
  if (path == NULL || path[0] == '\0' || strlen(path) > FS_PATH_MAX)
    return UV_EINVAL;
  return overwrite ? write_replace(path, data, len)
                   : write_new(path, data, len);
}


int lp2p_file_mode(const char *path, unsigned *mode) {
  struct stat st;
  if (stat(path, &st) != 0)
    return uv_translate_sys_error(errno);
  *mode = (unsigned)(st.st_mode & 07777);
  return 0;
}


int lp2p_file_type(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    return uv_translate_sys_error(errno);
  if (S_ISREG(st.st_mode))
    return LP2P_FILE_REGULAR;
  return S_ISDIR(st.st_mode) ? LP2P_FILE_DIRECTORY : LP2P_FILE_OTHER;
}
