#!/usr/bin/env bash
# Self-test for ssm_protect.py / ssm_unprotect.py (offline, no network):
# fresh protect/unprotect context pair with a random 32-byte secret, round
# trip, wire layout, an independent (non-aiocoap) decryption, sequence number
# persistence, replay / tamper / wrong-kid / unknown-window rejection, and the
# iotivity-lite SSM reference datagrams from /work/shared/vectors.
# Last line: "ssm selftest: N passed, M failed"; exit 0 only if all pass.
# Usage: ssm_selftest.sh [VENV_DIR]   (VENV_DIR is passed on to setup-venv.sh)
# Env:   SSM_VECTORS (default /work/shared/vectors/iotivity-lite-ssm.json)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$("$here/setup-venv.sh" "$@" | tail -n 1)" || { echo "ssm selftest: setup-venv.sh failed" >&2; exit 1; }
vectors="${SSM_VECTORS:-/work/shared/vectors/iotivity-lite-ssm.json}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fail=0
pass=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then echo "ok   $1"; pass=$((pass + 1))
    else echo "FAIL $1: expected [$2], got [$3]"; fail=$((fail + 1)); fi
}
protect() { "$py" "$here/ssm_protect.py" "$@" 2>>"$tmp/err"; }
unprotect() { "$py" "$here/ssm_unprotect.py" "$@" 2>>"$tmp/err"; }
# jget JSON PYEXPR: evaluate PYEXPR with j = parsed JSON, print result as JSON
jget() { "$py" -c 'import json,sys; j=json.loads(sys.argv[1]); print(json.dumps(eval(sys.argv[2])))' "$1" "$2" 2>/dev/null; }
mkctx() { # mkctx DIR SENDER RECIPIENT SECRET
    mkdir -p "$1"
    printf '{"sender-id_hex": "%s", "recipient-id_hex": "%s", "secret_hex": "%s", "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256"}\n' \
        "$2" "$3" "$4" > "$1/settings.json"
}

# Independent RFC 8613 decryptor (cryptography HKDF + AES-CCM, hand-written
# CoAP parser; no aiocoap). Args: SECRET_HEX DATAGRAM_HEX. Prints JSON with
# the outer header/options, the derived key and the plaintext.
cat > "$tmp/indep.py" <<'PY'
import json, sys, cbor2
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

def hkdf(secret, ident, typ, n):
    info = cbor2.dumps([ident, None, 10, typ, n])
    return HKDF(SHA256(), n, b"", info).derive(secret)  # no salt = 32 zero bytes

def ext(v, d, i):
    if v == 13: return d[i] + 13, i + 1
    if v == 14: return int.from_bytes(d[i:i+2], "big") + 269, i + 2
    assert v != 15
    return v, i

secret, d = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
ver, typ, tkl = d[0] >> 6, (d[0] >> 4) & 3, d[0] & 15
code, mid, token = d[1], int.from_bytes(d[2:4], "big"), d[4:4+tkl]
i, num, opts, payload = 4 + tkl, 0, [], b""
while i < len(d):
    if d[i] == 0xFF: payload = d[i+1:]; break
    dl, ln = d[i] >> 4, d[i] & 15
    dl, i = ext(dl, d, i + 1); ln, i = ext(ln, d, i)
    num += dl; opts.append([num, d[i:i+ln].hex()]); i += ln
osc = bytes.fromhex(dict(opts)[9])
n = osc[0] & 7
assert osc[0] & 0xF0 == 0 and osc[0] & 0x08  # kid flag, no kid context / group bit
piv, kid = osc[1:1+n], osc[1+n:]
key, civ = hkdf(secret, kid, "Key", 16), hkdf(secret, b"", "IV", 13)
comp = bytes([len(kid)]) + bytes(13 - 6 - len(kid)) + kid + bytes(5 - len(piv)) + piv
nonce = bytes(a ^ b for a, b in zip(civ, comp))
aad = cbor2.dumps(["Encrypt0", b"", cbor2.dumps([1, [10], kid, piv, b""])])
pt = AESCCM(key, 8).decrypt(nonce, payload, aad)
print(json.dumps({"ver": ver, "type": typ, "code": code, "mid": mid, "token": token.hex(),
                  "outer_options": opts, "kid": kid.hex(), "piv": piv.hex(),
                  "key": key.hex(), "common_iv": civ.hex(), "plaintext": pt.hex()}))
PY
indep() { "$py" "$tmp/indep.py" "$@" 2>>"$tmp/err"; }

