//! `cargo xtask bench <name>`: measures what running the sensor costs the
//! rest of the machine. Each bench alternates runs without and with the
//! daemon so that drift (page cache, CPU frequency, noisy neighbours) hits
//! both sides alike, and reports the median ratio.
//!
//! - `capture`: three storms, each against its own target: fork+exec of
//!   `/bin/true`, file create/write/rename/chmod/unlink on a private tmpfs, and
//!   loopback TCP connect/accept; reports each slowdown, how many of the
//!   storm's events the daemon saw and lost, its CPU time and peak RSS. With
//!   `--peer auditd`, auditd records the same storms last (in [`audit`]).
//! - `rtp`: real-time protection on file opens, against ClamAV's clamonacc
//!   (in `bench_rtp`).
//! - `fp`: detections raised by everyday admin work (in `bench_fp`).

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use sensor_testkit::{Daemon, DaemonSpec, TempDir, Tmpfs};

mod audit;

use crate::banner;
use crate::build::{Profile, build};
use crate::cmd::{self, describe};

#[derive(Subcommand)]
pub enum Bench {
    /// Overhead of event capture on storms of fork+exec, file changes and loopback
    /// TCP connects.
    Capture(CaptureArgs),
    /// Detection engine throughput, and exec-to-detection latency on the gRPC stream.
    Detect(DetectArgs),
    /// Real-time protection: cold and cached open+read of small files, against no
    /// scanner and against ClamAV's clamonacc; `scan custom` throughput.
    Rtp(crate::bench_rtp::RtpArgs),
    /// False positives of a passive daemon on a rebuild of this project, Debian package
    /// installs (installs and removes tcpdump unless it is already there) and an
    /// interactive administration session in a login shell.
    Fp,
}

#[derive(Args)]
pub struct CaptureArgs {
    /// Operations per run: execs, files or connections.
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    /// Baseline/with-sensor pairs to run, per workload.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Storms to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "exec,file,connect")]
    workload: Vec<Workload>,
    /// Also time the storms under this peer, after every baseline and sensor round (audit,
    /// once on, slows every later process until reboot).
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    /// Extra daemon flag for the sensor rounds, repeatable (e.g.
    /// `--daemon-arg=--real-time-protection=false` to time capture alone).
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    daemon_args: Vec<String>,
}

/// Another way of recording the same activity, timed on the same storms.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Linux audit: auditd with rules equivalent to the sensor's capture of each storm.
    Auditd,
}

/// One storm of `bench capture`: what it does, which event kinds it causes, and the
/// slowdown it may cost.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// fork+exec of /bin/true.
    Exec,
    /// create, write, close, rename, chmod, unlink of one file, on the bench's tmpfs.
    File,
    /// a loopback TCP connect, accepted then closed.
    Connect,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::File => "file",
            Self::Connect => "connect",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Exec => "fork+exec of /bin/true",
            Self::File => "file create+write+rename+chmod+unlink on a private tmpfs",
            Self::Connect => "loopback TCP connect+accept",
        }
    }

    /// The kinds one operation of the storm raises once each; their received
    /// counts are compared with iterations times their number.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Self::Exec => &["process_exec"],
            Self::File => &["file_create", "file_rename", "file_chmod", "file_unlink"],
            Self::Connect => &["net_connect", "net_accept"],
        }
    }

    /// The column and line label of the received events.
    fn family(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::File => "file",
            Self::Connect => "net",
        }
    }

    fn target_ratio(self) -> f64 {
        match self {
            Self::Exec => 1.05,
            Self::File => 1.5,
            Self::Connect => 1.15,
        }
    }
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Capture(args) => capture(&args),
        Bench::Detect(args) => detect(&args),
        Bench::Rtp(args) => crate::bench_rtp::rtp(&args),
        Bench::Fp => crate::bench_fp::fp(),
    }
}

/// Runs the sensor crate's `detect` bench binary (it measures in process and against a
/// daemon it starts).
#[derive(clap::Args)]
pub struct DetectArgs {
    /// Also measure with the Sigma rules below DIR (e.g. a checkout of SigmaHQ's
    /// rules/linux), loaded with the default filter and with every level and status.
    #[arg(long, value_name = "DIR")]
    sigma_rules: Option<std::path::PathBuf>,
}

