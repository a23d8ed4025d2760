//! `ssm`: the ocf-ssm command line.
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod client;
mod config;
mod creds;
mod demo;
mod device;
mod engine_ui;
mod examples;
mod manpages;
mod obt;
mod state;
mod usage;

/// OCF Simple Secure Multicast: one OSCORE-protected multicast UPDATE
/// switches every light of a group at once.
#[derive(Parser)]
#[command(
    name = "ssm",
    version,
    propagate_version = true,
    after_help = "Start with `ssm demo`. Every subcommand has --help with examples, --json \
for machines, and -v/-q (or SSM_LOG=debug) for logging."
)]
struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Settings file (default: $XDG_CONFIG_HOME/ssm/ssm.toml or
    /// ~/.config/ssm/ssm.toml): iface, domain, port, unicast_port. Flags
    /// win over SSM_IFACE, SSM_DOMAIN, SSM_PORT, SSM_UNICAST_PORT, which
    /// win over the file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show SSM on this machine: lights and a wall switch are onboarded,
    /// provisioned and switched by one multicast datagram per command.
    Demo(demo::Args),
    /// Run one OCF device: a light (binary switch that accepts SSM) or a
    /// wall switch.
    Device(device::Args),
    /// Discover, read, update (unicast or SSM multicast) and observe.
    Client(client::Args),
    /// The onboarding tool: secure domain, onboarding, SSM grants.
    Obt(obt::Args),
    /// Credentials for trying SSM without an onboarding tool.
    #[command(subcommand)]
    Creds(creds::Cmd),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ssm.1, ssm-device.1, …) into a directory.
    Man {
        /// Where (created if missing).
        dir: std::path::PathBuf,
        /// The files written, as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Whether the command line asked for `--json` (a global flag of some
/// subcommands, a local one of others): found in the deepest matches.
fn wants_json(mut m: &clap::ArgMatches) -> bool {
    loop {
        if let Ok(Some(true)) = m.try_get_one::<bool>("json") {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// An error as `--json` prints it, on stdout: `{"error": …, "exit": N}`.
fn print_json_error(message: &str, exit: u8) {
    println!("{}", serde_json::json!({"error": message, "exit": exit}));
}

/// The settings file (`--config`, or the per-user one).
fn config_file() -> anyhow::Result<config::FileConfig> {
    let args: Vec<String> = std::env::args().collect();
    let path = config::path(&args, &|k| std::env::var(k).ok())?;
    config::load(path.as_deref())
}

/// Log lines on stderr: RFC 3339 UTC wall-clock timestamps (comparable
/// across hosts and with other logs), the device's name where a device
/// logs, and colour only on a terminal (and not with `NO_COLOR`).
fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSM_LOG").unwrap_or_else(|_| level.into()),
        )
        .with_timer(tracing_subscriber::fmt::time::SystemTime)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    // A closed stdout (`ssm … | head`) ends the process quietly, as it does
    // any Unix filter (killed by SIGPIPE: status 141 in a shell), instead
    // of Rust's default of ignoring SIGPIPE, which turns every later
    // `println!` into a panic.
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread
    // exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let file = match config_file() {
        Ok(f) => f,
        Err(e) => {
            if std::env::args().any(|a| a == "--json") {
                print_json_error(&format!("{e:#}"), usage::EXIT_USAGE);
            }
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(usage::EXIT_USAGE);
        }
    };
    let matches = match config::apply(examples::attach(Cli::command()), &file).try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // A parse error (exit status 2): also as JSON if asked for.
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                print_json_error(
                    first.strip_prefix("error: ").unwrap_or(first),
                    e.exit_code().try_into().unwrap_or(usage::EXIT_USAGE),
                );
            }
            e.exit()
        }
    };
    let json = wants_json(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "ssm", &mut script);
        // A closed pipe (`| head`) is not an error worth a panic.
        use std::io::Write;
        let _ = std::io::stdout().write_all(&script);
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Man { dir, json } = &cli.command {
        return match manpages::write_all(examples::attach(Cli::command()), dir) {
            Ok(pages) if *json => {
                println!("{}", serde_json::json!({"dir": dir, "pages": pages}));
                std::process::ExitCode::SUCCESS
            }
            Ok(pages) => {
                println!("{} man pages in {}", pages.len(), dir.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                if *json {
                    print_json_error(&format!("{e:#}"), 1);
                }
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        _ => "trace",
    };
    init_logging(level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Device(args) => device::run(args).await,
            Command::Client(args) => client::run(args).await,
            Command::Creds(cmd) => creds::run(cmd),
            Command::Obt(args) => obt::run(args).await,
            Command::Completions { .. } | Command::Man { .. } => Ok(true),
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            let code = obt::exit_code(&e);
            if json {
                print_json_error(&format!("{e:#}"), code);
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(code)
        }
    }
}
