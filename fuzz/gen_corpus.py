#!/usr/bin/env python3
"""Write the libFuzzer seed corpora under fuzz/corpus/<target>/.

Seeds are the known-answer vectors of the specs (real messages from
TezEdge's tests, tezedge/tezedge @ feba75be45ce, and a mainnet node; docs/PROTOCOL.md), wrapped in the input
layout each target documents at its top. Run from the repository root:
    python3 fuzz/gen_corpus.py
The output is committed; rerunning gives the same files.
"""
import json
import os
import struct

H = bytes.fromhex
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# TezEdge crypto/src/nonce.rs: raw connection messages (u16 prefix included).
SENT_MSG = H(
    "00874d1b98317bd6efad8352a7144c9eb0b218c9130e0a875973908ddc894b764ffc0d7f"
    "176cf800b978af9e919bdc35122585168475096d0ebcaca1f2a1172412b91b363ff484d1"
    "c64c03417e0e755e696c386a0000002d53414e44424f5845445f54455a4f535f414c5048"
    "414e45545f323031382d31312d33305431353a33303a35365a00000000")
RECV_MSG = H(
    "00874d1ab3845960b32b039fef38ca5c9f8f867df1d522f27a83e07d9dfbe3b296a6c076"
    "412d98b369ab015d57247e5380d708b9edfcca0ca2c865346ef9c3d7ed00182cf4f613a6"
    "303c9b2a28cda8ff93687bd20000002d53414e44424f5845445f54455a4f535f414c5048"
    "414e45545f323031382d31312d33305431353a33303a35365a00000000")
MAINNET_BODY = H(
    "260470387c4cbd115833626a88a9f2b9bbadd70705f5ad059f494655ac823620c6410ec0"
    "d9b1716ad6d59d0cc551c96992c8031df8c77735d21158dc510aabbca27bd5fff7f08591"
    "2327012a4d91e587e3bc0000000d54455a4f535f4d41494e4e455400000001")
# Section 2: one chunk's ciphertext (tag || ct) under another key.
CIPHERTEXT = H(
    "45d82d5c4067f5c32748596c1bbc93a9f87b5b1f2058ddd82b6f081ca484b672395c7473"
    "ab897c64c01c33878ac1ccb6919a75c9938d8bcf0e7917ddac13a787cfb5c9a5aea50d24"
    "502cf86b5c9b000358c039334ec077afe98936feec0dabfff35f14cafd2cd3173bbd56a7"
    "c6e5bf6f5f57c92b59b129918a5895e883e7d999b191aad078c4a5b164144c1beaed58b4"
    "9ba9be094abf3a3bd9")
# Section 4: an identity with its secret key.
IDENTITY = {
    "peer_id": "idssJHDL1z8fkryZaYVF9fQRMktoWg",
    "public_key":
        "d8246d13d0270cbfff4046b6d94b05ab19920bc5ad9fb77f3e945c40b340e874",
    "secret_key":
        "8b4622bc512c8621a35fa19ff252129b208c8cdffb57e2d29c7974df718c7ff2",
    "proof_of_work_stamp": "d1d0ebd55784bc92852d913dbf0fb5152d505b567d930fb2",
}
# Section 6.
NACK_P2P = H("010003000000120000000e3132372e302e302e313a39383332")
NACK_MAINNET = H(
    "01000100000193000000133231332e3233392e3230312e37393a393733320000001237352e"
    "3135352e36352e3137313a393733320000001334362e3234352e3137392e3136323a393733"
    "320000001235302e32312e3136372e3231373a393733320000001331382e3138352e313632"
    "2e3134343a39373332000000133230392e3135392e3134372e37393a393733320000001331"
    "30372e3135312e3139302e31313a39373332000000123130372e3135312e3139302e363a39"
    "3733320000001337382e3133372e3231352e3133363a393733330000001133352e3138312e"
    "33392e31343a39373332000000133130372e3135312e3139302e31363a3937333200000012"
    "31342e3139322e3230392e38343a39373332000000133131392e3134372e3231322e31313a"
    "39373332000000113231322e34302e34372e31343a39373332000000123130372e3135312e"
    "3139302e393a393733320000001133342e39352e35372e3134393a39373332000000133133"
    "382e3230312e37342e3137393a39373332000000133230332e3234332e32392e3133373a39"
    "373332")
ADVERTISE = H(
    "0000001e5b666538303a3a653832383a323039643a3230653a633061655d3a333735000000"
    "133233342e3132332e3132342e39313a39383736000000133132332e3132332e3132342e32"
    "313a39383736")
