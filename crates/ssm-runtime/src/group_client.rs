//! The switch side of Group OSCORE group mode (RFC 10021): an SSM UPDATE
//! signed with the switch's own Ed25519 key (from its state directory,
//! never sent) under a group-mode sender credential (credtype 65536).
//! Sequence numbers exactly as for SSM: reserved K ahead in the
//! credential's [`FileSequenceStore`] under its lock, never reused.
use crate::client::{MulticastTargets, Sent, SSN_K};
use crate::random_bytes;
use crate::store::FileSequenceStore;
use ssm_coap::{Message, Token};
use ssm_ocf::ssm;
use ssm_oscore::group::{GroupCommon, GroupSenderContext};
use ssm_oscore::{RequestOptions, SequenceNumber};
use std::io;

/// A group-mode sender: Common Context, Sender Context (with the private
/// key) and the sequence-number store.
pub struct GroupSsmSender {
    common: GroupCommon,
    ctx: GroupSenderContext,
    store: FileSequenceStore,
}

impl GroupSsmSender {
    /// From a checked group-mode sender credential and the switch's own
    /// private key; the sequence number resumes from `store`.
    pub fn new(
        cred: &ssm_ocf::cred::OscoreCred,
        private_key: &[u8; 32],
        store: FileSequenceStore,
    ) -> io::Result<Self> {
        let stored = store.load()?.max(cred.ssn.unwrap_or(0));
        let (common, ctx) = ssm_ocf::group_cred::sender_context(
            cred,
            private_key,
            SequenceNumber::resume(stored, SSN_K),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(GroupSsmSender { common, ctx, store })
    }

    /// Signs and protects `request` with a fresh sequence number (reserved
    /// on disk first, under the store's lock).
    pub fn protect(&mut self, request: &Message, no_response: bool) -> io::Result<(Vec<u8>, u64)> {
        let mut lock = self.store.lock()?;
        protect_locked(&self.common, &mut self.ctx, &mut lock, request, no_response)
    }

    /// Sends one signed SSM UPDATE of `props` to `href`, protected once and
    /// the identical datagram sent to every destination (as
    /// [`crate::client::SsmSender::send`]).
    pub async fn send(
        &mut self,
        targets: &MulticastTargets,
        href: &str,
        props: &ciborium::Value,
        no_response: bool,
    ) -> io::Result<Vec<Sent>> {
        let mid = u16::from_be_bytes(random_bytes::<2>());
        let token = Token::new(&random_bytes::<8>()).unwrap_or_default();
        let req = ssm::update_request(href, props, mid, token, no_response);
        let mut lock = self.store.lock()?;
        let (bytes, piv) =
            protect_locked(&self.common, &mut self.ctx, &mut lock, &req, no_response)?;
        let mut sent = Vec::new();
        for (s, dests) in &targets.targets {
            for d in dests {
                s.send_to(&bytes, *d).await?;
                sent.push(Sent {
                    to: *d,
                    piv,
                    len: bytes.len(),
                });
            }
        }
        drop(lock);
        Ok(sent)
    }
}

fn protect_locked(
    common: &GroupCommon,
    ctx: &mut GroupSenderContext,
    lock: &mut crate::store::SequenceLock<'_>,
    request: &Message,
    no_response: bool,
) -> io::Result<(Vec<u8>, u64)> {
    ctx.sequence().reserve(lock)?;
    let piv = ctx.sequence().peek();
    let mut out = vec![0u8; request.encoded_len() + 160];
    let (n, _) = ctx
        .protect_request(
            common,
            &request.to_vec(),
            &mut out,
            RequestOptions {
                outer_no_response: no_response,
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    out.truncate(n);
    Ok((out, piv))
}

/// A switch's multicast sender of either profile: OCF SSM (credtype 128)
/// or Group OSCORE group mode (credtype 65536, signed).
pub enum MulticastSender {
    /// OCF SSM.
    Ssm(Box<crate::client::SsmSender>),
    /// Group OSCORE group mode.
    Group(Box<GroupSsmSender>),
}

impl MulticastSender {
    /// See [`crate::client::SsmSender::send`] and [`GroupSsmSender::send`].
    pub async fn send(
        &mut self,
        targets: &MulticastTargets,
        href: &str,
        props: &ciborium::Value,
        no_response: bool,
    ) -> io::Result<Vec<Sent>> {
        match self {
            MulticastSender::Ssm(s) => s.send(targets, href, props, no_response).await,
            MulticastSender::Group(s) => s.send(targets, href, props, no_response).await,
        }
    }
}
