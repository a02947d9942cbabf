/*
 * conn_send.c - a connection's send path: messages are appended to a
 * plaintext queue, where small ones share chunks; of a large one lent by
 * the embedder only the envelope and head are copied, the rest is sealed
 * later straight from its buffer. Sealing runs a batch at a time into
 * blocks, written at once when the socket takes them, several blocks per
 * write. The handshake's own writes (lp2p__conn_flush_handshake) go out
 * here too.
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"



static void flush_queue(lp2p_conn *c);



/* Bytes of the stream not sealed yet: the plaintext queue and what is
 * left of the lent payloads. */
static size_t unsealed_bytes(const lp2p_conn *c) {
  return (c->outq_len - c->outq_off) + c->lent_bytes;
}


/* Bytes queued and not handed to a write yet, in plaintext (stream)
 * bytes: sealed chunks waiting, then what is not sealed. */
size_t lp2p__conn_queued_bytes(const lp2p_conn *c) {
  return c->sq_waiting + unsealed_bytes(c);
}


/* After any write: close when asked to once flushed, else keep feeding the
 * socket from the queue. */
static void wrote(lp2p_conn *c, int status) {
  c->writes_in_flight--;
  int closing = c->state == LP2P_CONN_CLOSING;
  if (status < 0) {
    if (closing)
      lp2p__conn_force_close(c);
    else
      lp2p__conn_fail(c, status, "write failed");
    return;
  }
  /* A graceful close sends everything queued, its Disconnect last. */
  if (lp2p__conn_queued_bytes(c) > 0 && (!closing || c->close_when_flushed))
    flush_queue(c);
  if (closing && c->close_when_flushed && c->writes_in_flight == 0)
    lp2p_conn_close(c, c->close_code, NULL, 0);
}


static void on_write(uv_write_t *req, int status) {
  lp2p_write *w = (lp2p_write *)req;
  lp2p_conn *c = w->conn;
  free(w);
  wrote(c, status);
}


static void sblock_release(lp2p_conn *c, lp2p_sblock *b) {
  if (b->cap == LP2P_SBLOCK_BYTES && c->sq_nfree < LP2P_SBLOCK_SPARE) {
    b->next = c->sq_free;
    c->sq_free = b;
    c->sq_nfree++;
  } else {
    free(b);
  }
}


static void sblocks_free(lp2p_sblock *b) {
  while (b != NULL) {
    lp2p_sblock *next = b->next;
    free(b);
    b = next;
  }
}


/* Nothing in flight: every block before `sent` is written. Whole blocks
 * go back to the spares; the tail, if done, is emptied for reuse. */
static void sq_release_written(lp2p_conn *c) {
  while (c->sq_head != NULL && c->sq_head->sent == c->sq_head->len) {
    lp2p_sblock *b = c->sq_head;
    if (b == c->sq_tail) {
      b->len = b->sent = 0;
      break;
    }
    c->sq_head = b->next;
    sblock_release(c, b);
  }
}


static void on_batch_written(uv_write_t *req, int status) {
  lp2p_conn *c = req->data;
  c->batch_in_flight = 0;
  if (status == 0)
    sq_release_written(c);
  wrote(c, status);
}


/*
 * Write what the handshake queued (its output, a Nack), read in place. A
 * handshake message almost always fits the socket at once: uv_try_write
 * then writes it with no request, no allocation and no callback
 * (uv_write would also queue an epoll_ctl for the watcher it touched, one
 * per write). Only what it could not write is copied, with its request,
 * into one heap block for uv_write, which keeps the order (uv_try_write
 * writes nothing while a request is queued). The output is consumed
 * either way.
 */