A=02aabbccddeeff   # protecting side (SSM client / group sender ID)
B=01aabbccddeeff
secret="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
mkctx "$tmp/p" "$A" "$B" "$secret"   # protect side
mkctx "$tmp/u" "$B" "$A" "$secret"   # unprotect side (mirror)

# --- 1. protect, wire layout ---------------------------------------------------
o1="$(protect --context "$tmp/p" --path /BinarySwitchResURI --value true --mid 4660 --token 0102030405060708)"; rc=$?
check "protect #1 exit code" "0" "$rc"
check "protect #1 piv/kid" '[0, "02aabbccddeeff"]' "$(jget "$o1" '[j["piv"], j["kid"]]')"
h1="$(jget "$o1" 'j["hex"]' | tr -d '"')"
check "protect #1 header+token+OSCORE option (NON POST, MID 0x1234, 9=09 00 kid)" \
    "58021234010203040506070899090002aabbccddeeffff" "${h1:0:46}"
i1="$(indep "$secret" "$h1")"
check "independent decoder: outer NON, POST, MID, token, only option 9" \
    '[1, 1, 2, 4660, "0102030405060708", [9]]' \
    "$(jget "$i1" '[j["ver"], j["type"], j["code"], j["mid"], j["token"], [o[0] for o in j["outer_options"]]]')"
# inner: POST, Uri-Path "BinarySwitchResURI", Content-Format 10000, 2053 = 2048, payload a1 65 "value" f5
check "independent decryption: inner plaintext" \
    '"02bd0542696e617279537769746368526573555249122710e206ec0800ffa16576616c7565f5"' \
    "$(jget "$i1" 'j["plaintext"]')"

# --- 2. round trip, sequence number persistence ----------------------------------
u1="$(unprotect --context "$tmp/u" --hex "$h1")"; rc=$?
check "unprotect #1" '0 {"ok": true, "code": "POST", "uri_path": "/BinarySwitchResURI", "content_format": 10000, "payload_hex": "a16576616c7565f5", "value": true, "options": [[11, "42696e617279537769746368526573555249"], [12, "2710"], [2053, "0800"]], "piv": 0}' "$rc $u1"

o2="$(protect --context "$tmp/p" --path /BinarySwitchResURI --value false --mid 4661 --token 0a0b)"; rc=$?
check "protect #2 (second run) piv 1" "0 1" "$rc $(jget "$o2" 'j["piv"]')"
check "protect side sequence.json after 2 runs" '{"next-to-send": 2, "received": {"index": 0, "bitfield": 0}}' "$(cat "$tmp/p/sequence.json")"
h2="$(jget "$o2" 'j["hex"]' | tr -d '"')"
check "protect #2 header (TKL 2, MID 0x1235)" "520212350a0b99090102aabbccddeeff" "${h2:0:32}"
u2="$(unprotect --context "$tmp/u" --hex "$h2")"; rc=$?
check "unprotect #2 value false, piv 1" '0 [true, "/BinarySwitchResURI", false, 1]' \
    "$rc $(jget "$u2" '[j["ok"], j["uri_path"], j["value"], j["piv"]]')"
check "unprotect side sequence.json (replay window persisted)" \
    '{"next-to-send": 0, "received": {"index": 0, "bitfield": 3}}' "$(cat "$tmp/u/sequence.json")"

# --- 3. rejections -----------------------------------------------------------
r="$(unprotect --context "$tmp/u" --hex "$h1")"; rc=$?
check "replay of #1 in a later run rejected" '1 [false, "ReplayError: Sequence number was reused"]' "$rc $(jget "$r" '[j["ok"], j["error"]]')"
r="$(unprotect --context "$tmp/u" --hex "$h2")"; rc=$?
check "replay of #2 rejected" '1 false' "$rc $(jget "$r" 'j["ok"]')"

