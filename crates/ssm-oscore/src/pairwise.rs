//! Group OSCORE **pairwise mode** (RFC 10021 §2.5, §8): a one-to-one
//! exchange between two members of a group, protected like RFC 8613 with
//! keys only the two of them can derive (a static-static ECDH shared secret
//! of their Ed25519 keys mapped to X25519, §2.5.2.1) and the group
//! `external_aad` (§3.4). No signature: the Pairwise Recipient Key itself
//! authenticates the peer. For a unicast confirmation from one light, say.
//!
//! The group's Common Context must set the AEAD Algorithm and the Pairwise
//! Key Agreement Algorithm ([`GroupParams::alg_aead`],
//! [`GroupParams::alg_pairwise_key_agreement`]); the messages carry no
//! Group Flag (§4.1), and the RFC 8613 functions of this crate do not take
//! them (they lack the group `external_aad`).
use crate::crypto::Aead;
use crate::error::Error;
use crate::group::{
    read_group_message, EncStructure, GroupCommon, GroupParams, GroupRecipientContext,
    GroupSenderContext, MAX_CRED_LEN,
};
use crate::id::Id;
use crate::kdf::{info, Label, Prk};
use crate::protect::{
    open, seal_with, Decrypted, Layout, OptionValue, Outgoing, RequestBinding, RequestOptions,
    ResponsePiv,
};
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The Pairwise Sender and Recipient Keys between this member and one
/// other (RFC 10021 §2.5.1), as expanded AEADs.
#[derive(Clone)]
pub struct PairwiseKeys {
    own: Id,
    peer: Id,
    sender: Aead,
    recipient: Aead,
}

impl core::fmt::Debug for PairwiseKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PairwiseKeys")
            .field("own", &self.own)
            .field("peer", &self.peer)
            .field("keys", &"<secret>")
            .finish()
    }
}

impl PairwiseKeys {
    /// Derives the keys of `own` with `peer` (§2.5.1):
    /// `Pairwise Sender Key = HKDF(Sender Key, own cred ‖ peer cred ‖ shared
    /// secret, info(Sender ID), 16)` and the Recipient Key likewise with the
    /// peer's Recipient Key and the credentials swapped. The shared secret is
    /// X25519 of this member's Ed25519 private scalar and the peer's public
    /// key mapped to Montgomery form (§2.5.2.1, RFC 7748 §4.1).
    pub fn derive(
        p: &GroupParams<'_>,
        own: &GroupSenderContext,
        peer: &GroupRecipientContext,
    ) -> Result<Self, Error> {
        let (sender, recipient) = pairwise_keys(p, own, peer)?;
        Ok(PairwiseKeys {
            own: *own.id(),
            peer: *peer.id(),
            sender: Aead::new(&sender),
            recipient: Aead::new(&recipient),
        })
    }
}

/// The Pairwise Sender Key and Pairwise Recipient Key of `own` with `peer`
/// as bytes (see [`PairwiseKeys::derive`]), e.g. to compare with test
/// vectors.
#[allow(clippy::type_complexity)]
pub fn pairwise_keys(
    p: &GroupParams<'_>,
    own: &GroupSenderContext,
    peer: &GroupRecipientContext,
) -> Result<(Zeroizing<[u8; KEY_LEN]>, Zeroizing<[u8; KEY_LEN]>), Error> {
    {
        if p.alg_aead != Some(ALG_AES_CCM_16_64_128 as i32)
            || p.alg_pairwise_key_agreement != Some(crate::group::ALG_ECDH_SS_HKDF_256)
        {
            return Err(Error::NotPairwiseMode);
        }
        // The peer's key is not of small order (checked when its context
        // was derived): u is neither 0 nor undefined.
        let shared = Zeroizing::new(
            peer.verifying_key
                .to_montgomery()
                .mul_clamped(own.signing_key.to_scalar_bytes())
                .to_bytes(),
        );
        let prk = Prk::extract(p.master_secret, p.master_salt)?;
        let gid = Some(&p.group_id);
        let (own_id, peer_id) = (*own.id(), *peer.id());
        let own_cred = own.cred.as_bytes();
        let peer_cred = peer.cred.as_bytes();
        let sender = pairwise_key(
            &prk.key(&own_id, gid),
            own_cred,
            peer_cred,
            &shared,
            own_id,
            p,
        );
        let recipient = pairwise_key(
            &prk.key(&peer_id, gid),
            peer_cred,
            own_cred,
            &shared,
            peer_id,
            p,
        );
        Ok((sender, recipient))
    }
}

