/*
 * lp2p.h - the one public header of the luap2p C core.
 *
 * Three layers (docs/ARCHITECTURE.md):
 *   pure   identity.c, handshake.c, frame.c: no Lua, no libuv, no I/O;
 *          caller-allocated state, bytes in -> bytes/events out.
 *   I/O    conn.c, handler.c: libuv sockets, timers, queues, limits.
 *   Lua    lua_*.c: the binding (luaopen_luap2p_core).
 *
 * Errors: functions return 0 (or a count/event) on success and a negative
 * LP2P_E* code on failure; libuv's negative UV_E* codes pass through
 * unchanged. lp2p_err_name() / lp2p_strerror() name every code.
 *
 * Thread safety: every function works only on the state it is given; the
 * pure layer may be used from any thread as long as one state object is not
 * shared between threads. The I/O layer belongs to its loop's thread.
 */
#ifndef LP2P_H
#define LP2P_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define LP2P_EXPORT __attribute__((visibility("default")))
#define LP2P_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define LP2P_EXPORT
#define LP2P_WARN_UNUSED
#endif

#define LP2P_VERSION "0.1.0"


/* ---------------------------------------------------------------- errors */

/* XX(name, message). Codes start at -5000, far from errno and UV_E*. */
#define LP2P_ERRNO_MAP(XX)                                                   \
  XX(EPROTO, "malformed input")                                              \
  XX(EAUTH, "decipher error: authentication tag mismatch")                   \
  XX(EMSGSIZE, "message too large")                                          \
  XX(EBADLEN, "bad length prefix")                                           \
  XX(ETRUNC, "truncated input")                                              \
  XX(EEXTRA, "extra bytes after the end of a message")                       \
  XX(ECHAIN, "unknown chain name")                                           \
  XX(EP2PVER, "deprecated p2p version")                                      \
  XX(EDDBVER, "deprecated distributed db version")                           \
  XX(EPOW, "not enough proof of work")                                       \
  XX(EMYSELF, "connected to myself")                                         \
  XX(ENACK, "rejected by the peer (Nack)")                                   \
  XX(EPOINT, "malformed point")                                              \
  XX(EPEERID, "malformed peer id")                                           \
  XX(EIDENTITY, "bad identity")                                              \
  XX(ECANCELED, "operation canceled")                                        \
  XX(ESTATE, "operation not valid in this state")                            \
  XX(EINVAL, "invalid argument")                                             \
  XX(ENOMEM, "out of memory")                                                \
  XX(EQUEUEFULL, "queue full")                                               \
  XX(EBANNED, "banned")                                                      \
  XX(ETOOMANY, "too many connections")                                       \
  XX(EALREADY, "already connected")                                          \
  XX(EUNEXPECTED, "unexpected peer id")                                      \
  XX(EPRIVATE, "private mode: point or peer not trusted")                    \
  XX(EREFUSED, "refused by policy")                                          \
  XX(ECLOSED, "connection closed")                                           \
  XX(ETIMEDOUT, "timed out")                                                 \
  XX(ENOBUFS, "incoming buffer budget exceeded")                            \
  XX(EPOLICY, "policy failed to load or check")                              \
  XX(ETASK, "task failed")

enum {
#define XX(name, msg) LP2P__ERRIDX_##name,
  LP2P_ERRNO_MAP(XX)
#undef XX
  LP2P__ERR_COUNT
};

/* LP2P_EPROTO == -5000, LP2P_EAUTH == -5001, ... */
enum {
#define XX(name, msg) LP2P_##name = -5000 - LP2P__ERRIDX_##name,
  LP2P_ERRNO_MAP(XX)
#undef XX
};

/* Name ("EPROTO") and message of an LP2P_E* or UV_E* code; never NULL. */
const char *lp2p_err_name(int err);
const char *lp2p_strerror(int err);


/* -------------------------------------------------------------- identity */

#define LP2P_PK_BYTES 32
#define LP2P_SK_BYTES 32
#define LP2P_STAMP_BYTES 24
#define LP2P_NONCE_BYTES 24
#define LP2P_KEY_BYTES 32
#define LP2P_TAG_BYTES 16
#define LP2P_PEER_ID_BYTES 16
#define LP2P_PEER_ID_B58_LEN 30 /* "id" + 28 characters */
#define LP2P_POW_DEFAULT_BITS 26.0

