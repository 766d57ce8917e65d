//! `cargo xtask bench <name>`: measures what running the sensor costs the
//! rest of the machine. Each bench alternates runs without and with the
//! daemon so that drift (page cache, CPU frequency, noisy neighbours) hits
//! both sides alike, and reports the median ratio.
//!
//! - `capture`: a fork+exec storm of `/bin/true`; reports the slowdown, how
//!   many exec events the daemon saw and lost, its CPU time and peak RSS.
//! - `rtp`: real-time protection on file opens, against ClamAV's clamonacc
//!   (in `bench_rtp`).
//! - `fp`: detections raised by everyday admin work (in `bench_fp`).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use sensor_testkit::{Daemon, DaemonSpec, TempDir};

use crate::banner;
use crate::build::{Profile, build};
use crate::cmd::{self, describe};

#[derive(Subcommand)]
pub enum Bench {
    /// Overhead of event capture on a fork+exec storm of /bin/true.
    Capture(CaptureArgs),
    /// Detection engine throughput, and exec-to-detection latency on the gRPC stream.
    Detect,
    /// Real-time protection: cold and cached open+read of small files, against no
    /// scanner and against ClamAV's clamonacc; `scan custom` throughput.
    Rtp(crate::bench_rtp::RtpArgs),
    /// False positives of a passive daemon on a rebuild of this project and on Debian
    /// package installs (installs and removes tcpdump unless it is already there).
    Fp,
}

#[derive(Args)]
pub struct CaptureArgs {
    /// fork+exec of /bin/true per run.
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    /// Baseline/with-sensor pairs to run.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Capture(args) => capture(&args),
        Bench::Detect => detect(),
        Bench::Rtp(args) => crate::bench_rtp::rtp(&args),
        Bench::Fp => crate::bench_fp::fp(),
    }
}

/// Runs the sensor crate's `detect` bench binary (it measures in process and against a
/// daemon it starts).
fn detect() -> Result<()> {
    if !cmd::is_root() {
        bail!("`bench detect` starts the daemon, which needs root: run it as root");
    }
    let artifacts = build(Profile::Release)?;
    banner("bench detect");
    let mut cargo = crate::cmd::command(cmd::cargo());
    cargo
        .current_dir(crate::build::workspace_root())
        .args(["bench", "-p", "sensor", "--bench", "detect"])
        .env("SENSOR_BPF_OBJECT", &artifacts.bpf_object)
        .env("SENSOR_BIN", &artifacts.sensor_bin);
    cmd::run(&mut cargo)
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const TARGET_RATIO: f64 = 1.05;
const TARGET_RSS_MB: f64 = 64.0;

struct Round {
    baseline_secs: f64,
    sensor_secs: f64,
    exec_received: Option<u64>,
    lost: Option<u64>,
    cpu_secs: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.sensor_secs / self.baseline_secs
    }
}

fn capture(args: &CaptureArgs) -> Result<()> {
    if args.iterations == 0 || args.rounds == 0 {
        bail!("--iterations and --rounds must be at least 1");
    }
    if !cmd::is_root() {
        bail!("`bench capture` starts the daemon, which needs root: run it as root");
    }
    let artifacts = build(Profile::Release)?;
    let n = args.iterations;
    banner(&format!(
        "bench capture: {n} fork+exec of /bin/true per run, {} rounds of baseline then sensor",
        args.rounds
    ));
    let tmp = TempDir::new("bench-capture");

    // The first storm after a build runs on a cold page cache; keep it out
    // of the comparison.
    let warm_up = n.min(2_000);
    println!("bench: warm-up storm of {warm_up}");
    run_storm(warm_up)?;

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let baseline_secs = run_storm(n)?;
        println!("bench: round {round}: baseline {baseline_secs:.3} s");
        let r = sensor_run(&artifacts.sensor_bin, tmp.path(), round, n, baseline_secs)
            .with_context(|| format!("round {round} with the sensor failed"))?;
        println!(
            "bench: round {round}: sensor   {:.3} s (ratio {:.3})",
            r.sensor_secs,
            r.ratio()
        );
        rounds.push(r);
    }
    report(&rounds, n);
    Ok(())
}

/// The hidden `storm` subcommand: the workload itself. Prints its wall time
/// in seconds so the measurement excludes starting this process.
pub fn storm(iterations: u64) -> Result<()> {
    let start = Instant::now();
    for i in 0..iterations {
        let status = Command::new("/bin/true")
            .status()
            .with_context(|| format!("storm: starting /bin/true (iteration {i}) failed"))?;
        if !status.success() {
            bail!("storm: /bin/true failed ({status}) at iteration {i}");
        }
    }
    println!("{}", start.elapsed().as_secs_f64());
    Ok(())
}

/// Runs the storm in a child xtask process and returns its wall time.
fn run_storm(iterations: u64) -> Result<f64> {
    let exe = std::env::current_exe().context("cannot locate the xtask binary")?;
    let mut storm = Command::new(exe);
    storm.arg("storm").arg(iterations.to_string());
    let out = cmd::output(&mut storm)?;
    out.trim()
        .parse()
        .with_context(|| format!("`{}` printed {out:?}, not seconds", describe(&storm)))
}