fn pairwise_key(
    salt: &[u8; KEY_LEN],
    first: &[u8],
    second: &[u8],
    shared: &[u8; 32],
    id: Id,
    p: &GroupParams<'_>,
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut ikm = Zeroizing::new([0u8; 2 * MAX_CRED_LEN + 32]);
    let n = first.len() + second.len() + 32;
    ikm[..first.len()].copy_from_slice(first);
    ikm[first.len()..first.len() + second.len()].copy_from_slice(second);
    ikm[first.len() + second.len()..n].copy_from_slice(shared);
    // info as for a Sender Key (RFC 8613 §3.2.1): the AEAD Algorithm is
    // AES-CCM-16-64-128 like the Group Encryption Algorithm.
    let (info, len) = info(id.as_bytes(), Some(&p.group_id), Label::Key);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let _ = Hkdf::<Sha256>::new(Some(&salt[..]), &ikm[..n]).expand(&info[..len], &mut out[..]);
    out
}

impl GroupSenderContext {
    /// Protects a request in pairwise mode (RFC 10021 §8.3) to the member
    /// of `keys`: `kid`, `kid context` = Gid, no Group Flag, no signature.
    pub fn protect_request_pairwise(
        &mut self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        request: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, RequestBinding), Error> {
        if keys.own != *self.id() {
            return Err(Error::UnknownKid);
        }
        let (msg, binding) = self.start_request(common, request, RequestOptions::default())?;
        let n = self.seal_pairwise(common, keys, &msg, &binding, out)?;
        Ok((n, binding))
    }

    /// Protects a response in pairwise mode (RFC 10021 §8.5) to the request
    /// of `binding` from the member of `keys`. Carries `kid`, as aiocoap's
    /// do.
    pub fn protect_response_pairwise(
        &mut self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        binding: &RequestBinding,
        response: &[u8],
        piv: ResponsePiv,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        if keys.own != *self.id() || keys.peer != binding.kid {
            return Err(Error::UnknownKid);
        }
        let msg = self.start_response(common, binding, response, piv)?;
        self.seal_pairwise(common, keys, &msg, binding, out)
    }

    fn seal_pairwise(
        &self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        msg: &Outgoing<'_>,
        binding: &RequestBinding,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let opt = OptionValue::emit(&msg.option, 0)?;
        let enc = EncStructure::new(common, binding, &opt, self.cred.as_bytes())?;
        let (_, end) = seal_with(&keys.sender, msg, opt.as_bytes(), enc.aad(), out)?;
        Ok(end)
    }
}