typedef struct lp2p_identity {
  uint8_t pk[LP2P_PK_BYTES];
  uint8_t sk[LP2P_SK_BYTES]; /* wiped by lp2p_identity_wipe */
  uint8_t stamp[LP2P_STAMP_BYTES];
  uint8_t peer_id[LP2P_PEER_ID_BYTES];
} lp2p_identity;

/* A hash passes when, read as a little-endian 256-bit integer, it is <= le. */
typedef struct lp2p_pow_target {
  uint8_t le[32];
} lp2p_pow_target;

/* Fresh X25519 key pair and its peer id; stamp zeroed (no proof of work). */
void lp2p_identity_generate(lp2p_identity *id);
void lp2p_identity_wipe(lp2p_identity *id);
/* Fill peer_id from pk. */
void lp2p_identity_set_peer_id(lp2p_identity *id);
/* 0 when sk is the secret key of pk, else LP2P_EIDENTITY. */
int lp2p_identity_check_keys(const lp2p_identity *id) LP2P_WARN_UNUSED;

/* BLAKE2b, 16-byte digest, of the public key. */
void lp2p_peer_id(uint8_t id[LP2P_PEER_ID_BYTES], const uint8_t pk[LP2P_PK_BYTES]);
/* Base58Check "id..." text; out gets LP2P_PEER_ID_B58_LEN chars + NUL. */
void lp2p_peer_id_encode(char out[LP2P_PEER_ID_B58_LEN + 1],
                         const uint8_t id[LP2P_PEER_ID_BYTES]);
/* 0 or LP2P_EPEERID (bad alphabet, prefix, length or checksum). */
int lp2p_peer_id_decode(uint8_t id[LP2P_PEER_ID_BYTES], const char *s,
                        size_t len) LP2P_WARN_UNUSED;

/* Octez Crypto_box.make_pow_target; bits in [0, 256], else LP2P_EINVAL. */
int lp2p_pow_target_make(lp2p_pow_target *t, double bits) LP2P_WARN_UNUSED;
/* 1 when BLAKE2b-256(pk || stamp) <= target, else 0. */
int lp2p_pow_check(const uint8_t pk[LP2P_PK_BYTES],
                   const uint8_t stamp[LP2P_STAMP_BYTES],
                   const lp2p_pow_target *t);
/* Progress callback: tries so far; return non-zero to cancel the search. */
typedef int (*lp2p_pow_progress_cb)(void *ud, uint64_t tries);
/* Search a stamp from a random start (big-endian counter). Calls progress
 * every `every` tries (0 = never). 0, or LP2P_ECANCELED. */
int lp2p_pow_search(uint8_t stamp[LP2P_STAMP_BYTES],
                    const uint8_t pk[LP2P_PK_BYTES], const lp2p_pow_target *t,
                    uint64_t every, lp2p_pow_progress_cb progress, void *ud);

/* Octez identity.json. Parse: 0, or LP2P_EIDENTITY with a message naming the
 * field written into err (NUL-terminated, at most errlen bytes). */
int lp2p_identity_from_json(lp2p_identity *id, const char *json, size_t len,
                            char *err, size_t errlen) LP2P_WARN_UNUSED;
/* Serialise; returns the length written (excluding NUL), or LP2P_EINVAL when
 * cap is too small (LP2P_IDENTITY_JSON_MAX is always enough). */
#define LP2P_IDENTITY_JSON_MAX 512
int lp2p_identity_to_json(char *out, size_t cap, const lp2p_identity *id);


/* ---------------------------------------------------------------- points */

/* Text form "a.b.c.d:port" or "[v6]:port", at most 47 characters
 * (51 bytes with its u32 length prefix on the wire). */
#define LP2P_POINT_TEXT_MAX 47

typedef struct lp2p_point {
  uint8_t family; /* 4 or 6 */
  uint8_t addr[16];
  uint16_t port;
} lp2p_point;

/* 0 or LP2P_EPOINT. */
int lp2p_point_parse(lp2p_point *p, const char *s, size_t len) LP2P_WARN_UNUSED;
/* Canonical text, NUL-terminated; returns its length, or LP2P_EINVAL for a
 * family other than 4 (address in addr[0..3]) or 6. */
