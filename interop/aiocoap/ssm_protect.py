#!/usr/bin/env python3
"""Build one OCF Simple Secure Multicast (SSM) request and OSCORE-protect it
with aiocoap 0.4.17, offline (nothing is sent).

    ssm_protect.py --context DIR --path /BinarySwitchResURI --value true|false
                   [--mid N] [--token HEX]

The inner request is POST <path>, Content-Format 10000
(application/vnd.ocf+cbor), OCF-Content-Format-Version (option 2053) = 2048,
payload CBOR {"value": bool}. It is protected with the plain RFC 8613
FilesystemSecurityContext in DIR (its Sender ID is the group/client Sender
ID) and wrapped in a NON outer message with the given MID and token
(defaults: random MID, random 8-byte token).

stdout: exactly one JSON line
    {"hex": "<whole CoAP datagram>", "piv": <sequence number>, "kid": "<hex>"}
Errors: one "ssm_protect.py: ..." line on stderr, exit 1, stdout empty.

The sender sequence number is taken and persisted by aiocoap itself
(DIR/sequence.json, written exactly on the explicit close at the end), so
consecutive runs on the same DIR use increasing Partial IVs. Run with the
venv python printed by setup-venv.sh. Never run two tools on one DIR at once
(aiocoap locks it; the second one fails).
"""

import argparse
import json
import secrets
import sys

import cbor2
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import UintOption
from aiocoap.oscore import FilesystemSecurityContext

OCF_CONTENT_FORMAT_VERSION = OptionNumber(2053)  # not known to aiocoap
OCF_VERSION_2048 = 2048  # OCF 1.0.0 ("0800" on the wire)
APPLICATION_VND_OCF_CBOR = 10000


def context_dir_problem(d):
    """aiocoap's FilesystemSecurityContext creates DIR (via filelock) if it is
    missing and, on a load error, prints an 'Exception ignored in __del__'
    traceback; check the obvious cases first."""
    import os
    if not os.path.isdir(d):
        return "context directory %r does not exist" % d
    if not any(os.path.isfile(os.path.join(d, f)) for f in ("settings.json", "secret.json")):
        return "context directory %r has neither settings.json nor secret.json" % d
    return None


def die(msg):
    print("ssm_protect.py: %s" % msg, file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--context", required=True, help="FilesystemSecurityContext directory")
    p.add_argument("--path", required=True, help="Uri-Path, e.g. /BinarySwitchResURI")
    p.add_argument("--value", required=True, choices=("true", "false"))
    p.add_argument("--mid", type=int, default=None, help="outer Message ID (0..65535; default random)")
    p.add_argument("--token", default=None, help="outer token as hex, 0..8 bytes (default: 8 random bytes)")
    a = p.parse_args()
    if a.mid is None:
        a.mid = secrets.randbelow(0x10000)
    elif not 0 <= a.mid <= 0xFFFF:
        die("--mid must be in 0..65535")
    if a.token is None:
        a.token = secrets.token_bytes(8)
    else:
        try:
            a.token = bytes.fromhex(a.token)
        except ValueError:
            die("--token is not hex")
        if len(a.token) > 8:
            die("--token longer than 8 bytes")
    return a


def build_inner(path, value):
    segments = [s for s in path.split("/") if s != ""]
    msg = Message(code=Code.POST, payload=cbor2.dumps({"value": value}))
    msg.opt.uri_path = segments
    msg.opt.content_format = APPLICATION_VND_OCF_CBOR
    # Unknown numeric option: aiocoap's OptionNumber is an extensible enum, so
    # OptionNumber(2053) works, and Options.add_option takes any option object.
    # OSCORE's _split_message puts everything but Uri-Host/Proxy-* inside, so
    # 2053 becomes a Class E (encrypted) option, as the OCF spec wants.
    msg.opt.add_option(UintOption(OCF_CONTENT_FORMAT_VERSION, OCF_VERSION_2048))
    return msg


def main():
    a = parse_args()
    inner = build_inner(a.path, a.value == "true")

    problem = context_dir_problem(a.context)
    if problem:
        die(problem)
    # Silence aiocoap's own "Exception ignored in __del__" noise when loading
    # fails after the lock was taken; the error is reported below.
    sys.unraisablehook = lambda _: None
    try:
        ctx = FilesystemSecurityContext(a.context)
    except Exception as e:  # LoadError, lock Timeout, missing files, bad JSON ...
        die("cannot load context %r: %s: %s" % (a.context, type(e).__name__, e))

    try:
        outer, request_id = ctx.protect(inner)
        # protect() builds a fresh outer Message (code POST, OSCORE option,
        # ciphertext payload) without type/MID/token; those are not covered by
        # OSCORE, so they are set afterwards.
        outer.mtype = Type.NON
        outer.mid = a.mid
        outer.token = a.token
        wire = outer.encode()
        piv = int.from_bytes(request_id.partial_iv, "big")
        kid = ctx.sender_id.hex()
    except Exception as e:
        die("protect failed: %s: %s" % (type(e).__name__, e))
    finally:
        # Clean close: writes the exact next sequence number (and the replay
        # window) to sequence.json and removes the lock file.
        ctx._destroy()

    print(json.dumps({"hex": wire.hex(), "piv": piv, "kid": kid}), flush=True)


if __name__ == "__main__":
    main()
