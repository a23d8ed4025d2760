#!/usr/bin/env python3
"""Writes the hand-made seeds (fuzz/corpus/<target>/seed-NN) from the
real datagrams in shared/vectors: the iotivity-lite SSM capture and the
RFC 8613 Appendix C test vectors. Rerun after changing the vectors:
    python3 fuzz/seeds.py [VECTORS_DIR]
The seed-cmin-* files next to them are the minimised corpus of a long run
(cargo fuzz cmin), kept as they are.
"""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
vec = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "vectors")
if not os.path.isdir(vec):
    vec = "/work/shared/vectors"
io = json.load(open(os.path.join(vec, "iotivity-lite-ssm.json")))
rfc = json.load(open(os.path.join(vec, "rfc8613.json")))


def cbor(v):
    """A minimal deterministic CBOR encoder (maps, arrays, text, bytes, ints, bools)."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def coap(ty, code, mid, token, options, payload=b""):
    """A CoAP datagram; options as (number, bytes), sorted here."""
    out = bytes([0x40 | ty << 4 | len(token), code]) + struct.pack(">H", mid) + token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        def nib(x):
            if x < 13:
                return x, b""
            if x < 269:
                return 13, bytes([x - 13])
            return 14, struct.pack(">H", x - 269)
        d, dx = nib(num - last)
        l, lx = nib(len(val))
        out += bytes([d << 4 | l]) + dx + lx + val
        last = num
    if payload:
        out += b"\xff" + payload
    return out


def path(p):
    return [(11, s.encode()) for s in p.strip("/").split("/")]


OCF = [(12, b"\x27\x10"), (2053, b"\x08\x00")]
ACCEPT = [(17, b"\x27\x10"), (2049, b"\x08\x00")]
CLIENT = "029e1b4b-90f1-cd02-9e1b-4b90f1cd0000"
OWNER = "0b700000-0000-0000-0000-000000000001"

ssm = [bytes.fromhex(d["hex"]) for d in io["datagrams"]]
plain_mc = [bytes.fromhex(d["hex"]) for d in io["other_multicast_on_5683"]]
disc_resp = [bytes.fromhex(r["hex"]) for r in io["discovery"]["responses"]]
rfc_req = [bytes.fromhex(c[k]) for c in rfc["protect_request"] for k in ("unprotected_request", "protected_request")]
rfc_resp = [bytes.fromhex(c[k]) for c in rfc["protect_response"] for k in ("unprotected_response", "protected_response")]
oscore_opts = [bytes.fromhex(d["oscore"]["option_hex"]) for d in io["datagrams"]] + [
    bytes.fromhex(c["oscore_option"]) for c in rfc["protect_request"] + rfc["protect_response"]
]

cred_body = {
    "creds": [
        {"credid": 7, "credtype": 256, "subjectuuid": CLIENT,
         "privatedata": {"data": bytes(range(32)), "encoding": "oic.sec.encoding.raw"},
         "oscore": {"recipientid": "0a0b0c0d0e0f10"}},
        {"credtype": 128, "subjectuuid": CLIENT,
         "privatedata": {"data": bytes(range(32)), "encoding": "oic.sec.encoding.raw"},
         "oscore": {"senderid": "0a0b0c0d0e0f10", "ssn": 5}},
        {"credtype": 64, "subjectuuid": CLIENT,
         "privatedata": {"data": "01" * 32, "encoding": "oic.sec.encoding.raw"},
         "oscore": {"senderid": "01010101010101", "recipientid": "02020202020202"}},
        {"credtype": 1, "subjectuuid": OWNER,
         "privatedata": {"data": bytes(16), "encoding": "oic.sec.encoding.raw"}},
    ],
    "rowneruuid": OWNER,
}
acl_body = {
    "aclist2": [
        {"aceid": 3, "subject": {"uuid": CLIENT}, "resources": [{"href": "/lights"}], "permission": 6},
        {"subject": {"conntype": "anon-clear"}, "resources": [{"wc": "*"}], "permission": 2},
        {"subject": {"role": "r", "authority": "a"}, "resources": [{"href": "/oic/res"}], "permission": 31},
    ],
    "rowneruuid": OWNER,
}
links = bytes.fromhex(io["discovery_response"]["payload_cbor_hex"])
ocf_cbor = [cbor(cred_body), cbor(acl_body), links,
            cbor({"aclist2": acl_body["aclist2"]}),
            json.dumps({"creds": [{"credid": 1, "credtype": 256, "subjectuuid": CLIENT,
                                    "privatedata": {"data": "00" * 32, "encoding": "oic.sec.encoding.raw"},
                                    "oscore": {"recipientid": "01010101010101"}}],
                        "rowneruuid": OWNER}).encode()]


def rec(mode, d):
    return bytes([mode]) + struct.pack(">H", len(d)) + d


def req(code, href, query=None, body=None, ty=0, opts=()):
    o = path(href) + ACCEPT + list(opts)
    if query:
        o.append((15, query.encode()))
    if body is not None:
        o += [(12, b"\x27\x10"), (2053, b"\x08\x00")]
    return coap(ty, code, 0x1234, b"\x01\x02", o, cbor(body) if body is not None else b"")


GET, POST, PUT, DELETE = 1, 2, 3, 4
MC, NONE, DTLS_OWNER, OSCORE_PW, DTLS_CLIENT = 1, 0, 2, 4, 6
device = ssm + plain_mc + [
    rec(NONE, req(GET, "/oic/res")),
    rec(MC, req(GET, "/oic/res", "rt=oic.r.switch.binary", ty=1)),
    rec(MC, req(GET, "/oic/sec/doxm", "owned=FALSE", ty=1)),
    rec(NONE, req(GET, "/oic/d")) + rec(NONE, req(GET, "/oic/p")) + rec(NONE, req(GET, "/introspection")),
    rec(NONE, req(GET, "/lights", opts=[(6, b"")])) + rec(OSCORE_PW, req(POST, "/lights", body={"value": True})),
    rec(DTLS_OWNER, req(GET, "/oic/sec/pstat")) + rec(DTLS_OWNER, req(POST, "/oic/sec/pstat", body={"dos": {"s": 2}})),
    rec(DTLS_OWNER, req(POST, "/oic/sec/cred", body=cred_body)) + rec(MC, ssm[0]),
    rec(DTLS_OWNER, req(POST, "/oic/sec/acl2", body=acl_body)) + rec(DTLS_OWNER, req(GET, "/oic/sec/acl2")),
    rec(DTLS_OWNER, req(DELETE, "/oic/sec/cred", "credid=1")) + rec(MC, ssm[1]),
    rec(DTLS_OWNER, req(GET, "/oic/sec/doxm")) + rec(DTLS_OWNER, req(GET, "/oic/sec/cred")),
    rec(DTLS_OWNER, req(POST, "/oic/sec/sdi", body={"uuid": OWNER, "name": "n", "priv": False})),
    rec(DTLS_CLIENT, req(PUT, "/lights", body={"value": False})) + rec(MC, ssm[4]) + rec(MC, ssm[4]),
]

corpora = {
    "coap_packet": ssm + plain_mc + disc_resp + rfc_req + rfc_resp,
    "oscore_unprotect": ssm + rfc_req + rfc_resp + oscore_opts,
    "ocf_cbor": ocf_cbor,
    "device_request": device,
}
for target, seeds in corpora.items():
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-") and not f.startswith("seed-cmin-"):
            os.remove(os.path.join(d, f))
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s)
    print(target, len(seeds), "seeds")
