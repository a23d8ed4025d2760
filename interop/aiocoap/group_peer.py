#!/usr/bin/env python3
"""A live Group OSCORE group-mode member (aiocoap 0.4.17, draft -23) for
SSM, on aiocoap's real UDP transport:

    group_peer.py keygen --out KEYFILE
    group_peer.py serve  --material FILE --key KEYFILE --iface IF [--group ff02::158]
                         --port P [--href /BinarySwitchResURI]
    group_peer.py send   --material FILE --key KEYFILE --iface IF [--group ff02::158]
                         --port P --value true|false [--href /BinarySwitchResURI] [--wait S]

keygen: a new Ed25519 key; the seed (hex) goes to KEYFILE (0600), stdout is
{"ccs": hex}, the key's CWT Claims Set exactly as ocf-ssm builds it
(ssm_ocf::group_cred::ccs_of_ed25519: {8: {1: {1: 1, 3: -8, -1: 6, -2: x}}}).

FILE is what `ssm obt external material` writes: {"group", "member",
"role", "epoch", "gid", "secret", "salt" (hex or null), "sender_id",
"aeadalg" (10 or null), "encalg", "signalg", "hkdf", "gm_cred", "own_ccs",
"peers": {sender id hex: CCS hex}}, byte strings as hex. aiocoap needs the
AEAD Algorithm (it derives the Common IV from it): aeadalg null is refused.

serve: an aiocoap server (udp6, bound to [::]:P) that joins GROUP on IF only,
with a binary switch at HREF behind aiocoap's OSCORE site wrapper holding a
SimpleGroupContext of FILE. stdout, one JSON object a line: {"ready": true,
...} once listening, then {"applied": true, "value": bool, "kid": hex,
"piv": n} per request it applied and {"dropped": reason} per request it
did not (unknown Group ID or kid, pairwise mode, signature or tag invalid,
replay, not OSCORE, bad payload). GET HREF answers {"value": bool}. SIGTERM
or SIGINT: clean exit 0.

send: one NON POST {"value": bool} (content-format 10000) through the group
context to [GROUP%IF]:P (hop limit 1, outgoing interface IF), waits at most
S seconds (default 1) for a response, then prints {"sent": true, "piv": n,
"kid": hex, "response": code or null}.

Sender sequence numbers persist in FILE.ssn (0600, the next number to use,
fsync'd and renamed into place before a message with a new number leaves):
aiocoap's SimpleGroupContext is not persistable, so this script does it.
The replay window of `serve` is not persisted: it starts empty at each
start (SimpleGroupContext's own behaviour).
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import sys

import cbor2
import aiocoap
import aiocoap.credentials
import aiocoap.error
import aiocoap.oscore as O
import aiocoap.oscore_sitewrapper
import aiocoap.resource
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import UintOption
from aiocoap.transports.oscore import OSCOREAddress
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

OCF_CBOR = 10000
OCF_ACCEPT_VERSION = 2053  # OCF-Content-Format-Version
OCF_1_0 = 2048
ED25519_CCS_PREFIX = bytes.fromhex("a108a101a401010327200621" "5820")


def emit(obj):
    print(json.dumps(obj), flush=True)


def die(msg):
    print("group_peer.py: %s" % msg, file=sys.stderr, flush=True)
    sys.exit(1)


def write_private(path, text):
    """Writes `text` to `path` atomically (temp file, fsync, rename), 0600."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ccs_of_ed25519(public):
    ccs = cbor2.dumps({8: {1: {1: 1, 3: -8, -1: 6, -2: public}}})
    assert ccs == ED25519_CCS_PREFIX + public and len(ccs) == 46
    return ccs


def keygen(out):
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    write_private(out, seed.hex() + "\n")
    emit({"ccs": ccs_of_ed25519(O.Ed25519().public_from_private(seed)).hex()})


