//! Record-layer checks done before OpenSSL sees a datagram (RFC 6347
//! §4.1).

/// Smallest protected (epoch > 0) record body of the supported suites:
/// CCM_8 = 8-byte explicit nonce + 8-byte tag; CBC-SHA256 needs 16 + 48.
const MIN_PROTECTED_RECORD: usize = 16;

/// True if some record in `datagram` is protected (epoch != 0) but shorter
/// than any valid protected record.
///
/// RFC 6347 §4.1.2.7 says invalid records SHOULD be silently discarded, and
/// OpenSSL does so for almost everything, but a CCM_8 record of 1..=15 bytes
/// makes it fail the whole session with a fatal alert ("record layer
/// failure") — one spoofed datagram would kill the session. Such records are
/// never produced by a valid peer, so the datagram is dropped before OpenSSL
/// sees it. (The same class of OpenSSL behaviour for bad Encrypt-then-MAC
/// records is avoided by disabling EtM, see `base_context`.)
pub(super) fn has_short_protected_record(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= 13 {
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        if epoch != 0 && len > 0 && len < MIN_PROTECTED_RECORD {
            return true;
        }
        rest = rest.get(13 + len..).unwrap_or(&[]);
    }
    false
}

/// The PSK identity of an unfragmented ClientKeyExchange (RFC 5246 §7.4.7,
/// RFC 4279 §2 and RFC 5489 §2: `opaque psk_identity<0..2^16-1>` first) in
/// a plaintext (epoch 0) handshake record of `datagram`, as the client sent
/// it: with any `0x00` bytes. OpenSSL hands its PSK callback the identity
/// as a C string (cut at the first `0x00`), so the server recovers the whole
/// identity here; the record itself still goes to OpenSSL unchanged.
pub(super) fn client_key_exchange_identity(datagram: &[u8]) -> Option<Vec<u8>> {
    const HANDSHAKE: u8 = 22;
    const CLIENT_KEY_EXCHANGE: u8 = 16;
    let mut rest = datagram;
    while rest.len() >= 13 {
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let body = rest.get(13..13 + len)?;
        // Handshake header: type, length (3), message_seq (2),
        // fragment_offset (3), fragment_length (3).
        if rest[0] == HANDSHAKE && epoch == 0 && body.len() >= 14 && body[0] == CLIENT_KEY_EXCHANGE
        {
            let u24 =
                |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            let (msg_len, offset, frag_len) =
                (u24(&body[1..4]), u24(&body[6..9]), u24(&body[9..12]));
            if offset != 0 || frag_len != msg_len {
                return None;
            }
            let msg = body.get(12..12 + msg_len)?;
            let id_len = usize::from(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]));
            return msg.get(2..2 + id_len).map(<[u8]>::to_vec);
        }
        rest = rest.get(13 + len..).unwrap_or(&[]);
    }
    None
}

/// A server's view of the client's PSK identity, shared with OpenSSL's
/// PSK callback.
pub(super) type SharedIdentity = std::sync::Arc<std::sync::Mutex<PeerIdentity>>;

/// The client's PSK identity as sent and as given to the lookup.
#[derive(Default)]
pub(super) struct PeerIdentity {
    /// As read off the ClientKeyExchange record.
    pub(super) raw: Option<Vec<u8>>,
    /// As given to the lookup (and reported by `peer_identity`).
    pub(super) used: Option<Vec<u8>>,
}

impl PeerIdentity {
    /// The identity for the lookup, given OpenSSL's `cut` one (see
    /// [`whole_identity`]); remembered as the one used.
    pub(super) fn whole(&mut self, cut: &[u8]) -> Vec<u8> {
        let w = whole_identity(cut, self.raw.as_deref());
        self.used = Some(w.clone());
        w
    }
}

/// The identity the server's PSK lookup sees: `cut` (what OpenSSL passed,
/// up to the first `0x00`), or the whole identity `raw` seen on the wire
/// when `cut` is exactly its part before a `0x00` byte.
pub(super) fn whole_identity(cut: &[u8], raw: Option<&[u8]>) -> Vec<u8> {
    match raw {
        Some(r) if r.len() > cut.len() && r.starts_with(cut) && r[cut.len()] == 0 => r.to_vec(),
        _ => cut.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plaintext handshake record carrying one ClientKeyExchange whose
    /// PSK identity is `id`, followed by an ECDHE point.
    fn cke(id: &[u8]) -> Vec<u8> {
        let mut msg = (id.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(id);
        msg.extend_from_slice(&[65, 4, 1, 2, 3]);
        let l = msg.len();
        let mut hs = vec![
            16,
            0,
            (l >> 8) as u8,
            l as u8,
            0,
            2,
            0,
            0,
            0,
            0,
            (l >> 8) as u8,
            l as u8,
        ];
        hs.extend_from_slice(&msg);
        let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 4];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn identity_with_zero_bytes_is_recovered() {
        let id = [
            0x12, 0x34, 0x00, 0x56, 0, 0, 0x78, 9, 9, 9, 9, 9, 9, 9, 9, 0,
        ];
        // A ChangeCipherSpec record before it in the same datagram.
        let mut d = vec![20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 1];
        d.extend(cke(&id));
        let raw = client_key_exchange_identity(&d).unwrap();
        assert_eq!(raw, id);
        assert_eq!(whole_identity(&id[..2], Some(&raw)), id.to_vec());
        // Not a prefix cut at a zero byte: OpenSSL's identity stands.
        assert_eq!(whole_identity(&[0x12], Some(&raw)), vec![0x12]);
        assert_eq!(whole_identity(b"other", Some(&raw)), b"other".to_vec());
        assert_eq!(whole_identity(&id[..2], None), id[..2].to_vec());
    }

    #[test]
    fn other_records_yield_nothing() {
        let mut d = cke(b"abc");
        d[3] = 1; // epoch 1: encrypted, not a ClientKeyExchange to read
        assert_eq!(client_key_exchange_identity(&d), None);
        let mut frag = cke(b"abc");
        frag[13 + 11] = 2; // fragment_length != length
        assert_eq!(client_key_exchange_identity(&frag), None);
        assert_eq!(client_key_exchange_identity(&cke(b"abc")[..20]), None);
        assert_eq!(client_key_exchange_identity(&[]), None);
        assert_eq!(
            client_key_exchange_identity(&cke(b"abc")),
            Some(b"abc".to_vec())
        );
    }
}
