//! Making a consistent set of SSM credentials for one group (what the
//! onboarding tool does, REFERENCE-SSM §6, with per-sender IDs): one group
//! secret; every client its own 7-byte Sender ID (prefix 0x02) in a
//! credtype-128 cred; every light one credtype-256 cred per client with
//! `recipientid` = that client's ID and `subjectuuid` = that client; and a
//! pair-wise credtype-64 context between every client and every light for
//! unicast UPDATE. Randomness comes from the caller.
use crate::cred::{
    CredResource, CredType, Credential, OscoreFields, PrivateData, MASTER_SECRET_LEN, OSCORE_ID_LEN,
};
use uuid::Uuid;

/// A device and its `/oic/sec/cred`.
#[derive(Debug, Clone)]
pub struct Member {
    /// Device UUID.
    pub uuid: Uuid,
    /// Its credentials.
    pub creds: CredResource,
}

/// An OSCORE ID with a role prefix (0x01 pair-wise, 0x02 group), unique in
/// `used`.
fn fresh_id(
    prefix: u8,
    used: &mut Vec<[u8; OSCORE_ID_LEN]>,
    random: &mut dyn FnMut(&mut [u8]),
) -> [u8; OSCORE_ID_LEN] {
    let mut id = [0u8; OSCORE_ID_LEN];
    random(&mut id);
    id[0] = prefix;
    // On a collision (or a random source that repeats itself), step a
    // counter through the low bytes: this always ends.
    let base = id;
    let mut n: u32 = 0;
    while used.contains(&id) {
        n += 1;
        id = base;
        for (b, c) in id[3..].iter_mut().zip(n.to_be_bytes()) {
            *b ^= c;
        }
    }
    used.push(id);
    id
}