int lp2p_point_format(char out[LP2P_POINT_TEXT_MAX + 1], const lp2p_point *p);
/* Internal: lp2p_point_parse that also names the problem in *why (a static
 * English phrase) for error messages. */
int lp2p__point_parse_why(lp2p_point *p, const char *s, size_t len,
                          const char **why);


/* ---------------------------------------------------- chunks and framing */

#define LP2P_CHUNK_HEADER 2
#define LP2P_CHUNK_OVERHEAD (LP2P_CHUNK_HEADER + LP2P_TAG_BYTES) /* 18 */
#define LP2P_CHUNK_SIZE_MIN 19
#define LP2P_CHUNK_SIZE_MAX 65535
#define LP2P_CHUNK_PAYLOAD_MAX (LP2P_CHUNK_SIZE_MAX - LP2P_CHUNK_OVERHEAD)
/* Octez caps a whole envelope, u32 length included, at 100 MiB. */
#define LP2P_MSG_MAX (100u * 1024 * 1024)

/* The encrypted channel of one connection. Counters advance per chunk. */
typedef struct lp2p_crypto {
  uint8_t key[LP2P_KEY_BYTES]; /* crypto_box_beforenm(remote_pk, local_sk) */
  uint8_t send_nonce[LP2P_NONCE_BYTES];
  uint8_t recv_nonce[LP2P_NONCE_BYTES];
} lp2p_crypto;

void lp2p_crypto_wipe(lp2p_crypto *c);
/* 192-bit big-endian increment. */
void lp2p_nonce_increment(uint8_t n[LP2P_NONCE_BYTES]);

/* One chunk: out gets [u16 16+len][tag][ciphertext], 18+len bytes.
 * len <= LP2P_CHUNK_PAYLOAD_MAX else LP2P_EMSGSIZE. Advances send_nonce. */
int lp2p_chunk_seal(uint8_t *out, const uint8_t *plain, size_t len,
                    lp2p_crypto *c) LP2P_WARN_UNUSED;
/* Open a chunk body (tag || ciphertext, blen bytes = the header's value).
 * out gets blen-16 bytes. blen < 16: LP2P_EBADLEN; bad MAC: LP2P_EAUTH and
 * out is zeroed. Advances recv_nonce in every case. */
int lp2p_chunk_open(uint8_t *out, const uint8_t *body, size_t blen,
                    lp2p_crypto *c) LP2P_WARN_UNUSED;

/* Bytes needed to seal len bytes of stream into chunks of at most
 * chunk_size bytes (header and tag included); 0 for a chunk_size outside
 * 19..65535 or a size that would overflow. */
size_t lp2p_frame_sealed_size(size_t len, size_t chunk_size);
/* Cut a byte stream (one or more whole enveloped messages) into chunks of at
 * most chunk_size bytes and seal each. out has lp2p_frame_sealed_size(...)
 * bytes. chunk_size outside 19..65535: LP2P_EINVAL. */
int lp2p_frame_seal(uint8_t *out, const uint8_t *stream, size_t len,
                    size_t chunk_size, lp2p_crypto *c) LP2P_WARN_UNUSED;

/* Streaming reassembly of [u32 length][length bytes] messages from
 * decrypted chunk bytes. Memory grows with bytes received, never with the
 * length a peer claims. */
typedef struct lp2p_msg_reader {
  uint8_t hdr[4];
  size_t hdr_have;
  uint8_t *buf; /* malloc'd, grows as bytes arrive */
  size_t cap, have, want;
  size_t max_len; /* cap on the length field; 0: LP2P_MSG_MAX - 4 */
} lp2p_msg_reader;

/* Called with each whole message body (tag || payload, `len` bytes, without
 * the u32 prefix). Return non-zero to stop; feed then returns that value. */
typedef int (*lp2p_msg_cb)(void *ud, const uint8_t *msg, size_t len);

void lp2p_msg_reader_init(lp2p_msg_reader *r, size_t max_len);
/* 0, the callback's non-zero value, or LP2P_EMSGSIZE / LP2P_EPROTO (length
 * < 2: no room for a tag). After an error the reader must be reset. */
