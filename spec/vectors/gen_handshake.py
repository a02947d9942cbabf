#!/usr/bin/python3
"""Independent known-answer vectors for spec/handshake_spec.lua.

Written from the Octez sources (src/lib_p2p/p2p_socket.ml: Connection_message,
Metadata, Ack, nack; src/lib_crypto/crypto_box.ml: generate_nonces,
precompute; src/lib_base/p2p_rejection.ml; src/lib_base/p2p_point.ml) with
Python's hashlib and PyNaCl only; it shares no code with core/.

    /usr/bin/python3 spec/vectors/gen_handshake.py > spec/vectors/handshake.lua

Deterministic: every "random" value is BLAKE2b of a fixed label.

Scenarios: side "a" opens the TCP connection (outgoing, its connection
message is init_msg), side "b" accepts it (incoming). Each side's chunks
are listed in the order it sends them: metadata, then Ack or Nack, then
(when acked) one Bootstrap message sealed on the established channel.
"""

import hashlib
import struct

from nacl.bindings import (crypto_box_afternm, crypto_box_beforenm,
                           crypto_scalarmult_base)


def det(label, n):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.blake2b(("%s/%d" % (label, i)).encode(),
                               digest_size=64).digest()
        i += 1
    return out[:n]


def conn_msg(port, pk, stamp, nonce, chain, ddb, p2p):
    """Connection_message.encoding behind its u16 length prefix."""
    body = (struct.pack(">H", port) + pk + stamp + nonce +
            struct.pack(">I", len(chain)) + chain +
            struct.pack(">HH", ddb, p2p))
    return struct.pack(">H", len(body)) + body


def nonce_pair(init_msg, resp_msg):
    """Crypto_box.generate_nonce: first 24 bytes of BLAKE2b-256."""
    def h(label):
        return hashlib.blake2b(init_msg + resp_msg + label,
                               digest_size=32).digest()[:24]
    return h(b"Init -> Resp"), h(b"Resp -> Init")


def incr(nonce):
    v = (int.from_bytes(nonce, "big") + 1) % (1 << 192)
    return v.to_bytes(24, "big")


def seal(key, nonce, plain):
    """[u16 16+n][tag][ciphertext]; PyNaCl's afternm gives tag || ct."""
    boxed = crypto_box_afternm(plain, nonce, key)
    assert len(boxed) == 16 + len(plain)
    return struct.pack(">H", len(boxed)) + boxed


def metadata(disable_mempool, private_node):
    return bytes([0xff if disable_mempool else 0,
                  0xff if private_node else 0])


def nack(motive, points):
    """Ack.encoding case Nack (tag 1): int16 motive, then
    Data_encoding.list of P2p_point.Id (u32 byte length, each a string)."""
    items = b"".join(struct.pack(">I", len(p)) + p.encode() for p in points)
    return (b"\x01" + struct.pack(">h", motive) + struct.pack(">I", len(items))
            + items)


# Known payloads of TezEdge's tezos/messages/tests/ (tezedge/tezedge @ feba75be45ce) and a
# mainnet node:
# building them here from the Octez encoding must give the same bytes.
MAINNET_POINTS = [
    "213.239.201.79:9732", "75.155.65.171:9732", "46.245.179.162:9732",
    "50.21.167.217:9732", "18.185.162.144:9732", "209.159.147.79:9732",
    "107.151.190.11:9732", "107.151.190.6:9732", "78.137.215.136:9733",
    "35.181.39.14:9732", "107.151.190.16:9732", "14.192.209.84:9732",
    "119.147.212.11:9732", "212.40.47.14:9732", "107.151.190.9:9732",
    "34.95.57.149:9732", "138.201.74.179:9732", "203.243.29.137:9732",
]
assert nack(3, ["127.0.0.1:9832"]).hex() == (
    "010003000000120000000e3132372e302e302e313a39383332")
assert nack(2, ["127.0.0.1:9832"]).hex() == (
    "010002000000120000000e3132372e302e302e313a39383332")