fn detect(args: &DetectArgs) -> Result<()> {
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
    if let Some(dir) = &args.sigma_rules {
        cargo.env("SENSOR_BENCH_SIGMA_RULES", dir.canonicalize()?);
    }
    cmd::run(&mut cargo)
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const TARGET_RSS_MB: f64 = 64.0;

struct Round {
    baseline_secs: f64,
    sensor_secs: f64,
    /// Events of the workload's kinds, all of them added up.
    received: Option<u64>,
    lost: Option<u64>,
    /// The daemon's CPU time (user and system) from just before the storm to the end
    /// of its drain.
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
    if args.workload.is_empty() {
        bail!("--workload needs at least one of exec, file, connect");
    }
    if !cmd::is_root() {
        bail!("`bench capture` starts the daemon, which needs root: run it as root");
    }
    if args.peer == Some(Peer::Auditd) {
        for tool in ["auditd", "auditctl"] {
            if crate::setup::which(tool).is_none() {
                bail!("--peer auditd needs {tool}: run `cargo xtask setup` (installs auditd)");
            }
        }
    }
    let audit_before = audit::enabled_now();
    if audit_before == Some(true) {
        println!(
            "bench: WARNING: the kernel's audit was already enabled (auditctl -s) before this \
             bench: every process pays audit bookkeeping, baselines included, until reboot"
        );
    }
    let artifacts = build(Profile::Release)?;
    let tmp = TempDir::new("bench-capture");
    let mut workloads = args.workload.clone();
    workloads.dedup();
    let mut summaries = Vec::new();
    for &workload in &workloads {
        let summary = capture_workload(&artifacts.sensor_bin, tmp.path(), workload, args)?;
        summaries.push(summary);
    }
    if args.peer == Some(Peer::Auditd) {
        // Last: audit, once enabled, costs every later process until reboot.
        let peer = audit::AuditPeer::start()?;
        for s in &mut summaries {
            s.peer = Some(peer_workload(&peer, tmp.path(), s, args)?);
        }
        drop(peer);
    }
    summarize(&summaries, audit_before);
    Ok(())
}

/// The file storm's own file system, mounted for one set of runs: the daemon (or the
/// peer) sees every change on it, and dropping it (on any way out) detaches it.
fn storm_of(workload: Workload, tmp: &Path) -> Result<(Storm, Option<Tmpfs>)> {
    let files = match workload {
        Workload::File => Some(Tmpfs::mount_at(
            &tmp.join("file-storm"),
            "xtask-bench-capture",
            "64m",
        )?),
        _ => None,
    };
    let storm = Storm {
        workload,
        dir: files.as_ref().map(|fs| fs.path().to_owned()),
    };
    Ok((storm, files))
}

/// Runs a workload's storms under auditd and compares them with the baselines measured
/// before audit was turned on.
fn peer_workload(
    peer: &audit::AuditPeer,
    tmp: &Path,
    summary: &Summary,
    args: &CaptureArgs,
) -> Result<PeerSummary> {
    let workload = summary.workload;
    let n = args.iterations;
    banner(&format!(
        "bench capture: {n} {} per run, {} rounds under auditd",
        workload.describe(),
        args.rounds
    ));
    let (storm, files) = storm_of(workload, tmp)?;
    peer.load_rules(workload, storm.dir.as_deref())?;
    let before = audit::AuditStatus::read()?;
    let mut secs = Vec::new();
    for round in 1..=args.rounds {
        let s = storm.run(n)?;
        println!("bench: round {round}: auditd   {s:.3} s");
        secs.push(s);
    }
    // auditd writes what is queued before the lost count is final.
    sleep(DRAIN);
    let after = audit::AuditStatus::read()?;
    peer.clear_rules()?;
    if let Some(fs) = files {
        fs.unmount()?;
    }
    let ratio = median(&mut secs) / summary.baseline;
    let lost = after.lost.saturating_sub(before.lost);
    println!(
        "auditd: median ratio {ratio:.3} (against the baseline median before audit was on), \
         lost {lost}, backlog {} at the end",
        after.backlog
    );
    Ok(PeerSummary {
        ratio,
        lost,
        backlog: after.backlog,
    })
}

/// What one workload's runs came to, for the summary over all of them.
struct Summary {
    workload: Workload,
    ratio: f64,
    /// Median baseline seconds, which the peer is compared with.
    baseline: f64,
    lost: Option<u64>,
    rss: Option<f64>,
    peer: Option<PeerSummary>,
}

/// The peer's runs of one workload.
struct PeerSummary {
    ratio: f64,
    /// Records audit lost during the runs (`auditctl -s` lost), and those still queued.
    lost: u64,
    backlog: u64,
}

fn capture_workload(
    bin: &Path,
    tmp: &Path,
    workload: Workload,
    args: &CaptureArgs,
) -> Result<Summary> {
    let n = args.iterations;
    banner(&format!(
        "bench capture: {n} {} per run, {} rounds of baseline then sensor",
        workload.describe(),
        args.rounds
    ));
    let (storm, files) = storm_of(workload, tmp)?;

    // The first storm after a build runs on a cold page cache; keep it out
    // of the comparison.
    let warm_up = n.min(2_000);
    println!("bench: warm-up storm of {warm_up}");
    storm.run(warm_up)?;

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let baseline_secs = storm.run(n)?;
        println!("bench: round {round}: baseline {baseline_secs:.3} s");
        let r = sensor_run(bin, tmp, &storm, round, n, baseline_secs, &args.daemon_args)
            .with_context(|| {
                format!(
                    "{} storm, round {round} with the sensor failed",
                    workload.name()
                )
            })?;
        println!(
            "bench: round {round}: sensor   {:.3} s (ratio {:.3})",
            r.sensor_secs,
            r.ratio()
        );
        rounds.push(r);
    }
    if let Some(fs) = files {
        fs.unmount()?;
    }
    Ok(report(workload, &rounds, n))
}

