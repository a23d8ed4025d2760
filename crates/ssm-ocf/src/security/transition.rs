//! The onboarding transitions of a device (OCF Security: the `pstat.dos`
//! state machine and `doxm.owned`; DIGEST §6), computed where the state
//! changes, so the runtime acts on them (events, a new Random PIN,
//! persistence) instead of diffing the state before and after a request.
use super::pstat::DeviceOnboardingState as Dos;
use super::svr::{OwnerTransferEnd, SecurityState};
use uuid::Uuid;

/// What a request (or the end of an owner-transfer session) did to the
/// device's onboarding state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The owner transfer completed: the device is owned and out of RFOTM.
    Owned {
        /// Its new identity (`doxm.deviceuuid`).
        device_uuid: Uuid,
        /// Its owner (`doxm.devowneruuid`).
        owner: Uuid,
    },
    /// A provisioning session ended: RFPRO → RFNOP.
    Provisioned {
        /// Credentials the device holds now.
        creds: usize,
    },
    /// An owned device was reset (pstat RESET): unowned again, in RFOTM.
    HardReset,
    /// The owner-transfer session ended before the device left RFOTM:
    /// what it wrote was undone (a new, unowned device again).
    OwnerTransferUndone,
}

/// The part of the state a transition is judged on, taken before a
/// request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    onboarded: bool,
    dos: Dos,
}

impl SecurityState {
    /// Owned and out of RFOTM.
    fn onboarded(&self) -> bool {
        self.doxm.owned && self.pstat.dos != Dos::Rfotm
    }

    pub(crate) fn before(&self) -> Before {
        Before {
            onboarded: self.onboarded(),
            dos: self.pstat.dos,
        }
    }

    /// The transition from `before` to now, if any.
    pub(crate) fn transition_since(&self, before: Before) -> Option<Transition> {
        let now = self.onboarded();
        if before.dos == Dos::Rfpro && self.pstat.dos == Dos::Rfnop {
            return Some(Transition::Provisioned {
                creds: self.cred.creds.len(),
            });
        }
        match (before.onboarded, now) {
            (false, true) => Some(Transition::Owned {
                device_uuid: self.device_uuid(),
                owner: self.doxm.devowneruuid,
            }),
            (true, false) => Some(Transition::HardReset),
            _ => None,
        }
    }
}

impl OwnerTransferEnd {
    /// The transition it makes: only an undone transfer is one.
    pub fn transition(self) -> Option<Transition> {
        match self {
            OwnerTransferEnd::Undone => Some(Transition::OwnerTransferUndone),
            OwnerTransferEnd::Completed | OwnerTransferEnd::NotTheTransfer => None,
        }
    }
}
