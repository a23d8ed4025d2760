#!/usr/bin/env bash
# Self-test: aiocoap-client <-> oscore_server.py over OSCORE on 127.0.0.1 with
# a freshly generated context pair. Exits 0 only if every check passes.
# Usage: selftest.sh [VENV_DIR]   (VENV_DIR is passed on to setup-venv.sh)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$("$here/setup-venv.sh" "$@" | tail -n 1)" || { echo "selftest: setup-venv.sh failed" >&2; exit 1; }
bin="$(dirname "$py")"

tmp="$(mktemp -d)"
srv_pid=""
cleanup() {
    if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail=0
pass=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then echo "ok   $1"; pass=$((pass + 1))
    else echo "FAIL $1: expected [$2], got [$3]"; fail=$((fail + 1)); fi
}

secret="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
mkdir -p "$tmp/server" "$tmp/client"
# server: sender 02 / recipient 01; client: sender 01 / recipient 02
cat > "$tmp/server/settings.json" <<EOF
{"sender-id_hex": "02", "recipient-id_hex": "01", "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256"}
EOF
cat > "$tmp/client/settings.json" <<EOF
{"sender-id_hex": "01", "recipient-id_hex": "02", "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256"}
EOF
for d in server client; do echo "{\"secret_hex\": \"$secret\"}" > "$tmp/$d/secret.json"; done
echo "{\"coap://127.0.0.1*\": {\"oscore\": {\"basedir\": \"$tmp/client/\"}}}" > "$tmp/creds.json"

start_server() {
    : > "$tmp/srv.out"
    "$py" "$here/oscore_server.py" --bind 127.0.0.1 --port 0 --context "$tmp/server" \
        > "$tmp/srv.out" 2>> "$tmp/srv.err" &
    srv_pid=$!
    port=""
    for _ in $(seq 100); do  # 10 s
        port="$(sed -n 's/^READY \([0-9]\+\)$/\1/p' "$tmp/srv.out")"
        [ -n "$port" ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "selftest: server did not become READY; stderr:" >&2; cat "$tmp/srv.err" >&2
    exit 1
}

client() { timeout 30 "$bin/aiocoap-client" --credentials "$tmp/creds.json" "$@"; }

start_server
url="coap://127.0.0.1:$port"

out="$(client "$url/hello" 2>"$tmp/c.err")"; rc=$?
check "GET /hello (OSCORE)" "0 hello from aiocoap" "$rc $out"

out="$(client -m POST --payload "ping 123" "$url/echo" 2>"$tmp/c.err")"; rc=$?
check "POST /echo (OSCORE)" "0 ping 123" "$rc $out"

out="$(client -m POST --content-format application/cbor --payload '{"value": true}' \
    "$url/BinarySwitchResURI" 2>"$tmp/c.err")"; rc=$?
check "POST /BinarySwitchResURI" "0" "$rc$out"
out="$(client "$url/BinarySwitchResURI" 2>"$tmp/c.err" | od -An -tx1 | tr -d ' \n')"
check "GET /BinarySwitchResURI" "a16576616c7565f5" "$out"

# Unprotected request (no --credentials) must be refused with 4.01.
timeout 30 "$bin/aiocoap-client" "$url/hello" >/dev/null 2>"$tmp/c.err"; rc=$?
check "unprotected GET refused" "1 4.01 Unauthorized" "$rc $(head -n 1 "$tmp/c.err")"

# Crash (SIGKILL) + restart: server must recover via 4.01+Echo (RFC 8613 B.1.2),
# which aiocoap-client answers transparently.
kill -KILL "$srv_pid"; wait "$srv_pid" 2>/dev/null; srv_pid=""
check "sequence.json after SIGKILL" '"unknown"' "$(sed -n 's/.*"received": \("unknown"\).*/\1/p' "$tmp/server/sequence.json")"
start_server
url="coap://127.0.0.1:$port"
out="$(client -vv "$url/hello" 2>"$tmp/c.err")"; rc=$?
check "GET /hello after SIGKILL restart" "0 hello from aiocoap" "$rc $out"
check "client answered 4.01/Echo" "1" "$(grep -c "Answering the server's 4.01 Unauthorized / Echo" "$tmp/c.err")"

kill -TERM "$srv_pid"; wait "$srv_pid"; rc=$?; srv_pid=""
check "server exit on SIGTERM" "0" "$rc"

echo "selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