int lp2p_msg_reader_feed(lp2p_msg_reader *r, const uint8_t *data, size_t len,
                         lp2p_msg_cb cb, void *ud);
/* The same, and *used = the bytes of data consumed: all of them, or, when
 * the callback stopped the feed, up to the end of that message (the rest
 * may be fed later, the reader being at a message boundary). */
int lp2p_msg_reader_feed_some(lp2p_msg_reader *r, const uint8_t *data,
                              size_t len, lp2p_msg_cb cb, void *ud,
                              size_t *used);
/* Decrypting straight into the message being reassembled: when the reader
 * is inside a message body and its next `len` bytes all belong to it,
 * the place for them (room reserved in buf, as a feed of them would);
 * else NULL (or LP2P_ENOMEM in *err), and the caller feeds as usual.
 * Whatever is written there counts only after lp2p_msg_reader_commit. */
uint8_t *lp2p_msg_reader_room(lp2p_msg_reader *r, size_t len, int *err);
/* The len bytes written at the room are part of the message: the same as
 * feeding them (the callback runs when the message is whole). */
int lp2p_msg_reader_commit(lp2p_msg_reader *r, size_t len, lp2p_msg_cb cb,
                           void *ud);
/* Bytes held for a message not yet complete. */
size_t lp2p_msg_reader_pending(const lp2p_msg_reader *r);
/* Free the buffer when no message is in progress (an idle connection). */
void lp2p_msg_reader_trim(lp2p_msg_reader *r);
void lp2p_msg_reader_free(lp2p_msg_reader *r);


/* ---------------------------------------------------------- P2P messages */

enum {
  LP2P_MSG_DISCONNECT = 0x01,
  LP2P_MSG_BOOTSTRAP = 0x02,
  LP2P_MSG_ADVERTISE = 0x03,
  LP2P_MSG_SWAP_REQUEST = 0x04,
  LP2P_MSG_SWAP_ACK = 0x05,
  LP2P_MSG_APP_MIN = 0x10 /* application messages: tag >= 0x10 */
};
#define LP2P_ADVERTISE_MAX 100

typedef struct lp2p_msg {
  uint16_t tag;
  size_t npoints; /* Advertise */
  lp2p_point points[LP2P_ADVERTISE_MAX];
  lp2p_point point; /* Swap_request, Swap_ack */
  uint8_t peer_id[LP2P_PEER_ID_BYTES];
  const uint8_t *body; /* application payload (points into the input) */
  size_t body_len;
} lp2p_msg;

/* Decode tag || payload (as given to lp2p_msg_cb). Unknown tags below 0x10:
 * LP2P_EPROTO; trailing bytes: LP2P_EEXTRA; short: LP2P_ETRUNC; bad point:
 * LP2P_EPOINT. */
int lp2p_msg_decode(lp2p_msg *m, const uint8_t *msg, size_t len) LP2P_WARN_UNUSED;
/* Encode the whole envelope [u32 len][u16 tag][payload]. Returns the length
 * (which may exceed cap: call again with a larger buffer), or LP2P_EINVAL /
 * LP2P_EMSGSIZE. */
long lp2p_msg_encode(uint8_t *out, size_t cap, const lp2p_msg *m);


/* ------------------------------------------------------------- handshake */

#define LP2P_CHAIN_NAME_MAX 255
#define LP2P_NACK_POINTS_MAX 100

enum {
  LP2P_NACK_NO_MOTIVE = 0,
  LP2P_NACK_TOO_MANY_CONNECTIONS = 1,
  LP2P_NACK_UNKNOWN_CHAIN_NAME = 2,
  LP2P_NACK_DEPRECATED_P2P_VERSION = 3,
  LP2P_NACK_DEPRECATED_DDB_VERSION = 4,
  LP2P_NACK_ALREADY_CONNECTED = 5
};

typedef struct lp2p_version_range {
  uint16_t min, max; /* supported; max is announced */
} lp2p_version_range;

typedef struct lp2p_conn_msg {
  uint16_t port;
  uint8_t pk[LP2P_PK_BYTES];
  uint8_t stamp[LP2P_STAMP_BYTES];
  uint8_t nonce[LP2P_NONCE_BYTES];
  size_t chain_len; /* real length; chain holds at most 255 bytes of it */
  char chain[LP2P_CHAIN_NAME_MAX + 1];
  uint16_t ddb_version, p2p_version;
} lp2p_conn_msg;

