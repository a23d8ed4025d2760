#!/usr/bin/env python3
"""Multicast / unicast self-test for a topology made by topology.sh (stdlib only).

    topology.sh up PREFIX 3 | python3 check_multicast.py run

`run` reads the `node ...` lines of topology.sh on stdin and opens no socket
itself: it starts a listener in every node but node 0 and a sender in node 0,
each with `ip netns exec <netns> python3 check_multicast.py listen|send ...`.

Checks (each printed as `PASS name` / `FAIL name: why`):
  * multicast from node 0 to [ff02::158%ssm0]:5683, [ff05::158]:5683 and
    224.0.1.187:5683 (hop limit / TTL 1, outgoing interface set explicitly)
    reaches every listener, on ssm0, with the group as destination address;
  * datagrams to groups nobody joined (ff02::159, 224.0.1.188) are not
    delivered;
  * unicast node 0 -> node i and back (echo) over link-local [fe80::..%ssm0],
    10.158.0.x and fd58::x.

`--no-mcast-if` makes the sender leave IPV6_MULTICAST_IF / IP_MULTICAST_IF
unset, to find out which routes the kernel needs.
"""

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

PORT = 5683
GROUP6_LINK = "ff02::158"
GROUP6_SITE = "ff05::158"
GROUP4 = "224.0.1.187"
NOT_JOINED6 = "ff02::159"
NOT_JOINED4 = "224.0.1.188"
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value
MC_TAGS = ["mc-ff02", "mc-ff05", "mc-v4"]
NEG_TAGS = ["neg-ff02", "neg-v4"]
UC_KINDS = ["ll", "v4", "ula"]


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------- listener
def cmd_listen(a):
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    s6.bind(("::", PORT))
    for g in (GROUP6_LINK, GROUP6_SITE):
        mreq = socket.inet_pton(socket.AF_INET6, g) + struct.pack("@I", a.ifindex)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)

    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s4.bind(("0.0.0.0", PORT))
    mreq = socket.inet_aton(GROUP4) + socket.inet_aton(a.v4)
    s4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)

    expected = set(a.expect.split(","))
    got = []
    emit({"ready": True})
    deadline = time.monotonic() + a.timeout
    done_at = None
    while True:
        now = time.monotonic()
        if now >= deadline or (done_at is not None and now >= done_at):
            break
        end = deadline if done_at is None else min(deadline, done_at)
        r, _, _ = select.select([s6, s4], [], [], end - now)
        for s in r:
            data, anc, _flags, src = s.recvmsg(2048, 256)
            dst, ifindex = None, None
            for level, typ, cdata in anc:
                if level == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, cdata[:16])
                    ifindex = struct.unpack("@I", cdata[16:20])[0]
                elif level == socket.IPPROTO_IP and typ == IP_PKTINFO:
                    ifindex = struct.unpack("@i", cdata[:4])[0]
                    dst = socket.inet_ntop(socket.AF_INET, cdata[8:12])
            tag = data.decode(errors="replace")
            got.append({"tag": tag, "src": src[0], "dst": dst, "ifindex": ifindex,
                        "family": 6 if s is s6 else 4})
            if tag.startswith("uc-"):
                s.sendto(b"echo:" + data, src)
            if done_at is None and expected <= {g["tag"] for g in got}:
                done_at = time.monotonic() + a.grace
    emit({"received": got})


# ------------------------------------------------------------------- sender
def cmd_send(a):
    targets = json.loads(a.targets)
    res = {"errors": {}, "echo": {}}

    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    if not a.no_mcast_if:
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, a.ifindex)
        s4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(a.v4))
    scope = 0 if a.no_mcast_if else a.ifindex

    def send(tag, sock, addr):
        try:
            sock.sendto(tag.encode(), addr)
        except OSError as e:
            res["errors"][tag] = f"{type(e).__name__}: {e}"

    # not-joined groups first: by the time the joined ones arrive, these would have too
    send("neg-ff02", s6, (NOT_JOINED6, PORT, 0, scope))
    send("neg-v4", s4, (NOT_JOINED4, PORT))
    send("mc-ff02", s6, (GROUP6_LINK, PORT, 0, scope))
    send("mc-ff05", s6, (GROUP6_SITE, PORT, 0, 0))
    send("mc-v4", s4, (GROUP4, PORT))

    # unicast with echo, one socket per datagram so replies are unambiguous
    pending = {}
    for t in targets:
        for kind in UC_KINDS:
            tag = f"uc-{kind}-{t['index']}"
            if kind == "v4":
                s, addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), (t["v4"], PORT)
            elif kind == "ll":
                s, addr = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), (t["ll"], PORT, 0, a.ifindex)
            else:
                s, addr = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), (t["ula"], PORT, 0, 0)
            send(tag, s, addr)
            if tag not in res["errors"]:
                pending[s] = tag
    deadline = time.monotonic() + a.timeout
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select(list(pending), [], [], deadline - time.monotonic())
        for s in r:
            data, src = s.recvfrom(2048)
            tag = pending.pop(s)
            res["echo"][tag] = {"data": data.decode(errors="replace"), "src": src[0]}
            s.close()
    emit(res)


# ------------------------------------------------------------- orchestrator
def parse_topology(text):
    nodes = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 8 and f[0] == "node":
            nodes.append({"index": int(f[1]), "netns": f[2], "ifname": f[3], "ifindex": int(f[4]),
                          "v4": f[5], "ll": f[6], "ula": f[7]})
    return nodes