NACK_MAINNET_HEX = (
    "01000100000193000000133231332e3233392e3230312e37393a3937333200000012"
    "37352e3135352e36352e3137313a393733320000001334362e3234352e3137392e31"
    "36323a393733320000001235302e32312e3136372e3231373a393733320000001331"
    "382e3138352e3136322e3134343a39373332000000133230392e3135392e3134372e"
    "37393a39373332000000133130372e3135312e3139302e31313a3937333200000012"
    "3130372e3135312e3139302e363a393733320000001337382e3133372e3231352e31"
    "33363a393733330000001133352e3138312e33392e31343a39373332000000133130"
    "372e3135312e3139302e31363a393733320000001231342e3139322e3230392e3834"
    "3a39373332000000133131392e3134372e3231322e31313a39373332000000113231"
    "322e34302e34372e31343a39373332000000123130372e3135312e3139302e393a39"
    "3733320000001133342e39352e35372e3134393a39373332000000133133382e3230"
    "312e37342e3137393a39373332000000133230332e3234332e32392e3133373a3937"
    "3332"
)
assert nack(1, MAINNET_POINTS).hex() == NACK_MAINNET_HEX

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def peer_id_text(pk):
    """Base58Check of prefix "\153\103" || BLAKE2b-128(pk)."""
    payload = bytes([153, 103]) + hashlib.blake2b(pk, digest_size=16).digest()
    payload += hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(payload, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return out


def pow_zero_bits(pk, stamp):
    """How many whole bits of proof of work the stamp carries: leading zero
    bits of BLAKE2b-256(pk || stamp) read as a little-endian integer. The
    stamp passes a target of f bits exactly when f <= this."""
    v = int.from_bytes(hashlib.blake2b(pk + stamp, digest_size=32).digest(),
                       "little")
    return 256 - v.bit_length()


ACK = b"\x00"
NACK_V0 = b"\xff"
BOOTSTRAP = bytes.fromhex("000000020002")


class Side:
    def __init__(self, name, port, ddb, p2p, dm, pn):
        self.sk = det("handshake/%s/sk" % name, 32)
        self.pk = crypto_scalarmult_base(self.sk)
        self.stamp = det("handshake/%s/stamp" % name, 24)
        self.nonce = det("handshake/%s/message_nonce" % name, 24)
        self.port = port
        self.ddb = ddb
        self.p2p = p2p
        self.dm = dm
        self.pn = pn
        self.peer_id = peer_id_text(self.pk)
        self.pow_zero_bits = pow_zero_bits(self.pk, self.stamp)
        self.msg = conn_msg(port, self.pk, self.stamp, self.nonce,
                            b"TEZOS_MAINNET", ddb, p2p)


def scenario(name, a, b, answer_a, answer_b, motive=None, points=None):
    """answer_x: plaintext of x's Ack/Nack chunk; motive and points: what
    b passes to its nack (for Nack_v_0 they do not reach the wire)."""
    n_ir, n_ri = nonce_pair(a.msg, b.msg)
    key = crypto_box_beforenm(b.pk, a.sk)
    assert key == crypto_box_beforenm(a.pk, b.sk)
    # a (connecting) sends with N_ri, b (accepting) with N_ir.
    send = {"a": n_ri, "b": n_ir}
    chunks = {}
    for side, me, answer in (("a", a, answer_a), ("b", b, answer_b)):
        n0 = send[side]
        out = [seal(key, n0, metadata(me.dm, me.pn)),
               seal(key, incr(n0), answer)]
        if answer_a == ACK and answer_b == ACK:
            out.append(seal(key, incr(incr(n0)), BOOTSTRAP))
        chunks[side] = out
    return {
        "name": name,
        "n_ir": n_ir, "n_ri": n_ri, "key": key,
        "answer_a": answer_a, "answer_b": answer_b,
        "chunks_a": chunks["a"], "chunks_b": chunks["b"],
        "nack_motive": motive, "nack_points": points,
    }


def bad_chunks(a, b):
    """Chunks side b could send to side a in the a/b exchange, each with a
    valid MAC but a body Octez refuses, and the error luap2p names.
    "metadata" ones take the place of b's metadata chunk; "ack" ones come
    after b's good metadata chunk."""
    n_ir, _ = nonce_pair(a.msg, b.msg)
    key = crypto_box_beforenm(b.pk, a.sk)
    good_meta = seal(key, n_ir, metadata(b.dm, b.pn))

    def meta(plain, err, why):
        return {"why": why, "at": "metadata", "err": err,
                "bytes": seal(key, n_ir, plain)}

    def ack(plain, err, why):
        return {"why": why, "at": "ack", "err": err,
                "bytes": good_meta + seal(key, incr(n_ir), plain)}

    many = ["10.0.0.%d:9732" % (i % 250) for i in range(101)]
    long_point = "[" + "1:2:3:4:5:6:7:8" + "]" + ":" + "9" * 30
    return [
        meta(b"", "ETRUNC", "empty metadata"),
        meta(b"\xff", "ETRUNC", "one-byte metadata"),
        meta(b"\xff\x00\x00", "EEXTRA", "three-byte metadata"),
        ack(b"", "ETRUNC", "empty Ack chunk"),
        ack(b"\x00\x00", "EEXTRA", "Ack with a trailing byte"),
        ack(b"\xff\x00", "EEXTRA", "Nack_v_0 with a trailing byte"),
        ack(b"\x02", "EPROTO", "unknown Ack tag 2"),
        ack(b"\x80", "EPROTO", "unknown Ack tag 0x80"),
        ack(b"\x01\x00", "ETRUNC", "Nack cut in its motive"),
        ack(b"\x01\x00\x01\x00\x00", "ETRUNC", "Nack cut in its list length"),
        ack(nack(1, ["1.2.3.4:5"])[:-1], "ETRUNC",
            "Nack list shorter than said"),
        ack(nack(1, ["1.2.3.4:5"]) + b"\x00", "EEXTRA",
            "Nack list longer than said"),
        ack(b"\x01\x00\x01\x00\x00\x00\x03\x00\x00\x00", "ETRUNC",
            "Nack list element cut in its length"),
        ack(nack(1, many), "EPROTO", "Nack with 101 points"),
        ack(nack(1, ["not a point"]), "EPOINT", "Nack with a bad point"),
        ack(nack(1, [long_point]), "EPOINT", "Nack point over 47 bytes"),
    ]


def side_fields(s):
    return {"sk": s.sk, "pk": s.pk, "stamp": s.stamp,
            "message_nonce": s.nonce, "port": s.port, "ddb": s.ddb,
            "p2p": s.p2p, "disable_mempool": s.dm, "private_node": s.pn,
            "conn_msg": s.msg, "peer_id": s.peer_id,
            "pow_zero_bits": s.pow_zero_bits}


def lua(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return '"%s"' % v.hex()
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, list):
        inner = ",\n".join(pad + "  " + lua(x, indent + 1) for x in v)
        return "{\n%s,\n%s}" % (inner, pad) if v else "{}"
    if isinstance(v, dict):
        inner = ",\n".join("%s  %s = %s" % (pad, k, lua(x, indent + 1))
                           for k, x in v.items())
        return "{\n%s,\n%s}" % (inner, pad)
    raise TypeError(v)


def main():
    a = Side("a", 9732, 2, 1, False, True)
    b = Side("b", 19732, 2, 1, True, False)
    # An old peer announcing p2p version 0: nacks to it are Nack_v_0.
    old = Side("old", 9733, 0, 0, False, False)
    mainnet = nack(1, MAINNET_POINTS)
    deprecated = nack(3, ["127.0.0.1:9832"])
    scenarios = [
        scenario("both ack", a, b, ACK, ACK),
        scenario("b nacks deprecated p2p version", a, b, ACK, deprecated,
                 3, ["127.0.0.1:9832"]),
        scenario("b nacks with the mainnet list", a, b, ACK, mainnet,
                 1, MAINNET_POINTS),
        scenario("b nacks a p2p version 0 peer", old, b, ACK, NACK_V0,
                 1, ["127.0.0.1:9832"]),
    ]
    for sc in scenarios:
        if sc["nack_motive"] is None:
            del sc["nack_motive"], sc["nack_points"]
    out = {
        "bad_b": bad_chunks(a, b),
        "sides": {"a": side_fields(a), "b": side_fields(b),
                  "old": side_fields(old)},
        "mainnet_points": MAINNET_POINTS,
        "scenarios": scenarios,
    }
    # The "old" scenario has side "old" in the place of "a".
    scenarios[3]["a"] = "old"
    for s in scenarios[:3]:
        s["a"] = "a"
    for s in scenarios:
        s["b"] = "b"
    print("-- Generated by spec/vectors/gen_handshake.py; do not edit.")
    print("-- Independent of core/: Python hashlib + PyNaCl, from the Octez "
          "sources.")
    print("-- All byte strings are hex.")
    print("return " + lua(out, 0))


if __name__ == "__main__":
    main()