o3="$(protect --context "$tmp/p" --path /BinarySwitchResURI --value true)"
h3="$(jget "$o3" 'j["hex"]' | tr -d '"')"
last=$(( 0x${h3: -2} ^ 0x01 ))
h3bad="${h3:0:${#h3}-2}$(printf '%02x' "$last")"
r="$(unprotect --context "$tmp/u" --hex "$h3bad")"; rc=$?
check "tampered ciphertext (last byte ^ 1) rejected" '1 [false, "ProtectionInvalid: Tag invalid"]' "$rc $(jget "$r" '[j["ok"], j["error"]]')"
mid_flip=$(( ${#h3} - 20 ))   # a byte in the middle of ciphertext
b=$(( 0x${h3:$mid_flip:2} ^ 0x80 ))
h3bad2="${h3:0:$mid_flip}$(printf '%02x' "$b")${h3:$mid_flip+2}"
r="$(unprotect --context "$tmp/u" --hex "$h3bad2")"; rc=$?
check "tampered ciphertext (inner byte ^ 0x80) rejected" '1 false' "$rc $(jget "$r" 'j["ok"]')"
r="$(unprotect --context "$tmp/u" --hex "$h3")"; rc=$?
check "untampered #3 still accepted after the failures (piv 2)" '0 [true, 2]' "$rc $(jget "$r" '[j["ok"], j["piv"]]')"

mkctx "$tmp/w" "$B" 03aabbccddeeff "$secret"
o4="$(protect --context "$tmp/p" --path /x --value true)"
h4="$(jget "$o4" 'j["hex"]' | tr -d '"')"
r="$(unprotect --context "$tmp/w" --hex "$h4")"; rc=$?
check "kid != recipient-id rejected" '1 [false, "ProtectionInvalid: Sender ID does not match"]' "$rc $(jget "$r" '[j["ok"], j["error"]]')"

mkctx "$tmp/x" "$B" "$A" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
r="$(unprotect --context "$tmp/x" --hex "$h4")"; rc=$?
check "wrong secret rejected" '1 [false, "ProtectionInvalid: Tag invalid"]' "$rc $(jget "$r" '[j["ok"], j["error"]]')"

mkctx "$tmp/k" "$B" "$A" "$secret"
echo '{"next-to-send": 0, "received": "unknown"}' > "$tmp/k/sequence.json"
r="$(unprotect --context "$tmp/k" --hex "$h4")"; rc=$?
check "replay window \"unknown\" (after unclean close) rejects even a fresh datagram" '1 false' "$rc $(jget "$r" 'j["ok"]')"
check "  ... with ReplayErrorWithEcho" "ReplayErrorWithEcho" "$(jget "$r" 'j["error"].split(":")[0]' | tr -d '"')"

r="$(unprotect --context "$tmp/u" --hex "zz")"; rc=$?
check "non-hex input -> ok false" '1 false' "$rc $(jget "$r" 'j["ok"]')"

# --- 4. iotivity-lite reference datagrams ------------------------------------
if [ -f "$vectors" ] && [ -r "$vectors" ]; then
    gid="$(jget "$(cat "$vectors")" 'j["group_id"]' | tr -d '"')"
    gsec="$(jget "$(cat "$vectors")" 'j["group_secret"]' | tr -d '"')"
    n="$(jget "$(cat "$vectors")" 'len(j["datagrams"])')"
    mkctx "$tmp/v" 0bffffffffff0b "$gid" "$gsec"
    d0="$(jget "$(cat "$vectors")" 'j["datagrams"][0]["hex"]' | tr -d '"')"
    iv="$(indep "$gsec" "$d0")"
    check "independent decoder matches vector derived_context key/common_iv" \
        "$(jget "$(cat "$vectors")" '[j["derived_context"]["key"], j["derived_context"]["common_iv"]]')" \
        "$(jget "$iv" '[j["key"], j["common_iv"]]')"
    r="$(unprotect --context "$tmp/v" --hex "$d0")"; rc=$?
    check "iotivity datagram 0: /lights value true" '0 [true, "POST", "/lights", true, 10000, 0]' \
        "$rc $(jget "$r" '[j["ok"], j["code"], j["uri_path"], j["value"], j["content_format"], j["piv"]]')"
    check "iotivity datagram 0: inner options / payload" \
        '[[[11, "6c6967687473"], [12, "2710"], [17, "2710"], [2049, "0800"], [2053, "0800"]], "bf6576616c7565f5ff"]' \
        "$(jget "$r" '[j["options"], j["payload_hex"]]')"
    for k in $(seq 1 $((n - 1))); do
        dk="$(jget "$(cat "$vectors")" "j['datagrams'][$k]['hex']" | tr -d '"')"
        want="$(jget "$(cat "$vectors")" "[j['datagrams'][$k]['decrypted']['payload_json']['value'], j['datagrams'][$k]['oscore']['ssn']]")"
        r="$(unprotect --context "$tmp/v" --hex "$dk")"; rc=$?
        check "iotivity datagram $k: value/piv" "0 $want" "$rc $(jget "$r" '[j["value"], j["piv"]]')"
    done
    r="$(unprotect --context "$tmp/v" --hex "$d0")"; rc=$?
    check "iotivity datagram 0 replayed -> rejected" '1 false' "$rc $(jget "$r" 'j["ok"]')"
else
    check "vector file $vectors readable" "yes" "no"
fi

if [ "$fail" -ne 0 ] && [ -s "$tmp/err" ]; then echo "--- stderr of the tools:"; cat "$tmp/err"; fi
echo "ssm selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
