//! `ssm`: the ocf-ssm command line.
use clap::{Parser, Subcommand};

mod client;
mod creds;
mod demo;
mod device;
mod obt;
mod state;

/// OCF Simple Secure Multicast: one OSCORE-protected multicast UPDATE
/// switches every light of a group at once.
#[derive(Parser)]
#[command(name = "ssm", version, about, long_about = None)]
struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show SSM on this machine: lights and a wall switch on loopback.
    ///
    /// Example: `ssm demo --lights 8 --json`
    Demo(demo::Args),
    /// Run one light (OCF device with a binary switch that accepts SSM).
    ///
    /// Example: `ssm device --state-dir hall/light-0 --iface lo`
    Device(device::Args),
    /// Discover, read, update (unicast or SSM multicast) and observe.
    ///
    /// Example: `ssm client --state-dir hall/switch-0 update --multicast --value on`
    Client(client::Args),
    /// The onboarding tool: secure domain, onboarding, SSM grants.
    ///
    /// Example: `ssm obt init && ssm obt discover && ssm obt onboard 127.0.0.1:40000 --pin 12345678`
    Obt(obt::Args),
    /// Credentials for trying SSM before onboarding.
    #[command(subcommand)]
    Creds(creds::Cmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSM_LOG").unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(obt::exit_code(&e))
        }
    }
}
