#!/usr/bin/env bash
# Regenerates the scenario benchmark report of issue 8 from a clean clone:
#   bash scripts/bench-report.sh          # full run (~5-10 min on 2 cores), rewrites
#                                         # the generated section of BENCHMARKS.md and
#                                         # bench/fanout.svg
#   QUICK=1 bash scripts/bench-report.sh  # a tiny run into target/bench-report only
# Runs on lo only (224.0.1.187, TTL 1), no root needed. Steps: criterion benches
# (OSCORE per message, full SSM receive path, each vs the AES-CCM floor), the
# no_std OSCORE core size, onboarding (scripts/bench-onboard.sh), then
# `ssm-bench report` (fan-out vs unicast, the shared floor journal beside the
# product, throughput, footprint, the building of 50 zones x 20 lights in one
# process and over 10 processes, the plot).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/bench-report
mkdir -p "$out"
quick=${QUICK:-0}
runs=${RUNS:-3}
if [ "$quick" = 1 ]; then runs=1; fi

step() { printf '\n==> %s\n' "$*" >&2; }

step "release build of ssm and ssm-bench"
cargo build -q --release -p ssm-cli -p ssm-bench

# --- criterion: ratio lines, repeated ------------------------------------
step "criterion: OSCORE per message and the full SSM receive path ($runs runs each)"
crit_args=()
if [ "$quick" = 1 ]; then crit_args=(-- --warm-up-time 0.2 --measurement-time 0.3); else crit_args=(-- --warm-up-time 1 --measurement-time 3); fi
: > "$out/criterion.log"
for i in $(seq 1 "$runs"); do
    cargo bench -q -p ssm-oscore --bench oscore "${crit_args[@]}" 2>/dev/null | tee -a "$out/criterion.log" | grep -E "^SSM UPDATE" >&2 || true
    cargo bench -q -p ssm-ocf --bench receive "${crit_args[@]}" 2>/dev/null | tee -a "$out/criterion.log" | grep -E "^SSM receive path" >&2 || true
done
python3 - "$out/criterion.log" > "$out/criterion.md" <<'PY'
import re, sys, statistics
log = open(sys.argv[1]).read()
def mmm(v, f="{:.2f}"):
    v = sorted(v)
    return f"{f.format(statistics.median_low(v))} ({f.format(v[0])}–{f.format(v[-1])})" if v else "?"
pu = [(float(a), float(b), float(r)) for a, b, r in re.findall(r"^SSM UPDATE .*?floor (\d+) ns, protect\+unprotect (\d+) ns, ratio ([\d.]+)x", log, re.M)]
rx = [(float(a), float(o), float(b), float(r), float(r2)) for a, o, b, r, r2 in re.findall(r"^SSM receive path .*?floor (\d+) ns, open only (\d+) ns, full receive path (\d+) ns, ratio ([\d.]+)x seal\+open floor \(goal <= 4x\), ([\d.]+)x open-only", log, re.M)]
sizes = re.search(r"^SSM receive path \((.*?)\)", log, re.M)
print("### Per message (criterion), same run as the floor\n")
print("Commands: `cargo bench -p ssm-oscore --bench oscore` and `cargo bench -p ssm-ocf --bench receive` (each closes with the floor and the measured path interleaved, 7 rounds of 100 000, minimum per round); median (min–max) over %d runs.\n" % max(len(pu), len(rx)))
print("| figure | AES-CCM seal+open floor | measured | ratio | goal |")
print("| --- | --- | --- | --- | --- |")
if pu:
    print(f"| protect + unprotect (SSM UPDATE) | {mmm([p[0] for p in pu], '{:.0f}')} ns | {mmm([p[1] for p in pu], '{:.0f}')} ns | {mmm([p[2] for p in pu])}× | ≤ 2×: {'met' if statistics.median_low([p[2] for p in pu]) <= 2 else '**missed**'} |")
if rx:
    print(f"| full SSM receive path: parse, kid lookup, unprotect, replay window, floor record, inner decode, CBOR, ACL, apply ({sizes.group(1) if sizes else ''}) | {mmm([p[0] for p in rx], '{:.0f}')} ns | {mmm([p[2] for p in rx], '{:.0f}')} ns | {mmm([p[3] for p in rx])}× | ≤ 4×: {'met' if statistics.median_low([p[3] for p in rx]) <= 4 else '**missed**'} |")
    print(f"| … the same against the open-only floor (what a receiver's AEAD costs: {mmm([p[1] for p in rx], '{:.0f}')} ns) | | | {mmm([p[4] for p in rx])}× | |")
print("\nThe receive path excludes what the runtime adds around it: the `recv_from` syscall, the replay-floor write (see the fan-out), events and Observe notifications.")
PY

