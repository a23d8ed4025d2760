#!/usr/bin/env python3
"""Parse one CoAP datagram and OSCORE-unprotect it as a request with aiocoap
0.4.17, offline (the receiving side of an OCF Simple Secure Multicast).

    ssm_unprotect.py --context DIR --hex HEX

DIR is a FilesystemSecurityContext whose recipient-id is the sender's
(group) ID. stdout: exactly one JSON line, either

    {"ok": true, "code": "POST", "uri_path": "/x", "content_format": 10000,
     "payload_hex": "...", "value": true, "options": [[11, "78"], ...],
     "piv": 0}

("value" is the CBOR map's "value" entry, null if the payload is not a CBOR
map with that key; "content_format" is null if absent; "options" are the
decrypted inner options in wire order as [number, value-hex]), exit 0; or

    {"ok": false, "error": "<ExceptionType>: <message>"}

with exit code 1 (bad hex, not CoAP, no OSCORE option, wrong kid, bad tag,
replay, context cannot be loaded, ...).

The replay window is aiocoap's own: it is loaded from DIR/sequence.json and
written back there by the explicit clean close at the end of every run, so
a datagram accepted once is rejected as a replay by later runs on the same
DIR. Run with the venv python printed by setup-venv.sh.
"""

import argparse
import json
import sys

import cbor2
from aiocoap import Message
from aiocoap.oscore import FilesystemSecurityContext, ReplayErrorWithEcho


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


def out(obj, rc):
    print(json.dumps(obj), flush=True)
    sys.exit(rc)


def fail(e):
    out({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--context", required=True, help="FilesystemSecurityContext directory")
    p.add_argument("--hex", required=True, help="the whole CoAP datagram as hex")
    a = p.parse_args()

    try:
        raw = bytes.fromhex(a.hex)
        msg = Message.decode(raw)
        if msg.code is None or not msg.code.is_request():
            raise ValueError("outer code %s is not a request code" % msg.code)
    except Exception as e:
        fail(e)

    problem = context_dir_problem(a.context)
    if problem:
        out({"ok": False, "error": "LoadError: " + problem}, 1)
    sys.unraisablehook = lambda _: None  # see ssm_protect.py
    try:
        ctx = FilesystemSecurityContext(a.context)
    except Exception as e:
        fail(e)

    try:
        inner, request_id = ctx.unprotect(msg)
    except ReplayErrorWithEcho as e:
        # Replay window state "unknown" in sequence.json (a previous user of
        # DIR did not close it cleanly): aiocoap would answer 4.01+Echo, which
        # is impossible for a NON multicast request, so this is a failure.
        out({"ok": False, "error": "ReplayErrorWithEcho: replay window unknown "
             "(sequence.json \"received\": \"unknown\", left by an unclean close); "
             "aiocoap wants Echo recovery, impossible for a NON multicast request"}, 1)
    except Exception as e:
        fail(e)
    finally:
        # Clean close: persists the real replay window and removes the lock.
        ctx._destroy()

    value = None
    try:
        decoded = cbor2.loads(inner.payload)
        if isinstance(decoded, dict):
            value = decoded.get("value")
    except Exception:
        pass
    cf = inner.opt.content_format
    out(
        {
            "ok": True,
            "code": getattr(inner.code, "name", None) or str(inner.code),
            "uri_path": "/" + "/".join(inner.opt.uri_path),
            "content_format": None if cf is None else int(cf),
            "payload_hex": inner.payload.hex(),
            "value": value,
            "options": [[int(o.number), o.encode().hex()] for o in inner.opt.option_list()],
            "piv": int.from_bytes(request_id.partial_iv, "big"),
        },
        0,
    )


if __name__ == "__main__":
    main()
