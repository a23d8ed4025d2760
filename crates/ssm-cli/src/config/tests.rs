use super::*;
use clap::CommandFactory;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_ssm_toml() {
    let c = FileConfig::parse(
        "iface = \"iot1\"\ndomain = \"/var/lib/ssm/d.sqlite\"\nport = 5690\nunicast_port = 5700\n",
    )
    .unwrap();
    assert_eq!(c.iface, Some(Ifaces::One("iot1".into())));
    assert_eq!(c.values("domain"), ["/var/lib/ssm/d.sqlite"]);
    assert_eq!(c.values("port"), ["5690"]);
    assert_eq!(c.values("unicast_port"), ["5700"]);
    let many = FileConfig::parse("iface = [\"iot1\", \"iot2\"]").unwrap();
    assert_eq!(many.values("iface"), ["iot1", "iot2"]);
    assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
    // A typo or a wrong type is an error, not silently ignored.
    let e = FileConfig::parse("ifase = \"iot1\"").unwrap_err();
    assert!(format!("{e:#}").contains("ifase"), "{e:#}");
    assert!(FileConfig::parse("port = \"high\"").is_err());
    assert!(FileConfig::parse("port = 70000").is_err());
}

#[test]
fn finds_the_file() {
    let none = env_of(&[]);
    assert_eq!(
        path(
            &args(&["ssm", "--config", "/etc/x.toml", "obt", "list"]),
            &none
        )
        .unwrap(),
        Some(PathBuf::from("/etc/x.toml"))
    );
    assert_eq!(
        path(&args(&["ssm", "device", "--config=a.toml"]), &none).unwrap(),
        Some(PathBuf::from("a.toml"))
    );
    assert!(path(&args(&["ssm", "--config"]), &none).is_err());
    // After `--` it is an argument, not the flag.
    assert_eq!(
        path(&args(&["ssm", "--", "--config", "x"]), &none).unwrap(),
        None
    );
    // The per-user file only when it exists.
    let dir = std::env::temp_dir().join(format!("ssm-config-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("ssm")).unwrap();
    let xdg: &'static str = Box::leak(dir.to_string_lossy().into_owned().into_boxed_str());
    let env = env_of(Box::leak(Box::new([("XDG_CONFIG_HOME", xdg)])));
    assert_eq!(path(&args(&["ssm"]), &env).unwrap(), None);
    std::fs::write(dir.join("ssm/ssm.toml"), "port = 1").unwrap();
    assert_eq!(
        path(&args(&["ssm"]), &env).unwrap(),
        Some(dir.join("ssm/ssm.toml"))
    );
    let home: &'static str = Box::leak(
        dir.join("home")
            .to_string_lossy()
            .into_owned()
            .into_boxed_str(),
    );
    std::fs::create_dir_all(dir.join("home/.config/ssm")).unwrap();
    std::fs::write(dir.join("home/.config/ssm/ssm.toml"), "").unwrap();
    let env = env_of(Box::leak(Box::new([("HOME", home)])));
    assert_eq!(
        path(&args(&["ssm"]), &env).unwrap(),
        Some(dir.join("home/.config/ssm/ssm.toml"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file's value is the default: a flag overrides it (the environment
/// in between is tested with real processes in `tests/config.rs`).
#[test]
fn file_values_are_defaults_flags_win() {
    let file = FileConfig::parse(
        "port = 6001\niface = [\"lo\", \"lo2\"]\nunicast_port = 6002\ndomain = \"f.sqlite\"",
    )
    .unwrap();
    let cmd = || apply(crate::Cli::command(), &file);
    let m = cmd()
        .try_get_matches_from(["ssm", "device", "--state-dir", "x"])
        .unwrap();
    let (_, dev) = m.subcommand().unwrap();
    assert_eq!(dev.get_one::<u16>("port"), Some(&6001));
    assert_eq!(dev.get_one::<u16>("unicast_port"), Some(&6002));
    let ifaces: Vec<&String> = dev.get_many::<String>("ifaces").unwrap().collect();
    assert_eq!(ifaces, ["lo", "lo2"]);
    let m = cmd()
        .try_get_matches_from([
            "ssm",
            "device",
            "--state-dir",
            "x",
            "--port",
            "7000",
            "--iface",
            "iot9",
        ])
        .unwrap();
    let (_, dev) = m.subcommand().unwrap();
    assert_eq!(dev.get_one::<u16>("port"), Some(&7000));
    let ifaces: Vec<&String> = dev.get_many::<String>("ifaces").unwrap().collect();
    assert_eq!(ifaces, ["iot9"]);
    // `ssm obt`: a single --iface takes the first; --domain the file's.
    let m = cmd()
        .try_get_matches_from(["ssm", "obt", "discover"])
        .unwrap();
    let (_, obt) = m.subcommand().unwrap();
    assert_eq!(
        obt.get_one::<PathBuf>("domain"),
        Some(&PathBuf::from("f.sqlite"))
    );
    let (_, disc) = obt.subcommand().unwrap();
    assert_eq!(
        disc.get_one::<String>("iface").map(String::as_str),
        Some("lo")
    );
    // The demo stays as it is.
    let m = cmd().try_get_matches_from(["ssm", "demo"]).unwrap();
    let (_, demo) = m.subcommand().unwrap();
    assert_eq!(demo.get_one::<u16>("port"), Some(&5683));
    // Without a file: the built-in defaults.
    let m = apply(crate::Cli::command(), &FileConfig::default())
        .try_get_matches_from(["ssm", "device", "--state-dir", "x"])
        .unwrap();
    let (_, dev) = m.subcommand().unwrap();
    assert_eq!(dev.get_one::<u16>("port"), Some(&5683));
    assert_eq!(dev.get_one::<u16>("unicast_port"), Some(&0));
}

#[test]
fn lo_hint_only_for_an_empty_discovery_on_lo() {
    let lo = vec!["lo".to_string()];
    assert_eq!(lo_hint(&lo, 1), None);
    assert_eq!(lo_hint(&["iot1".to_string()], 0), None);
    let h = lo_hint(&lo, 0).unwrap();
    assert!(
        h.starts_with("no devices found on lo; did you mean --iface "),
        "{h}"
    );
}
