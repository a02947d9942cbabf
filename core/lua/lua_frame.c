/*
 * lua_frame.c - Lua binding of frame.c: the luap2p.Channel and
 * luap2p.MsgReader userdata (the message codec and points are
 * lua_message.c).
 *
 * Both userdata hold their C state inline (plain bytes, no handle to
 * outlive them); close/__gc/__close release it once: the channel key and
 * nonces are wiped, the reader's buffer freed. Binary data crosses as Lua
 * strings of raw bytes.
 *
 * Lua API (added to the module table):
 *   core.channel(key32, send_nonce24, recv_nonce24) -> Channel
 *   ch:seal(stream [, chunk_size = 65535]) -> chunks
 *   ch:open(chunk) -> plaintext | nil, err, code
 *   ch:open_stream(bytes) -> plaintext, rest | nil, err, code, plaintext
 *   ch:nonces() -> send_nonce24, recv_nonce24
 *   ch:close()
 *   core.msg_reader([max_len]) -> MsgReader
 *   r:feed(bytes) -> { msg, ... } | nil, err, code, { msg, ... }
 *   r:pending() -> bytes held;  r:close()
 */
#include <stdio.h>
#include <string.h>

#include "lua_lp2p.h"

#define CHANNEL_MT "luap2p.Channel"
#define READER_MT "luap2p.MsgReader"

typedef struct lua_channel {
  int open; /* 0 once closed: key and nonces are wiped */
  lp2p_crypto c;
} lua_channel;

typedef struct lua_reader {
  int open; /* 0 once closed: the buffer is freed */
  lp2p_msg_reader r;
} lua_reader;


/* ------------------------------------------------------------- helpers */

static unsigned get_u16(const uint8_t *b) {
  return (unsigned)b[0] << 8 | b[1];
}


/* nil, "ENAME: msg", "ENAME", then a copy of the partial result found at
 * stack index idx (what was decoded before the error). */
static int error_with_partial(lua_State *L, int idx, int err,
                              const char *msg) {
  lp2p__push_error_msg(L, err, msg);
  lua_pushvalue(L, idx);
  return 4;
}


/* ------------------------------------------------------------- Channel */

static lua_channel *check_channel(lua_State *L, int idx) {
  lua_channel *u = luaL_checkudata(L, idx, CHANNEL_MT);
  if (!u->open)
    luaL_error(L, "attempt to use a closed " CHANNEL_MT);
  return u;
}


/* A new Channel userdata, closed until filled. */
static lua_channel *new_channel(lua_State *L) {
  lua_channel *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->open = 0;
  memset(&u->c, 0, sizeof u->c);
  luaL_setmetatable(L, CHANNEL_MT);
  return u;
}


void lp2p__push_channel(lua_State *L, const lp2p_crypto *c) {
  lua_channel *u = new_channel(L);
  u->c = *c;
  u->open = 1;
}


/* core.channel(key32, send_nonce24, recv_nonce24) -> Channel */
static int core_channel(lua_State *L) {
  const uint8_t *key = lp2p__check_bytes(L, 1, LP2P_KEY_BYTES, "channel key");
  const uint8_t *sn = lp2p__check_bytes(L, 2, LP2P_NONCE_BYTES, "send nonce");
  const uint8_t *rn = lp2p__check_bytes(L, 3, LP2P_NONCE_BYTES, "receive nonce");
  lua_channel *u = new_channel(L);
  memcpy(u->c.key, key, LP2P_KEY_BYTES);
  memcpy(u->c.send_nonce, sn, LP2P_NONCE_BYTES);
  memcpy(u->c.recv_nonce, rn, LP2P_NONCE_BYTES);
  u->open = 1;
  return 1;
}


/* ch:seal(stream [, chunk_size]) -> chunk bytes. The stream (one or more
 * whole envelopes) is cut into pieces of chunk_size - 18 bytes, one chunk
 * each, as the Octez writer does; the send nonce advances per chunk. An
 * empty stream gives "" (no chunk). */
static int channel_seal(lua_State *L) {
  lua_channel *u = check_channel(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer cs = luaL_optinteger(L, 3, LP2P_CHUNK_SIZE_MAX);
  luaL_argcheck(L, cs >= LP2P_CHUNK_SIZE_MIN && cs <= LP2P_CHUNK_SIZE_MAX, 3,
                "chunk_size must be an integer in 19..65535");
  size_t out_len = lp2p_frame_sealed_size(len, (size_t)cs);
  if (len > 0 && out_len == 0)
    return luaL_error(L, "seal: stream too large");
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, out_len);
  int rc = lp2p_frame_seal(out, (const uint8_t *)s, len, (size_t)cs, &u->c);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  luaL_pushresultsize(&b, out_len);
  return 1;
}


/* ch:open(chunk) -> plaintext | nil, err, code. chunk is exactly one chunk
 * with its u16 prefix. Shorter than its prefix says: ETRUNC and the receive
 * nonce is left alone (nothing was opened); longer: EEXTRA, likewise. A
 * prefix below 16: EBADLEN; a bad MAC: EAUTH; both advance the nonce. */
