//! The OCF security virtual resources (OCF Security; DIGEST §5) and the
//! access rules every request passes (sans-IO):
//!
//! * `/oic/sec/doxm`, `/oic/sec/pstat` (the onboarding state machine),
//!   `/oic/sec/cred`, `/oic/sec/acl2`, `/oic/sec/sdi`, `/oic/sec/sp`.
//! * Unsecured requests reach only `/oic/res`, `/oic/d`, `/oic/p` and
//!   `doxm` (plus what an `anon-clear` ACE grants); application resources
//!   need a secured request (DTLS or OSCORE), RFNOP and an ACE; security
//!   resources are written only by the owner, in the states that allow it.
//! * An SSM request is authorised as coming from its credential's
//!   `subjectuuid`.
pub mod acl2;
pub(crate) mod codec;
pub mod doxm;
mod handlers;
pub mod otm;
pub mod pin_guard;
pub mod pstat;
pub mod svr;
pub mod transition;
pub mod uuid_text;

pub use svr::{Access, Denial, OwnerTransferEnd, Peer, SecurityState, SvrOutcome};
pub use transition::Transition;

/// The id to give a new `credid` or `aceid` (0 means "assign one"): one above
/// the highest in use, or, when that is `u32::MAX` (the owner may write any
/// id), the lowest free one. `None` only if every id 1..=`u32::MAX` is taken.
pub fn next_free_id(used: impl Iterator<Item = u32>) -> Option<u32> {
    let mut ids: Vec<u32> = used.filter(|&i| i != 0).collect();
    match ids.iter().max() {
        None => return Some(1),
        Some(&m) if m < u32::MAX => return Some(m + 1),
        Some(_) => {}
    }
    ids.sort_unstable();
    ids.dedup();
    // The first gap in 1, 2, 3, …
    let mut want = 1u32;
    for i in ids {
        if i != want {
            return Some(want);
        }
        want = want.checked_add(1)?;
    }
    Some(want)
}

#[cfg(test)]
mod tests {
    use super::next_free_id;

    #[test]
    fn next_free_id_never_overflows() {
        assert_eq!(next_free_id([].into_iter()), Some(1));
        assert_eq!(next_free_id([0].into_iter()), Some(1));
        assert_eq!(next_free_id([1, 2, 5].into_iter()), Some(6));
        // An owner-written u32::MAX: the lowest free id, not a wrap to 0.
        assert_eq!(next_free_id([u32::MAX].into_iter()), Some(1));
        assert_eq!(next_free_id([1, 2, u32::MAX, 2].into_iter()), Some(3));
        assert_eq!(next_free_id([3, u32::MAX].into_iter()), Some(1));
    }
}
