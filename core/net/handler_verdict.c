/*
 * handler_verdict.c - the node's verdict once a connection's remote
 * metadata is read (handler.c): the hard checks in Octez order (banned
 * peer, unexpected peer, chain and versions, too many connections,
 * already connected, simultaneous dials), the authenticated hook, the Ack,
 * Nack or close; then the connection's start once both Acks are out.
 */
#include <string.h>

#include "node_internal.h"


/* ------------------------------------------------------- authentication */

/* Of two connections to one peer made by dialling each other at once, both
 * ends keep the one opened by the peer with the lower id, so they agree. */
static int preferred(const lp2p_node *n, const lp2p_conn *c) {
  int we_are_lower = memcmp(n->cfg.identity.peer_id, c->peer_id,
                            LP2P_PEER_ID_BYTES) < 0;
  return c->incoming != we_are_lower;
}


/*
 * Is self's peer already connected? A running connection, or an acked
 * handshake that self does not beat, takes the peer: self is Nacked
 * (Already_connected). When self beats an acked handshake racing it, that
 * one is returned in *loser for the caller to close once self is acked.
 */
static int peer_taken(lp2p_node *n, const lp2p_conn *self, lp2p_conn **loser) {
  *loser = NULL;
  for (uint32_t i = 0; i < n->nslots; i++) {
    lp2p_conn *c = n->slots[i];
    if (c == NULL || c == self || !c->has_peer_id ||
        c->state == LP2P_CONN_CLOSING ||
        memcmp(c->peer_id, self->peer_id, LP2P_PEER_ID_BYTES) != 0)
      continue;
    if (c->state == LP2P_CONN_RUNNING)
      return 1;
    if (!c->acked)
      continue; /* it will meet self at its own decision */
    if (c->incoming != self->incoming && preferred(n, self))
      *loser = c;
    else
      return 1;
  }
  return 0;
}


/* Is there no slot for one more peer? Connections acked but not yet
 * running hold their slot. Octez up to v24.2 randomly allows one more
 * connection than max_connections (p2p_connect_handler.ml, "Random.int
 * 2"); from v24.3 it refuses once active >= connections_threshold, the
 * maintenance max_threshold. */
static int too_many(const lp2p_node *n) {
  unsigned busy = n->active + n->acked_pending;
  if (n->cfg.threshold_rule)
    return busy >= n->cfg.connections_threshold;
  uint8_t bit;
  lp2p__node_random((lp2p_node *)n, &bit, 1);
  return !(n->cfg.max_connections + (bit & 1u) > busy);
}


static void refusal(const lp2p_node *n, lp2p_conn *c,
                    const lp2p_hs_remote *r, lp2p_auth_info *info,
                    lp2p_conn **loser) {
  static const int motive_of[] = {LP2P_NACK_UNKNOWN_CHAIN_NAME,
                                  LP2P_NACK_DEPRECATED_P2P_VERSION,
                                  LP2P_NACK_DEPRECATED_DDB_VERSION};
  lp2p_node *node = (lp2p_node *)n;
  info->motive = -1;
  if (lp2p_bans_peer(node->bans, r->peer_id, uv_now(node->loop))) {
    info->refusal = LP2P_EBANNED;
  } else if (c->has_expected && memcmp(c->expected_peer_id, r->peer_id,
                                       LP2P_PEER_ID_BYTES) != 0) {
    info->refusal = LP2P_EUNEXPECTED;
  } else if (r->version_status != 0) {
    info->refusal = r->version_status;
    info->motive = r->version_status == LP2P_ECHAIN     ? motive_of[0]
                   : r->version_status == LP2P_EP2PVER ? motive_of[1]
                                                        : motive_of[2];
  } else if (too_many(n)) {
    info->refusal = LP2P_ETOOMANY;
    info->motive = LP2P_NACK_TOO_MANY_CONNECTIONS;
  } else if (peer_taken(node, c, loser)) {
    info->refusal = LP2P_EALREADY;
    info->motive = LP2P_NACK_ALREADY_CONNECTED;
  }
}