int lp2p__conn_flush_handshake(lp2p_conn *c) {
  const uint8_t *out;
  if (c->hs == NULL)
    return 0;
  size_t len = lp2p_hs_output(c->hs, &out);
  if (len == 0)
    return 0;
  uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS)
    return n;
  size_t done = n > 0 ? (size_t)n : 0;
  c->stat.bytes_out += len;
  c->node->total.bytes_out += len;
  if (done == len) {
    lp2p_hs_output_consumed(c->hs, len);
    return 0;
  }
  size_t rest = len - done;
  lp2p_write *w = malloc(sizeof *w + rest);
  if (w == NULL)
    return LP2P_ENOMEM;
  memcpy(w->data, out + done, rest);
  lp2p_hs_output_consumed(c->hs, len);
  w->conn = c;
  b = uv_buf_init((char *)w->data, (unsigned)rest);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(w);
    return rc;
  }
  c->writes_in_flight++;
  return 0;
}


static int sblock_spare(lp2p_conn *c, size_t cap) {
  lp2p_sblock *b = malloc(sizeof *b + cap);
  if (b == NULL)
    return LP2P_ENOMEM;
  b->cap = cap;
  b->next = c->sq_free;
  c->sq_free = b;
  c->sq_nfree++;
  return 0;
}


/*
 * Make sure sealing `len` plaintext bytes in one run cannot run out of
 * blocks, before anything is sealed, so that running out of memory
 * leaves the stream and its nonce untouched: the tail has room for all
 * of it, or the first spare does (a block sized to the run if it is
 * smaller than a full one), or, for more than a full block, there are
 * enough full-size spares (a new block is begun only when the next chunk
 * does not fit in the tail, so each holds more than LP2P_SBLOCK_BYTES -
 * chunk bytes). Spares are only ever full-size, but for the one a run
 * puts first. 0 or LP2P_ENOMEM (what was allocated stays spare).
 */
static int sq_reserve(lp2p_conn *c, size_t len) {
  size_t chunk = c->node->cfg.binary_chunks_size;
  size_t sealed = lp2p_frame_sealed_size(len, chunk);
  if (c->sq_tail != NULL && sealed <= c->sq_tail->cap - c->sq_tail->len)
    return 0;
  if (sealed <= LP2P_SBLOCK_BYTES) {
    if (c->sq_free != NULL && c->sq_free->cap >= sealed)
      return 0;
    size_t cap = (sealed + LP2P_SBLOCK_MIN - 1) / LP2P_SBLOCK_MIN *
                 LP2P_SBLOCK_MIN;
    return sblock_spare(c, cap < LP2P_SBLOCK_BYTES ? cap : LP2P_SBLOCK_BYTES);
  }
  size_t need = sealed / (LP2P_SBLOCK_BYTES - chunk) + 2;
  for (size_t have = c->sq_nfree; have < need; have++)
    if (sblock_spare(c, LP2P_SBLOCK_BYTES) < 0)
      return LP2P_ENOMEM;
  return 0;
}


/* Seal len bytes of stream into chunks at the tail of the sealed queue,
 * within what sq_reserve made room for. Fails only if sealing does
 * (never with a chunk size the config accepted); the connection must be
 * failed then, its send nonce having moved. */
static int sq_seal(lp2p_conn *c, const uint8_t *src, size_t len) {
  size_t chunk = c->node->cfg.binary_chunks_size;
  size_t piece = chunk - LP2P_CHUNK_OVERHEAD;
  while (len > 0) {
    lp2p_sblock *b = c->sq_tail;
    size_t room = b ? b->cap - b->len : 0;
    /* Whole chunks that fit, or the last short one. */
    size_t n = room / chunk * piece;
    if (n > len)
      n = len;
    if (n == 0 && len + LP2P_CHUNK_OVERHEAD <= room)
      n = len;
    if (n == 0) {
      b = c->sq_free; /* never NULL: sq_reserve */
      c->sq_free = b->next;
      c->sq_nfree--;
      b->next = NULL;
      b->len = b->sent = b->waiting = 0;
      if (c->sq_tail != NULL)
        c->sq_tail->next = b;
      else
        c->sq_head = b;
      c->sq_tail = b;
      continue;
    }
    int rc = lp2p_frame_seal(b->data + b->len, src, n, chunk, &c->crypto);
    if (rc < 0)
      return rc;
    b->len += lp2p_frame_sealed_size(n, chunk);
    b->waiting += n;
    c->sq_waiting += n;
    src += n;
    len -= n;
  }
  return 0;
}