SWAP_MAX = H(
    "0000002f787878787878787878787878787878787878787878787878787878787878787878"
    "787878787878787878787878787878797979797979797979797979797979797979")
BOOTSTRAP = H("000000020002")
EMPTY_BLOCK = H("00000000")
TWO_IN_ONE = H("0000000400020001")


def env(tag, payload=b""):
    return struct.pack(">IH", len(payload) + 2, tag) + payload


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def points_of(nack):
    """The point texts of a Nack (tag, motive, u32 list length, points)."""
    out, p = [], 7
    while p < len(nack):
        n = struct.unpack(">I", nack[p:p + 4])[0]
        out.append(nack[p + 4:p + 4 + n])
        p += 4 + n
    return out


def main():
    # conn_msg: bodies without the prefix, good and broken.
    write("conn_msg", "mainnet", MAINNET_BODY)
    write("conn_msg", "sandbox_sent", SENT_MSG[2:])
    write("conn_msg", "sandbox_recv", RECV_MSG[2:])
    write("conn_msg", "truncated", MAINNET_BODY[:-1])
    write("conn_msg", "extra_byte", MAINNET_BODY + b"\x00")
    write("conn_msg", "huge_chain_len", MAINNET_BODY[:82] + b"\xff\xff\xff\xff"
          + MAINNET_BODY[86:])

    # point: texts seen on the wire.
    pts = points_of(NACK_MAINNET) + [
        b"127.0.0.1:9832", b"[fe80::e828:209d:20e:c0ae]:375",
        b"234.123.124.91:9876", b"[::ffff:1.2.3.4]:5", b"[::]:0",
        b"[1:2:3:4:5:6:7:8]:65535", b"x" * 47, b"1.2.3.4:65536"]
    for i, p in enumerate(pts):
        write("point", "p%02d" % i, p)

    # identity_json: [errlen u8][json].
    good = json.dumps(IDENTITY, indent=2).encode()
    write("identity_json", "good", b"\x80" + good)
    write("identity_json", "good_short_err", b"\x05" + good)
    bad = dict(IDENTITY, secret_key="00" * 32)
    write("identity_json", "wrong_sk", b"\x80" + json.dumps(bad).encode())
    nopid = {k: v for k, v in IDENTITY.items() if k != "peer_id"}
    write("identity_json", "no_peer_id", b"\x40" + json.dumps(nopid).encode())
    write("identity_json", "nested", b"\x80" + json.dumps(
        dict(IDENTITY, extra={"a": [1, 2.5e3, None, True, "\u00e9"]})).encode())

    # chunk: [variant u8][body]; bodies are also sealed as plaintexts.
    write("chunk", "vector_ct", b"\x00" + CIPHERTEXT)
    write("chunk", "conn_msg_plain", b"\x03" + SENT_MSG)
    write("chunk", "nack_mainnet", b"\xff" + NACK_MAINNET)
    write("chunk", "short", b"\x01" + b"\x00" * 15)
    write("chunk", "empty_tag", b"\x02" + b"\x00" * 16)

    # message: [cap selector u8][split seed u8][decrypted stream].
    write("message", "bootstrap", b"\x00\x07" + BOOTSTRAP)
    write("message", "advertise", b"\x00\x11" + env(3, ADVERTISE))
    write("message", "swap_request", b"\x00\x05" + env(4, SWAP_MAX))
    write("message", "swap_ack", b"\x03\x09" + env(5, SWAP_MAX))
    write("message", "two_in_one", b"\x00\x03" + TWO_IN_ONE)
    write("message", "empty_block", b"\x00\x01" + EMPTY_BLOCK)
    write("message", "app_and_disconnect", b"\x02\x2a" +
          env(0x10, b"hello") + env(1) + BOOTSTRAP)
    write("message", "over_cap", b"\x02\x01" + env(0x10, b"z" * 100))

    # handshake: [flags][granularity] then [op][u16 len][bytes] records.
    def rec(op, data=b""):
        return struct.pack(">BH", op, len(data)) + data
    meta = rec(1, b"\x00\x00")
    ack_me = rec(6)              # the node Acks
    ack_peer = rec(1, b"\x00")   # the peer's Ack chunk
    stream = rec(1, BOOTSTRAP + env(0x10, b"hi")) + rec(1, env(0x10, b"x" * 40))
    for role, flags in (("out", 0x02), ("in", 0x03)):
        write("handshake", "established_" + role,
              bytes([flags, 0]) + meta + ack_me + rec(3) + ack_peer + stream)
        write("handshake", "bytewise_" + role,
              bytes([flags, 1]) + meta + ack_me + ack_peer)
        write("handshake", "peer_nacks_" + role,
              bytes([flags, 0]) + meta + ack_me + rec(1, NACK_MAINNET))
        write("handshake", "peer_nack_v0_" + role,
              bytes([flags, 3]) + meta + ack_me + rec(1, b"\xff"))
        write("handshake", "node_nacks_" + role,
              bytes([flags, 0]) + meta + rec(2, b"\x00\x01" + b"\x0a" * 21))
        write("handshake", "raw_conn_msg_" + role,
              bytes([flags & 1, 0]) + rec(0, SENT_MSG) + rec(0, CIPHERTEXT))
        for v in range(1, 8):
            write("handshake", "variant%d_%s" % (v, role),
                  bytes([flags | v << 2, 0]) + meta + ack_me + ack_peer)
    write("handshake", "garbage_after_ack",
          bytes([0x02, 0]) + meta + ack_me + ack_peer + rec(0, b"\x00\x05xxxxx"))
    write("handshake", "short_chunk",
          bytes([0x03, 0]) + rec(0, b"\x00\x0f" + b"\x00" * 15))

    # admission: [table size][max per IP] then [op][source][dt][pending].
    def ops(*quads):
        return b"".join(bytes(q) for q in quads)
    write("admission", "burst_one_ip", b"\x40\x04" + ops(*[(1, 3, 0, 0)] * 8))
    write("admission", "refill", b"\x40\x04" + ops(
        *([(0, 3, 0, 0)] * 6 + [(0, 3, 50, 0)] * 3)))
    write("admission", "prefix_share", b"\x40\x04" + ops(
        *[(1, i, 0, 0) for i in range(8)] * 4))
    write("admission", "v6_and_mapped", b"\x40\x02" + ops(
        (1, 64, 0, 0), (1, 65, 0, 0), (1, 130, 0, 0), (1, 2, 0, 0),
        (2, 130, 0, 0), (1, 2, 0, 0)))
    write("admission", "tiny_table_flood", b"\x02\x01" + ops(
        *[(1, i, 1, 0) for i in range(0, 128)]))
    write("admission", "under_load", b"\x20\x03" + ops(
        (1, 9, 0, 11), (1, 9, 0, 11), (1, 9, 0, 11), (0, 9, 10, 4),
        (3, 9, 5, 12), (2, 9, 0, 0), (1, 200, 0, 30)))

    # shell: [u16 tag][body]. Real messages: one per tag of the recorded
    # TezEdge <-> Octez session and TezEdge's small resource messages (see
    # spec/vectors/); then broken ones.
    spec = os.path.join(os.path.dirname(ROOT), "..", "spec", "vectors")
    seen = set()
    with open(os.path.join(spec, "tezedge-carthagenet-session.txt")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            index, _, hexa = line.split()
            msg = H(hexa)
            if msg[:2] not in seen and msg[0:2] >= b"\x00\x10":
                seen.add(msg[:2])
                write("shell", "session_%s" % index, msg)
    for name, tag in (("block-header", 0x21), ("current-branch.big", 0x11),
                      ("get-block-headers", 0x20),
                      ("get-current-head", 0x13),
                      ("get-operations-for-blocks", 0x60)):
        with open(os.path.join(spec, "tezedge", name + ".msg"), "rb") as f:
            write("shell", "tezedge_" + name, struct.pack(">H", tag) + f.read())
    chain = H("7a06a770")
    empty_mempool = H("000000000000000400000000")
    write("shell", "current_head_empty_mempool", b"\x00\x14" + chain +
          struct.pack(">I", 0) + empty_mempool)  # header too short
    write("shell", "trailing_byte", b"\x00\x13" + chain + b"\x00")
    write("shell", "unknown_tag_0x50", b"\x00\x50" + chain)
    write("shell", "eleven_hashes", b"\x00\x20" + struct.pack(">I", 11 * 32) +
          bytes(range(32)) * 11)
    write("shell", "path_four_deep", b"\x00\x61" + bytes(32) + b"\x00" +
          b"\x0f" + bytes(32) + b"\xf0\xf0\x0f" + bytes(32) + b"\x00" +
          bytes(64))
    write("shell", "protocol_bad_option", b"\x00\x41\x00\x01" +
          struct.pack(">II", 10, 1) + b"a\x01" + struct.pack(">I", 0))


if __name__ == "__main__":
    main()
