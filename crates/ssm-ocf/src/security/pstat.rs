//! `/oic/sec/pstat` (`oic.r.pstat`): the device onboarding state machine
//! (DIGEST §5). States are an enum; [`DeviceOnboardingState::can_enter`]
//! holds the transitions the reference stack allows, and [`Pstat::enter`]
//! applies the per-state values of `cm`, `tm`, `isop`.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `dos.s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceOnboardingState {
    /// 0: reset; wipes the security resources, then RFOTM.
    Reset,
    /// 1: ready for ownership transfer.
    Rfotm,
    /// 2: ready for provisioning.
    Rfpro,
    /// 3: ready for normal operation.
    Rfnop,
    /// 4: soft reset.
    Sreset,
}

impl DeviceOnboardingState {
    /// From `dos.s`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Reset,
            1 => Self::Rfotm,
            2 => Self::Rfpro,
            3 => Self::Rfnop,
            4 => Self::Sreset,
            _ => return None,
        })
    }

    /// `dos.s`.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Reset => 0,
            Self::Rfotm => 1,
            Self::Rfpro => 2,
            Self::Rfnop => 3,
            Self::Sreset => 4,
        }
    }

    /// Whether `self → to` is allowed (the reference stack refuses RESET →
    /// anything but RESET/RFOTM; RFOTM → SRESET; RFPRO or RFNOP → RFOTM;
    /// SRESET → RFOTM or RFNOP).
    pub fn can_enter(self, to: Self) -> bool {
        use DeviceOnboardingState::*;
        !matches!(
            (self, to),
            (Reset, Rfpro | Rfnop | Sreset)
                | (Rfotm, Sreset)
                | (Rfpro | Rfnop, Rfotm)
                | (Sreset, Rfotm | Rfnop)
        )
    }
}

/// `cm`/`tm` bit: reset.
pub const CM_RESET: u32 = 1;
/// `cm`/`tm` bit: owner transfer.
pub const CM_OWNER_TRANSFER: u32 = 2;

/// The pstat resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pstat {
    /// `dos.s`.
    pub dos: DeviceOnboardingState,
    /// `dos.p`: a change is pending.
    pub pending: bool,
    /// `isop`.
    pub isop: bool,
    /// `cm`.
    pub cm: u32,
    /// `tm`.
    pub tm: u32,
    /// `om`.
    pub om: u32,
    /// `sm`.
    pub sm: u32,
    /// `rowneruuid`.
    #[serde(with = "crate::security::uuid_text")]
    pub rowneruuid: Uuid,
}

impl Default for Pstat {
    fn default() -> Self {
        let mut p = Pstat {
            dos: DeviceOnboardingState::Rfotm,
            pending: false,
            isop: false,
            cm: 0,
            tm: 0,
            om: 3,
            sm: 4,
            rowneruuid: Uuid::nil(),
        };
        p.enter(DeviceOnboardingState::Rfotm);
        p
    }
}

impl Pstat {
    /// Sets the state and the values that go with it.
    pub fn enter(&mut self, s: DeviceOnboardingState) {
        use DeviceOnboardingState::*;
        let (cm, tm) = match s {
            Reset => (CM_RESET, CM_OWNER_TRANSFER),
            Rfotm => (CM_OWNER_TRANSFER, 0),
            Rfpro | Rfnop => (0, 0),
            Sreset => (CM_RESET, 0),
        };
        self.dos = s;
        self.cm = cm;
        self.tm = tm;
        self.isop = s == Rfnop;
        self.pending = false;
        if s == Reset {
            self.om = 3;
            self.sm = 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceOnboardingState::*;
    use super::*;

    #[test]
    fn transitions() {
        assert!(Rfotm.can_enter(Rfpro));
        assert!(Rfpro.can_enter(Rfnop));
        assert!(Rfnop.can_enter(Rfpro));
        assert!(Rfnop.can_enter(Reset));
        assert!(!Rfnop.can_enter(Rfotm));
        assert!(!Rfpro.can_enter(Rfotm));
        assert!(!Rfotm.can_enter(Sreset));
        assert!(!Reset.can_enter(Rfnop));
        assert!(Reset.can_enter(Rfotm));
        assert!(!Sreset.can_enter(Rfnop));
        assert!(Sreset.can_enter(Rfpro));
        let mut p = Pstat::default();
        assert_eq!((p.dos, p.cm, p.isop), (Rfotm, 2, false));
        p.enter(Rfnop);
        assert!(p.isop);
    }
}
