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