/// The hidden `storm` subcommand: the workload itself. Prints its wall time
/// in seconds so the measurement excludes starting this process.
pub fn storm(workload: Workload, iterations: u64, dir: Option<&Path>) -> Result<()> {
    let start = Instant::now();
    match workload {
        Workload::Exec => exec_storm(iterations)?,
        Workload::File => {
            let dir = dir.context("storm: the file storm needs --dir (a tmpfs)")?;
            file_storm(iterations, dir)?;
        }
        Workload::Connect => connect_storm(iterations)?,
    }
    println!("{}", start.elapsed().as_secs_f64());
    Ok(())
}

fn exec_storm(iterations: u64) -> Result<()> {
    for i in 0..iterations {
        let status = Command::new("/bin/true")
            .status()
            .with_context(|| format!("storm: starting /bin/true (iteration {i}) failed"))?;
        if !status.success() {
            bail!("storm: /bin/true failed ({status}) at iteration {i}");
        }
    }
    Ok(())
}

/// Each file goes through the whole life the sensor reports on and is gone at
/// the end, so the tmpfs stays empty between runs.
fn file_storm(iterations: u64, dir: &Path) -> Result<()> {
    for i in 0..iterations {
        let created = dir.join(format!("storm-{i}"));
        let renamed = dir.join(format!("storm-{i}.moved"));
        let mut file = fs::File::create(&created)
            .with_context(|| format!("storm: cannot create {}", created.display()))?;
        file.write_all(b"storm\n")
            .with_context(|| format!("storm: cannot write {}", created.display()))?;
        drop(file);
        fs::rename(&created, &renamed)
            .with_context(|| format!("storm: cannot rename {}", created.display()))?;
        fs::set_permissions(&renamed, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("storm: cannot chmod {}", renamed.display()))?;
        fs::remove_file(&renamed)
            .with_context(|| format!("storm: cannot unlink {}", renamed.display()))?;
    }
    Ok(())
}

/// Connects to a listener of its own on loopback, nothing else. The accepted end
/// closes first, so TIME_WAIT lands on the listener's port and the client's
/// ephemeral ports come back for the next run.
fn connect_storm(iterations: u64) -> Result<()> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("storm: cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    for i in 0..iterations {
        let client = TcpStream::connect(addr)
            .with_context(|| format!("storm: connect to {addr} (iteration {i}) failed"))?;
        let (accepted, _) = listener
            .accept()
            .with_context(|| format!("storm: accept on {addr} (iteration {i}) failed"))?;
        drop(accepted);
        drop(client);
    }
    Ok(())
}