/* Move the unsealed bytes of outq to its front (lent payloads' positions
 * with them). */
static void outq_rebase(lp2p_conn *c) {
  size_t shift = c->outq_off;
  if (shift == 0)
    return;
  memmove(c->outq, c->outq + shift, c->outq_len - shift);
  c->outq_len -= shift;
  c->outq_off = 0;
  for (unsigned i = c->lent_head; i < c->nlent; i++)
    c->lent[i].pos -= shift;
}


/* Give every lent payload back (sealed or not: the connection closes). */
void lp2p__conn_lent_drop(lp2p_conn *c) {
  while (c->lent_head < c->nlent) {
    lp2p_lent l = c->lent[c->lent_head++];
    l.release(l.ud, l.token);
  }
  c->lent_head = c->nlent = 0;
  c->lent_bytes = 0;
}


/*
 * Seal about `limit` bytes of what is not sealed yet, in stream order:
 * the plaintext queue up to the next lent payload (its last chunk cut
 * short there), then that payload in whole chunks straight from the
 * embedder's buffer, given back as soon as it is all sealed. 0, or an
 * error that fails the connection (out of memory: nothing was sealed by
 * the step that failed).
 */
static int seal_pending(lp2p_conn *c, size_t limit) {
  size_t piece = c->node->cfg.binary_chunks_size - LP2P_CHUNK_OVERHEAD;
  size_t done = 0;
  int rc = 0;
  while (done < limit && rc == 0) {
    lp2p_lent *l = c->lent_head < c->nlent ? &c->lent[c->lent_head] : NULL;
    size_t stop = l ? l->pos : c->outq_len;
    size_t n;
    if (c->outq_off < stop) {
      n = stop - c->outq_off;
      if (n > limit - done)
        n = limit - done;
      if ((rc = sq_reserve(c, n)) == 0 &&
          (rc = sq_seal(c, c->outq + c->outq_off, n)) == 0)
        c->outq_off += n;
    } else if (l != NULL) {
      size_t room = (limit - done + piece - 1) / piece * piece;
      n = l->len < room ? l->len : room;
      if ((rc = sq_reserve(c, n)) == 0 &&
          (rc = sq_seal(c, l->p, n)) == 0) {
        l->p += n;
        l->len -= n;
        c->lent_bytes -= n;
        if (l->len == 0) {
          lp2p_lent done_one = *l;
          if (++c->lent_head == c->nlent)
            c->lent_head = c->nlent = 0;
          done_one.release(done_one.ud, done_one.token);
        }
      }
    } else {
      break;
    }
    done += n;
  }
  if (c->outq_off == c->outq_len)
    outq_rebase(c); /* nothing to move: positions only */
  return rc;
}


/*
 * Write what waits, one write in flight at a time: first seal the next
 * batch of what is queued (whole chunks, about LP2P_SEAL_BATCH_BYTES,
 * small messages sharing chunks) unless sealed chunks already wait, then hand
 * up to LP2P_WRITE_BLOCKS blocks of sealed chunks to the kernel in one
 * writev. A whole batch is written at once if the socket
 * takes it (uv_try_write), so that the kernel copies what was just
 * sealed while it is in cache and the blocks are reused at once, and the
 * next batch follows; what the socket does not take goes to one
 * uv_write, and whatever is queued meanwhile waits for its callback. A
 * smaller batch goes straight to uv_write: what is sent during this loop
 * turn then goes in the next batches, not in many small writes (each one
 * a wake-up and a short read for the peer).
 * Errors of a write come through its callback, never from here.
 */
