//! Owner transfer key material (DIGEST §6), computed without I/O:
//!
//! * Random PIN: the device shows an 8-digit PIN; both sides derive the DTLS
//!   PSK as PBKDF2-HMAC-SHA256(PIN digits, salt = the 16 bytes of
//!   `doxm.deviceuuid`, 1000 iterations, 16 bytes).
//! * Owner PSK: from the owner-transfer session's master secret and
//!   randoms, `key_block = PRF(master, "key expansion", server_random ‖
//!   client_random)` (TLS 1.2, SHA-256), then `PRF(key_block, label, owner
//!   UUID ‖ device UUID)`, first 16 bytes. It never crosses the wire.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// PSK identity the onboarding tool uses for Random PIN.
pub const RDP_IDENTITY: &[u8] = b"oic.sec.doxm.rdp";
/// Label of the Random PIN method in the owner-PSK derivation.
pub const RDP_LABEL: &[u8] = b"oic.sec.doxm.rdp";
/// PBKDF2 iterations for the PIN PSK.
pub const PIN_ITERATIONS: u32 = 1000;

/// An 8-digit PIN from caller randomness (uniform: rejection sampling).
pub fn random_pin(random: &mut dyn FnMut(&mut [u8])) -> String {
    loop {
        let mut b = [0u8; 4];
        random(&mut b);
        let v = u32::from_be_bytes(b);
        // 4_200_000_000 is the largest multiple of 10^8 below 2^32.
        if v < 4_200_000_000 {
            return format!("{:08}", v % 100_000_000);
        }
    }
}

/// The Random PIN PSK.
pub fn pin_psk(pin: &str, device: &Uuid) -> Zeroizing<[u8; 16]> {
    let mut out = Zeroizing::new([0u8; 16]);
    pbkdf2::pbkdf2_hmac::<Sha256>(
        pin.as_bytes(),
        device.as_bytes(),
        PIN_ITERATIONS,
        &mut out[..],
    );
    out
}

/// TLS 1.2 PRF with SHA-256 (RFC 5246 §5).
pub fn prf_sha256(secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mac = |data: &[&[u8]]| {
        // HMAC takes keys of any length.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
        for d in data {
            m.update(d);
        }
        m.finalize().into_bytes()
    };
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut a = mac(&[label, seed]); // A(1)
    while out.len() < len {
        out.extend_from_slice(&mac(&[&a, label, seed]));
        a = mac(&[&a]);
    }
    out.truncate(len);
    out
}

/// The key-block length of a DTLS 1.2 cipher suite: 2 × (MAC key + key +
/// fixed IV): 96 for AES-128-CBC-SHA256 (32 + 16 + 0: CBC records carry
/// their IV), 40 for AES-128-CCM(_8) (0 + 16 + 4).
pub fn key_block_len(openssl_cipher_name: &str) -> usize {
    if openssl_cipher_name.contains("CCM") {
        2 * (16 + 4)
    } else {
        2 * (32 + 16)
    }
}

/// What an owner-transfer DTLS session exported, to derive the owner PSK
/// once the owner and device UUIDs are known (steps 4, 5 and 9).
///
/// Not `Copy`, and wiped on drop: the runtime derives it once per session
/// and shares it (`Arc`) with the requests of that session instead of
/// copying the master secret into each of them.
#[derive(Clone, PartialEq, Eq)]
pub struct OtmKeys {
    /// The session's master secret.
    pub master_secret: [u8; 48],
    /// ClientHello.random.
    pub client_random: [u8; 32],
    /// ServerHello.random.
    pub server_random: [u8; 32],
    /// [`key_block_len`] of the negotiated suite.
    pub key_block_len: usize,
}

impl core::fmt::Debug for OtmKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("OtmKeys(<secret>)")
    }
}

impl Drop for OtmKeys {
    fn drop(&mut self) {
        self.master_secret.zeroize();
        self.client_random.zeroize();
        self.server_random.zeroize();
    }
}

impl OtmKeys {
    /// The Random PIN owner PSK for `owner` and `device`.
    pub fn owner_psk(&self, owner: &Uuid, device: &Uuid) -> Zeroizing<[u8; 16]> {
        owner_psk(
            &self.master_secret,
            &self.client_random,
            &self.server_random,
            self.key_block_len,
            RDP_LABEL,
            owner,
            device,
        )
    }
}

/// The owner PSK both sides derive from an owner-transfer session.
pub fn owner_psk(
    master_secret: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    key_block_len: usize,
    label: &[u8],
    owner: &Uuid,
    device: &Uuid,
) -> Zeroizing<[u8; 16]> {
    let mut seed = Vec::with_capacity(64);
    seed.extend_from_slice(server_random);
    seed.extend_from_slice(client_random);
    let key_block = prf_sha256(master_secret, b"key expansion", &seed, key_block_len);
    let mut ids = Vec::with_capacity(32);
    ids.extend_from_slice(owner.as_bytes());
    ids.extend_from_slice(device.as_bytes());
    let psk = prf_sha256(&key_block, label, &ids, 16);
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&psk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_eight_digits() {
        let mut n = 0u32;
        let mut rng = |b: &mut [u8]| {
            n = n.wrapping_mul(2_654_435_761).wrapping_add(12345);
            b.copy_from_slice(&n.to_be_bytes());
        };
        for _ in 0..100 {
            let p = random_pin(&mut rng);
            assert_eq!(p.len(), 8);
            assert!(p.bytes().all(|c| c.is_ascii_digit()));
        }
        assert_eq!(key_block_len("ECDHE-PSK-AES128-CBC-SHA256"), 96);
        assert_eq!(key_block_len("PSK-AES128-CCM8"), 40);
    }
}
