//! The OBT as Group Manager (RFC 10021 §3, §12) for the groups with the
//! profile `group-oscore` (schema v5): each group's profile, the public
//! authentication credentials (CCS) the switches made themselves and the
//! OBT read back, and the Group Manager's own key, whose CCS every member
//! holds (it enters the `external_aad`). A group-mode rekey is the zones'
//! rekey (new epoch, so a new Group ID, master secret and Sender IDs).
use super::grants::{ensure_group, group_id};
use super::groups::valid_group_name;
use super::*;

/// A group's security profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// OCF Simple Secure Multicast (one shared key; wire-compatible with
    /// the reference stack): the default.
    #[default]
    OcfSsm,
    /// RFC 10021 Group OSCORE group mode: every command signed by its
    /// switch.
    GroupOscore,
}

impl Profile {
    /// From its name (`ocf-ssm`, `group-oscore`).
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "ocf-ssm" => Some(Profile::OcfSsm),
            "group-oscore" => Some(Profile::GroupOscore),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::OcfSsm => "ocf-ssm",
            Profile::GroupOscore => "group-oscore",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Store {
    /// The profile of group `gid`.
    pub fn profile_of(&self, gid: i64) -> Result<Profile, StoreError> {
        let p: String = self
            .conn
            .query_row(
                "SELECT profile FROM ssm_groups WHERE id = ?1",
                params![gid],
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        Ok(Profile::parse(&p).unwrap_or_default())
    }

    /// A new group with `profile` (see [`Store::create_group`]) and, for
    /// a `group-oscore` group only, the AEAD Algorithm of its Common
    /// Context (`aead_alg`: 10, AES-CCM-16-64-128; every group-mode
    /// credential of the group then carries `aeadalg`).
    pub fn create_group_with(
        &mut self,
        name: &str,
        auto: bool,
        profile: Profile,
        aead_alg: Option<i64>,
    ) -> Result<GroupInfo, StoreError> {
        if !valid_group_name(name) {
            return Err(StoreError::BadGroupName(name.into()));
        }
        if aead_alg.is_some() && profile != Profile::GroupOscore {
            return Err(StoreError::AeadNeedsGroupMode(name.into()));
        }
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        if group_id(&tx, name).map_err(&sq)?.is_some() {
            return Err(StoreError::GroupExists(name.into()));
        }
        let id = ensure_group(&tx, name, auto).map_err(&sq)?;
        tx.execute(
            "UPDATE ssm_groups SET profile = ?1, aead_alg = ?2 WHERE id = ?3",
            params![profile.as_str(), aead_alg, id],
        )
        .map_err(&sq)?;
        let aead = aead_alg.map(|a| format!(", AEAD Algorithm {a}"));
        audit::audit_on(
            &tx,
            "group-profile",
            &format!("{name}: {profile}{}", aead.unwrap_or_default()),
        )
        .map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        self.group_info(name)
    }

    /// The authentication credential (CCS) `uuid` made, as read from it.
    pub fn auth_cred(&self, uuid: &Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT ccs FROM auth_creds WHERE uuid = ?1",
                params![uuid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
    }

    /// Records the CCS read from `uuid` (a new key pair replaces the old:
    /// the lights get the new one at their next sync).
    pub fn set_auth_cred(&mut self, uuid: &Uuid, ccs: &[u8]) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO auth_creds (uuid, ccs) VALUES (?1, ?2)
                 ON CONFLICT (uuid) DO UPDATE SET ccs = excluded.ccs",
                params![uuid.to_string(), ccs],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Whether `uuid` commands a group-mode group but its CCS is unknown
    /// (the OBT must read it from the switch before the lights are synced).
    pub fn needs_auth_cred(&self, uuid: &Uuid) -> Result<bool, StoreError> {
        if self.auth_cred(uuid)?.is_some() {
            return Ok(false);
        }
        for gid in self.device_groups(uuid)? {
            if self.profile_of(gid)? == Profile::GroupOscore
                && self.sender_id_in(gid, uuid)?.is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The Group Manager's CCS (RFC 10021 §2.1.6), its Ed25519 key made
    /// on first use from `random` and kept in the domain (0600).
    pub fn gm_cred(&self, random: &mut dyn FnMut(&mut [u8])) -> Result<Vec<u8>, StoreError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        random(&mut seed[..]);
        self.conn
            .execute(
                "INSERT OR IGNORE INTO group_manager (id, seed) VALUES (1, ?1)",
                params![&seed[..]],
            )
            .map_err(self.sq())?;
        let stored: Zeroizing<Vec<u8>> = Zeroizing::new(
            self.conn
                .query_row("SELECT seed FROM group_manager WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .map_err(self.sq())?,
        );
        seed.copy_from_slice(&stored[..32.min(stored.len())]);
        let pk = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Ok(ssm_ocf::group_cred::ccs_of_ed25519(&pk).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (Store, PathBuf) {
        let d = std::env::temp_dir().join(format!("ssm-gm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("domain.db");
        (Store::init(&p, Uuid::from_u128(9), "t").unwrap(), d)
    }

    #[test]
    fn profiles_auth_creds_and_the_gm_key() {
        let (mut s, d) = store("profiles");
        let g = s
            .create_group_with("hall", false, Profile::GroupOscore, None)
            .unwrap();
        assert_eq!(g.profile, Profile::GroupOscore);
        assert_eq!(
            s.create_group("east", false).unwrap().profile,
            Profile::OcfSsm
        );
        assert!(matches!(
            s.create_group_with("hall", false, Profile::OcfSsm, None),
            Err(StoreError::GroupExists(_))
        ));
        let u = Uuid::from_u128(5);
        assert_eq!(s.auth_cred(&u).unwrap(), None);
        s.set_auth_cred(&u, &[1, 2]).unwrap();
        s.set_auth_cred(&u, &[3]).unwrap();
        assert_eq!(s.auth_cred(&u).unwrap(), Some(vec![3]));
        let mut n = 0u8;
        let gm = s
            .gm_cred(&mut |b| {
                b.fill({
                    n += 1;
                    n
                })
            })
            .unwrap();
        let again = s.gm_cred(&mut |b| b.fill(0xee)).unwrap();
        assert_eq!(gm, again, "made once");
        // A CCS of an Ed25519 key, as a recipient credential takes it.
        let f = ssm_ocf::group_cred::fields(&[1], &gm, None);
        assert!(ssm_ocf::group_cred::check(
            1,
            ssm_ocf::cred::CredType::GroupOscoreSender,
            &Some(f)
        )
        .is_ok());
        assert_eq!(Profile::parse("group-oscore"), Some(Profile::GroupOscore));
        assert_eq!(Profile::parse("x"), None);
        let _ = std::fs::remove_dir_all(d);
    }
}
