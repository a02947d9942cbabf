/* error.c - names and messages of LP2P_E* codes. Other negative codes are
 * negated errno values (what libuv passes on Unix) or libuv's end of file;
 * the pure layer names them without linking libuv. */
#include "lp2p.h"

#include <string.h>

/* libuv's UV_EOF: not an errno, but every read path may return it. */
#define LP2P__UV_EOF (-4095)


const char *lp2p_err_name(int err) {
  const char *name;
  switch (err) {
#define XX(name, msg) case LP2P_##name: return #name;
    LP2P_ERRNO_MAP(XX)
#undef XX
  case LP2P__UV_EOF: return "EOF";
  }
  name = err < 0 ? strerrorname_np(-err) : NULL;
  return name ? name : "EUNKNOWN";
}


const char *lp2p_strerror(int err) {
  switch (err) {
#define XX(name, msg) case LP2P_##name: return msg;
    LP2P_ERRNO_MAP(XX)
#undef XX
  case LP2P__UV_EOF: return "end of file";
  }
  return err < 0 ? strerror(-err) : "unknown error";
}
