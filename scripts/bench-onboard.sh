#!/usr/bin/env bash
# Time commissioning on one host: N unowned lights + 1 switch (separate
# processes on lo), `ssm obt onboard --all` with J parallel jobs, then
# `ssm obt ssm grant switch --all` (SSM group, a credtype-256 + pair-wise
# credential + ACE on every light, the switch's credentials) with J jobs.
# Usage: scripts/bench-onboard.sh N J [PORT]
# Prints one line: "onboard N=<n> jobs=<j>: <s> s (<ok> ok, <failed> failed); provision: <s> s (<stale> stale); total <s> s".
set -euo pipefail
n=${1:?N}; jobs=${2:?JOBS}; port=${3:-$((23000 + RANDOM % 5000))}
cd "$(dirname "$0")/.."
cargo build -q --release --bin ssm
bin=target/release/ssm
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for i in $(seq 0 "$n"); do
    role=light; [ "$i" = 0 ] && role=switch
    "$bin" device --json --role "$role" --port "$port" --state-dir "$dir/l$i" > "$dir/l$i.log" 2>/dev/null &
    pids+=($!)
done
for i in $(seq 0 "$n"); do
    for _ in $(seq 1 100); do [ -s "$dir/l$i/pin" ] && break; sleep 0.05; done
    di=$(head -1 "$dir/l$i.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["di"])')
    if [ "$i" = 0 ]; then echo "$di $(cat "$dir/l$i/pin") switch switch" >> "$dir/pins"
    else echo "$di $(cat "$dir/l$i/pin") light-$i light" >> "$dir/pins"; fi
done
"$bin" obt --domain "$dir/d.sqlite" init > /dev/null
start=$(date +%s.%N)
out=$("$bin" obt --domain "$dir/d.sqlite" onboard --all --pins "$dir/pins" --port "$port" --jobs "$jobs" --json)
end=$(date +%s.%N)
grant=$("$bin" obt --domain "$dir/d.sqlite" ssm grant switch --all --port "$port" --jobs "$jobs" --json || true)
end2=$(date +%s.%N)
python3 - "$n" "$jobs" "$start" "$end" "$end2" "$out" "$grant" <<'PY'
import json, sys
n, j, s, e, e2, out, grant = sys.argv[1:8]
d = json.loads(out)
g = json.loads(grant)
print(f"onboard N={n} jobs={j}: {float(e)-float(s):.2f} s ({d['onboarded']} ok, {d['failed']} failed); "
      f"provision: {float(e2)-float(e):.2f} s ({g.get('stale', '?')} stale); total {float(e2)-float(s):.2f} s")
PY
