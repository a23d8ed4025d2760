//! Configuration: `ssm.toml` and `SSM_*` environment variables for the
//! settings that differ per site (the interface, the domain file, the
//! ports), with the precedence **flag > environment > file > built-in
//! default**.
//!
//! The file is `--config FILE`, else `$XDG_CONFIG_HOME/ssm/ssm.toml`, else
//! `~/.config/ssm/ssm.toml` (none is fine). Both layers are applied to the
//! command line's definition before it is parsed: each setting becomes the
//! `env` of every flag it names (clap reads it when the flag is absent) and
//! the file's value becomes that flag's default. `ssm demo` takes none of
//! them: it always runs the same, self-contained.
use anyhow::{bail, Context, Result};
use clap::{Arg, ArgAction, Command};
use std::path::{Path, PathBuf};

/// `ssm.toml`. Unknown keys are an error (a typo must not be ignored).
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--iface`: one name or a list.
    pub iface: Option<Ifaces>,
    /// `--domain` of `ssm obt`.
    pub domain: Option<PathBuf>,
    /// `--port`: the CoAP multicast port.
    pub port: Option<u16>,
    /// `--unicast-port` of `ssm device`.
    pub unicast_port: Option<u16>,
}

/// `iface = "iot1"` or `iface = ["iot1", "iot2"]`.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Ifaces {
    /// One interface.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// (file key, flag, environment variable) of every setting.
pub const SETTINGS: [(&str, &str, &str); 4] = [
    ("iface", "iface", "SSM_IFACE"),
    ("domain", "domain", "SSM_DOMAIN"),
    ("port", "port", "SSM_PORT"),
    ("unicast_port", "unicast-port", "SSM_UNICAST_PORT"),
];

impl FileConfig {
    /// Parses `ssm.toml` text.
    pub fn parse(text: &str) -> Result<FileConfig> {
        Ok(toml::from_str(text)?)
    }

    /// The file's values for `key` (of [`SETTINGS`]), as flag values.
    fn values(&self, key: &str) -> Vec<String> {
        match key {
            "iface" => match &self.iface {
                Some(Ifaces::One(i)) => vec![i.clone()],
                Some(Ifaces::Many(v)) => v.clone(),
                None => Vec::new(),
            },
            "domain" => self
                .domain
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect(),
            "port" => self.port.iter().map(u16::to_string).collect(),
            "unicast_port" => self.unicast_port.iter().map(u16::to_string).collect(),
            _ => Vec::new(),
        }
    }
}

/// The configuration file to read: `--config FILE` from `args` (required
/// to exist), else the per-user one if it exists.
pub fn path(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let explicit = match a.strip_prefix("--config") {
            Some("") => it.next().cloned(),
            Some(rest) if rest.starts_with('=') => Some(rest[1..].to_string()),
            _ => continue,
        };
        let Some(p) = explicit else {
            bail!("--config needs a file");
        };
        return Ok(Some(PathBuf::from(p)));
    }
    let base = match (env("XDG_CONFIG_HOME"), env("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) if !h.is_empty() => Path::new(&h).join(".config"),
        _ => return Ok(None),
    };
    let p = base.join("ssm").join("ssm.toml");
    Ok(p.exists().then_some(p))
}

/// Reads the configuration file, if any.
pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let Some(p) = path else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    FileConfig::parse(&text).with_context(|| format!("{} is not a valid ssm.toml", p.display()))
}

/// `cmd` with the environment variables and the file's defaults applied to
/// every flag they name, in every subcommand but `demo`.
pub fn apply(cmd: Command, file: &FileConfig) -> Command {
    let cmd = cmd.mut_args(|a| configure(a, file));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "demo")
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| apply(sub, file))
    })
}

fn configure(a: Arg, file: &FileConfig) -> Arg {
    let Some(long) = a.get_long().map(str::to_string) else {
        return a;
    };
    let Some((key, _, var)) = SETTINGS.iter().find(|(_, flag, _)| *flag == long) else {
        return a;
    };
    let many = matches!(a.get_action(), ArgAction::Append);
    let mut a = a.env(var);
    if many {
        // SSM_IFACE=iot1,iot2
        a = a.value_delimiter(',');
    }
    let values = file.values(key);
    match (values.first(), many) {
        (None, _) => a,
        (Some(_), true) => a.default_values(values),
        (Some(v), false) => a.default_value(v.clone()),
    }
}

/// The hint for an empty discovery on `lo` (the built-in default, which on
/// a real LAN finds nothing): the interfaces that could be meant.
pub fn lo_hint(ifaces: &[String], found: usize) -> Option<String> {
    if found > 0 || ifaces != ["lo"] {
        return None;
    }
    let candidates = ssm_runtime::netif::multicast_interfaces();
    let suggest = match candidates.as_slice() {
        [] => "--iface IF".to_string(),
        [one] => format!("--iface {one}"),
        many => format!("--iface {} (or: {})", many[0], many[1..].join(", ")),
    };
    Some(format!(
        "no devices found on lo; did you mean {suggest}? (or set SSM_IFACE, or iface in ssm.toml)"
    ))
}

#[cfg(test)]
mod tests;
