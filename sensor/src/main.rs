//! `sensor`: the daemon (`sensor daemon`) and its command-line client.

use anyhow::Result;
use clap::{Parser, Subcommand};
use sensor::{cli, cli::antimalware as am, daemon};

#[derive(Parser)]
#[command(name = "sensor", version, about = "Linux endpoint security sensor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sensor (as root).
    Daemon(daemon::DaemonArgs),
    /// Print events from the daemon.
    Events(cli::EventsArgs),
    /// Show the daemon's health.
    Health(cli::HealthArgs),
    /// Detections the daemon made.
    #[command(subcommand)]
    Detections(DetectionsCommand),
    /// Antimalware definitions (signatures and rules).
    #[command(subcommand)]
    Definitions(am::DefinitionsCommand),
    /// Threats found, quarantine, allowed threats.
    #[command(subcommand)]
    Threat(am::ThreatCommand),
    /// What real-time protection and scans leave alone.
    #[command(subcommand)]
    Exclusion(am::ExclusionCommand),
    /// On-demand scans.
    #[command(subcommand)]
    Scan(am::ScanCommand),
}

#[derive(Subcommand)]
enum DetectionsCommand {
    /// List the detections kept by the daemon, oldest first.
    List(cli::DetectionsListArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Daemon(a) => daemon::run(a).await,
        Command::Events(a) => cli::events(a).await,
        Command::Health(a) => cli::health(a).await,
        Command::Detections(DetectionsCommand::List(a)) => cli::detections_list(a).await,
        Command::Definitions(c) => am::definitions(c).await,
        Command::Threat(c) => am::threat(c).await,
        Command::Exclusion(c) => am::exclusion(c).await,
        Command::Scan(c) => am::scan(c).await,
    }
}
