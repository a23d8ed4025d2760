//! The examples every `--help` ends with, in one table so they stay
//! consistent with each other and with README.md. `tests/cli.rs` checks
//! that every subcommand has some; add a line here with a new subcommand.
use clap::Command;

/// (subcommand path, example lines).
pub const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "demo",
        &[
            "ssm demo                          # 8 lights + 1 switch on lo, onboarded and switched",
            "ssm demo --lights 32 --rounds 3",
            "ssm demo --json | jq .latency_us",
            "sudo ssm demo --ipv6              # IPv6 ff02::158 in a network namespace",
        ],
    ),
    (
        "device",
        &[
            "ssm device --state-dir hall/light-0              # unowned: prints its Random PIN",
            "ssm device --state-dir hall/switch-0 --role switch",
            "ssm device --state-dir light --iface iot1 --no-ipv4 --json",
            "ssm device --state-dir hall/light-0 --unicast-port 5690 --power-on off",
        ],
    ),
    (
        "man",
        &["ssm man /usr/local/share/man/man1   # ssm.1, ssm-device.1, ..."],
    ),
    (
        "device reset",
        &["ssm device reset --state-dir hall/light-0   # prints the new UUID"],
    ),
    (
        "client",
        &[
            "ssm client discover",
            "ssm client --state-dir hall/switch-0 update --multicast --value on",
        ],
    ),
    (
        "client discover",
        &[
            "ssm client discover --iface lo --port 5683",
            "ssm client discover --json",
        ],
    ),
    ("client get", &["ssm client get coap://127.0.0.1:40000"]),
    (
        "client update",
        &[
            "ssm client --state-dir hall/switch-0 update --multicast --value on",
            "ssm client --state-dir hall/switch-0 update --multicast --group east --value on",
            "ssm client --state-dir hall/switch-0 update coap://127.0.0.1:40000 --value off",
        ],
    ),
    (
        "client observe",
        &["ssm client observe coap://127.0.0.1:40000 --count 3"],
    ),
    (
        "obt",
        &[
            "ssm obt init --name hallway",
            "ssm obt discover",
            "ssm obt onboard --all --pins pins.txt",
            "ssm obt ssm grant hall-switch --all",
        ],
    ),
    (
        "obt init",
        &[
            "ssm obt init --name hallway",
            "ssm obt init --name hallway --auto-ssm   # every SSM device onboarded joins group all",
            "ssm obt --domain /tmp/d.sqlite init",
        ],
    ),
    (
        "obt discover",
        &[
            "ssm obt discover --iface lo --json",
            "ssm obt discover --iface iot1 --ipv6 --scope site --hops 4   # ff05::158, across routers",
        ],
    ),
    (
        "obt onboard",
        &[
            "ssm obt onboard 127.0.0.1:40000 --pin 12345678 --name hall-1",
            "ssm obt onboard 127.0.0.1:40001 --pin-file hall/switch-0/pin --role switch --name hall-switch",
            "ssm obt onboard --all --pins pins.txt --jobs 8   # lines: <uuid> <PIN> [name] [role]",
        ],
    ),
    ("obt list", &["ssm obt list", "ssm obt list --json"]),
    (
        "obt status",
        &[
            "ssm obt status                   # every device now (secured RETRIEVE)",
            "ssm obt status --watch --for 60s # each light's arrival of each command",
            "ssm obt status --watch --count 8 --json",
        ],
    ),
    ("obt rename", &["ssm obt rename light-3 hall-north"]),
    (
        "obt inspect",
        &["ssm obt inspect hall-1", "ssm obt inspect hall-1 --json"],
    ),
    (
        "obt export",
        &[
            "ssm obt export hallway.ssmdom    # passphrase asked twice",
            "ssm obt export hallway.ssmdom --passphrase-file /run/secrets/ssm",
        ],
    ),
    (
        "obt import",
        &[
            "ssm obt --domain /new/domain.sqlite import hallway.ssmdom",
            "ssm obt import hallway.ssmdom --passphrase-file pass --force",
        ],
    ),
    ("obt show", &["ssm obt show hall-1", "ssm obt show hall-switch --json"]),
    (
        "obt offboard",
        &["ssm obt offboard hall-2          # hard reset, forget, rekey the group"],
    ),
    (
        "obt sync",
        &[
            "ssm obt sync                     # every stale device",
            "ssm obt sync hall-1 hall-2",
            "ssm obt sync --all --jobs 16",
        ],
    ),
    (
        "obt ssm",
        &[
            "ssm obt ssm grant hall-switch --all",
            "ssm obt ssm revoke hall-switch hall-2",
            "ssm obt ssm rekey",
        ],
    ),
    (
        "obt ssm grant",
        &[
            "ssm obt ssm grant hall-switch --all",
            "ssm obt ssm grant hall-switch hall-1 hall-2",
            "ssm obt ssm grant hall-switch --group east   # the whole group, members to come too",
        ],
    ),
    (
        "obt ssm revoke",
        &[
            "ssm obt ssm revoke hall-switch hall-2",
            "ssm obt ssm revoke hall-switch --all   # leaves the group: rekeyed",
            "ssm obt ssm revoke hall-switch --group east",
        ],
    ),
    ("obt ssm rekey", &["ssm obt ssm rekey", "ssm obt ssm rekey --json"]),
    (
        "obt group",
        &[
            "ssm obt group create east",
            "ssm obt group add east hall-1 hall-2",
            "ssm obt ssm grant hall-switch --group east",
            "ssm obt group list",
        ],
    ),
    (
        "obt group create",
        &[
            "ssm obt group create east",
            "ssm obt group create lobby --auto   # onboarded SSM devices join it",
            "ssm obt group create hall --profile group-oscore --aead-alg AES-CCM-16-64-128   # aiocoap members",
        ],
    ),
    (
        "obt group add",
        &["ssm obt group add east hall-1 hall-2 hall-switch"],
    ),
    (
        "obt group remove",
        &["ssm obt group remove east hall-2   # east (only) is rekeyed"],
    ),
    ("obt group list", &["ssm obt group list", "ssm obt group list --json"]),
    ("obt group show", &["ssm obt group show east --json"]),
    ("obt group delete", &["ssm obt group delete east"]),
    ("obt group rekey", &["ssm obt group rekey east"]),
    (
        "obt external",
        &[
            "ssm obt external add bms --role switch --authcred bms.ccs",
            "ssm obt ssm grant bms --group hall",
            "ssm obt external material bms --group hall --out bms-hall.json",
            "ssm obt external remove bms",
        ],
    ),
    (
        "obt external add",
        &[
            "ssm obt external add bms --role switch --authcred bms.ccs   # hex or raw CCS",
            "ssm obt external add panel --role light --authcred panel.ccs",
        ],
    ),
    (
        "obt external material",
        &[
            "ssm obt external material bms --group hall --out bms-hall.json   # 0600",
            "ssm obt external material panel --group hall | jq .sender_id",
        ],
    ),
    (
        "obt external remove",
        &["ssm obt external remove bms   # every group it was in is rekeyed"],
    ),
    (
        "creds",
        &["ssm creds generate --out hall --lights 3 --switches 1"],
    ),
    (
        "creds generate",
        &["ssm creds generate --out hall --lights 3 --switches 1 --force"],
    ),
    (
        "completions",
        &[
            "ssm completions bash > ~/.local/share/bash-completion/completions/ssm",
            "ssm completions zsh > ~/.zfunc/_ssm",
        ],
    ),
];

