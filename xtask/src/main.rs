//! Developer entry point, run as `cargo xtask <command>`: sets up a fresh
//! machine, builds the eBPF object and the sensor, runs the daemon, runs the
//! test suite against the real kernel, and benchmarks the sensor.
//!
//! Modules: `cmd` runs external commands, `setup` installs toolchain pieces
//! and mounts kernel filesystems, `build` drives the two-stage build,
//! `bench` holds the benchmarks, `bench_rtp` the real-time protection one,
//! `bench_fp` the false-positive one,
//! `vm` fetches the kernels the tests boot under qemu.

mod bench;
mod bench_fp;
mod bench_rtp;
mod build;
mod cmd;
mod setup;
mod vm;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use build::{Profile, build, workspace_root};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, run, test and benchmark the sensor"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install LLVM, bpf-linker and rust-src if missing; mount tracefs and bpffs; fetch
    /// qemu and the kernels the qemu tests boot.
    Setup,
    /// Set up, then build the eBPF object and the sensor binary.
    Build {
        /// Build the userspace binary without optimizations (target/debug/sensor).
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run the daemon as root: `sensor daemon ARGS...`.
    Run {
        /// Extra arguments for `sensor daemon`, e.g. `-- --mode blocking`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run the workspace tests (including kernel integration tests, and
    /// BPF LSM tests under qemu on Debian kernels fetched for them).
    Test {
        /// Arguments for the test binaries, e.g. `-- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run a benchmark.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
    /// The workload of `bench capture`, in its own process so that every
    /// process it starts has one recognisable parent.
    #[command(hide = true)]
    Storm {
        iterations: u64,
        #[arg(long, value_enum, default_value = "exec")]
        workload: bench::Workload,
        /// Where the file storm creates its files (the bench's tmpfs).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The workload of `bench rtp`: opens and reads every file of DIR twice.
    #[command(hide = true)]
    ReadFiles { dir: std::path::PathBuf },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Setup => {
            setup::setup()?;
            vm::ensure_vm()?;
        }
        Cmd::Build { debug } => {
            build(if debug {
                Profile::Debug
            } else {
                Profile::Release
            })?;
        }
        Cmd::Run { args } => return run_daemon(&args),
        Cmd::Test { args } => return test(&args),
        Cmd::Bench { bench } => bench::run(bench)?,
        Cmd::Storm {
            iterations,
            workload,
            dir,
        } => bench::storm(workload, iterations, dir.as_deref())?,
        Cmd::ReadFiles { dir } => bench_rtp::read_files(&dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a phase header so long outputs can be scanned by phase.
pub fn banner(title: &str) {
    println!("==> {title}");
}

fn run_daemon(args: &[String]) -> Result<ExitCode> {
    // Checked before building so a non-root user learns it in a second,
    // not after a multi-minute build.
    if !cmd::is_root() {
        bail!(
            "`cargo xtask run` starts the daemon, which loads eBPF programs and needs root: run it as root"
        );
    }
    let artifacts = build(Profile::Release)?;
    banner("run sensor daemon");
    let mut daemon = Command::new(&artifacts.sensor_bin);
    daemon.arg("daemon").args(args);
    println!("run: {}", cmd::describe(&daemon));
    // exec, so signals (Ctrl-C, SIGTERM) reach the daemon itself.
    let err = daemon.exec();
    Err(err).with_context(|| format!("could not exec `{}`", cmd::describe(&daemon)))
}

fn test(args: &[String]) -> Result<ExitCode> {
    let artifacts = build(Profile::Release)?;
    banner("setup: qemu and the test kernels with BPF LSM");
    let vm_kernels = std::env::join_paths(vm::ensure_vm()?)?;
    banner("test (cargo test --release --workspace)");
    let mut cargo = cmd::command(cmd::cargo());
    cargo
        .current_dir(workspace_root())
        .args(["test", "--release", "--workspace", "--no-fail-fast"])
        .env("SENSOR_BPF_OBJECT", &artifacts.bpf_object)
        .env("SENSOR_BIN", &artifacts.sensor_bin)
        .env("SENSOR_VM_KERNELS", &vm_kernels);
    if !args.is_empty() {
        cargo.arg("--").args(args);
    }
    let status = cargo
        .status()
        .with_context(|| format!("could not start `{}`", cmd::describe(&cargo)))?;
    // Pass the exact code on so CI sees what the tests returned.
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if code == 0 {
        banner("test: passed");
    } else {
        banner(&format!("test: FAILED ({status})"));
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailing(argv: &[&str]) -> Vec<String> {
        match Cli::try_parse_from(argv).expect("parses").command {
            Cmd::Run { args } | Cmd::Test { args } => args,
            _ => panic!("not run/test"),
        }
    }

    #[test]
    fn trailing_args_with_and_without_separator() {
        assert_eq!(
            trailing(&["x", "run", "--", "--mode", "blocking"]),
            ["--mode", "blocking"]
        );
        assert_eq!(
            trailing(&["x", "run", "--mode", "blocking"]),
            ["--mode", "blocking"]
        );
        assert_eq!(
            trailing(&["x", "test", "--", "--nocapture"]),
            ["--nocapture"]
        );
        assert!(trailing(&["x", "test"]).is_empty());
    }
}
