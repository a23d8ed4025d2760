#!/usr/bin/env python3
"""OSCORE-only CoAP test server for ocf-ssm interop tests (aiocoap 0.4.17).

Usage:
    oscore_server.py --context DIR [--bind 127.0.0.1] [--port 0] [-v]

DIR is an aiocoap FilesystemSecurityContext directory (see README.md); the
server answers OSCORE requests from the peer whose context that is.

Resources (each reachable only through OSCORE; unprotected -> 4.01):
    GET  /hello               -> 2.05 b"hello from aiocoap"
    POST /echo                -> 2.04, payload echoed back
    GET  /BinarySwitchResURI  -> 2.05 CBOR {"value": <bool>} (cf 60)
    POST /BinarySwitchResURI  <- CBOR {"value": <bool>}      -> 2.04

Prints exactly one line "READY <port>" on stdout once listening; all logging
goes to stderr. SIGTERM / SIGINT -> clean shutdown (persists the OSCORE
sequence number and replay window to DIR/sequence.json, exit code 0).
"""

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys

import cbor2

import aiocoap
import aiocoap.error as error
import aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import FilesystemSecurityContext
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from aiocoap.transports.oscore import OSCOREAddress

log = logging.getLogger("oscore_server")

CF_CBOR = 60


class ProtectedResource(resource.Resource):
    """Resource that only answers requests that arrived through OSCORE."""

    async def render(self, request):
        if not isinstance(request.remote, OSCOREAddress):
            raise error.Unauthorized("OSCORE required")
        return await super().render(request)


class Hello(ProtectedResource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"hello from aiocoap")


class Echo(ProtectedResource):
    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class BinarySwitch(ProtectedResource):
    def __init__(self):
        super().__init__()
        self.value = False

    async def render_get(self, request):
        return aiocoap.Message(
            code=aiocoap.CONTENT,
            content_format=CF_CBOR,
            payload=cbor2.dumps({"value": self.value}),
        )

    async def render_post(self, request):
        try:
            data = cbor2.loads(request.payload)
        except Exception:
            raise error.BadRequest("payload is not CBOR")
        if not isinstance(data, dict) or not isinstance(data.get("value"), bool):
            raise error.BadRequest('expected CBOR map {"value": bool}')
        self.value = data["value"]
        log.info("BinarySwitch value set to %s", self.value)
        return aiocoap.Message(code=aiocoap.CHANGED)


def bound_port(ctx):
    """Find the UDP port the server context's udp6 socket is bound to."""
    for ri in ctx.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        transport = getattr(mi, "transport", None)
        if transport is None:
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            return sock.getsockname()[1]
    raise RuntimeError("could not determine bound port")


async def main(args):
    try:
        ipaddress.ip_address(args.bind)
    except ValueError:
        raise SystemExit("--bind must be an IP literal (127.0.0.1 or ::1)")

    if not any(
        os.path.isfile(os.path.join(args.context, f))
        for f in ("settings.json", "secret.json")
    ):
        raise SystemExit(
            "oscore_server.py: %r holds neither settings.json nor secret.json"
            % args.context
        )
    try:
        secctx = FilesystemSecurityContext(args.context)
    except Exception as e:
        raise SystemExit(
            "oscore_server.py: cannot load OSCORE context %r: %s: %s"
            % (args.context, type(e).__name__, e)
        )
    creds = CredentialsMap()
    # The key is only a label for the server side (find_oscore iterates
    # over all values); it becomes the authenticated claim of the client.
    creds[":client"] = secctx

    site = resource.Site()
    site.add_resource(["hello"], Hello())
    site.add_resource(["echo"], Echo())
    site.add_resource(["BinarySwitchResURI"], BinarySwitch())

    try:
        ctx = await aiocoap.Context.create_server_context(
            OscoreSiteWrapper(site, creds),
            bind=(args.bind, args.port),
            server_credentials=creds,
            transports=["udp6"],
        )
    except Exception as e:
        secctx._destroy()
        raise SystemExit(
            "oscore_server.py: cannot bind %s port %d: %s: %s"
            % (args.bind, args.port, type(e).__name__, e)
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    port = bound_port(ctx)
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    log.info("listening on %s port %d, context %s", args.bind, port, args.context)

    await stop.wait()
    log.info("shutting down")
    try:
        await asyncio.wait_for(ctx.shutdown(), timeout=5)
    except Exception as e:  # pragma: no cover - best effort
        log.warning("context shutdown failed: %r", e)
    # Clean shutdown: write the real sender sequence number and replay window
    # back to sequence.json and release the lock (what aiocoap's own
    # FilesystemSecurityContext.__del__ does, made deterministic here).
    if secctx.lockfile is not None:
        secctx._destroy()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--context", required=True, help="FilesystemSecurityContext dir")
    p.add_argument("-v", "--verbose", action="count", default=0)
    a = p.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if a.verbose > 1 else logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(main(a))
    sys.exit(0)
