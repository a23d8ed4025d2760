//! The arguments of `ssm obt` (clap).
use std::path::PathBuf;

/// Options of `ssm obt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The secure-domain store (default: ~/.local/share/ssm/domain.sqlite).
    #[arg(long, global = true)]
    pub(super) domain: Option<PathBuf>,
    /// JSON output.
    #[arg(long, global = true)]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum Cmd {
    /// Create the secure domain (example: `ssm obt init --name hallway`).
    Init {
        /// Domain name.
        #[arg(long, default_value = "ssm domain")]
        name: String,
        /// Zero-touch SSM: the group `all` takes every SSM device onboarded
        /// (lights as members, switches granted every light; the key is
        /// made at the first).
        #[arg(long)]
        auto_ssm: bool,
    },
    /// Find devices by multicast on an interface: unowned ones, and owned
    /// ones (those of this domain by name; their endpoints are refreshed).
    Discover {
        #[command(flatten)]
        link: Link,
        /// How long to collect replies (ms).
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// Onboard one device by Random PIN (example: `ssm obt onboard 127.0.0.1:40000 --pin 12345678 --name hall-1`),
    /// or every unowned device on an interface with `--all --pins FILE`.
    Onboard {
        /// The device's unicast endpoint (`coap://host:port` or `host:port`).
        ep: Option<String>,
        /// Onboard every unowned device found on `--iface`.
        #[arg(long)]
        all: bool,
        /// With --all: a file of `<device uuid> <PIN> [name] [light|switch]`
        /// lines (the PINs the devices show; a commissioning sheet).
        #[arg(long)]
        pins: Option<PathBuf>,
        /// With --all: where to discover.
        #[command(flatten)]
        link: Link,
        /// Devices worked on at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// The PIN of a device with a fixed PIN. Without it (and without
        /// --pin-file) the PIN is asked for once the device was told to use
        /// Random PIN, when it shows it: on the terminal, or one line read
        /// from stdin after a prompt line on stderr.
        #[arg(long)]
        pin: Option<String>,
        /// Read the PIN from this file once the device shows it (headless
        /// devices write `<state>/pin`).
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// Name to remember it by (default: the name the device gives in /oic/d).
        #[arg(long)]
        name: Option<String>,
        /// light or switch (default: what the device says in /oic/d; with
        /// --all: for rows of the PIN file that name no role). A role the
        /// device contradicts is kept, with a warning.
        #[arg(long, value_parser = ["light", "switch"])]
        role: Option<String>,
    },
    /// List the devices of the domain (state, role, last seen), external
    /// members too (state `external`); read-only: works while another
    /// `ssm obt` runs.
    List,
    /// Every device as it is now: name, role, groups, reachable, on/off
    /// (a secured RETRIEVE over the OBT's owner session), provisioned or
    /// stale, last seen. Read-only: works while another `ssm obt` runs.
    ///
    /// Example: `ssm obt status`, or live: `ssm obt status --watch --for 60s`
    Status {
        /// Keep it live: observe every light (secured OBSERVE) and print
        /// each change as it arrives (one SSM command: every light within
        /// a few ms).
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
        /// With --watch: stop after this long (e.g. `30s`, `500ms`, `2m`; default: until Ctrl-C).
        #[arg(long = "for", value_parser = parse_duration)]
        for_: Option<std::time::Duration>,
        /// How long to wait for each device (ms).
        #[arg(long, default_value_t = 1500)]
        timeout_ms: u64,
        /// Where to look (by multicast) for devices that moved.
        #[command(flatten)]
        link: Link,
    },
    /// Rename a device: in the domain and on the device (`n` of /oic/con,
    /// shown in its /oic/d). Example: `ssm obt rename light-3 hall-north`
    Rename {
        /// Its name or UUID now.
        old: String,
        /// The new name (unique in the domain).
        new: String,
    },
    /// What a device holds (its /oic/sec/cred without secrets, acl2,
    /// pstat, doxm) against what the domain says: missing and extra
    /// entries. Example: `ssm obt inspect light-3`
    Inspect {
        /// Name or UUID.
        device: String,
        /// How long to wait for the device (ms).
        #[arg(long, default_value_t = 4000)]
        timeout_ms: u64,
    },
    /// Write the whole domain (every owner PSK, the group keys, grants,
    /// audit log) to FILE, encrypted with a passphrase (Argon2id +
    /// XChaCha20-Poly1305); the file is 0600. Example: `ssm obt export hall.ssmdom`
    Export {
        /// The export file (refused if it exists, unless --force).
        file: std::path::PathBuf,
        /// Read the passphrase from this file (first line); default: asked twice on the terminal.
        #[arg(long)]
        passphrase_file: Option<std::path::PathBuf>,
        /// Overwrite FILE.
        #[arg(long)]
        force: bool,
    },
    /// Restore a domain from an export (`--domain` is where it goes).
    /// Refuses to replace an existing domain without --force.
    /// Example: `ssm obt import hall.ssmdom`
    Import {
        /// The export file.
        file: std::path::PathBuf,
        /// Read the passphrase from this file (first line); default: asked on the terminal.
        #[arg(long)]
        passphrase_file: Option<std::path::PathBuf>,
        /// Replace the domain that is there (its devices and keys are lost).
        #[arg(long)]
        force: bool,
    },
    /// One device: state, role, SSM group, grants, last seen, recent audit.
    ///
    /// Example: `ssm obt show hall-switch`
    Show {
        /// Name or UUID.
        device: String,
    },
    /// Remove a device: hard-reset it if reachable, forget it, and rekey
    /// the SSM group it belonged to (the new key is pushed to every
    /// remaining member; offline ones become stale).
    ///
    /// Example: `ssm obt offboard light-3`
    Offboard {
        /// Name or UUID.
        device: String,
        #[command(flatten)]
        work: Work,
    },
    /// Bring devices up to date with the domain (default: every stale one;
    /// devices that moved are found again by multicast on `--iface`).
    ///
    /// Example: `ssm obt sync` or `ssm obt sync --all`
    Sync {
        /// Names or UUIDs (default: the stale ones).
        devices: Vec<String>,
        /// Every device of the domain.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        work: Work,
    },
    /// SSM group management: grant, revoke, rekey.
    #[command(subcommand)]
    Ssm(SsmCmd),
    /// SSM groups (zones): several per domain, one key each.
    ///
    /// Example: `ssm obt group create east`, `ssm obt group add east
    /// light-1 light-2`, `ssm obt ssm grant hall-switch --group east`.
    #[command(subcommand)]
    Group(GroupCmd),
    /// External (non-OCF) members of `group-oscore` groups.
    ///
    /// RFC 10021 group-mode members that are not OCF devices (a
    /// building-management system, another vendor's device). Never
    /// onboarded nor reached by the OBT:
    /// registered with their CCS, they join by `group add` (a light) or
    /// `ssm grant --group` (a switch), are listed by `ssm obt list` (state
    /// `external`) and fetch their keys with `material`, again after
    /// every rekey (the OBT cannot push keys to them).
    ///
    /// Example: `ssm obt external add bms --role switch --authcred bms.ccs`,
    /// `ssm obt ssm grant bms --group hall`, `ssm obt external material bms --group hall --out bms.json`.
    #[command(subcommand)]
    External(ExternalCmd),
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum ExternalCmd {
    /// Register an external member by its CCS.
    ///
    /// It gets a new subject UUID and the name given; the CCS is what the
    /// administrator got from it out of band (the OBT cannot check that
    /// the member holds the private key).
    ///
    /// Example: `ssm obt external add bms --role switch --authcred bms.ccs`
    Add {
        /// Its name (unique among the devices of the domain).
        name: String,
        /// light (a member of groups) or switch (commands groups).
        #[arg(long, required = true, value_parser = ["light", "switch"])]
        role: String,
        /// Its CCS (RFC 8392 CWT Claims Set with its Ed25519 public key, as
        /// our devices serve at /ssm/authcred): hex text (whitespace
        /// ignored) or raw bytes.
        #[arg(long, required = true)]
        authcred: PathBuf,
    },
    /// The JSON an external member needs for a group (holds the master secret).
    ///
    /// Of the group's current epoch: group, epoch, Group ID, master
    /// secret, its Sender ID, algorithms,
    /// the Group Manager's CCS, its own CCS and its peers' (Sender ID →
    /// CCS). Holds the master secret: `--out` writes it 0600. Fetch it
    /// again after every rekey of the group.
    ///
    /// Example: `ssm obt external material bms --group hall --out bms-hall.json`
    Material {
        /// The external member.
        name: String,
        /// The group (`group-oscore`).
        #[arg(long, required = true)]
        group: String,
        /// Write it to this file (0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Forget an external member; every group it was in is rekeyed.
    ///
    /// RFC 10021 §12 (rekey on leave); the devices of those groups are
    /// brought up to date.
    ///
    /// Example: `ssm obt external remove bms`
    Remove {
        /// The external member.
        name: String,
        #[command(flatten)]
        work: Work,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum GroupCmd {
    /// A new group (its key is made when the first device is added).
    Create {
        /// Its name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Every SSM device onboarded from now on joins it.
        #[arg(long)]
        auto: bool,
        /// Security profile: `ocf-ssm` (OCF SSM, one shared key) or
        /// `group-oscore` (RFC 10021 group mode: every command signed by
        /// its switch; the OBT is the Group Manager).
        #[arg(long, default_value = "ocf-ssm", value_parser = ["ocf-ssm", "group-oscore"])]
        profile: String,
        /// `group-oscore` only: the AEAD Algorithm its Common Context sets,
        /// carried by every group-mode credential of the group. RFC 10021
        /// §2.1.1 sets it only for groups that use the pairwise mode, but
        /// aiocoap 0.4.17 (draft -23) always sets it (it enters the
        /// `external_aad`): give it when such a member is in the group.
        #[arg(long, value_parser = ["AES-CCM-16-64-128"])]
        aead_alg: Option<String>,
    },
    /// Add devices: lights become members, switches command the group.
    Add {
        /// The group.
        name: String,
        /// Lights or switches (names or UUIDs).
        #[arg(required = true)]
        devices: Vec<String>,
        #[command(flatten)]
        work: Work,
    },
    /// Remove devices; the group (that group only) is rekeyed.
    Remove {
        /// The group.
        name: String,
        /// Lights or switches (names or UUIDs).
        #[arg(required = true)]
        devices: Vec<String>,
        #[command(flatten)]
        work: Work,
    },
    /// Every group: id, epoch, members, switches.
    List,
    /// One group: id, epoch, members, switches, grants.
    Show {
        /// The group.
        name: String,
    },
    /// Delete a group: its devices lose its credentials.
    Delete {
        /// The group.
        name: String,
        #[command(flatten)]
        work: Work,
    },
    /// A new key (new epoch) for this group only.
    Rekey {
        /// The group.
        name: String,
        #[command(flatten)]
        work: Work,
    },
}

/// Where and how many devices at once (every command that changes devices).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Work {
    #[command(flatten)]
    pub(super) link: Link,
    /// Devices worked on at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(super) jobs: u32,
}

/// Where the OBT looks for devices.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Link {
    /// Interface (only named interfaces are used).
    #[arg(long, default_value = "lo")]
    pub(crate) iface: String,
    /// Multicast port.
    #[arg(long, default_value_t = ssm_runtime::multicast::COAP_PORT)]
    pub(crate) port: u16,
    /// Use IPv6 ff02::158 instead of IPv4 (not on lo).
    #[arg(long)]
    pub(crate) ipv6: bool,
    /// `link` (hop limit 1) or `site`: across multicast routers, IPv6
    /// ff05::158 (with --ipv6) or IPv4 224.0.1.187 with hop limit --hops;
    /// the devices must answer the OBT's subnet (`ssm device --site-prefix`).
    #[arg(long, value_enum, default_value_t = Scope::Link)]
    pub(crate) scope: Scope,
    /// Hop limit (TTL) of the site-scope requests (`--scope site`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=255))]
    pub(crate) hops: u32,
}

/// How far the OBT's multicast requests go.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// This link only (hop limit 1; IPv6 ff02::158).
    Link,
    /// The site, through multicast routers (IPv6 ff05::158).
    Site,
}

impl Link {
    /// The engine's view of it.
    pub(crate) fn reach(&self) -> ssm_obt::engine::Reach {
        ssm_obt::engine::Reach {
            iface: self.iface.clone(),
            port: self.port,
            ipv6: self.ipv6,
            site_hops: (self.scope == Scope::Site).then_some(self.hops),
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub(super) enum SsmCmd {
    /// Let a switch command lights by SSM (example: `ssm obt ssm grant hall-switch --all`,
    /// or a whole group: `ssm obt ssm grant hall-switch --group east`).
    Grant {
        /// The switch (name or UUID).
        client: String,
        /// Lights (names or UUIDs), in the group `all`.
        lights: Vec<String>,
        /// Every light of the domain, in the group `all`.
        #[arg(long)]
        all: bool,
        /// The switch commands this group (its members now and later).
        #[arg(long, conflicts_with_all = ["lights", "all"])]
        group: Option<String>,
        #[command(flatten)]
        work: Work,
    },
    /// Take lights from a switch; a switch left with none leaves the group,
    /// which is rekeyed (example: `ssm obt ssm revoke hall-switch light-2`).
    Revoke {
        /// The switch (name or UUID).
        client: String,
        /// Lights (names or UUIDs), in the group `all`.
        lights: Vec<String>,
        /// Every light it may command in the group `all`.
        #[arg(long)]
        all: bool,
        /// The switch no longer commands this group (which is rekeyed).
        #[arg(long, conflicts_with_all = ["lights", "all"])]
        group: Option<String>,
        #[command(flatten)]
        work: Work,
    },
    /// A new group key (new epoch) for every member (example: `ssm obt ssm rekey`).
    Rekey {
        #[command(flatten)]
        work: Work,
    },
}

/// A duration: `250ms`, `30s`, `2m`, or a number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a duration like 30s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: a duration like 30s, 500ms, 2m")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}
