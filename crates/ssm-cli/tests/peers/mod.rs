//! The reference stack's sample apps as peers (iotivity-lite 2.2.5.16,
//! unmodified, from `shared/peers/iotivity-lite/bin`, see its README): the
//! onboarding tool and the SSM client and server, driven through their
//! menus. Their UUIDs and menu numbers are read off what they print.
// Compiled into each test binary that uses a part of it.
#![allow(dead_code)]
use ssm_testkit::{menu_index, Host, MenuApp};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one menu step may take: discovery waits, and DTLS handshakes
/// with the reference stack's retransmissions (mbedTLS gives a handshake
/// up to 20 s: a lost flight on a loaded machine costs seconds).
pub const STEP: Duration = Duration::from_secs(30);

/// A reference binary, read where the shared folder is (never copied).
pub fn bin(name: &str) -> PathBuf {
    let p = ssm_testkit::shared_dir()
        .join("peers/iotivity-lite/bin")
        .join(name);
    assert!(p.is_file(), "reference peer missing: {}", p.display());
    p
}

/// The UUID an app prints when it starts (`Started device with ID: …`).
pub fn started(app: &mut MenuApp) -> String {
    app.expect("Started device with ID: ", STEP);
    let line = app.expect("\n", STEP);
    line.trim().to_string()
}

/// The reference onboarding tool, started fresh in `dir`, whose own UUID
/// holds a 0x00 byte: its DTLS PSK identity then does too, which OpenSSL
/// cuts (issue 14, item 4). It draws a random UUID per fresh start (about
/// 6 % hold a 0x00 byte), so it is restarted until one does (bounded).
pub fn obt_with_zero_byte_uuid(host: &Host, dir: &Path) -> (MenuApp, String) {
    for _ in 0..300 {
        let _ = std::fs::remove_dir_all(dir);
        let mut obt = MenuApp::start(host, &bin("onboarding_tool"), dir);
        let id = started(&mut obt);
        let u: uuid::Uuid = id.parse().expect("OBT UUID");
        if u.as_bytes().contains(&0) {
            return (obt, id);
        }
    }
    panic!("300 fresh onboarding tools without a 0x00 byte in their UUID");
}

/// The reference OBT's menu.
pub struct RefObt(pub MenuApp);

impl RefObt {
    /// Item `item` (1 unowned, 4 owned): discovers until every UUID of
    /// `want` and `more` others were listed (bounded by [`STEP`]); returns
    /// the UUIDs listed.
    pub fn discover(&mut self, item: u32, want: &[&str], more: usize) -> Vec<String> {
        let what = if item == 4 {
            "Discovered owned device: "
        } else {
            "Discovered unowned device: "
        };
        let mut seen: Vec<String> = Vec::new();
        let done = |seen: &Vec<String>| {
            want.iter().all(|w| seen.iter().any(|s| s == w)) && seen.len() >= want.len() + more
        };
        // A device still starting misses one discovery: asked again, a
        // bounded number of times.
        for _ in 0..5 {
            self.0.choose(item, STEP);
            while !done(&seen) {
                if self.0.try_expect(what, Duration::from_secs(3)).is_none() {
                    break;
                }
                let id = self.0.expect(" ", STEP).trim().to_string();
                if !seen.contains(&id) {
                    seen.push(id);
                }
            }
            if done(&seen) {
                return seen;
            }
        }
        panic!(
            "{} listed only {seen:?} (want {want:?} and {more} more)",
            self.0.name
        );
    }

    /// Picks `uuid` in the device list the menu printed last before
    /// `prompt` (a second prompt of the same item reuses the list).
    pub fn pick(&mut self, prompt: &str, uuid: &str) {
        let listing = self.0.expect(prompt, STEP);
        let n = menu_index(&listing, uuid)
            .or_else(|| {
                let t = &self.0.transcript;
                let last = t.rfind("My Devices:").or_else(|| t.rfind("Devices:"))?;
                menu_index(&t[last..], uuid)
            })
            .unwrap_or_else(|| panic!("{uuid} not in the OBT's list:\n{listing}"));
        self.0.send(&n.to_string());
    }

    /// Item 8 (Just Works) on `uuid`; returns its new UUID.
    pub fn just_works(&mut self, uuid: &str) -> String {
        self.0.choose(8, STEP);
        self.pick("Select device:", uuid);
        self.0.expect("Successfully performed OTM on device ", STEP);
        self.0.expect("\n", STEP).trim().replace("with UUID ", "")
    }

    /// Item 10 (Random PIN) on `uuid` with `pin`: its new UUID, or `None`
    /// when the OTM failed.
    pub fn random_pin(&mut self, uuid: &str, pin: &str) -> Option<String> {
        self.0.choose(10, STEP);
        self.pick("Select device:", uuid);
        self.0.expect("Enter Random PIN:", STEP);
        self.0.send(pin);
        let (k, _) = self.0.expect_any(
            &[
                "Successfully performed OTM on device ",
                "ERROR performing ownership transfer",
            ],
            STEP,
        );
        let rest = self.0.expect("\n", STEP);
        (k == 0).then(|| rest.trim().to_string())
    }

    /// An item that asks for one owned device and reports success with
    /// `ok` (25: client group context, 14: auth-crypt * ACE, 97: reset).
    pub fn on_device(&mut self, item: u32, prompt: &str, uuid: &str, ok: &str) {
        self.0.choose(item, STEP);
        self.pick(prompt, uuid);
        let (k, _) = self.0.expect_any(&[ok, "ERROR"], STEP);
        assert_eq!(k, 0, "item {item} on {uuid} failed:\n{}", self.0.transcript);
    }

    /// Item 26: the server group context on `server` for `client`.
    pub fn server_group(&mut self, server: &str, client: &str) {
        self.0.choose(26, STEP);
        self.pick("Select Server device for provisioning:", server);
        self.pick("Select Client with secure multicast capability:", client);
        let (k, _) = self.0.expect_any(
            &["Successfully provisioned group OSCORE context", "ERROR"],
            STEP,
        );
        assert_eq!(k, 0, "item 26 failed:\n{}", self.0.transcript);
    }

    /// Item 12: pair-wise PSK credentials (credtype 1) between `a` and `b`.
    pub fn pairwise_psk(&mut self, a: &str, b: &str) {
        self.0.choose(12, STEP);
        self.pick("Select device 1:", a);
        self.pick("Select device 2:", b);
        let (k, _) = self
            .0
            .expect_any(&["Successfully provisioned", "ERROR"], STEP);
        assert_eq!(k, 0, "item 12 failed:\n{}", self.0.transcript);
    }

    /// Item 15 or 17 (RETRIEVE `/oic/sec/cred` or `/acl2`) of `uuid`: the
    /// text it printed.
    pub fn retrieve(&mut self, item: u32, uuid: &str) -> String {
        self.0.choose(item, STEP);
        self.pick("Select device:", uuid);
        self.0.expect(
            if item == 15 {
                "/oic/sec/cred:"
            } else {
                "/oic/sec/acl2:"
            },
            STEP,
        );
        // The entries, up to the end of the output burst.
        self.0.drain(Duration::from_millis(500))
    }
}
