#!/usr/bin/python3
"""Known-answer vectors for frame_spec.lua, message_spec.lua, point_spec.lua.

Independent of the C core: chunks come from libsodium through PyNaCl
(crypto_box_beforenm / crypto_box_afternm, which returns tag || ciphertext),
the stream cutting, the message envelopes and the point rules are written
out here from the Octez sources (p2p_socket.ml, p2p_message.ml,
p2p_point.ml + point_parser.mll), and canonical IPv6 text comes from
Python's ipaddress (RFC 5952, like Ipaddr.V6.to_string).

Run:  /usr/bin/python3 spec/vectors/gen_frame.py > spec/vectors/frame.lua
Everything is deterministic (keys from fixed seeds); the output is committed.
"""
import hashlib
import ipaddress
import re
import struct

from nacl.bindings import (crypto_box_afternm, crypto_box_beforenm,
                           crypto_box_seed_keypair)

# ---------------------------------------------------------------- helpers


def h(b):
    return b.hex()


def seeded(label, n):
    """n deterministic bytes named by label."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"luap2p frame vectors %s %d"
                              % (label.encode(), i)).digest()
        i += 1
    return out[:n]


def incr(nonce):
    v = (int.from_bytes(nonce, "big") + 1) % (1 << 192)
    return v.to_bytes(24, "big")


def seal_stream(stream, key, nonce, chunk_size):
    """Octez Writer: cut into pieces of chunk_size - 18, one chunk each."""
    piece = chunk_size - 18
    out = b""
    for i in range(0, len(stream), piece):
        body = crypto_box_afternm(stream[i:i + piece], nonce, key)
        assert len(body) == 16 + len(stream[i:i + piece])
        out += struct.pack(">H", len(body)) + body
        nonce = incr(nonce)
    return out, nonce


# ------------------------------------------------------------------ points

# point_parser.mll: addr = ipv4 | '[' ipv6_char+ ']' | domain | '_'?,
# then an optional ':' port; of_string_exn requires the port, and
# Ipaddr.of_string_exn accepts only numeric addresses. A "#peer_id" suffix
# is left out on purpose (luap2p rejects it, see core/point.c).
POINT_RE = re.compile(
    r"\A(?:(?P<v4>[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})"
    r"|\[(?P<v6>[0-9a-fA-F:.]+)\]"
    r"|(?P<other>[a-zA-Z0-9.\-]*|_))"
    r"(?::(?P<port>[0-9]+))?\Z")


def point_parse(text):
    """(canonical, family, address, port) or None, as Octez decodes."""
    if len(text.encode()) > 47:
        return None
    m = POINT_RE.match(text)
    if m is None or m.group("port") is None:
        return None
    port = int(m.group("port"))
    if port > 65535:
        return None
    addr = m.group("v4") or m.group("v6") or m.group("other")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return ("%s:%d" % (ip, port), 4, str(ip), port)
    return ("[%s]:%d" % (ip.compressed, port), 6, ip.compressed, port)


POINT_CASES = [
    "1.2.3.4:5", "0.0.0.0:0", "255.255.255.255:65535", "127.0.0.1:9732",
    "1.2.3.4:09732", "1.2.3.4:00000", "[::1]:9732", "[::]:0",
    "[FE80::E828:209D:20E:C0AE]:375", "[fe80:0:0:0:0:0:0:1]:1",
    "[1:0:0:1:0:0:0:1]:2", "[1:0:0:0:1:0:0:1]:3", "[1:0:1:0:1:0:1:0]:4",
    "[::ffff:1.2.3.4]:80", "[::FFFF:7f00:1]:81", "[::1.2.3.4]:82",
    "[1.2.3.4]:83", "[2001:db8::1:0:0:1]:84", "[2001:db8:0:0:1:0:0:1]:85",
    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
    "[1:2:3:4:5:6:1.2.3.4]:86", "[0:0:0:0:0:0:0:2]:87",
    # rejected
    "", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:99999999999999",
    "1.2.3:4", "1.2.3.256:4", "01.2.3.4:5", "1.2.3.4.5:6", "[::1]",
    "[::1]:", "::1:9732", "::1", "[::1]9732", "[::1]:97a", "[::1]]:1",
    "[::1:1", "[]:1", ":8444", "_:8444", "localhost:9732",
    "tezos.example.com:9732", "1.2.3.4:-1", "1.2.3.4:+1", "1.2.3.4: 1",
    " 1.2.3.4:1", "1.2.3.4:1 ", "1.2.3.4 :1", "1.2.3.4:0x10",
    "[fe80::1%eth0]:1", "[::g]:1", "[1:2:3:4:5:6:7:8:9]:1",
    "1.2.3.4:1#idqSpQPFDBN4yMhLEzwtqGgxRLNrj4", "[1::2::3]:4",
    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:065535",
    "1.2.3.4:" + "0" * 39 + "1",
]
assert len(POINT_CASES[-1]) == 48
assert len(POINT_CASES[-2]) == 48


# ---------------------------------------------------------------- messages


def enc_point(text):
    b = text.encode()
    return struct.pack(">I", len(b)) + b


def envelope(tag, body):
    inner = struct.pack(">H", tag) + body
    return struct.pack(">I", len(inner)) + inner


def lua_str(b):
    return 'H"%s"' % b.hex()


def pattern(n):
    """Bytes the spec rebuilds itself: byte i is (i * 7 + 3) % 256."""
    return bytes((i * 7 + 3) % 256 for i in range(n))


def lua(v, ind=""):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, bytes):
        return lua_str(v)
    if v is None:
        return "nil"
    if isinstance(v, list):
        if not v:
            return "{}"
        inner = ",\n".join(ind + "  " + lua(x, ind + "  ") for x in v)
        return "{\n" + inner + ",\n" + ind + "}"
    if isinstance(v, dict):
        inner = ",\n".join("%s  %s = %s" % (ind, k, lua(x, ind + "  "))
                           for k, x in v.items())
        return "{\n" + inner + ",\n" + ind + "}"
    raise TypeError(v)


def main():
    out = {}

    # TezEdge crypto/src/crypto_box.rs: beforenm(pk, sk) and one chunk.
    pk = bytes.fromhex("96678b88756dd6cfd6c129980247b70a6e44da77823c3672a2ec"
                       "0eae870d8646")
    sk = bytes.fromhex("a18dc11cb480ebd31081e1541df8bd70c57da0fa419b5036242f"
                       "8619d605e75a")
    key = crypto_box_beforenm(pk, sk)
    assert h(key) == ("5228751a6f5a6494e38e1042f578e3a64ae3462b7899356f49e5"
                      "0be846c9609c")
    nonce = bytes.fromhex("8dde158c55cff52f4be9352787d333e616a67853640d72c5")
    plain = bytes.fromhex(
        "00874d1b98317bd6efad8352a7144c9eb0b218c9130e0a875973908ddc894b764f"
        "fc0d7f176cf800b978af9e919bdc35122585168475096d0ebcaca1f2a1172412b9"
        "1b363ff484d1c64c03417e0e755e696c386a0000002d53414e44424f5845445f54"
        "455a4f535f414c5048414e45545f323031382d31312d33305431353a33303a3536"
        "5a00000000")
    body = crypto_box_afternm(plain, nonce, key)
    assert h(body) == (
        "45d82d5c4067f5c32748596c1bbc93a9f87b5b1f2058ddd82b6f081ca484b67239"
        "5c7473ab897c64c01c33878ac1ccb6919a75c9938d8bcf0e7917ddac13a787cfb5"
        "c9a5aea50d24502cf86b5c9b000358c039334ec077afe98936feec0dabfff35f14"
        "cafd2cd3173bbd56a7c6e5bf6f5f57c92b59b129918a5895e883e7d999b191aad0"
        "78c4a5b164144c1beaed58b49ba9be094abf3a3bd9")
    out["vectors2"] = {"key": key, "nonce": nonce, "plain": plain,
                       "chunk": struct.pack(">H", len(body)) + body,
                       "next_nonce": incr(nonce)}

    # Nonce increments, carries included.
    incs = []
    for n in [bytes.fromhex("0000000000cff52f4be9352787d333e616a67853640d72c5"),
              b"\x00" * 23 + b"\xff", b"\x00" * 20 + b"\x01\xff\xff\xff",
              b"\x7f" + b"\xff" * 23, b"\xff" * 24, b"\x00" * 24]:
        incs.append({"nonce": n, "next": incr(n)})
    out["increments"] = incs

    # Streams sealed at several chunk sizes, with a second key pair.
    _, sk_a = crypto_box_seed_keypair(seeded("a", 32))
    pk_b, _ = crypto_box_seed_keypair(seeded("b", 32))
    key2 = crypto_box_beforenm(pk_b, sk_a)
    n0 = seeded("nonce", 24)
    streams = []
    msgs = [envelope(0x02, b""),
            envelope(0x03, enc_point("1.2.3.4:9732") +
                     enc_point("[fe80::1]:375")),
            envelope(0x10, seeded("app", 300)),
            envelope(0x01, b"")]
    for name, stream, cs in [
            ("bootstrap at 19", msgs[0], 19),
            ("four messages at 19", b"".join(msgs), 19),
            ("four messages at 100", b"".join(msgs), 100),
            ("four messages at 65535", b"".join(msgs), 65535),
            ("one byte at 19", b"\x2a", 19),
            ("exactly one piece at 100", seeded("p82", 82), 100),
            ("one piece and a byte at 100", seeded("p83", 83), 100),
            ("3000 bytes at 1000", seeded("p3000", 3000), 1000),
            ("66000 bytes at 65535", pattern(66000), 65535)]:
        sealed, nn = seal_stream(stream, key2, n0, cs)
        case = {"name": name, "chunk_size": cs, "stream": stream,
                "sealed": sealed, "next_nonce": nn}
        if stream == pattern(len(stream)):
            del case["stream"]  # too big to store twice: rebuilt by the spec
            case["pattern"] = len(stream)
        streams.append(case)
    empty = crypto_box_afternm(b"", n0, key2)
    assert len(empty) == 16
    out["streams"] = {"key": key2, "nonce": n0, "cases": streams,
                      "empty_chunk": struct.pack(">H", 16) + empty}

    # Messages: envelope bytes and the decoded table.
    adv_vec = bytes.fromhex(
        "0000001e5b666538303a3a653832383a323039643a3230653a633061655d3a3337"
        "35000000133233342e3132332e3132342e39313a393837360000001331323"
        "32e3132332e3132342e32313a39383736")
    adv_points = ["[fe80::e828:209d:20e:c0ae]:375", "234.123.124.91:9876",
                  "123.123.124.21:9876"]
    assert adv_vec == b"".join(enc_point(p) for p in adv_points)
    peer = seeded("peer", 16)
    hundred = ["10.0.%d.%d:%d" % (i // 256, i % 256, 1000 + i)
               for i in range(100)]
    cases = [
        {"name": "disconnect", "t": {"type": "disconnect"},
         "env": envelope(0x01, b"")},
        {"name": "bootstrap", "t": {"type": "bootstrap"},
         "env": envelope(0x02, b"")},
        {"name": "advertise (VECTORS payload)",
         "t": {"type": "advertise", "points": adv_points},
         "env": envelope(0x03, adv_vec)},
        {"name": "advertise with no point",
         "t": {"type": "advertise", "points": []},
         "env": envelope(0x03, b"")},
        {"name": "advertise with 100 points",
         "t": {"type": "advertise", "points": hundred},
         "env": envelope(0x03, b"".join(enc_point(p) for p in hundred))},
        {"name": "swap_request",
         "t": {"type": "swap_request", "point": "[2001:db8::7]:9732",
               "peer_id": peer},
         "env": envelope(0x04, enc_point("[2001:db8::7]:9732") + peer)},
        {"name": "swap_ack with the longest point",
         "t": {"type": "swap_ack",
               "point": "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
               "peer_id": peer},
         "env": envelope(0x05, enc_point(
             "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535") + peer)},
        {"name": "application message 0x10, empty",
         "t": {"type": "message", "tag": 0x10, "payload": b""},
         "env": envelope(0x10, b"")},
        {"name": "application message 0xffff",
         "t": {"type": "message", "tag": 0xffff,
               "payload": seeded("pl", 77)},
         "env": envelope(0xffff, seeded("pl", 77))},
    ]
    out["messages"] = cases

    # Bodies (tag || payload) that must not decode, with the error name.
    p47 = b"x" * 47
    bad = [
        ("tag 0", b"\x00\x00", "EPROTO"),
        ("tag 6", b"\x00\x06", "EPROTO"),
        ("tag 0x0f", b"\x00\x0f" + b"abc", "EPROTO"),
        ("one byte", b"\x00", "ETRUNC"),
        ("empty", b"", "ETRUNC"),
        ("bootstrap + disconnect (VECTORS)", bytes.fromhex("00020001"),
         "EEXTRA"),
        ("disconnect with a byte", b"\x00\x01\x00", "EEXTRA"),
        ("advertise, cut length", b"\x00\x03\x00\x00\x00", "ETRUNC"),
        ("advertise, cut text", b"\x00\x03" + enc_point("1.2.3.4:5")[:-1],
         "ETRUNC"),
        ("advertise, bad point", b"\x00\x03" + enc_point("1.2.3.4"),
         "EPOINT"),
        ("advertise, 101 points", b"\x00\x03" + b"".join(
            enc_point(p) for p in hundred + ["1.1.1.1:1"]), "EPROTO"),
        # VECTORS swap payloads: the 47 'x' point has an allowed length
        # but is no address (Octez of_string_exn fails), so it is EPOINT
        # too; the two others are over the length caps.
        ("swap_max (VECTORS): 47 bytes of 'x' is no address",
         b"\x00\x04" + struct.pack(">I", 47) + p47 + b"y" * 16, "EPOINT"),
        ("swap_point_over_max (VECTORS): 48-byte point",
         b"\x00\x04" + struct.pack(">I", 48) + b"x" * 48 + b"y" * 16,
         "EPOINT"),
        ("swap_peer_id_over_max (VECTORS): 17-byte peer id",
         b"\x00\x04" + struct.pack(">I", 47) + b"x" * 46 + b"y" * 17,
         "EPOINT"),
        ("swap, 48-char point with leading-zero port",
         b"\x00\x05" + enc_point(
             "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:065535") + peer,
         "EPOINT"),
        ("swap, 15-byte peer id",
         b"\x00\x04" + enc_point("1.2.3.4:5") + peer[:15], "ETRUNC"),
        ("swap, 17-byte peer id",
         b"\x00\x05" + enc_point("1.2.3.4:5") + peer + b"\x00", "EEXTRA"),
        ("swap, no point", b"\x00\x04", "ETRUNC"),
    ]
    # The VECTORS hex, checked against what is built above.
    swap_vec = {
        "swap_max": "0000002f" + "78" * 47 + "79" * 16,
        "swap_point_over_max": "00000030" + "78" * 48 + "79" * 16,
        "swap_peer_id_over_max": "0000002f" + "78" * 46 + "79" * 17,
    }
    for i, k in zip((11, 12, 13), swap_vec):
        assert bad[i][1][2:] == bytes.fromhex(swap_vec[k]), k
    out["bad_messages"] = [{"name": n, "body": b, "err": e}
                           for n, b, e in bad]

    # Points.
    pts = []
    for text in POINT_CASES:
        r = point_parse(text)
        if r is None:
            pts.append({"text": text, "ok": False})
        else:
            pts.append({"text": text, "ok": True, "canonical": r[0],
                        "family": r[1], "address": r[2], "port": r[3]})
    out["points"] = pts

    print("-- Generated by spec/vectors/gen_frame.py; do not edit.")
    print("-- H\"hex\" is a byte string written in hex.")
    print("local function H(s)")
    print("  return (s:gsub(\"%x%x\", function(x)")
    print("    return string.char(tonumber(x, 16))")
    print("  end))")
    print("end")
    print("return " + lua(out))


if __name__ == "__main__":
    main()