/// A storm run in a child xtask process, so its wall time leaves out starting
/// that process and the processes it starts have one recognisable parent.
struct Storm {
    workload: Workload,
    dir: Option<PathBuf>,
}

impl Storm {
    /// Runs `iterations` operations and returns their wall time.
    fn run(&self, iterations: u64) -> Result<f64> {
        let exe = std::env::current_exe().context("cannot locate the xtask binary")?;
        let mut storm = Command::new(exe);
        storm
            .arg("storm")
            .args(["--workload", self.workload.name()])
            .arg(iterations.to_string());
        if let Some(dir) = &self.dir {
            storm.arg("--dir").arg(dir);
        }
        let out = cmd::output(&mut storm)?;
        out.trim()
            .parse()
            .with_context(|| format!("`{}` printed {out:?}, not seconds", describe(&storm)))
    }
}

fn sensor_run(
    bin: &Path,
    tmp: &Path,
    storm: &Storm,
    round: u32,
    n: u64,
    baseline_secs: f64,
    daemon_args: &[String],
) -> Result<Round> {
    let socket = tmp.join("sensor.sock");
    let _ = fs::remove_file(&socket);
    let spec = DaemonSpec {
        ready_timeout: READY_TIMEOUT,
        stop_timeout: STOP_TIMEOUT,
        ..DaemonSpec::new(
            bin,
            &socket,
            &tmp.join(format!("daemon-{}-{round}.log", storm.workload.name())),
        )
    }
    .args(["--mode", "passive"])
    .args(daemon_args);
    let mut daemon = Daemon::launch(spec)?;
    let before = daemon.health_json()?;
    // Start-up (loading programs and rules, seeding the process table) is not the storm's.
    let cpu_before = daemon_cpu_secs(daemon.pid()).ok();
    let sensor_secs = storm.run(n)?;
    // Events still sit in the ring buffer and the pipeline when the storm ends.
    sleep(DRAIN);
    let after = daemon
        .health_json()
        .context("reading health after the storm failed")?;
    let cpu_secs = daemon_cpu_secs(daemon.pid())
        .inspect_err(|e| eprintln!("bench: warning: daemon CPU time: {e:#}"))
        .ok()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let peak_rss_mb = daemon_peak_rss_mb(daemon.pid())
        .inspect_err(|e| eprintln!("bench: warning: daemon peak RSS: {e:#}"))
        .ok();
    let status = daemon.stop()?;
    if !status.success() {
        eprintln!("bench: warning: the daemon exited with {status} after SIGTERM");
    }

    let kinds = storm.workload.kinds();
    let (before, after) = (
        HealthCounts::new(&before, kinds),
        HealthCounts::new(&after, kinds),
    );
    Ok(Round {
        baseline_secs,
        sensor_secs,
        received: after
            .received
            .zip(before.received)
            .map(|(a, b)| a.saturating_sub(b)),
        lost: after.lost,
        cpu_secs,
        peak_rss_mb,
    })
}

/// The fields of `sensor health --output json` the bench uses; the shape may
/// still change, so anything missing is reported as n/a rather than failing.
struct HealthCounts {
    /// Received over the given kinds; None if any of them is missing.
    received: Option<u64>,
    /// Everything lost since the daemon started, over all event kinds.
    lost: Option<u64>,
}