static int channel_open(lua_State *L) {
  lua_channel *u = check_channel(L, 1);
  size_t len;
  const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 2, &len);
  if (len < LP2P_CHUNK_HEADER)
    return lp2p__push_error_msg(L, LP2P_ETRUNC,
                                "chunk shorter than its 2-byte length");
  size_t blen = get_u16(s);
  if (blen < LP2P_TAG_BYTES) {
    int rc = lp2p_chunk_open(NULL, s + 2, blen, &u->c);
    return lp2p__push_error_msg(
        L, rc, lua_pushfstring(L, "chunk length %d is below 16", (int)blen));
  }
  if (len - LP2P_CHUNK_HEADER < blen)
    return lp2p__push_error_msg(
        L, LP2P_ETRUNC,
        lua_pushfstring(L, "chunk announces %d bytes, %d present", (int)blen,
                        (int)(len - LP2P_CHUNK_HEADER)));
  if (len - LP2P_CHUNK_HEADER > blen)
    return lp2p__push_error_msg(
        L, LP2P_EEXTRA,
        lua_pushfstring(L, "%d bytes after the chunk",
                        (int)(len - LP2P_CHUNK_HEADER - blen)));
  luaL_Buffer b;
  size_t plen = blen - LP2P_TAG_BYTES;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, plen);
  int rc = lp2p_chunk_open(out, s + 2, blen, &u->c);
  if (rc != 0)
    return lp2p__push_error(L, rc);
  luaL_pushresultsize(&b, plen);
  return 1;
}


/*
 * ch:open_stream(bytes) -> plaintext, rest
 *                        | nil, err, code, plaintext_before_the_error
 * Opens every whole chunk at the start of bytes, in order, and returns
 * their plaintexts concatenated. `rest` is the number of trailing bytes
 * that form only the beginning of a chunk (0..65536): they are not
 * consumed and the receive nonce has not moved for them, so the caller
 * keeps bytes:sub(#bytes - rest + 1) and puts it in front of what arrives
 * next. The channel keeps no bytes itself. On the first bad chunk (prefix
 * below 16: EBADLEN, bad MAC: EAUTH) it stops; the 4th value holds the
 * plaintext of the good chunks before it. Either error is fatal for the
 * connection (Octez closes it).
 */
static int channel_open_stream(lua_State *L) {
  lua_channel *u = check_channel(L, 1);
  size_t len;
  const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 2, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t pos = 0;
  while (len - pos >= LP2P_CHUNK_HEADER) {
    size_t blen = get_u16(s + pos);
    if (blen < LP2P_TAG_BYTES) {
      int rc = lp2p_chunk_open(NULL, s + pos + 2, blen, &u->c);
      luaL_pushresult(&b);
      int partial = lua_gettop(L);
      const char *msg =
          lua_pushfstring(L, "chunk length %d is below 16", (int)blen);
      return error_with_partial(L, partial, rc, msg);
    }
    if (len - pos - LP2P_CHUNK_HEADER < blen)
      break; /* partial chunk: left to the caller */
    size_t plen = blen - LP2P_TAG_BYTES;
    uint8_t *out = (uint8_t *)luaL_prepbuffsize(&b, plen);
    int rc = lp2p_chunk_open(out, s + pos + 2, blen, &u->c);
    if (rc != 0) {
      luaL_pushresult(&b);
      return error_with_partial(L, lua_gettop(L), rc, lp2p_strerror(rc));
    }
    luaL_addsize(&b, plen);
    pos += LP2P_CHUNK_HEADER + blen;
  }
  luaL_pushresult(&b);
  lua_pushinteger(L, (lua_Integer)(len - pos));
  return 2;
}


/* ch:nonces() -> send_nonce24, recv_nonce24 (the next ones to be used) */
static int channel_nonces(lua_State *L) {
  lua_channel *u = check_channel(L, 1);
  lua_pushlstring(L, (const char *)u->c.send_nonce, LP2P_NONCE_BYTES);
  lua_pushlstring(L, (const char *)u->c.recv_nonce, LP2P_NONCE_BYTES);
  return 2;
}


/* close, __gc and __close: wipe once; later calls do nothing. */
static int channel_close(lua_State *L) {
  lua_channel *u = luaL_checkudata(L, 1, CHANNEL_MT);
  if (u->open) {
    lp2p_crypto_wipe(&u->c);
    u->open = 0;
  }
  return 0;
}


static int channel_tostring(lua_State *L) {
  lua_channel *u = luaL_checkudata(L, 1, CHANNEL_MT);
  if (u->open)
    lua_pushfstring(L, CHANNEL_MT " (%p)", (void *)u);
  else
    lua_pushliteral(L, CHANNEL_MT " (closed)");
  return 1;
}