fn uuid(random: &mut dyn FnMut(&mut [u8])) -> Uuid {
    let mut b = [0u8; 16];
    random(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// The reference stack's placeholder subject for a client cred: the 7-byte
/// ID twice, then two zero bytes.
pub fn client_cred_subject(id: &[u8; OSCORE_ID_LEN]) -> Uuid {
    let mut b = [0u8; 16];
    b[..7].copy_from_slice(id);
    b[7..14].copy_from_slice(id);
    Uuid::from_bytes(b)
}

/// Generates lights and clients of one SSM group; `owner` is written as
/// `rowneruuid`.
pub fn generate_group(
    lights: usize,
    clients: usize,
    owner: Uuid,
    random: &mut dyn FnMut(&mut [u8]),
) -> (Vec<Member>, Vec<Member>) {
    let mut used = Vec::new();
    let mut secret = [0u8; MASTER_SECRET_LEN];
    random(&mut secret);
    let new = |uuid| Member {
        uuid,
        creds: CredResource {
            creds: Vec::new(),
            rowneruuid: owner.to_string(),
        },
    };
    let mut ls: Vec<Member> = (0..lights).map(|_| new(uuid(random))).collect();
    let mut cs: Vec<Member> = (0..clients).map(|_| new(uuid(random))).collect();
    let push =
        |m: &mut Member, subject: String, credtype: CredType, secret: &[u8], o: OscoreFields| {
            let credid = m.creds.creds.len() as u32 + 1;
            m.creds.creds.push(Credential {
                credid,
                subjectuuid: subject,
                credtype,
                privatedata: Some(PrivateData::raw(secret)),
                oscore: Some(o),
            });
        };
    for c in cs.iter_mut() {
        let sid = fresh_id(0x02, &mut used, random);
        let desc = Some(format!("SSM sender {}", hex::encode(sid)));
        push(
            c,
            client_cred_subject(&sid).to_string(),
            CredType::SsmClient,
            &secret,
            OscoreFields {
                senderid: Some(hex::encode(sid)),
                desc: desc.clone(),
                ..Default::default()
            },
        );
        for l in ls.iter_mut() {
            push(
                l,
                c.uuid.to_string(),
                CredType::SsmServer,
                &secret,
                OscoreFields {
                    recipientid: Some(hex::encode(sid)),
                    desc: desc.clone(),
                    ..Default::default()
                },
            );
        }
    }
    for c in cs.iter_mut() {
        for l in ls.iter_mut() {
            let mut pair = [0u8; MASTER_SECRET_LEN];
            random(&mut pair);
            let (a, b) = (
                fresh_id(0x01, &mut used, random),
                fresh_id(0x01, &mut used, random),
            );
            push(
                c,
                l.uuid.to_string(),
                CredType::PairwiseOscore,
                &pair,
                OscoreFields {
                    senderid: Some(hex::encode(a)),
                    recipientid: Some(hex::encode(b)),
                    ..Default::default()
                },
            );
            push(
                l,
                c.uuid.to_string(),
                CredType::PairwiseOscore,
                &pair,
                OscoreFields {
                    senderid: Some(hex::encode(b)),
                    recipientid: Some(hex::encode(a)),
                    ..Default::default()
                },
            );
        }
    }
    (ls, cs)
}

/// The ACEs an onboarding tool gives a light: `anon-clear` may RETRIEVE the
/// core resources; every client that holds an OSCORE or SSM credential for
/// it (credtype 64 or 256 with that subject) may RETRIEVE, UPDATE and
/// OBSERVE `app_hrefs`. With `public_read`, anyone may also RETRIEVE and
/// OBSERVE them (a light's on/off state is then visible on the network,
/// never writable).
pub fn default_aces(
    creds: &CredResource,
    app_hrefs: &[&str],
    public_read: bool,
) -> Vec<crate::security::acl2::Ace> {
    use crate::security::acl2::*;
    let mut aces = vec![Ace {
        aceid: 0,
        subject: AceSubject::ConnType {
            conntype: ConnType::AnonClear,
        },
        resources: [
            "/oic/res",
            "/oic/d",
            "/oic/p",
            "/introspection",
            "/oic/sec/sdi",
        ]
        .iter()
        .map(|h| AceResource::Href {
            href: h.to_string(),
        })
        .collect(),
        permission: PERM_R,
    }];
    if public_read {
        aces.push(Ace {
            aceid: 0,
            subject: AceSubject::ConnType {
                conntype: ConnType::AnonClear,
            },
            resources: app_hrefs
                .iter()
                .map(|h| AceResource::Href {
                    href: h.to_string(),
                })
                .collect(),
            permission: PERM_R | PERM_N,
        });
    }
    let mut clients: Vec<Uuid> = creds
        .creds
        .iter()
        .filter(|c| {
            matches!(
                c.credtype,
                CredType::PairwiseOscore | CredType::SsmServer | CredType::GroupOscoreRecipient
            )
        })
        .filter_map(|c| c.subjectuuid.parse().ok())
        .collect();
    clients.sort();
    clients.dedup();
    for c in clients {
        aces.push(Ace {
            aceid: 0,
            subject: AceSubject::Uuid { uuid: c },
            resources: app_hrefs
                .iter()
                .map(|h| AceResource::Href {
                    href: h.to_string(),
                })
                .collect(),
            permission: PERM_R | PERM_U | PERM_N,
        });
    }
    aces
}

/// A device already owned by `owner` and in normal operation (RFNOP),
/// holding `creds` and `aces`: what onboarding plus provisioning leave
/// behind, for devices whose credentials come from a file.
pub fn provisioned_state(
    device_uuid: Uuid,
    owner: Uuid,
    creds: CredResource,
    aces: Vec<crate::security::acl2::Ace>,
) -> crate::security::SecurityState {
    use crate::security::pstat::DeviceOnboardingState as Dos;
    let mut s = crate::security::SecurityState::new(device_uuid);
    s.doxm.owned = true;
    s.doxm.devowneruuid = owner;
    s.doxm.rowneruuid = owner;
    s.pstat.rowneruuid = owner;
    s.acl.rowneruuid = owner;
    s.cred = creds;
    s.cred.rowneruuid = owner.to_string();
    // A new list of `aces.len()` entries always has a free id for each.
    let _ = s.acl.add(aces);
    s.pstat.enter(Dos::Rfnop);
    s
}

/// An SSM group as an onboarding tool keeps it: one secret, and a Sender
/// ID per client (never reused).
#[derive(Clone)]
pub struct SsmGroup {
    secret: zeroize::Zeroizing<[u8; MASTER_SECRET_LEN]>,
    used: Vec<[u8; OSCORE_ID_LEN]>,
    /// (client UUID, its Sender ID).
    pub clients: Vec<(Uuid, [u8; OSCORE_ID_LEN])>,
}

impl std::fmt::Debug for SsmGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmGroup")
            .field("secret", &"<secret>")
            .field("clients", &self.clients)
            .finish()
    }
}

impl SsmGroup {
    /// A new group with a fresh secret.
    pub fn new(random: &mut dyn FnMut(&mut [u8])) -> Self {
        let mut secret = zeroize::Zeroizing::new([0u8; MASTER_SECRET_LEN]);
        random(&mut secret[..]);
        SsmGroup {
            secret,
            used: Vec::new(),
            clients: Vec::new(),
        }
    }

    /// Adds a client and returns its SSM client credential (credtype 128).
    pub fn add_client(&mut self, client: Uuid, random: &mut dyn FnMut(&mut [u8])) -> Credential {
        let sid = fresh_id(0x02, &mut self.used, random);
        self.clients.push((client, sid));
        Credential {
            credid: 0,
            subjectuuid: client_cred_subject(&sid).to_string(),
            credtype: CredType::SsmClient,
            privatedata: Some(PrivateData::raw(&self.secret[..])),
            oscore: Some(OscoreFields {
                senderid: Some(hex::encode(sid)),
                desc: Some("SSM".into()),
                ..Default::default()
            }),
        }
    }

    /// The SSM server credentials (credtype 256) a light needs: one per
    /// client, subject = that client.
    pub fn server_creds(&self) -> Vec<Credential> {
        self.clients
            .iter()
            .map(|(client, sid)| Credential {
                credid: 0,
                subjectuuid: client.to_string(),
                credtype: CredType::SsmServer,
                privatedata: Some(PrivateData::raw(&self.secret[..])),
                oscore: Some(OscoreFields {
                    recipientid: Some(hex::encode(sid)),
                    desc: Some("SSM".into()),
                    ..Default::default()
                }),
            })
            .collect()
    }
}
