//! `sensor`: the daemon (`sensor daemon`) and its command-line client.

use anyhow::Result;
use clap::{Parser, Subcommand};
use sensor::{cli, daemon};

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
    }
}
