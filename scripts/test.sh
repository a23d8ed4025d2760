#!/usr/bin/env bash
# The whole ocf-ssm test suite, as README.md and .ci/run call it.
# Installs what it needs (a Python venv with aiocoap for the interop peers),
# is idempotent, and exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    step "installing python3 and venv (Debian packages)"
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi

if [ "$(id -u)" = 0 ] && ! command -v ip >/dev/null 2>&1; then
    step "installing iproute2 (network namespaces for the multicast tests)"
    apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi

if [ "$(id -u)" = 0 ] && ! command -v smcrouted >/dev/null 2>&1; then
    step "installing smcroute (the multicast router of the routed three-subnet test)"
    apt-get update -qq && apt-get install -y -qq smcroute >/dev/null
    # The test runs smcrouted only inside its router namespace; the package's
    # own service (where systemd runs) would route on this host's interfaces.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now smcroute >/dev/null 2>&1 || true
    fi
fi

step "aiocoap 0.4.17 venv for the interop tests"
SSM_AIOCOAP_PYTHON="$(bash interop/aiocoap/setup-venv.sh | tail -n 1)"
export SSM_AIOCOAP_PYTHON

step "aiocoap peer self-test"
venv="$(dirname "$(dirname "$SSM_AIOCOAP_PYTHON")")"
bash interop/aiocoap/selftest.sh "$venv"
bash interop/aiocoap/ssm_selftest.sh "$venv"

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    step "network-namespace topology self-test (multicast across namespaces)"
    bash tests/netns/topology.sh selftest
    step "aiocoap group-mode peer self-test (group_peer.py send -> serve in two namespaces)"
    bash interop/aiocoap/group_selftest.sh "$venv"
fi

step "architecture size limits (files ~600 lines, functions ~120; scripts/code-size.py)"
python3 scripts/code-size.py

step "OSCORE core builds without std"
cargo build -q -p ssm-oscore --no-default-features

step "workspace tests (unit, property, vectors, loopback, namespaces, aiocoap and iotivity-lite interop, demo)"
cargo test --workspace

step "cargo install --path crates/ssm-cli --locked (into a temporary --root; --debug reuses this build)"
install_root="$(mktemp -d)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" \
    cargo install -q --path crates/ssm-cli --locked --debug --root "$install_root"
"$install_root/bin/ssm" --version
rm -rf "$install_root"

step "library docs build without warnings (rustdoc)"
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps

step "library example: your own SSM device type (crates/ssm-runtime/examples/dimmer.rs)"
cargo run -q -p ssm-runtime --example dimmer

step "fuzzing: every cargo-fuzz target for 15 s (long runs: see FUZZING.md)"
bash scripts/fuzz.sh 15

step "benchmarks compile (run them with: cargo bench -p ssm-oscore / -p ssm-ocf; report: bash scripts/bench-report.sh)"
cargo bench -q -p ssm-oscore -p ssm-ocf --no-run