def read_json_line(proc, timeout):
    """One JSON line from proc.stdout within timeout, else None."""
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    if not r:
        return None
    line = proc.stdout.readline()
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None


def cmd_run(a):
    nodes = parse_topology(sys.stdin.read())
    if len(nodes) < 3:
        print(f"FAIL topology: need >= 3 node lines on stdin, got {len(nodes)}")
        return 1
    me = os.path.abspath(__file__)
    py = sys.executable or "python3"
    sender, listeners = nodes[0], nodes[1:]
    results = []  # (ok, name, detail)

    def check(ok, name, detail=""):
        results.append((ok, name, detail))
        print(f"PASS {name}" if ok else f"FAIL {name}: {detail}", flush=True)

    procs = {}
    try:
        for n in listeners:
            expect = MC_TAGS + [f"uc-{k}-{n['index']}" for k in UC_KINDS]
            procs[n["index"]] = subprocess.Popen(
                ["ip", "netns", "exec", n["netns"], py, "-u", me, "listen", "--ifindex", str(n["ifindex"]),
                 "--v4", n["v4"], "--expect", ",".join(expect), "--timeout", str(a.timeout)],
                stdout=subprocess.PIPE, text=True)
        for n in listeners:
            msg = read_json_line(procs[n["index"]], 10)
            check(bool(msg and msg.get("ready")), f"listener n{n['index']} ready", repr(msg))

        targets = [{"index": n["index"], "v4": n["v4"], "ll": n["ll"], "ula": n["ula"]} for n in listeners]
        cmd = ["ip", "netns", "exec", sender["netns"], py, "-u", me, "send", "--ifindex", str(sender["ifindex"]),
               "--v4", sender["v4"], "--targets", json.dumps(targets), "--timeout", str(a.timeout)]
        if a.no_mcast_if:
            cmd.append("--no-mcast-if")
        t0 = time.monotonic()
        sp = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=a.timeout + 20)
        try:
            sres = json.loads(sp.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            sres = {"errors": {"sender": f"exit {sp.returncode}, output {sp.stdout!r}"}, "echo": {}}
        for tag, err in sres["errors"].items():
            check(False, f"send {tag}", err)

        recv = {}
        for n in listeners:
            msg = read_json_line(procs[n["index"]], a.timeout + 10)
            recv[n["index"]] = (msg or {}).get("received", [])
        elapsed = time.monotonic() - t0

        src_ok = {sender["v4"], sender["ll"], sender["ula"]}
        groups = {"mc-ff02": GROUP6_LINK, "mc-ff05": GROUP6_SITE, "mc-v4": GROUP4}
        for n in listeners:
            got = recv[n["index"]]
            for tag in MC_TAGS:
                hits = [g for g in got if g["tag"] == tag]
                name = f"{tag} ({groups[tag]}) n0 -> n{n['index']}"
                if len(hits) != 1:
                    check(False, name, f"received {len(hits)} copies; all: {got}")
                    continue
                h = hits[0]
                bad = []
                if h["dst"] != groups[tag]:
                    bad.append(f"dst {h['dst']}")
                if h["ifindex"] != n["ifindex"]:
                    bad.append(f"ifindex {h['ifindex']} != {n['ifindex']}")
                if h["src"].split("%")[0] not in src_ok:
                    bad.append(f"src {h['src']}")
                check(not bad, name + f" [src {h['src']}]", ", ".join(bad))
            for tag in NEG_TAGS:
                hits = [g for g in got if g["tag"] == tag]
                check(not hits, f"{tag} (not joined) not delivered to n{n['index']}", f"got {hits}")
            for kind in UC_KINDS:
                tag = f"uc-{kind}-{n['index']}"
                hits = [g for g in got if g["tag"] == tag]
                echo = sres["echo"].get(tag)
                ok = len(hits) == 1 and echo is not None and echo["data"] == "echo:" + tag
                check(ok, f"unicast {kind} n0 <-> n{n['index']} ({ {'ll': n['ll'] + '%ssm0', 'v4': n['v4'], 'ula': n['ula']}[kind] })",
                      f"listener got {hits}, echo {echo}")
        print(f"# exchange took {elapsed:.2f}s", flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    failed = sum(1 for ok, _, _ in results if not ok)
    print(f"# check_multicast: {len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="orchestrate the test; topology lines on stdin")
    r.add_argument("--timeout", type=float, default=5.0)
    r.add_argument("--no-mcast-if", action="store_true")
    l = sub.add_parser("listen", help="(inside a node) join groups, report datagrams")
    l.add_argument("--ifindex", type=int, required=True)
    l.add_argument("--v4", required=True)
    l.add_argument("--expect", required=True)
    l.add_argument("--timeout", type=float, default=5.0)
    l.add_argument("--grace", type=float, default=0.3)
    s = sub.add_parser("send", help="(inside node 0) send multicast + unicast")
    s.add_argument("--ifindex", type=int, required=True)
    s.add_argument("--v4", required=True)
    s.add_argument("--targets", required=True)
    s.add_argument("--timeout", type=float, default=5.0)
    s.add_argument("--no-mcast-if", action="store_true")
    a = ap.parse_args()
    return {"run": cmd_run, "listen": cmd_listen, "send": cmd_send}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