/* ----------------------------------------------------------- MsgReader */

static lua_reader *check_reader(lua_State *L, int idx) {
  lua_reader *u = luaL_checkudata(L, idx, READER_MT);
  if (!u->open)
    luaL_error(L, "attempt to use a closed " READER_MT);
  return u;
}


/* core.msg_reader([max_len]) -> MsgReader. max_len caps the u32 length
 * field; the default (Octez) keeps the whole envelope within 100 MiB. */
static int core_msg_reader(lua_State *L) {
  lua_Integer max = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, max == 0 || (max >= 2 && max <= 0xffffffff), 1,
                "max_len must be an integer in 2..2^32-1");
  lua_reader *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->open = 0;
  lp2p_msg_reader_init(&u->r, (size_t)max);
  luaL_setmetatable(L, READER_MT);
  u->open = 1;
  return 1;
}


typedef struct feed_state {
  lua_State *L;
  int table; /* absolute stack index of the result array */
  lua_Integer n;
} feed_state;


/* Runs inside lp2p_msg_reader_feed; a memory error raised here is safe:
 * the reader is at a message boundary whenever the callback runs. */
static int feed_cb(void *ud, const uint8_t *msg, size_t len) {
  feed_state *st = ud;
  lua_pushlstring(st->L, (const char *)msg, len);
  lua_rawseti(st->L, st->table, ++st->n);
  return 0;
}


/* r:feed(bytes) -> array of whole messages (tag || payload, no u32 prefix)
 *                | nil, err, code, array of the messages before the error.
 * Errors (EPROTO: length below 2; EMSGSIZE: length over the cap; ENOMEM)
 * are sticky: the stream cannot be resynchronised, every later feed fails
 * the same way. */
static int reader_feed(lua_State *L) {
  lua_reader *u = check_reader(L, 1);
  size_t len;
  const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 2, &len);
  lua_newtable(L);
  feed_state st = {L, lua_gettop(L), 0};
  int rc = lp2p_msg_reader_feed(&u->r, s, len, feed_cb, &st);
  if (rc == 0)
    return 1;
  const lp2p_msg_reader *r = &u->r;
  unsigned long n = (unsigned long)r->hdr[0] << 24 |
                    (unsigned long)r->hdr[1] << 16 |
                    (unsigned long)r->hdr[2] << 8 | r->hdr[3];
  char msg[96];
  if (rc == LP2P_EMSGSIZE)
    snprintf(msg, sizeof msg, "message length %lu exceeds the limit %lu", n,
             (unsigned long)(r->max_len ? r->max_len : LP2P_MSG_MAX - 4));
  else if (rc == LP2P_EPROTO)
    snprintf(msg, sizeof msg, "message length %lu leaves no room for a tag",
             n);
  else
    snprintf(msg, sizeof msg, "%s", lp2p_strerror(rc));
  return error_with_partial(L, st.table, rc, msg);
}


static int reader_pending(lua_State *L) {
  lua_reader *u = check_reader(L, 1);
  lua_pushinteger(L, (lua_Integer)lp2p_msg_reader_pending(&u->r));
  return 1;
}


static int reader_close(lua_State *L) {
  lua_reader *u = luaL_checkudata(L, 1, READER_MT);
  if (u->open) {
    lp2p_msg_reader_free(&u->r);
    u->open = 0;
  }
  return 0;
}


static int reader_tostring(lua_State *L) {
  lua_reader *u = luaL_checkudata(L, 1, READER_MT);
  if (u->open)
    lua_pushfstring(L, READER_MT " (%d bytes pending)",
                    (int)lp2p_msg_reader_pending(&u->r));
  else
    lua_pushliteral(L, READER_MT " (closed)");
  return 1;
}


/* ------------------------------------------------------------- opening */

static const luaL_Reg channel_methods[] = {
    {"seal", channel_seal},
    {"open", channel_open},
    {"open_stream", channel_open_stream},
    {"nonces", channel_nonces},
    {"close", channel_close},
    {NULL, NULL}};

static const luaL_Reg channel_meta[] = {
    {"__gc", channel_close},
    {"__close", channel_close},
    {"__tostring", channel_tostring},
    {NULL, NULL}};

static const luaL_Reg reader_methods[] = {
    {"feed", reader_feed},
    {"pending", reader_pending},
    {"close", reader_close},
    {NULL, NULL}};

static const luaL_Reg reader_meta[] = {
    {"__gc", reader_close},
    {"__close", reader_close},
    {"__tostring", reader_tostring},
    {NULL, NULL}};

static const luaL_Reg core_functions[] = {
    {"channel", core_channel},
    {"msg_reader", core_msg_reader},
    {NULL, NULL}};


void lp2p__open_frame(lua_State *L) {
  lp2p__new_class(L, CHANNEL_MT, channel_meta, channel_methods);
  lp2p__new_class(L, READER_MT, reader_meta, reader_methods);
  luaL_setfuncs(L, core_functions, 0);
}
