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

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_ocf::cred::{CredType, OscoreCred};
    use ssm_ocf::group_cred::{ccs_of_ed25519, fields, gid_of, public_key};
    use std::path::Path;

    const KEY: [u8; 32] = [0x11; 32];

    fn sender_cred() -> OscoreCred {
        let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
        let owner = ssm_ocf::Uuid::from_u128(1);
        let (_, mut switches) = ssm_ocf::provision::generate_group(1, 1, owner, &mut rng);
        let gm = ccs_of_ed25519(&public_key(&[0x77; 32])).to_vec();
        for c in switches[0].creds.creds.iter_mut() {
            if c.credtype == CredType::SsmClient {
                c.credtype = CredType::GroupOscoreSender;
                c.oscore.as_mut().unwrap().group = Some(fields(&gid_of(1, 1), &gm, None));
            }
        }
        switches[0]
            .creds
            .oscore_creds()
            .unwrap()
            .into_iter()
            .find(|c| c.credtype == CredType::GroupOscoreSender)
            .unwrap()
    }

    /// The Partial IV on the wire (the Group Flag cleared to parse it).
    fn wire_piv(datagram: &[u8]) -> u64 {
        let p = ssm_coap::Packet::new_checked(datagram).unwrap();
        let o = p.options().get(ssm_coap::OptionNumber::OSCORE).unwrap();
        let mut v = o.value.to_vec();
        assert_ne!(v[0] & ssm_oscore::group::GROUP_FLAG, 0, "group mode");
        v[0] &= !ssm_oscore::group::GROUP_FLAG;
        let o = ssm_oscore::OscoreOption::parse(&v).unwrap();
        o.partial_iv.unwrap().value()
    }

    fn durable_limit(path: &Path) -> u64 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn update() -> Message {
        let props = ssm_ocf::cbor::map([("value", ciborium::Value::Bool(true))]);
        ssm::update_request("/a", &props, 1, Token::new(&[1]).unwrap(), true)
    }

    /// Group mode takes its sequence numbers from the SSM store, as SSM
    /// does: two senders on one store (two processes of one switch) share
    /// one sequence, every number below the fsynced limit before its
    /// datagram exists; a sender made again after a SIGKILL continues the
    /// sequence, one made after a reboot resumes at the durable limit.
    #[test]
    fn group_mode_sequence_numbers_are_durable_and_shared() {
        let dir = std::env::temp_dir().join(format!("ssm-group-ssn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ssn-5");
        let cred = sender_cred();
        let new = || GroupSsmSender::new(&cred, &KEY, FileSequenceStore::new(&path)).unwrap();
        let (mut a, mut b) = (new(), new());
        let mut used = Vec::new();
        for i in 0..100 {
            let s = if i % 3 == 0 { &mut b } else { &mut a };
            let (bytes, piv) = s.protect(&update(), true).unwrap();
            assert_eq!(wire_piv(&bytes), piv);
            assert!(durable_limit(&path) > piv, "durable before use");
            used.push(piv);
        }
        assert_eq!(used, (0..100).collect::<Vec<_>>(), "one sequence");
        assert_eq!(durable_limit(&path), 128, "reserved K = 64 ahead");
        // SIGKILL (nothing flushed, no destructor) and a new process.
        std::mem::forget(a);
        std::mem::forget(b);
        let (_, piv) = new().protect(&update(), true).unwrap();
        assert_eq!(piv, 100);
        // A reboot: this boot's counter in the lock file is not trusted.
        std::fs::write(
            dir.join("ssn-5.lock"),
            "another-boot 00000000000000000003\n",
        )
        .unwrap();
        let (_, piv) = new().protect(&update(), true).unwrap();
        assert_eq!(piv, 128, "above every number used before");
        assert!(durable_limit(&path) > piv);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