static void flush_queue(lp2p_conn *c) {
  if (c->batch_in_flight)
    return;
  size_t chunk = c->node->cfg.binary_chunks_size;
  size_t piece = chunk - LP2P_CHUNK_OVERHEAD;
  size_t per_batch = LP2P_SEAL_BATCH_BYTES / chunk;
  size_t batch = piece * (per_batch > 0 ? per_batch : 1);
  for (;;) {
    sq_release_written(c);
    if (unsealed_bytes(c) > 0 && c->sq_waiting < batch) {
      int rc = seal_pending(c, batch);
      if (rc < 0) {
        lp2p__conn_fail(c, rc, "sealing a batch failed");
        return;
      }
    }
    uv_buf_t bufs[LP2P_WRITE_BLOCKS];
    unsigned nbufs = 0;
    size_t size = 0;
    for (lp2p_sblock *b = c->sq_head; b != NULL && nbufs < LP2P_WRITE_BLOCKS;
         b = b->next) {
      if (b->sent == b->len)
        continue;
      bufs[nbufs++] = uv_buf_init((char *)b->data + b->sent,
                                  (unsigned)(b->len - b->sent));
      size += b->len - b->sent;
      b->sent = b->len;
      c->sq_waiting -= b->waiting;
      b->waiting = 0;
    }
    if (lp2p__conn_queued_bytes(c) == 0)
      c->outq_msgs = 0; /* messages count from when the queue was empty */
    if (nbufs == 0)
      return;
    c->stat.bytes_out += size;
    c->node->total.bytes_out += size;
    size_t done = 0;
    if (size >= batch) {
      int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
      if (n > 0)
        done = (size_t)n; /* an error: uv_write meets it again */
    }
    if (done == size)
      continue;
    uv_buf_t *rest = bufs;
    while (done >= rest->len) {
      done -= rest->len;
      rest++;
    }
    rest->base += done;
    rest->len -= done;
    c->batch_req.data = c;
    int rc = uv_write(&c->batch_req, (uv_stream_t *)&c->tcp, rest,
                      (unsigned)(bufs + nbufs - rest), on_batch_written);
    if (rc < 0) {
      lp2p__conn_fail(c, rc, "write failed");
      return;
    }
    c->writes_in_flight++;
    c->batch_in_flight = 1;
    return;
  }
}


static int outq_reserve(lp2p_conn *c, size_t more) {
  size_t need = c->outq_len + more;
  if (need <= c->outq_cap)
    return 0;
  /* Sealed bytes at the front: reuse their room once they are at least
   * half of the buffer, so each byte is moved O(1) times. */
  if (c->outq_off > 0 && c->outq_off >= c->outq_len - c->outq_off) {
    outq_rebase(c);
    need = c->outq_len + more;
    if (need <= c->outq_cap)
      return 0;
  }
  size_t cap = c->outq_cap ? c->outq_cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(c->outq, cap);
  if (p == NULL)
    return LP2P_ENOMEM;
  c->outq = p;
  c->outq_cap = cap;
  return 0;
}


/* Room for one more lent payload. 0 or LP2P_ENOMEM. */
static int lent_reserve(lp2p_conn *c) {
  if (c->nlent < c->lent_cap)
    return 0;
  if (c->lent_head > 0) {
    memmove(c->lent, c->lent + c->lent_head,
            (c->nlent - c->lent_head) * sizeof *c->lent);
    c->nlent -= c->lent_head;
    c->lent_head = 0;
    return 0;
  }
  unsigned cap = c->lent_cap ? c->lent_cap * 2 : 8;
  lp2p_lent *p = realloc(c->lent, cap * sizeof *p);
  if (p == NULL)
    return LP2P_ENOMEM;
  c->lent = p;
  c->lent_cap = cap;
  return 0;
}


/*
 * Queue one message (lp2p_conn_send, lp2p_conn_send_lent). The envelope
 * and the message go into the plaintext queue, where small messages share
 * chunks. With `lend` and a message of at least one chunk's plaintext,
 * only the envelope and the head of the payload (its length modulo a
 * chunk's plaintext) are copied; the rest is lent: sealed later in whole
 * chunks straight from the caller's buffer (seal_pending), so its bytes
 * are read once, by the cipher. The stream is the same either way; only
 * where chunks are cut differs.
 */