/* Body without the u16 prefix; exact length. LP2P_ETRUNC, LP2P_EEXTRA. */
int lp2p_conn_msg_decode(lp2p_conn_msg *m, const uint8_t *body,
                         size_t len) LP2P_WARN_UNUSED;
/* Whole message with its u16 prefix; returns length or LP2P_EINVAL. */
long lp2p_conn_msg_encode(uint8_t *out, size_t cap, const lp2p_conn_msg *m);

/* Octez Network_version.select for one version number: 0 and *chosen, or
 * LP2P_EP2PVER/LP2P_EDDBVER-style failure given as `fail`. */
int lp2p_version_select(uint16_t *chosen, lp2p_version_range local,
                        uint16_t remote, int fail);

/* N_ir / N_ri from the raw messages (u16 prefix included). */
void lp2p_nonces_derive(uint8_t ir[LP2P_NONCE_BYTES],
                        uint8_t ri[LP2P_NONCE_BYTES], const uint8_t *init_msg,
                        size_t init_len, const uint8_t *resp_msg,
                        size_t resp_len);

typedef struct lp2p_hs_config {
  const lp2p_identity *identity;
  lp2p_pow_target target;   /* required of the remote */
  uint16_t advertised_port; /* 0 = none */
  const char *chain_name;
  size_t chain_name_len;
  lp2p_version_range p2p, ddb;
  uint8_t disable_mempool, private_node;
  int incoming;                /* 1: we accepted the TCP connection */
  size_t max_conn_msg_len;     /* 0 = 65535 */
  const uint8_t *message_nonce; /* NULL = random (normal); 24 bytes pinned
                                   by known-answer tests */
  int defer_key; /* 1: lp2p_hs_feed stops at LP2P_HS_KEY_NEEDED so that the
                    caller runs the key job elsewhere (a worker thread) */
} lp2p_hs_config;

/* Events returned by lp2p_hs_feed. */
enum {
  LP2P_HS_NEED_MORE = 0,
  LP2P_HS_CONN_MSG = 1, /* remote connection message read, PoW ok, channel
                           derived, our metadata queued for output */
  LP2P_HS_METADATA = 2, /* remote metadata read: call lp2p_hs_ack or _nack */
  LP2P_HS_ACKED = 3,    /* remote Ack read after ours: established */
  LP2P_HS_NACKED = 4,   /* remote Nack read: see remote.nack_* */
  LP2P_HS_KEY_NEEDED = 5 /* defer_key only: remote connection message
                            decoded; run lp2p_hs_key_job's job, then
                            lp2p_hs_key_done (which returns CONN_MSG) */
};

typedef struct lp2p_hs_remote {
  lp2p_conn_msg msg;
  uint8_t peer_id[LP2P_PEER_ID_BYTES];
  int version_status; /* 0, LP2P_ECHAIN, LP2P_EP2PVER or LP2P_EDDBVER */
  uint16_t p2p_version, ddb_version; /* chosen, when version_status == 0 */
  uint8_t disable_mempool, private_node;
  int nack_motive; /* -1 for Nack_v_0 */
  size_t nack_npoints;
  lp2p_point nack_points[LP2P_NACK_POINTS_MAX];
} lp2p_hs_remote;

typedef struct lp2p_hs lp2p_hs; /* opaque; lp2p_hs_new/lp2p_hs_free */

/* New handshake; queues our connection message. NULL on ENOMEM/EINVAL
 * (*err set). The config is copied; identity must outlive the hs. */
lp2p_hs *lp2p_hs_new(const lp2p_hs_config *cfg, int *err);
/* Wipes every secret and frees. NULL is fine. */
void lp2p_hs_free(lp2p_hs *hs);

/*
 * The same in caller memory, so that a caller running many handshakes
 * reuses blocks instead of allocating one each. lp2p_hs_size() bytes,
 * aligned as malloc aligns. lp2p_hs_init: 0 or LP2P_EINVAL (nothing
 * allocated); it zeroes the block first, whatever it held. lp2p_hs_clear
 * wipes every secret and frees what the handshake put on the heap (only a
 * large item: a long remote chain name, a Nack with many points), leaving
 * the block all zero for another lp2p_hs_init or for the caller to free;
 * a cleared or zeroed block may be cleared again. lp2p_hs_new /
 * lp2p_hs_free are malloc + init / clear + free.
 */
