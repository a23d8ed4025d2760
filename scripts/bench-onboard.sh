#!/usr/bin/env bash
# Time `ssm obt onboard --all` for N unowned lights (separate processes on
# lo) with J parallel jobs. Usage: scripts/bench-onboard.sh N J [PORT]
# Prints one line: "onboard N=<n> jobs=<j>: <seconds> s (<ok> ok, <failed> failed)".
set -euo pipefail
n=${1:?N}; jobs=${2:?JOBS}; port=${3:-$((23000 + RANDOM % 5000))}
cd "$(dirname "$0")/.."
cargo build -q --release --bin ssm
bin=target/release/ssm
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for i in $(seq 1 "$n"); do
    "$bin" device --json --port "$port" --state-dir "$dir/l$i" > "$dir/l$i.log" 2>/dev/null &
    pids+=($!)
done
for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do [ -s "$dir/l$i/pin" ] && break; sleep 0.05; done
    di=$(head -1 "$dir/l$i.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["di"])')
    echo "$di $(cat "$dir/l$i/pin")" >> "$dir/pins"
done
"$bin" obt --domain "$dir/d.sqlite" init > /dev/null
start=$(date +%s.%N)
out=$("$bin" obt --domain "$dir/d.sqlite" onboard --all --pins "$dir/pins" --port "$port" --jobs "$jobs" --json)
end=$(date +%s.%N)
python3 - "$n" "$jobs" "$start" "$end" "$out" <<'PY'
import json, sys
n, j, s, e, out = sys.argv[1:6]
d = json.loads(out)
print(f"onboard N={n} jobs={j}: {float(e)-float(s):.2f} s ({d['onboarded']} ok, {d['failed']} failed)")
PY
