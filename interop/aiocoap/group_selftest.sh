#!/usr/bin/env bash
# Live self-check of group_peer.py: an aiocoap group-mode switch (send) and
# an aiocoap group-mode light (serve) in two network namespaces on one
# bridge (tests/netns/topology.sh: needs root), multicast ff02::158 on the
# namespaces' ssm0 only. Exits 0 only if every check passes.
# Usage: group_selftest.sh [VENV_DIR]   (VENV_DIR is passed on to setup-venv.sh)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "group selftest: needs root (network namespaces)" >&2; exit 1; }
py="$("$here/setup-venv.sh" "$@" | tail -n 1)" || { echo "group selftest: setup-venv.sh failed" >&2; exit 1; }
peer="$here/group_peer.py"
topo="$repo/tests/netns/topology.sh"
prefix="gps$(($$ % 100000))"
port=$((20000 + $$ % 9000))
tmp="$(mktemp -d)"
srv_pid=""
cleanup() {
    if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; fi
    bash "$topo" down "$prefix" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

fail=0
pass=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then echo "ok   $1"; pass=$((pass + 1))
    else echo "FAIL $1: expected [$2], got [$3]"; fail=$((fail + 1)); fi
}

bash "$topo" up "$prefix" 2 >"$tmp/nodes" || { echo "group selftest: topology.sh up failed" >&2; exit 1; }

# Keys: light, switch, a forger (the switch's Sender ID, its own key), GM.
for k in light switch forger gm; do
    "$py" "$peer" keygen --out "$tmp/$k.key" >"$tmp/$k.ccs" || { echo "keygen failed" >&2; exit 1; }
done
check "key file mode 0600" 600 "$(stat -c %a "$tmp/switch.key")"
"$py" - "$tmp" <<'PY' || { echo "group selftest: writing materials failed" >&2; exit 1; }
import json, os, sys
tmp = sys.argv[1]
ccs = {k: json.load(open(f"{tmp}/{k}.ccs"))["ccs"] for k in ("light", "switch", "forger", "gm")}
common = {"group": "hall", "epoch": 1, "gid": "0007000001", "secret": os.urandom(32).hex(),
          "salt": None, "aeadalg": 10, "encalg": 10, "signalg": -8, "hkdf": "sha256",
          "gm_cred": ccs["gm"]}
sw = "02000000000a1c"
def write(name, role, sid, own, peers, **over):
    m = dict(common, member=name, role=role, sender_id=sid, own_ccs=ccs[own], peers=peers, **over)
    json.dump(m, open(f"{tmp}/{name}.json", "w"))
write("light", "light", "52", "light", {sw: ccs["switch"]})
write("switch", "switch", sw, "switch", {"52": ccs["light"]})
write("forger", "switch", sw, "forger", {})
write("other", "switch", sw, "switch", {}, gid="0007000002")
PY

: >"$tmp/srv.out"
# Started directly (no subshell), so $! is the server's own PID.
ip netns exec "$prefix-n0" "$py" "$peer" serve --material "$tmp/light.json" --key "$tmp/light.key" \
    --iface ssm0 --port "$port" >"$tmp/srv.out" 2>"$tmp/srv.err" &
srv_pid=$!
for _ in $(seq 100); do grep -q '"ready": true' "$tmp/srv.out" && break; sleep 0.1; done
check "serve ready" 1 "$(grep -c '"ready": true' "$tmp/srv.out")"

# send MATERIAL VALUE [KEY]: one send from namespace 1; prints its JSON line.
send() {
    timeout 30 ip netns exec "$prefix-n1" "$py" "$peer" send --material "$tmp/$1.json" \
        --key "$tmp/${3:-$1}.key" --iface ssm0 --port "$port" --value "$2" --wait 0.5 2>>"$tmp/send.err"
}
# wait_line PATTERN N: until the server printed N lines matching PATTERN (5 s).
wait_lines() {
    for _ in $(seq 50); do [ "$(grep -cF "$1" "$tmp/srv.out")" -ge "$2" ] && break; sleep 0.1; done
    grep -cF "$1" "$tmp/srv.out"
}

# What send puts on the wire, seen from namespace 0: the first IPv6 UDP
# datagram to ff02::158 port $port on ssm0, its hop limit.
timeout 15 ip netns exec "$prefix-n0" "$py" - "$port" >"$tmp/cap.out" <<'PY' &
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
s.bind(("ssm0", 0))
s.settimeout(10)
while True:
    f = s.recv(2048)
    ip = f[14:]
    if ip[6] == 17 and ip[24:40] == socket.inet_pton(socket.AF_INET6, "ff02::158") \
            and int.from_bytes(ip[42:44], "big") == port:
        print("hop limit %d" % ip[7], flush=True)
        break
PY
cap_pid=$!
sleep 0.5
check "send true" '{"sent": true, "piv": 0, "kid": "02000000000a1c", "response": "2.04 Changed"}' "$(send switch true)"
check "applied true" 1 "$(wait_lines '{"applied": true, "value": true, "kid": "02000000000a1c", "piv": 0}' 1)"
wait "$cap_pid"
check "multicast on ssm0 with hop limit 1" "hop limit 1" "$(cat "$tmp/cap.out")"
check "send false (next sequence number)" '"piv": 1,' "$(send switch false | grep -o '"piv": 1,')"
check "applied false" 1 "$(wait_lines '{"applied": true, "value": false, "kid": "02000000000a1c", "piv": 1}' 1)"
check "sequence number file" "2 600" "$(tr -d '\n' <"$tmp/switch.json.ssn") $(stat -c %a "$tmp/switch.json.ssn")"

# Knowingly reuse sequence number 1: the light's replay window refuses it.
echo 1 >"$tmp/switch.json.ssn"
send switch true >/dev/null
check "replay dropped" 1 "$(wait_lines 'ReplayError' 1)"
# The forger starts past the switch's numbers (else it is a replay, which
# is checked before the signature).
echo 10 >"$tmp/forger.json.ssn"
send forger true >/dev/null
check "forged signature dropped" 1 "$(wait_lines 'Signature mismatch' 1)"
send other true switch >/dev/null
check "other Group ID dropped" 1 "$(wait_lines '"dropped": "other Group ID"' 1)"
check "nothing else applied" 2 "$(grep -c '"applied"' "$tmp/srv.out")"
check "no Python traceback" "0 0" "$(grep -c Traceback "$tmp/srv.err") $(grep -c Traceback "$tmp/send.err")"

kill -TERM "$srv_pid"; wait "$srv_pid"; rc=$?; srv_pid=""
check "serve exits 0 on SIGTERM" 0 "$rc"
if [ "$fail" -ne 0 ]; then
    echo "--- serve stdout" >&2; cat "$tmp/srv.out" >&2
    echo "--- serve stderr" >&2; tail -n 30 "$tmp/srv.err" >&2
    echo "--- send stderr" >&2; tail -n 30 "$tmp/send.err" >&2
fi
echo "group selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
