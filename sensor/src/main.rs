//! `sensor`: the daemon (`sensor daemon`) and its command-line client.

use std::{io::Write, process::ExitCode};

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
    Daemon(Box<daemon::DaemonArgs>),
    /// Print events from the daemon.
    Events(cli::EventsArgs),
    /// Show the daemon's health.
    Health(cli::HealthArgs),
    /// Detections the daemon made.
    #[command(subcommand)]
    Detections(DetectionsCommand),
    /// Detection rules: built-in and Sigma, and updates of the Sigma rule set.
    #[command(subcommand)]
    Rules(cli::rules::RulesCommand),
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
    /// What the sensor itself costs, for tuning it.
    #[command(subcommand)]
    Diagnostic(DiagnosticCommand),
}

#[derive(Subcommand)]
enum DiagnosticCommand {
    /// Each kernel program's runs and run time since the daemon started, busiest first.
    EbpfStatistics(cli::diagnostic::EbpfStatisticsArgs),
}

#[derive(Subcommand)]
enum DetectionsCommand {
    /// List the detections kept by the daemon, oldest first.
    List(cli::DetectionsListArgs),
}

/// Errors end as one line, `sensor: what went wrong`, with status 1 (2 for usage). Never
/// the `{:?}` form: with RUST_BACKTRACE set it shows people a backtrace.
#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let command = Cli::parse().command;
    if !matches!(command, Command::Daemon(_)) {
        std::panic::set_hook(Box::new(report_panic));
    }
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`sensor events | head -1`): nothing left to tell anyone.
        Err(e) if e.is::<cli::output::OutputClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("sensor: {e:#}");
            let _ = writeln!(std::io::stderr(), "{}", cli::output::escape_controls(&line));
            ExitCode::from(cli::errors::exit_status(&e))
        }
    }
}

/// A bug in the client reaches its user as one line too: where, and what it says.
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let line = format!("sensor: internal error{at}: {what}");
    let _ = writeln!(std::io::stderr(), "{}", cli::output::escape_controls(&line));
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Daemon(a) => daemon::run(*a).await,
        Command::Events(a) => cli::events(a).await,
        Command::Health(a) => cli::health(a).await,
        Command::Detections(DetectionsCommand::List(a)) => cli::detections_list(a).await,
        Command::Rules(c) => cli::rules::rules(c).await,
        Command::Definitions(c) => am::definitions(c).await,
        Command::Threat(c) => am::threat(c).await,
        Command::Exclusion(c) => am::exclusion(c).await,
        Command::Scan(c) => am::scan(c).await,
        Command::Diagnostic(DiagnosticCommand::EbpfStatistics(a)) => {
            cli::diagnostic::ebpf_statistics(a).await
        }
    }
}
