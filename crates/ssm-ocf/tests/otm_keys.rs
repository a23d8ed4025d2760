//! The Random PIN PSK and the owner PSK, checked against values computed
//! independently in this test by Python's hashlib/hmac (PBKDF2 and a TLS
//! 1.2 PRF written in the Python snippet below).
use ssm_ocf::security::otm::{owner_psk, pin_psk, RDP_LABEL};
use ssm_ocf::Uuid;
use std::process::Command;

const PY: &str = r#"
import hashlib, hmac, sys
pin, dev, owner, master, crand, srand, kbl = sys.argv[1:8]
dev, owner = bytes.fromhex(dev), bytes.fromhex(owner)
master, crand, srand = bytes.fromhex(master), bytes.fromhex(crand), bytes.fromhex(srand)
def prf(secret, label, seed, n):
    out, a = b"", hmac.new(secret, label + seed, hashlib.sha256).digest()
    while len(out) < n:
        out += hmac.new(secret, a + label + seed, hashlib.sha256).digest()
        a = hmac.new(secret, a, hashlib.sha256).digest()
    return out[:n]
print(hashlib.pbkdf2_hmac("sha256", pin.encode(), dev, 1000, 16).hex())
kb = prf(master, b"key expansion", srand + crand, int(kbl))
print(prf(kb, b"oic.sec.doxm.rdp", owner + dev, 16).hex())
"#;

#[test]
fn pin_and_owner_psk_match_an_independent_computation() {
    let dev = Uuid::parse_str("6390a324-f087-45f7-4e4a-2c4e4586542d").unwrap();
    let owner = Uuid::parse_str("04b2746a-f7ed-4124-5c89-ecf55444b1cd").unwrap();
    let master: Vec<u8> = (0..48u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let crand: [u8; 32] = core::array::from_fn(|i| i as u8 ^ 0x5a);
    let srand: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(3));
    for (pin, cipher, kbl) in [
        ("12345678", "ECDHE-PSK-AES128-CBC-SHA256", 96),
        ("00000000", "PSK-AES128-CCM8", 40),
    ] {
        let out = Command::new("python3")
            .args([
                "-c",
                PY,
                pin,
                &hex::encode(dev.as_bytes()),
                &hex::encode(owner.as_bytes()),
            ])
            .args([
                hex::encode(&master),
                hex::encode(crand),
                hex::encode(srand),
                kbl.to_string(),
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            hex::encode(&pin_psk(pin, &dev)[..]),
            lines.next().unwrap(),
            "PIN PSK for {pin}"
        );
        assert_eq!(
            hex::encode(
                &owner_psk(
                    &master,
                    &crand,
                    &srand,
                    ssm_ocf::security::otm::key_block_len(cipher),
                    RDP_LABEL,
                    &owner,
                    &dev
                )[..]
            ),
            lines.next().unwrap(),
            "owner PSK for {cipher}"
        );
    }
}