static int enqueue(lp2p_conn *c, const uint8_t *msg, size_t len,
                   int with_envelope, uint16_t tag, const lp2p_lent *lend) {
  const lp2p_node_config *cfg = &c->node->cfg;
  if (c->state != LP2P_CONN_RUNNING)
    return LP2P_ECLOSED;
  size_t total = with_envelope ? len + 6 : len;
  if (total - 4 > cfg->max_message_size)
    return LP2P_EMSGSIZE;
  /* An empty queue always takes one message, whatever its size. Messages
   * count from when the queue was last empty. */
  if (c->outq_msgs > 0 &&
      (c->outq_msgs >= cfg->outgoing_message_queue_size ||
       lp2p__conn_queued_bytes(c) + total > cfg->outgoing_queue_bytes))
    return LP2P_EQUEUEFULL;
  size_t piece = cfg->binary_chunks_size - LP2P_CHUNK_OVERHEAD;
  size_t head = lend != NULL && len >= piece ? len % piece : len;
  if (head < len && lent_reserve(c) < 0)
    return LP2P_ENOMEM;
  if (outq_reserve(c, (total - len) + head) < 0)
    return LP2P_ENOMEM;
  uint8_t *p = c->outq + c->outq_len;
  if (with_envelope) {
    uint32_t body = (uint32_t)len + 2;
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    p[4] = (uint8_t)(tag >> 8);
    p[5] = (uint8_t)tag;
    p += 6;
  }
  memcpy(p, msg, head);
  c->outq_len += (total - len) + head;
  if (head < len) {
    lp2p_lent *l = &c->lent[c->nlent++];
    *l = *lend;
    l->p = msg + head;
    l->len = len - head;
    l->pos = c->outq_len;
    c->lent_bytes += l->len;
  } else if (lend != NULL) {
    lend->release(lend->ud, lend->token); /* copied: not kept */
  }
  c->outq_msgs++;
  c->stat.msgs_out++;
  c->node->total.msgs_out++;
  flush_queue(c);
  return 0;
}


int lp2p_conn_send(lp2p_conn *c, const uint8_t *msg, size_t len,
                   int with_envelope, uint16_t tag) {
  return enqueue(c, msg, len, with_envelope, tag, NULL);
}


int lp2p_conn_send_lent(lp2p_conn *c, const uint8_t *msg, size_t len,
                        uint16_t tag, lp2p_release_fn release, void *ud,
                        uintptr_t token) {
  lp2p_lent l = {0};
  l.release = release;
  l.ud = ud;
  l.token = token;
  return enqueue(c, msg, len, 1, tag, &l);
}


/* Give back the send side's buffers that hold nothing (the idle trim,
 * lp2p__conn_trim). */
void lp2p__conn_send_trim(lp2p_conn *c) {
  sblocks_free(c->sq_free);
  c->sq_free = NULL;
  c->sq_nfree = 0;
  if (!c->batch_in_flight && c->sq_head != NULL &&
      c->sq_head == c->sq_tail && c->sq_head->len == 0) {
    free(c->sq_head);
    c->sq_head = c->sq_tail = NULL;
  }
  if (c->outq_len == 0 && c->nlent == 0 && c->outq != NULL) {
    free(c->outq);
    c->outq = NULL;
    c->outq_cap = 0;
  }
  if (c->nlent == 0 && c->lent != NULL) {
    free(c->lent);
    c->lent = NULL;
    c->lent_cap = 0;
  }
}


/* Queue the Disconnect message past the queue bounds (the last word is
 * always said) and flush; a failed flush closes c. Nothing is queued if
 * there is no memory for it. */
void lp2p__conn_say_disconnect(lp2p_conn *c) {
  static const uint8_t disconnect[6] = {0, 0, 0, 2, 0, LP2P_MSG_DISCONNECT};
  if (outq_reserve(c, sizeof disconnect) == 0) {
    memcpy(c->outq + c->outq_len, disconnect, sizeof disconnect);
    c->outq_len += sizeof disconnect;
    flush_queue(c);
  }
}


/* Free the send side's buffers, giving back any lent payload left (the
 * last reference of c goes). */
void lp2p__conn_send_free(lp2p_conn *c) {
  lp2p__conn_lent_drop(c); /* none left: closing gave them back */
  free(c->lent);
  free(c->outq);
  sblocks_free(c->sq_head);
  sblocks_free(c->sq_free);
}
