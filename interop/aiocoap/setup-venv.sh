#!/usr/bin/env bash
# Idempotently create a Python venv with aiocoap[oscore]==0.4.17.
# Usage: setup-venv.sh [VENV_DIR]   (default: <repo>/target/interop-venv)
# All diagnostics go to stderr; the LAST stdout line is the absolute path of
# the venv's python interpreter.
set -euo pipefail

AIOCOAP_VERSION=0.4.17
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/target/interop-venv}"

die() { echo "setup-venv.sh: ERROR: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 not found in PATH"

mkdir -p "$(dirname "$venv")" || die "cannot create parent of $venv"
venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
py="$venv/bin/python"

# Serialize concurrent invocations (e.g. parallel cargo tests) on one venv.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.setup-lock"
    timeout 900 flock 9 || die "timed out waiting for lock $venv.setup-lock"
fi

if [ ! -x "$py" ]; then
    echo "setup-venv.sh: creating venv in $venv" >&2
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >&2; then
        rm -rf "$venv"
        die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
fi
[ -x "$py" ] || die "venv python missing at $py"
"$py" -m pip --version >/dev/null 2>&1 \
    || die "venv $venv has no pip (remove it; on Debian: apt-get install python3-venv)"

check() {
    "$py" - "$AIOCOAP_VERSION" <<'PY' >/dev/null 2>&1
import sys
import importlib.metadata as md
assert md.version("aiocoap") == sys.argv[1]
import aiocoap.oscore, cbor2, cryptography, filelock  # oscore extra present
PY
}

if ! check; then
    echo "setup-venv.sh: installing aiocoap[oscore]==$AIOCOAP_VERSION" >&2
    timeout 600 "$py" -m pip install --disable-pip-version-check -q \
        "aiocoap[oscore]==$AIOCOAP_VERSION" >&2 \
        || die "pip install aiocoap[oscore]==$AIOCOAP_VERSION failed"
    check || die "aiocoap $AIOCOAP_VERSION with OSCORE support not importable after install"
fi
[ -x "$venv/bin/aiocoap-client" ] || die "aiocoap-client missing in $venv/bin"

echo "$py"