class GroupRecipient(O._GroupContextAspect):
    """One peer of the group, in group mode; reports what it drops."""

    # Not set on aiocoap's group aspect: without it a replay fails with an
    # AttributeError instead of ReplayError (there is no Echo recovery for a
    # NON multicast request anyway).
    echo_recovery = None

    def unprotect(self, message, request_id=None):
        try:
            inner, rid = super().unprotect(message, request_id)
        except Exception as e:
            emit({"dropped": "%s: %s" % (type(e).__name__, e), "kid": self.recipient_id.hex()})
            raise
        if request_id is None:
            # One aspect per request (get_oscore_context_for); the inner
            # request's remote carries it to the resource.
            self.request_piv = int.from_bytes(rid.partial_iv, "big")
        return inner, rid

    def context_for_response(self):
        # aiocoap answers in pairwise mode, which needs a Pairwise Key
        # Agreement Algorithm this group does not have: answer in group mode
        # (signed with our own key) instead.
        return self.groupcontext


class PeerGroupContext(O.SimpleGroupContext):
    """SimpleGroupContext with its sender sequence number in `ssn_path`."""

    ssn_path = None

    def post_seqnoincrease(self):
        # Runs in new_sequence_number, before the number is used.
        write_private(self.ssn_path, "%d\n" % self.sender_sequence_number)

    def get_oscore_context_for(self, unprotected):
        kid = unprotected.get(O.COSE_KID, b"")
        if unprotected.get(O.COSE_KID_CONTEXT) != self.id_context:
            emit({"dropped": "other Group ID", "kid": kid.hex()})
            return None
        if kid not in self.peers:
            emit({"dropped": "unknown kid", "kid": kid.hex()})
            return None
        if O.COSE_COUNTERSIGNATURE0 not in unprotected:
            emit({"dropped": "pairwise mode (not supported here)", "kid": kid.hex()})
            return None
        return GroupRecipient(self, kid)


def load(material_path, key_path):
    m = json.load(open(material_path))
    h = bytes.fromhex
    seed = h(open(key_path).read().strip())
    if m.get("aeadalg") is None:
        die("material has no aeadalg: aiocoap needs the AEAD Algorithm in the Common Context")
    by_value = {a.value: a for a in O.algorithms.values()}
    for f in ("aeadalg", "encalg"):
        if m.get(f, 10) not in by_value:
            die("%s %r is not an algorithm aiocoap knows" % (f, m[f]))
    if m.get("signalg", -8) != -8 or m.get("hkdf", "sha256") != "sha256":
        die("only EdDSA (-8) with HKDF SHA-256 is supported")
    own = h(m["own_ccs"])
    if own != ccs_of_ed25519(O.Ed25519().public_from_private(seed)):
        die("own_ccs is not the CCS of KEYFILE's key")
    ctx = PeerGroupContext(
        by_value[m["aeadalg"]], O.hashfunctions["sha256"], O.Ed25519(),
        by_value[m.get("encalg", 10)], None,
        h(m["gid"]), h(m["secret"]), h(m["salt"]) if m.get("salt") else b"",
        h(m["sender_id"]), seed, own,
        {h(k): h(v) for k, v in m["peers"].items()},
        h(m["gm_cred"]),
    )
    ctx.ssn_path = material_path + ".ssn"
    try:
        ctx.sender_sequence_number = int(open(ctx.ssn_path).read().strip())
    except FileNotFoundError:
        ctx.sender_sequence_number = 0
    return m, ctx


class Switch(aiocoap.resource.Resource):
    """OCF binary switch; applies only OSCORE-verified requests."""

    def __init__(self):
        super().__init__()
        self.value = False

    async def render_get(self, request):
        return aiocoap.Message(content_format=60, payload=cbor2.dumps({"value": self.value}))

    async def render_post(self, request):
        if not isinstance(request.remote, OSCOREAddress):
            emit({"dropped": "not OSCORE"})
            raise aiocoap.error.Unauthorized("OSCORE required")
        try:
            value = cbor2.loads(request.payload)["value"]
        except Exception:
            value = None
        if not isinstance(value, bool):
            emit({"dropped": "bad payload %s" % request.payload.hex()})
            raise aiocoap.error.BadRequest("{\"value\": bool} expected")
        self.value = value
        sc = request.remote.security_context
        emit({"applied": True, "value": value, "kid": sc.recipient_id.hex(),
              "piv": getattr(sc, "request_piv", None)})
        return aiocoap.Message(code=aiocoap.CHANGED)

    render_put = render_post