/*
 * After the remote metadata: run the hard checks, ask the hook, apply the
 * verdict (Ack, Nack then close, or close). A hard refusal cannot be turned
 * into an Ack by the hook; the hook may add Nack points or close instead.
 */
void lp2p__node_decide(lp2p_node *n, lp2p_conn *c) {
  const lp2p_hs_remote *r = lp2p_hs_remote_info(c->hs);
  lp2p_auth_info info;
  memset(&info, 0, sizeof info);
  info.conn = c->id;
  info.incoming = c->incoming;
  info.addr = c->addr;
  info.point = c->point;
  info.remote = r;
  info.peer_id = c->peer_id_text;
  c->disable_mempool = r->disable_mempool;
  c->private_node = r->private_node;
  lp2p_conn *loser = NULL;
  refusal(n, c, r, &info, &loser);
  /* On the stack, points left uninitialised: a handshake allocates
   * nothing here. */
  lp2p_verdict v;
  v.npoints = 0;
  v.reason[0] = '\0';
  v.kind = info.refusal == 0    ? LP2P_VERDICT_ACK
            : info.motive >= 0   ? LP2P_VERDICT_NACK
                                 : LP2P_VERDICT_CLOSE;
  v.motive = info.motive;
  if (info.refusal != 0)
    snprintf(v.reason, sizeof v.reason, "%s", lp2p_strerror(info.refusal));
  lp2p__node_emit_conn(n, c, LP2P_EV_AUTHENTICATED);
  if (c->state == LP2P_CONN_HANDSHAKE && !n->closing)
    n->hooks.authenticated(n->hooks.ud, &info, &v);
  if (c->state != LP2P_CONN_HANDSHAKE || n->closing)
    return;
  if (info.refusal != 0 && v.kind == LP2P_VERDICT_ACK) {
    v.kind = info.motive >= 0 ? LP2P_VERDICT_NACK : LP2P_VERDICT_CLOSE;
    v.motive = info.motive;
  }
  int rc = 0;
  if (v.kind == LP2P_VERDICT_ACK) {
    rc = lp2p_hs_ack(c->hs);
    if (rc == 0) {
      c->acked = 1;
      n->acked_pending++;
      if (loser != NULL && loser->state == LP2P_CONN_HANDSHAKE)
        lp2p_conn_close(loser, LP2P_EALREADY, "simultaneous connection", 0);
    }
  } else if (v.kind == LP2P_VERDICT_NACK) {
    rc = lp2p_hs_nack(c->hs, v.motive, v.points, v.npoints);
    if (rc == 0) {
      lp2p_event ev = {.type = LP2P_EV_NACK_SENT, .conn = c->id};
      lp2p__conn_who(c, &ev.u.nack.who);
      ev.u.nack.motive = v.motive;
      ev.u.nack.points = v.points;
      ev.u.nack.npoints = v.npoints;
      ev.u.nack.reason = v.reason;
      lp2p__node_emit(n, &ev);
      /* The Nack is the last thing said: close once it is written. */
      lp2p__conn_finish(c, info.refusal ? info.refusal : LP2P_EREFUSED,
                        v.reason[0] ? v.reason : "nack sent");
    }
  } else {
    lp2p_conn_close(c, info.refusal ? info.refusal : LP2P_EREFUSED,
                    v.reason[0] ? v.reason : "closed by policy", 0);
  }
  if (rc < 0)
    lp2p_conn_close(c, rc, NULL, 0);
}


/* Both Acks are out and c runs (LP2P_REPORT_ESTABLISHED): it leaves the
 * pending counts for the active ones. */
void lp2p__node_running(lp2p_node *n, lp2p_conn *c) {
  lp2p__node_handshake_over(n, c);
  c->counted_active = 1;
  n->active++;
  lp2p__node_emit_conn(n, c, LP2P_EV_CONNECTED);
  if (n->active > n->cfg.max_connections && c->state == LP2P_CONN_RUNNING)
    lp2p__node_emit_trigger(n, LP2P_EV_TOO_MANY_CONNECTIONS);
}