fn sensor_run(bin: &Path, tmp: &Path, round: u32, n: u64, baseline_secs: f64) -> Result<Round> {
    let socket = tmp.join("sensor.sock");
    let _ = fs::remove_file(&socket);
    let spec = DaemonSpec {
        ready_timeout: READY_TIMEOUT,
        stop_timeout: STOP_TIMEOUT,
        ..DaemonSpec::new(bin, &socket, &tmp.join(format!("daemon-{round}.log")))
    }
    .args(["--mode", "passive"]);
    let mut daemon = Daemon::launch(spec)?;
    let before = daemon.health_json()?;
    let sensor_secs = run_storm(n)?;
    // Events still sit in the ring buffer and the pipeline when the storm ends.
    sleep(DRAIN);
    let after = daemon
        .health_json()
        .context("reading health after the storm failed")?;
    let cpu_secs = daemon_cpu_secs(daemon.pid())
        .inspect_err(|e| eprintln!("bench: warning: daemon CPU time: {e:#}"))
        .ok();
    let peak_rss_mb = daemon_peak_rss_mb(daemon.pid())
        .inspect_err(|e| eprintln!("bench: warning: daemon peak RSS: {e:#}"))
        .ok();
    let status = daemon.stop()?;
    if !status.success() {
        eprintln!("bench: warning: the daemon exited with {status} after SIGTERM");
    }

    let (before, after) = (HealthCounts::from(&before), HealthCounts::from(&after));
    Ok(Round {
        baseline_secs,
        sensor_secs,
        exec_received: after
            .exec_received
            .zip(before.exec_received)
            .map(|(a, b)| a.saturating_sub(b)),
        lost: after.lost,
        cpu_secs,
        peak_rss_mb,
    })
}

/// The fields of `sensor health --output json` the bench uses; the shape may
/// still change, so anything missing is reported as n/a rather than failing.
struct HealthCounts {
    exec_received: Option<u64>,
    /// Everything lost since the daemon started, over all event kinds.
    lost: Option<u64>,
}

impl From<&Value> for HealthCounts {
    fn from(v: &Value) -> Self {
        let lost = v.pointer("/events/lost").and_then(|l| match l {
            Value::Object(kinds) => Some(kinds.values().filter_map(Value::as_u64).sum()),
            other => other.as_u64(),
        });
        Self {
            exec_received: v
                .pointer("/events/received/process_exec")
                .and_then(Value::as_u64),
            lost,
        }
    }
}

/// utime + stime of a live process, from /proc/<pid>/stat.
fn daemon_cpu_secs(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after its closing parenthesis start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("unexpected {path}: {stat:?}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path} has no numeric field {n}"))
    };
    let ticks = field(14)? + field(15)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok(ticks as f64 / hz as f64)
}

/// VmHWM (peak resident set) of a live process, in MB.
fn daemon_peak_rss_mb(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{path} has no VmHWM line"))?;
    Ok(kb as f64 / 1024.0)
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Sum over rounds, or None if any round lacks the value.
fn total<T: std::iter::Sum<T>>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
    values.sum()
}

fn max(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max))
}

pub(crate) fn or_na<T: std::fmt::Display>(v: Option<T>, fmt: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), fmt)
}

pub(crate) fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "MISS (n/a)",
    }
}

fn report(rounds: &[Round], n: u64) {
    banner("bench capture: results");
    println!(
        "{:>5}  {:>10}  {:>10}  {:>6}  {:>17}  {:>6}  {:>12}  {:>11}",
        "round",
        "baseline s",
        "sensor s",
        "ratio",
        "exec recv/expect",
        "lost",
        "daemon cpu s",
        "peak RSS MB"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{:>5}  {:>10.3}  {:>10.3}  {:>6.3}  {:>17}  {:>6}  {:>12}  {:>11}",
            i + 1,
            r.baseline_secs,
            r.sensor_secs,
            r.ratio(),
            format!("{}/{n}", or_na(r.exec_received, |v| v.to_string())),
            or_na(r.lost, |v| v.to_string()),
            or_na(r.cpu_secs, |v| format!("{v:.2}")),
            or_na(r.peak_rss_mb, |v| format!("{v:.1}")),
        );
    }

    let ratio = median(&mut rounds.iter().map(Round::ratio).collect::<Vec<_>>());
    let received = total(rounds.iter().map(|r| r.exec_received));
    let expected = n * rounds.len() as u64;
    let lost = total(rounds.iter().map(|r| r.lost));
    let cpu = total(rounds.iter().map(|r| r.cpu_secs));
    let rss = max(rounds.iter().map(|r| r.peak_rss_mb));

    println!("median ratio (sensor / baseline): {ratio:.3}");
    println!(
        "exec events received: {}/{expected} (other processes on the machine add a few)",
        or_na(received, |v| v.to_string())
    );
    println!(
        "events lost (all kinds): {}",
        or_na(lost, |v| v.to_string())
    );
    println!(
        "daemon CPU: {} s per run (mean over {} runs)",
        or_na(cpu, |v| format!("{:.2}", v / rounds.len() as f64)),
        rounds.len()
    );
    println!(
        "daemon peak RSS: {} MB (max over runs)",
        or_na(rss, |v| format!("{v:.1}"))
    );
    println!("target: ratio <= {TARGET_RATIO}, lost == 0, RSS < {TARGET_RSS_MB} MB");
    println!(
        "  ratio {ratio:.3}: {}",
        verdict(Some(ratio <= TARGET_RATIO))
    );
    println!(
        "  lost {}: {}",
        or_na(lost, |v| v.to_string()),
        verdict(lost.map(|l| l == 0))
    );
    println!(
        "  RSS {} MB: {}",
        or_na(rss, |v| format!("{v:.1}")),
        verdict(rss.map(|r| r < TARGET_RSS_MB))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_counts_parse_defensively() {
        let v = json!({"events": {"received": {"process_exec": 7}, "lost": {"a": 1, "b": 2}}});
        let h = HealthCounts::from(&v);
        assert_eq!(h.exec_received, Some(7));
        assert_eq!(h.lost, Some(3));
        let h = HealthCounts::from(&json!({}));
        assert_eq!(h.exec_received, None);
        assert_eq!(h.lost, None);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
