//! `/oic/sec/acl2` (`oic.r.acl2`): access control entries and their
//! evaluation (DIGEST §5). Permissions are the union over every matching
//! entry; wildcards never match the security resources (`/oic/sec/*`),
//! which have rules of their own.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// CREATE.
pub const PERM_C: u8 = 1;
/// RETRIEVE.
pub const PERM_R: u8 = 2;
/// UPDATE.
pub const PERM_U: u8 = 4;
/// DELETE.
pub const PERM_D: u8 = 8;
/// NOTIFY (Observe).
pub const PERM_N: u8 = 16;

/// `conntype` subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnType {
    /// `auth-crypt`: any authenticated, encrypted request.
    #[serde(rename = "auth-crypt")]
    AuthCrypt,
    /// `anon-clear`: anyone, also unprotected.
    #[serde(rename = "anon-clear")]
    AnonClear,
}

/// An ACE subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AceSubject {
    /// `{uuid}`: one device.
    Uuid {
        /// The device UUID.
        #[serde(with = "crate::security::uuid_text")]
        uuid: Uuid,
    },
    /// `{authority, role}`.
    Role {
        /// Role.
        role: String,
        /// Authority.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
    },
    /// `{conntype}`.
    ConnType {
        /// auth-crypt or anon-clear.
        conntype: ConnType,
    },
}

/// An ACE resource: an href or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AceResource {
    /// `{href}`.
    Href {
        /// The path.
        href: String,
    },
    /// `{wc}`: `+` discoverable, `-` non-discoverable, `*` all.
    Wildcard {
        /// `+`, `-` or `*`.
        wc: String,
    },
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ace {
    /// `aceid` (≥ 1; 0 or absent in a POST: assigned by the device). 0 is
    /// never sent: the reference stack keeps an ACE posted with `aceid: 0`
    /// under id 0, which `DELETE ?aceid=0` then cannot remove.
    #[serde(default, skip_serializing_if = "is_unassigned")]
    pub aceid: u32,
    /// Who.
    pub subject: AceSubject,
    /// What.
    pub resources: Vec<AceResource>,
    /// C=1 R=2 U=4 D=8 N=16.
    pub permission: u8,
}

fn is_unassigned(id: &u32) -> bool {
    *id == 0
}

/// The acl2 resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Acl2 {
    /// `aclist2`.
    pub aclist2: Vec<Ace>,
    /// `rowneruuid`.
    #[serde(with = "crate::security::uuid_text")]
    pub rowneruuid: Uuid,
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// Authenticated identity (DTLS peer, or OSCORE credential subject).
    pub subject: Option<Uuid>,
    /// The request was authenticated and encrypted.
    pub secured: bool,
}

impl Ace {
    fn subject_matches(&self, r: &Requester) -> bool {
        match &self.subject {
            AceSubject::Uuid { uuid } => r.secured && r.subject == Some(*uuid),
            AceSubject::ConnType {
                conntype: ConnType::AuthCrypt,
            } => r.secured,
            AceSubject::ConnType {
                conntype: ConnType::AnonClear,
            } => true,
            // Roles need certificates, which this stack does not use.
            AceSubject::Role { .. } => false,
        }
    }

    fn resource_matches(&self, href: &str, discoverable: bool) -> bool {
        let svr = href.starts_with("/oic/sec/");
        self.resources.iter().any(|res| match res {
            AceResource::Href { href: h } => h == href,
            AceResource::Wildcard { wc } => {
                !svr && match wc.as_str() {
                    "*" => true,
                    "+" => discoverable,
                    "-" => !discoverable,
                    _ => false,
                }
            }
        })
    }
}

impl Acl2 {
    /// The permissions `r` has on `href`.
    pub fn permissions(&self, r: &Requester, href: &str, discoverable: bool) -> u8 {
        self.aclist2
            .iter()
            .filter(|a| a.subject_matches(r) && a.resource_matches(href, discoverable))
            .fold(0, |p, a| p | a.permission)
    }

    /// Whether `r` has every bit of `needed` on `href`.
    pub fn permits(&self, r: &Requester, href: &str, discoverable: bool, needed: u8) -> bool {
        self.permissions(r, href, discoverable) & needed == needed
    }

    /// Adds entries, assigning `aceid`s to those with 0 (see
    /// [`super::next_free_id`]) and replacing entries with the same
    /// `aceid`. All or nothing: an error (no free id) changes nothing.
    pub fn add(&mut self, aces: Vec<Ace>) -> Result<(), NoFreeId> {
        let mut next = self.aclist2.clone();
        for mut a in aces {
            if a.aceid == 0 {
                a.aceid = super::next_free_id(next.iter().map(|x| x.aceid)).ok_or(NoFreeId)?;
            }
            next.retain(|x| x.aceid != a.aceid);
            next.push(a);
        }
        self.aclist2 = next;
        Ok(())
    }
}

/// Every `aceid` is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFreeId;

impl core::fmt::Display for NoFreeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no free aceid: every id is in use")
    }
}

impl std::error::Error for NoFreeId {}

impl Acl2 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation() {
        let client = Uuid::from_u128(7);
        let mut acl = Acl2::default();
        acl.add(vec![
            Ace {
                aceid: 0,
                subject: AceSubject::Uuid { uuid: client },
                resources: vec![AceResource::Href { href: "/sw".into() }],
                permission: PERM_R | PERM_U,
            },
            Ace {
                aceid: 0,
                subject: AceSubject::ConnType {
                    conntype: ConnType::AnonClear,
                },
                resources: vec![AceResource::Href {
                    href: "/oic/d".into(),
                }],
                permission: PERM_R,
            },
            Ace {
                aceid: 0,
                subject: AceSubject::ConnType {
                    conntype: ConnType::AuthCrypt,
                },
                resources: vec![AceResource::Wildcard { wc: "*".into() }],
                permission: PERM_R,
            },
        ])
        .unwrap();
        let c = Requester {
            subject: Some(client),
            secured: true,
        };
        let other = Requester {
            subject: Some(Uuid::from_u128(8)),
            secured: true,
        };
        let anon = Requester {
            subject: None,
            secured: false,
        };
        assert!(acl.permits(&c, "/sw", true, PERM_U));
        assert!(!acl.permits(&other, "/sw", true, PERM_U));
        assert!(
            acl.permits(&other, "/sw", true, PERM_R),
            "auth-crypt wildcard"
        );
        assert!(!acl.permits(&anon, "/sw", true, PERM_R));
        assert!(acl.permits(&anon, "/oic/d", true, PERM_R));
        assert!(
            !acl.permits(&other, "/oic/sec/cred", false, PERM_R),
            "wildcards never reach SVRs"
        );
        // A UUID subject needs an authenticated request.
        assert!(!acl.permits(
            &Requester {
                subject: Some(client),
                secured: false
            },
            "/sw",
            true,
            PERM_U
        ));
        assert_eq!(
            acl.aclist2.iter().map(|a| a.aceid).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let json = serde_json::to_string(&acl).unwrap();
        assert!(json.contains("\"conntype\":\"anon-clear\""), "{json}");
        assert_eq!(serde_json::from_str::<Acl2>(&json).unwrap(), acl);
    }
}