impl GroupRecipientContext {
    /// Verifies and decrypts a pairwise-mode request (RFC 10021 §8.4) from
    /// this member, in place, with the Pairwise Recipient Key of `keys`.
    /// The replay state changes only after the tag verified.
    pub fn unprotect_request_pairwise<'a>(
        &mut self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        if keys.peer != self.inner.id {
            return Err(Error::UnknownKid);
        }
        let (layout, opt) = read_group_message(datagram, false)?;
        let binding = self.inner.check_request(&layout, true)?;
        let d = self.open_pairwise(common, keys, &layout, &opt, datagram, &binding)?;
        self.inner.accept_verified(d, binding)
    }

    /// Verifies and decrypts a pairwise-mode response (RFC 10021 §8.6) of
    /// this member to the request of `binding`, in place.
    pub fn unprotect_response_pairwise<'a>(
        &self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        binding: &RequestBinding,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        let (layout, opt) = read_group_message(datagram, false)?;
        if keys.peer != self.inner.id
            || layout.option.kid.is_some_and(|k| k != self.inner.id)
            || layout
                .option
                .kid_context
                .is_some_and(|c| c != common.group_id)
        {
            return Err(Error::UnknownKid);
        }
        self.open_pairwise(common, keys, &layout, &opt, datagram, binding)?
            .response_to(binding)
    }

    /// Decrypts with the Pairwise Recipient Key and the group
    /// `external_aad` (§8.4, §8.6).
    fn open_pairwise<'a>(
        &self,
        common: &GroupCommon,
        keys: &PairwiseKeys,
        layout: &Layout,
        opt: &OptionValue,
        datagram: &'a mut [u8],
        binding: &RequestBinding,
    ) -> Result<Decrypted<'a>, Error> {
        let enc = EncStructure::new(common, binding, opt, self.cred.as_bytes())?;
        let nonce = self.inner.message_nonce(layout, binding);
        open(&keys.recipient, layout, datagram, &nonce.bytes, enc.aad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Credential, ALG_ECDH_SS_HKDF_256};
    use crate::id::IdContext;
    use crate::replay::{ReplayState, ReplayWindow};
    use crate::sequence::SequenceNumber;
    use ed25519_dalek::SigningKey;
    use ssm_coap::{Code, MessageType, MessageWriter, OptionNumber};

    const SECRET: [u8; 16] = [7; 16];

    fn params() -> GroupParams<'static> {
        GroupParams {
            master_secret: &SECRET,
            master_salt: Some(b"salt"),
            group_id: IdContext::new(&[0xdd, 0x11]).unwrap(),
            gm_cred: b"gm",
            alg_aead: Some(ALG_AES_CCM_16_64_128 as i32),
            alg_pairwise_key_agreement: Some(ALG_ECDH_SS_HKDF_256),
        }
    }

    fn seed(id: u8) -> [u8; 32] {
        [id; 32]
    }

    fn cred(id: u8) -> [u8; 46] {
        let mut c = [0u8; 46];
        c[..14].copy_from_slice(&[
            0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
        ]);
        c[14..].copy_from_slice(&SigningKey::from_bytes(&seed(id)).verifying_key().to_bytes());
        c
    }

    fn sender(id: u8) -> GroupSenderContext {
        GroupSenderContext::derive(
            &params(),
            Id::new(&[id]).unwrap(),
            &seed(id),
            &cred(id),
            SequenceNumber::volatile(5),
        )
        .unwrap()
    }

    fn recipient(id: u8) -> GroupRecipientContext {
        GroupRecipientContext::derive(
            &params(),
            Id::new(&[id]).unwrap(),
            &cred(id),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }

    fn request(buf: &mut [u8; 64]) -> usize {
        let mut w =
            MessageWriter::new(buf, MessageType::Confirmable, Code::POST, 9, &[1, 2]).unwrap();
        w.option(OptionNumber::URI_PATH, b"confirm").unwrap();
        w.payload(b"on").unwrap()
    }

    const SWITCH: u8 = 1;
    const LIGHT: u8 = 2;
    const OTHER: u8 = 3;

    #[test]
    fn every_byte_flipped_is_rejected_and_a_third_member_cannot_forge() {
        let common = GroupCommon::derive(&params()).unwrap();
        let mut switch = sender(SWITCH);
        let keys = PairwiseKeys::derive(&params(), &switch, &recipient(LIGHT)).unwrap();
        let light = sender(LIGHT);
        let light_keys = PairwiseKeys::derive(&params(), &light, &recipient(SWITCH)).unwrap();
        let mut req = [0u8; 64];
        let n = request(&mut req);
        let mut out = [0u8; 128];
        let (len, _) = switch
            .protect_request_pairwise(&common, &keys, &req[..n], &mut out)
            .unwrap();
        let fresh = ReplayState::Window(ReplayWindow::new(32));
        for i in 0..len {
            let mut bad = out;
            bad[i] ^= 0x01;
            let mut r = recipient(SWITCH);
            match r.unprotect_request_pairwise(&common, &light_keys, &mut bad[..len]) {
                // Only the unprotected header (type, Message ID, token).
                Ok(d) => {
                    assert!(i < 4 + 2, "byte {i} accepted");
                    assert_eq!(d.payload, b"on");
                }
                Err(_) => assert_eq!(r.replay(), &fresh, "window moved at {i}"),
            }
        }
        let mut good = out;
        assert!(recipient(SWITCH)
            .unprotect_request_pairwise(&common, &light_keys, &mut good[..len])
            .is_ok());

        // A third member knows the group keys and both credentials, but not
        // the switch's private key: under the switch's Sender ID, with the
        // only private key it has, it derives other pairwise keys.
        let forger = GroupSenderContext {
            inner: crate::context::SenderContext::derive(
                &SECRET,
                Some(b"salt"),
                Some(params().group_id),
                Id::new(&[SWITCH]).unwrap(),
                SequenceNumber::volatile(6),
            )
            .unwrap(),
            signing_key: SigningKey::from_bytes(&seed(OTHER)),
            cred: Credential::new(&cred(SWITCH)).unwrap(),
        };
        let mut forger = forger;
        let forged_keys = PairwiseKeys::derive(&params(), &forger, &recipient(LIGHT)).unwrap();
        let (len, _) = forger
            .protect_request_pairwise(&common, &forged_keys, &req[..n], &mut out)
            .unwrap();
        let mut r = recipient(SWITCH);
        assert_eq!(
            r.unprotect_request_pairwise(&common, &light_keys, &mut out[..len])
                .err(),
            Some(Error::DecryptionFailed)
        );
        assert_eq!(r.replay(), &fresh);
    }

    #[test]
    fn needs_the_pairwise_algorithms() {
        let p = GroupParams {
            alg_pairwise_key_agreement: None,
            ..params()
        };
        let s = sender(SWITCH);
        assert_eq!(
            PairwiseKeys::derive(&p, &s, &recipient(LIGHT)).err(),
            Some(Error::NotPairwiseMode)
        );
    }
}