/// The examples of `path` (space-separated subcommand names).
pub fn of(path: &str) -> Option<&'static [&'static str]> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// `cmd` with every subcommand's examples as its after-help text.
pub fn attach(cmd: Command) -> Command {
    attach_under(cmd, "")
}

fn attach_under(cmd: Command, prefix: &str) -> Command {
    cmd.mut_subcommands(|c| {
        let path = if prefix.is_empty() {
            c.get_name().to_string()
        } else {
            format!("{prefix} {}", c.get_name())
        };
        let c = match of(&path) {
            Some(lines) => {
                let mut text = String::from("Examples:\n");
                for l in lines {
                    text.push_str("  ");
                    text.push_str(l);
                    text.push('\n');
                }
                c.after_help(text)
            }
            None => c,
        };
        attach_under(c, &path)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every row names a real subcommand (no stale examples).
    #[test]
    fn every_example_names_a_subcommand() {
        let cmd = crate::Cli::command();
        for (path, lines) in super::EXAMPLES {
            let mut c = &cmd;
            for name in path.split(' ') {
                c = c
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no subcommand `ssm {path}`"));
            }
            assert!(!lines.is_empty());
            assert!(lines
                .iter()
                .all(|l| l.starts_with("ssm ") || l.starts_with("sudo ssm ")));
        }
    }
}