impl HealthCounts {
    fn new(v: &Value, kinds: &[&str]) -> Self {
        let lost = v.pointer("/events/lost").and_then(|l| match l {
            Value::Object(kinds) => Some(kinds.values().filter_map(Value::as_u64).sum()),
            other => other.as_u64(),
        });
        Self {
            received: kinds
                .iter()
                .map(|k| {
                    v.pointer(&format!("/events/received/{k}"))
                        .and_then(Value::as_u64)
                })
                .sum(),
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

/// Prints one workload's rounds and verdicts, and returns what the summary needs.
fn report(workload: Workload, rounds: &[Round], n: u64) -> Summary {
    banner(&format!("bench capture: {} storm results", workload.name()));
    let kinds = workload.kinds();
    let per_run = n * kinds.len() as u64;
    println!(
        "{:>5}  {:>10}  {:>10}  {:>6}  {:>17}  {:>6}  {:>12}  {:>11}",
        "round",
        "baseline s",
        "sensor s",
        "ratio",
        format!("{} recv/expect", workload.family()),
        "lost",
        "storm cpu s",
        "peak RSS MB"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{:>5}  {:>10.3}  {:>10.3}  {:>6.3}  {:>17}  {:>6}  {:>12}  {:>11}",
            i + 1,
            r.baseline_secs,
            r.sensor_secs,
            r.ratio(),
            format!("{}/{per_run}", or_na(r.received, |v| v.to_string())),
            or_na(r.lost, |v| v.to_string()),
            or_na(r.cpu_secs, |v| format!("{v:.2}")),
            or_na(r.peak_rss_mb, |v| format!("{v:.1}")),
        );
    }

    let ratio = median(&mut rounds.iter().map(Round::ratio).collect::<Vec<_>>());
    let baseline = median(&mut rounds.iter().map(|r| r.baseline_secs).collect::<Vec<_>>());
    let received = total(rounds.iter().map(|r| r.received));
    let expected = per_run * rounds.len() as u64;
    let lost = total(rounds.iter().map(|r| r.lost));
    let cpu = total(rounds.iter().map(|r| r.cpu_secs));
    let rss = max(rounds.iter().map(|r| r.peak_rss_mb));
    let target = workload.target_ratio();

    println!("median ratio (sensor / baseline): {ratio:.3}");
    let which = match kinds {
        [_] => String::new(),
        kinds => format!(" ({})", kinds.join(", ")),
    };
    println!(
        "{} events received{which}: {}/{expected} (other processes on the machine add a few)",
        workload.family(),
        or_na(received, |v| v.to_string())
    );
    println!(
        "events lost (all kinds): {}",
        or_na(lost, |v| v.to_string())
    );
    println!(
        "daemon CPU during the storm: {} s per run (mean over {} runs)",
        or_na(cpu, |v| format!("{:.2}", v / rounds.len() as f64)),
        rounds.len()
    );
    println!(
        "daemon peak RSS: {} MB (max over runs)",
        or_na(rss, |v| format!("{v:.1}"))
    );
    println!("target: ratio <= {target}, lost == 0, RSS < {TARGET_RSS_MB} MB");
    println!("  ratio {ratio:.3}: {}", verdict(Some(ratio <= target)));
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
    Summary {
        workload,
        ratio,
        baseline,
        lost,
        rss,
        peer: None,
    }
}

/// One verdict line per workload (with the peer's ratio beside it), then loss and
/// memory over all of them.
fn summarize(summaries: &[Summary], audit_before: Option<bool>) {
    banner("bench capture: summary");
    if audit_before == Some(true) {
        println!("  NOTE audit was enabled before the bench: every figure includes its cost");
    }
    for s in summaries {
        let target = s.workload.target_ratio();
        let peer = s.peer.as_ref().map_or(String::new(), |p| {
            format!(
                "; auditd ratio {:.3}, lost {}, backlog {}",
                p.ratio, p.lost, p.backlog
            )
        });
        println!(
            "  {:<8} ratio {:.3} (target <= {target}): {}{peer}",
            s.workload.name(),
            s.ratio,
            verdict(Some(s.ratio <= target))
        );
    }
    let lost = total(summaries.iter().map(|s| s.lost));
    let rss = max(summaries.iter().map(|s| s.rss));
    println!(
        "  lost {} (target 0): {}",
        or_na(lost, |v| v.to_string()),
        verdict(lost.map(|l| l == 0))
    );
    println!(
        "  peak RSS {} MB (target < {TARGET_RSS_MB}): {}",
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
        let h = HealthCounts::new(&v, Workload::Exec.kinds());
        assert_eq!(h.received, Some(7));
        assert_eq!(h.lost, Some(3));
        let h = HealthCounts::new(&json!({}), Workload::Exec.kinds());
        assert_eq!(h.received, None);
        assert_eq!(h.lost, None);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