def path_of(href):
    return [s for s in href.split("/") if s]


def joined(group, iface):
    """Whether this host's IPv6 stack has joined `group` on `iface`."""
    want = socket.inet_pton(socket.AF_INET6, group).hex()
    with open("/proc/net/igmp6") as f:
        return any(l.split()[1:3] == [iface, want] for l in f if len(l.split()) > 2)


async def serve(a):
    m, group = load(a.material, a.key)
    site = aiocoap.resource.Site()
    site.add_resource(path_of(a.href), Switch())
    creds = aiocoap.credentials.CredentialsMap()
    creds[":group"] = group
    wrapped = aiocoap.oscore_sitewrapper.OscoreSiteWrapper(site, creds)
    ctx = await aiocoap.Context.create_server_context(
        wrapped, bind=("::", a.port), multicast=[(a.group, a.iface)], transports=["udp6"])
    if not joined(a.group, a.iface):
        die("could not join %s on %s" % (a.group, a.iface))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    emit({"ready": True, "port": a.port, "group": a.group, "iface": a.iface,
          "kid": m["sender_id"], "gid": m["gid"]})
    await stop.wait()
    await ctx.shutdown()


def udp6_socket(ctx):
    for ri in ctx.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is not None and hasattr(mi, "transport"):
            return mi.transport.get_extra_info("socket")
    die("no udp6 transport in the client context")


async def send(a):
    m, group = load(a.material, a.key)
    ctx = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    try:
        sock = udp6_socket(ctx)
        ifindex = socket.if_nametoindex(a.iface)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        ctx.client_credentials["*"] = group
        msg = aiocoap.Message(
            mtype=aiocoap.NON, code=aiocoap.POST, uri_path=path_of(a.href),
            content_format=OCF_CBOR, payload=cbor2.dumps({"value": a.value == "true"}))
        msg.opt.add_option(UintOption(OptionNumber(OCF_ACCEPT_VERSION), OCF_1_0))
        msg.unresolved_remote = "[%s%%%s]:%d" % (a.group, a.iface, a.port)
        piv = group.sender_sequence_number
        req = ctx.request(msg)
        # asyncio.wait, not wait_for: cancelling the response future would
        # make aiocoap fail noisily when the request ends at shutdown.
        done, _ = await asyncio.wait([req.response], timeout=a.wait)
        response = None
        if done:
            e = req.response.exception()
            if e is None:
                response = str(req.response.result().code)
            elif group.sender_sequence_number == piv:
                die("not sent: %s: %s" % (type(e).__name__, e))
            else:
                response = "%s: %s" % (type(e).__name__, e)
        if group.sender_sequence_number == piv:
            die("not sent: the request was never protected within %s s" % a.wait)
        emit({"sent": True, "piv": piv, "kid": m["sender_id"], "response": response})
    finally:
        await asyncio.wait_for(ctx.shutdown(), 5)
        if "req" in locals() and req.response.done() and not req.response.cancelled():
            req.response.exception()  # retrieved: ended by the shutdown


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("op", choices=("keygen", "serve", "send"))
    p.add_argument("--out")
    p.add_argument("--material")
    p.add_argument("--key")
    p.add_argument("--iface")
    p.add_argument("--group", default="ff02::158")
    p.add_argument("--port", type=int, default=5683)
    p.add_argument("--href", default="/BinarySwitchResURI")
    p.add_argument("--value", choices=("true", "false"))
    p.add_argument("--wait", type=float, default=1.0)
    a = p.parse_args()
    if a.op == "keygen":
        if not a.out:
            die("keygen needs --out KEYFILE")
        return keygen(a.out)
    for need in ("material", "key", "iface"):
        if not getattr(a, need):
            die("%s needs --%s" % (a.op, need))
    if a.op == "send" and a.value is None:
        die("send needs --value true|false")
    asyncio.run(serve(a) if a.op == "serve" else send(a))


if __name__ == "__main__":
    sys.exit(main())
