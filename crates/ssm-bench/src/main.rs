//! `ssm-bench`: scenario benchmarks for ocf-ssm (issue 8). Everything runs
//! on `lo` (IPv4 224.0.1.187, TTL 1) without root.
//!
//! * `fanout`: one SSM command to N lights vs sequential unicast.
//! * `throughput`: receive throughput of one light (sans-IO and socket).
//! * `footprint`: RSS of N lights in one process.
//! * `building`: 50 zones × 20 lights, a switch and a group key per zone.
//! * `report`: all of it, repeated, into a Markdown section and an SVG plot.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod building;
mod common;
mod fanout;
mod footprint;
mod group_mode;
mod report;
mod throughput;

#[derive(Parser, Debug)]
#[command(
    name = "ssm-bench",
    about = "ocf-ssm scenario benchmarks (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One SSM command to N lights vs sequential pair-wise OSCORE unicast.
    Fanout(fanout::Args),
    /// Valid and garbage datagrams per second one light handles.
    Throughput(throughput::Args),
    /// RSS of N lights in this process.
    Footprint(footprint::Args),
    /// A building: zones of lights, one switch and one group key each;
    /// every command applied by exactly its zone.
    Building(building::Args),
    /// The lights of one `building --mode procs` process (internal).
    #[command(hide = true)]
    BuildingHost(building::HostArgs),
    /// Runs everything and writes the report and the plot.
    Report(report::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
    let r: Result<bool> = rt.block_on(async {
        match cli.command {
            Command::Fanout(a) => fanout::run(a).await,
            Command::Throughput(a) => throughput::run(a).await,
            Command::Footprint(a) => footprint::run(a).await,
            Command::Building(a) => building::run(a).await,
            Command::BuildingHost(a) => building::host(a).await,
            Command::Report(a) => report::run(a).await,
        }
    });
    match r {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