# --- no_std OSCORE core size -------------------------------------------
step "no_std OSCORE core size"
cargo build -q --release -p ssm-oscore --no-default-features --target-dir target/nostd-size
objsize() { # text+data+bss of the object files in an rlib
    local d; d=$(mktemp -d)
    (cd "$d" && ar x "$1" 2>/dev/null)
    local t; t=$(size -t "$d"/*.o 2>/dev/null | tail -1 | awk '{print $1, $2, $3}')
    rm -rf "$d"; echo "$t"
}
{
    echo "### no_std OSCORE core size"
    echo
    echo "Command: \`cargo build --release -p ssm-oscore --no-default-features\` (x86_64; no embedded target is installed here), then \`size\` over the object files in each rlib: code and data before linking, so generic code instantiated by a user crate is not counted and the linker's dead-code removal is not applied."
    echo
    echo "| crate (no_std, no alloc) | text (B) | data (B) | bss (B) |"
    echo "| --- | --- | --- | --- |"
    total=0
    # The crates linked into a user of the core (no proc-macros, no build
    # dependencies).
    crates=$(cargo tree -q -p ssm-oscore --no-default-features -e normal,no-proc-macro --prefix none | awk '{print $1}' | sort -u | tr '-' '_')
    for name in $crates; do
        lib=$(ls target/nostd-size/release/deps/lib"$name"-*.rlib | head -1)
        read -r t dd b < <(objsize "$root/$lib")
        total=$((total + t))
        case $name in ssm_oscore|ssm_coap) echo "| **$name** | $t | $dd | $b |";; *) echo "| $name | $t | $dd | $b |";; esac
    done
    echo "| all of the above (what a no_std user links at most) | $total | | |"
} > "$out/nostd.md"
cat "$out/nostd.md" >&2

# --- onboarding (issue 5), repeated ---------------------------------------
step "onboarding: scripts/bench-onboard.sh N JOBS ($runs runs)"
if [ "$quick" = 1 ]; then ons="2"; jobs_list="1"; else ons="10 50 100"; jobs_list="1 8"; fi
: > "$out/onboard.log"
for i in $(seq 1 "$runs"); do
    for n in $ons; do
        for j in $jobs_list; do
            bash scripts/bench-onboard.sh "$n" "$j" | tee -a "$out/onboard.log" >&2
        done
    done
done
python3 - "$out/onboard.log" > "$out/onboard.md" <<'PY'
import re, sys, statistics, collections
d = collections.defaultdict(list); bad = 0
for n, j, s, ok, failed in re.findall(r"onboard N=(\d+) jobs=(\d+): ([\d.]+) s \((\d+) ok, (\d+) failed\)", open(sys.argv[1]).read()):
    d[(int(n), int(j))].append(float(s)); bad += int(failed)
js = sorted({j for _, j in d})
print("### Onboarding (issue 5), repeated\n")
print("Command: `bash scripts/bench-onboard.sh N JOBS` (N unowned `ssm device` processes on `lo`; `ssm obt onboard --all` with a fixed 1.0 s discovery window, then owner transfer over DTLS per device). Seconds, median (min–max) over the runs; failed onboardings: %d.\n" % bad)
print("| N | " + " | ".join(f"jobs {j}" for j in js) + " |")
print("| --- |" + " --- |" * len(js))
for n in sorted({n for n, _ in d}):
    cells = []
    for j in js:
        v = sorted(d.get((n, j), []))
        cells.append(f"{statistics.median_low(v):.2f} ({v[0]:.2f}–{v[-1]:.2f})" if v else "")
    print(f"| {n} | " + " | ".join(cells) + " |")
PY

# --- scenarios and the plot ---------------------------------------------
step "ssm-bench report ($runs runs)"
if [ "$quick" = 1 ]; then
    target/release/ssm-bench report --out "$out" --runs 1 --rounds 3 --n 1,5 --procs-n 1,2 \
        --footprint-lights 10 --seconds 0.3 --command "QUICK=1 bash scripts/bench-report.sh" \
        --building-zones 3 --building-per-zone 4 --building-rounds 2 --building-procs 2 \
        --include "$out/criterion.md" --include "$out/nostd.md" --include "$out/onboard.md" > /dev/null
else
    target/release/ssm-bench report --out "$out" --runs "$runs" \
        --include "$out/criterion.md" --include "$out/nostd.md" --include "$out/onboard.md" > /dev/null
fi

if [ "$quick" = 1 ]; then
    step "QUICK=1: report in $out/report.md (BENCHMARKS.md untouched)"
    exit 0
fi
step "BENCHMARKS.md (generated section) and bench/fanout.svg"
mkdir -p bench
cp "$out/fanout.svg" bench/fanout.svg
python3 - BENCHMARKS.md "$out/report.md" <<'PY'
import sys
path, rep = sys.argv[1], open(sys.argv[2]).read().strip()
begin, end = "<!-- ssm-bench report: begin (generated by scripts/bench-report.sh) -->", "<!-- ssm-bench report: end -->"
text = open(path).read()
block = f"{begin}\n{rep}\n{end}"
if begin in text and end in text:
    a = text.index(begin); b = text.index(end) + len(end)
    text = text[:a] + block + text[b:]
else:
    text = text.rstrip() + "\n\n## Scenario benchmarks (issue 8)\n\n" + block + "\n"
open(path, "w").write(text)
PY
echo "updated BENCHMARKS.md and bench/fanout.svg" >&2