size_t lp2p_hs_size(void);
int lp2p_hs_init(lp2p_hs *hs, const lp2p_hs_config *cfg) LP2P_WARN_UNUSED;
void lp2p_hs_clear(lp2p_hs *hs);

/* Feed received bytes. Consumes at most up to the end of the current
 * handshake item; *consumed says how many. Returns an LP2P_HS_* event or a
 * negative error (the handshake is then dead). While waiting for the ack
 * decision it consumes nothing and returns LP2P_HS_NEED_MORE; bytes after
 * the remote Ack belong to the framed stream and are not consumed. */
int lp2p_hs_feed(lp2p_hs *hs, const uint8_t *data, size_t len,
                 size_t *consumed);
/* After LP2P_HS_METADATA: queue our Ack, or our Nack (Nack_v_0 when the
 * remote announced p2p_version 0). */
int lp2p_hs_ack(lp2p_hs *hs) LP2P_WARN_UNUSED;
int lp2p_hs_nack(lp2p_hs *hs, int motive, const lp2p_point *points,
                 size_t npoints) LP2P_WARN_UNUSED;
/* The queued output without taking it: *out points to its bytes inside
 * the hs (NULL when none), valid until the next call on hs; returns the
 * length. lp2p_hs_output_consumed drops the first n of them (all of them
 * when n >= the length), once written: no allocation either way. */
size_t lp2p_hs_output(const lp2p_hs *hs, const uint8_t **out);
void lp2p_hs_output_consumed(lp2p_hs *hs, size_t n);
/* Take the queued output: *out is malloc'd (a copy, unless it had
 * outgrown the hs's own buffer), the caller frees it. Returns the length
 * (0 and *out NULL when nothing is queued, or on ENOMEM: it stays queued
 * then). */
size_t lp2p_hs_take_output(lp2p_hs *hs, uint8_t **out);
/* The remote's data, from the moment its connection message decoded (so
 * also after LP2P_EPOW / LP2P_EMYSELF); NULL before. */
const lp2p_hs_remote *lp2p_hs_remote_info(const lp2p_hs *hs);
/* After LP2P_HS_ACKED: copy the channel state (key and nonce counters). */
int lp2p_hs_crypto(const lp2p_hs *hs, lp2p_crypto *out) LP2P_WARN_UNUSED;

/*
 * The costly step of a handshake (a crypto_box_beforenm, ~30 us, and the
 * remote's proof-of-work check), split out so that a caller can run it off
 * its event loop. With defer_key, lp2p_hs_feed returns LP2P_HS_KEY_NEEDED
 * once the remote connection message decoded, and consumes nothing until
 * lp2p_hs_key_done. lp2p_hs_key_job fills a job (it holds a copy of our
 * secret key); lp2p_hs_keyjob_run touches nothing but the job and
 * libsodium, so any thread may run it; lp2p_hs_key_done (the hs's thread)
 * takes the result, wipes the job, and returns LP2P_HS_CONN_MSG (our
 * metadata queued) or a negative error (LP2P_EPOW, LP2P_EPROTO: the
 * handshake is dead). Without defer_key lp2p_hs_feed does all three.
 */
typedef struct lp2p_hs_keyjob {
  uint8_t remote_pk[LP2P_PK_BYTES];
  uint8_t stamp[LP2P_STAMP_BYTES];
  uint8_t sk[LP2P_SK_BYTES];
  lp2p_pow_target target;
  uint8_t key[LP2P_KEY_BYTES];
  int result; /* 0, LP2P_EPOW or LP2P_EPROTO */
} lp2p_hs_keyjob;

int lp2p_hs_key_job(const lp2p_hs *hs, lp2p_hs_keyjob *job) LP2P_WARN_UNUSED;
void lp2p_hs_keyjob_run(lp2p_hs_keyjob *job);
int lp2p_hs_key_done(lp2p_hs *hs, lp2p_hs_keyjob *job) LP2P_WARN_UNUSED;

#endif /* LP2P_H */
