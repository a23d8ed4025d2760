#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a while; exits
# non-zero on the first crash, panic, leak or timeout libFuzzer reports.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 15 (four targets: ~60 s of fuzzing, what
# scripts/test.sh runs). The committed seeds (fuzz/corpus/<target>/seed-*)
# are read, never written: what libFuzzer finds goes to a scratch corpus
# (FUZZ_WORK, default a temp dir; set it to keep a long run's corpus).
# Every file under fuzz/regressions/<target>/ is replayed first.
#
# Sanitizer: none by default (works on the stable toolchain). FUZZ_ASAN=1
# builds with AddressSanitizer via RUSTC_BOOTSTRAP=1 (nightly features on
# stable; our crates have no unsafe code, the C in libFuzzer has).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-15}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(coap_packet oscore_unprotect ocf_cbor device_request)
fi

if ! command -v c++ >/dev/null 2>&1; then
    # libfuzzer-sys builds libFuzzer (C++).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing g++ (libFuzzer is C++)"
        apt-get update -qq && apt-get install -y -qq g++ >/dev/null
    else
        echo "error: a C++ compiler (c++) is needed to build libFuzzer" >&2
        exit 1
    fi
fi

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION (one time)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

sanitizer=(-s none)
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    export RUSTC_BOOTSTRAP=1
    sanitizer=(-s address)
fi

echo "==> building fuzz targets (${sanitizer[*]})"
cargo fuzz build "${sanitizer[@]}" -O

work="${FUZZ_WORK:-}"
cleanup=""
if [ -z "$work" ]; then
    work="$(mktemp -d)"
    cleanup="$work"
fi
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT

for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    if compgen -G "regressions/$t/*" >/dev/null; then
        echo "==> $t: replaying regressions/$t"
        cargo fuzz run "${sanitizer[@]}" -O "$t" regressions/"$t"/* -- -runs=1 \
            >"$work/$t.regress.log" 2>&1 || { tail -n 40 "$work/$t.regress.log"; exit 1; }
    fi
    echo "==> $t: fuzzing for ${secs} s"
    if ! cargo fuzz run "${sanitizer[@]}" -O "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log"
        echo "FUZZ FAILURE in $t: the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$t.log" | grep -Eo '[0-9]+$' || echo '?')"
    cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/$t.log" | tail -n 1 || true)"
    echo "    $t: $runs executions in ${secs} s, no crash ($cov, corpus $(ls "$work/$t" | wc -l) new inputs)"
done
