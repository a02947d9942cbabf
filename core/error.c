/* error.c - names and messages of LP2P_E* codes; UV_E* codes pass through. */
#include "lp2p.h"

#include <uv.h>


const char *lp2p_err_name(int err) {
  switch (err) {
#define XX(name, msg) case LP2P_##name: return #name;
    LP2P_ERRNO_MAP(XX)
#undef XX
  }
  return uv_err_name(err);
}


const char *lp2p_strerror(int err) {
  switch (err) {
#define XX(name, msg) case LP2P_##name: return msg;
    LP2P_ERRNO_MAP(XX)
#undef XX
  }
  return uv_strerror(err);
}
