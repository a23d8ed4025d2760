//! The receive rule of Group OSCORE group mode (RFC 10021) on a light: a
//! datagram whose OSCORE option has the Group Flag is applied only if its
//! countersignature verifies with the credential of the switch its `kid`
//! names (a credtype 131072 recipient credential, `subjectuuid` = that
//! switch, whose ACE the device then checks), and the AEAD tag verifies;
//! the replay window moves only after both (§7.2). A group-flagged
//! datagram never reaches an SSM (credtype 256) context, nor an SSM one a
//! group-mode context: the profile of a group cannot be downgraded.
//! Replay floors are the SSM ones, keyed by kid (the onboarding tool never
//! reuses a Sender ID, across groups, epochs and profiles).
use super::{Accepted, DropReason, SignatureCache, SsmReceiver, Verified};
use crate::cred::{CredType, OscoreCred};
use crate::ssm::ReplayFloors;
use ssm_coap::{OptionNumber, Packet};
use ssm_oscore::group::{GroupCommon, GroupParams, GroupRecipientContext, GROUP_FLAG};
use ssm_oscore::{
    Error as OscoreError, Id, IdContext, OscoreOption, ReplayState, ReplayWindow,
    DEFAULT_REPLAY_WINDOW,
};
use std::sync::Arc;
use uuid::Uuid;

/// One group-mode recipient context (one authorised switch in one group).
pub(super) struct GroupRecipient {
    common: GroupCommon,
    ctx: GroupRecipientContext,
    subject: Option<Uuid>,
    credid: u32,
}

impl GroupRecipient {
    /// The Sender ID of the switch this context receives from.
    pub(super) fn kid(&self) -> &ssm_oscore::Id {
        self.ctx.id()
    }
}

/// The group-mode recipient contexts of `creds` (credtype 131072).
pub(super) fn recipients(
    creds: &[OscoreCred],
    floors: &ReplayFloors,
) -> Result<Vec<GroupRecipient>, OscoreError> {
    let mut out = Vec::new();
    for c in creds {
        let (CredType::GroupOscoreRecipient, Some(rid), Some(g)) =
            (c.credtype, c.recipient_id, c.group.as_ref())
        else {
            continue;
        };
        let Some(auth) = g.auth_cred.as_deref() else {
            continue;
        };
        let params = GroupParams {
            master_secret: &c.secret,
            master_salt: g.salt.as_deref(),
            group_id: g.gid,
            gm_cred: &g.gm_cred,
            alg_aead: g.alg_aead,
            alg_pairwise_key_agreement: None,
        };
        let replay = match floors.get(&rid) {
            Some(f) => ReplayWindow::from_floor(f, DEFAULT_REPLAY_WINDOW),
            None => ReplayWindow::new(DEFAULT_REPLAY_WINDOW),
        };
        out.push(GroupRecipient {
            common: GroupCommon::derive(&params)?,
            ctx: GroupRecipientContext::derive(&params, rid, auth, ReplayState::Window(replay))?,
            subject: c.subject,
            credid: c.credid,
        });
    }
    Ok(out)
}

/// What the OSCORE option of a group-mode datagram names: kid, kid
/// context (the Gid) and Partial IV.
pub(super) type GroupOption = (Id, Option<IdContext>, Option<u64>);

/// For a datagram with the Group Flag: its kid, kid context and Partial
/// IV; `None` without the flag (an SSM datagram). The option is read with
/// the flag cleared (RFC 8613's parser refuses it as a reserved bit).
pub(super) fn group_flagged(datagram: &[u8]) -> Result<Option<GroupOption>, DropReason> {
    let p = Packet::new_checked(datagram).map_err(|_| DropReason::Malformed)?;
    let Some(o) = p.options().get(OptionNumber::OSCORE) else {
        return Ok(None);
    };
    match o.value.first() {
        Some(b) if b & GROUP_FLAG != 0 => {}
        _ => return Ok(None),
    }
    if p.msg_type() == ssm_coap::MessageType::Confirmable {
        return Err(DropReason::ConfirmableMulticast);
    }
    let mut v = o.value.to_vec();
    v[0] &= !GROUP_FLAG;
    let opt = OscoreOption::parse(&v).map_err(|_| DropReason::BadOscoreOption)?;
    Ok(Some((
        opt.kid.ok_or(DropReason::BadOscoreOption)?,
        opt.kid_context,
        opt.partial_iv.map(|p| p.value()),
    )))
}

impl SsmReceiver {
    /// Shares `cache` (the lights of one process verify a group-mode
    /// signature once between them, see [`SignatureCache`]); `None` (the
    /// default) verifies every signature here. Only the signature check
    /// is shared: the AEAD tag and the replay window stay this receiver's.
    pub fn set_signature_cache(&mut self, cache: Option<Arc<SignatureCache>>) {
        self.signature_cache = cache;
    }

    /// [`SsmReceiver::receive`] for a group-mode datagram.
    pub(super) fn receive_group(
        &mut self,
        datagram: &mut [u8],
        (kid, gid, piv): GroupOption,
    ) -> Result<Verified, DropReason> {
        let matching = self
            .group
            .iter()
            .filter(|r| *r.ctx.id() == kid && Some(*r.common.group_id()) == gid)
            .count();
        let original = if matching > 1 || self.copies > 0 {
            datagram.to_vec()
        } else {
            Vec::new()
        };
        let mut last = DropReason::UnknownKid;
        let cache = self.signature_cache.clone();
        for r in self
            .group
            .iter_mut()
            .filter(|r| *r.ctx.id() == kid && Some(*r.common.group_id()) == gid)
        {
            if matching > 1 {
                datagram.copy_from_slice(&original);
            }
            let result = match cache.as_deref() {
                Some(c) => r.ctx.unprotect_request_with(&r.common, datagram, c),
                None => r.ctx.unprotect_request(&r.common, datagram),
            };
            match result {
                Ok(d) => {
                    let piv = d.partial_iv.map(|p| p.value()).unwrap_or(0);
                    if d.code != ssm_coap::Code::POST {
                        return Err(DropReason::NotUpdate);
                    }
                    let accepted = Accepted {
                        request: d.to_message(),
                        subject: r.subject,
                        credid: r.credid,
                        kid,
                        piv,
                    };
                    return Ok(self.verified(accepted, &original));
                }
                Err(e) => last = reason(e),
            }
        }
        Err(self.label_copy(last, kid, piv, &original))
    }
}

fn reason(e: OscoreError) -> DropReason {
    match e {
        OscoreError::BadSignature => DropReason::BadSignature,
        OscoreError::Replay => DropReason::Replay,
        OscoreError::DecryptionFailed => DropReason::DecryptionFailed,
        OscoreError::MalformedPlaintext => DropReason::MalformedPlaintext,
        OscoreError::UnknownKid => DropReason::UnknownKid,
        OscoreError::BadOuterCode => DropReason::Malformed,
        _ => DropReason::BadOscoreOption,
    }
}

#[cfg(test)]
mod tests;
