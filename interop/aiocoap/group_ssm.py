#!/usr/bin/env python3
"""Group OSCORE group mode (aiocoap 0.4.17, draft -23) for SSM, offline
(nothing is sent): protect an SSM UPDATE as a group member, or verify and
decrypt one.

    group_ssm.py protect   --setup FILE --path /BinarySwitchResURI --value true|false
    group_ssm.py unprotect --setup FILE --hex DATAGRAM

FILE (JSON): {"gid", "secret", "salt" (or null), "sender_id", "private_key"
(the member's Ed25519 seed), "own_ccs", "gm_cred", "ssn" (first sequence
number), "peers": {sender id hex: CCS hex}}, byte strings as hex. The
context is aiocoap's SimpleGroupContext with AES-CCM-16-64-128 as AEAD and
Group Encryption Algorithm, SHA-256, EdDSA/Ed25519 and no Pairwise Key
Agreement Algorithm (CBOR null in the external_aad).

stdout: one JSON line: protect {"hex", "piv", "kid"}; unprotect {"ok": true,
"code", "uri_path", "value", "piv", "kid"} or {"ok": false, "error"}.
"""
import argparse
import json
import sys

import cbor2
import aiocoap.oscore as O
from aiocoap import Message
from aiocoap.message import Direction
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import UintOption


def context(setup):
    h = bytes.fromhex
    c = O.SimpleGroupContext(
        O.algorithms["AES-CCM-16-64-128"], O.hashfunctions["sha256"], O.Ed25519(),
        O.algorithms["AES-CCM-16-64-128"], None,
        h(setup["gid"]), h(setup["secret"]), h(setup["salt"]) if setup.get("salt") else b"",
        h(setup["sender_id"]), h(setup["private_key"]), h(setup["own_ccs"]),
        {h(k): h(v) for k, v in setup["peers"].items()},
        h(setup["gm_cred"]),
    )
    c.sender_sequence_number = setup.get("ssn", 0)
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("op", choices=("protect", "unprotect"))
    p.add_argument("--setup", required=True)
    p.add_argument("--path", default="/BinarySwitchResURI")
    p.add_argument("--value", default="true", choices=("true", "false"))
    p.add_argument("--hex")
    a = p.parse_args()
    ctx = context(json.load(open(a.setup)))
    if a.op == "protect":
        m = Message(code=Code.POST, payload=cbor2.dumps({"value": a.value == "true"}))
        m.opt.uri_path = [s for s in a.path.split("/") if s]
        m.opt.content_format = 10000
        m.opt.add_option(UintOption(OptionNumber(2053), 2048))
        m.direction = Direction.OUTGOING
        outer, rid = ctx.protect(m)
        outer.mtype, outer.mid, outer.token = Type.NON, 0x3344, bytes.fromhex("a1b2c3d4")
        print(json.dumps({"hex": outer.encode().hex(),
                          "piv": int.from_bytes(rid.partial_iv, "big"),
                          "kid": ctx.sender_id.hex()}), flush=True)
        return
    try:
        m = Message.decode(bytes.fromhex(a.hex))
        m.direction = Direction.INCOMING
        sc = ctx.get_oscore_context_for(O.verify_start(m))
        inner, rid = sc.unprotect(m)
        print(json.dumps({"ok": True, "code": str(inner.code), "uri_path": "/" + "/".join(inner.opt.uri_path),
                          "value": cbor2.loads(inner.payload).get("value"),
                          "piv": int.from_bytes(rid.partial_iv, "big"), "kid": rid.kid.hex()}), flush=True)
    except Exception as e:
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
