//! Keys of the countersignature encryption (RFC 10021 §2.1.9, §4.2).
use super::cose::bstr;
use super::SIGNATURE_LEN;
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};
use crate::kdf::Prk;
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The Signature Encryption Key (RFC 10021 §2.1.9): derived like a
/// Sender Key (RFC 8613 §3.2.1) with `id` = h'', `alg_aead` = the Group
/// Encryption Algorithm, `type` = "SEKey" and L = its key length.
pub fn signature_encryption_key(
    master_secret: &[u8],
    master_salt: Option<&[u8]>,
    group_id: &IdContext,
) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let prk = Prk::extract(master_secret, master_salt)?;
    let mut info = [0u8; 1 + 1 + 2 + crate::MAX_ID_CONTEXT_LEN + 1 + 6 + 1];
    let mut p = 0;
    info[p] = 0x85;
    info[p + 1] = 0x40; // id: the empty byte string
    p += 2;
    p += bstr(&mut info[p..], group_id.as_bytes());
    info[p] = ALG_AES_CCM_16_64_128;
    info[p + 1] = 0x65;
    info[p + 2..p + 7].copy_from_slice(b"SEKey");
    info[p + 7] = KEY_LEN as u8;
    p += 8;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&info[..p], &mut out[..]);
    Ok(out)
}

/// The keystream of §4.2 that encrypts a countersignature:
/// `HKDF(salt = PIV, IKM = Signature Encryption Key, info = [id, Gid,
/// is_request, 64], L = 64)`, `id` the Sender ID of whoever generated the
/// Partial IV.
pub fn keystream(
    sekey: &[u8; KEY_LEN],
    piv: &PartialIv,
    piv_generator: &Id,
    group_id: &IdContext,
    is_request: bool,
) -> Zeroizing<[u8; SIGNATURE_LEN]> {
    let mut info = [0u8; 1 + 1 + crate::MAX_ID_LEN + 2 + crate::MAX_ID_CONTEXT_LEN + 1 + 2];
    info[0] = 0x84;
    let mut p = 1;
    p += bstr(&mut info[p..], piv_generator.as_bytes());
    p += bstr(&mut info[p..], group_id.as_bytes());
    info[p] = if is_request { 0xf5 } else { 0xf4 };
    info[p + 1] = 0x18;
    info[p + 2] = SIGNATURE_LEN as u8;
    p += 3;
    let mut out = Zeroizing::new([0u8; SIGNATURE_LEN]);
    // 64 bytes is far below HKDF's 255 * 32 limit.
    let _ = Hkdf::<Sha256>::new(Some(piv.as_bytes()), &sekey[..]).expand(&info[..p], &mut out[..]);
    out
}
