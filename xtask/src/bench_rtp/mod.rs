//! `cargo xtask bench rtp`: what real-time protection costs a process that
//! opens and reads many small files, against no scanner at all and against
//! ClamAV's on-access scanner (clamonacc + clamd from Debian's packages).
//!
//! Every run mounts a fresh tmpfs, fills it with `--files` files of 1-4 KB and
//! runs the workload in a child process (the hidden `read-files` subcommand),
//! which opens and reads every file twice: the first pass meets inodes no
//! scanner has seen, the second may be served from a verdict cache. Each round
//! runs the workload without a scanner, under the sensor in blocking mode
//! (`--rtp-mount` on that tmpfs only) and under clamonacc (watching only that
//! tmpfs); both scanners get the same one-line `.hdb` database, the EICAR test
//! file. The report gives medians, the ratios against the targets, the
//! daemon's scan counters, and the throughput of `sensor scan custom` over an
//! on-disk tree of mixed files.
//!
//! The seams: [`workload`] (the tree of small files and the child that reads it),
//! [`tree`] (sizes, the reproducible random source, the mixed tree), [`definitions`],
//! [`sensor`] and [`clamav`] (the two scanners), [`eicar_probe`] (is a scanner blocking
//! yet), [`guards`] (processes, scratch space, Ctrl-C) and [`report`].

mod clamav;
mod definitions;
mod eicar_probe;
mod guards;
mod report;
mod sensor;
mod tree;
mod workload;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sensor_testkit::{EICAR, Tmpfs};

use crate::banner;
use crate::build::{Profile, build};
use crate::cmd;
use clamav::{ClamAv, ClamAvSetup};
use definitions::{write_database, write_yara_database};
use guards::{Scratch, catch_interrupts, check_interrupted};
use report::report;
use sensor::{RtpCounters, ScanReport, Sensor};
use tree::{TREE_EICAR, TreeStats, build_mixed_tree};
use workload::{populate, run_workload};

pub use workload::read_files;

#[derive(Args)]
pub struct RtpArgs {
    /// Files in the tree the workload opens and reads twice.
    #[arg(long, default_value_t = 20_000)]
    files: u32,
    /// Rounds under the sensor; each also runs the workload without a scanner.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Rounds under ClamAV's clamonacc (0 skips ClamAV, including installing it).
    #[arg(long, default_value_t = 3)]
    clamav_rounds: u32,
    /// Size in MB of the mixed tree `sensor scan custom` is timed on (0 skips it).
    #[arg(long, default_value_t = 200)]
    scan_mb: u64,
}

const SIGNATURE_NAME: &str = "Bench-Eicar-Hdb";

const TARGET_COLD: f64 = 1.5;
const TARGET_CACHED: f64 = 1.05;
/// "Well under 1" in the issue; read as at most half of clamonacc's time.
const TARGET_VS_CLAMONACC: f64 = 0.5;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The daemon detaches its eBPF programs on the way out, which takes seconds.
const SENSOR_STOP_TIMEOUT: Duration = Duration::from_secs(30);
const CLAMAV_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);

pub fn rtp(args: &RtpArgs) -> Result<()> {
    if args.files == 0 {
        bail!("--files must be at least 1");
    }
    let rounds = args.rounds.max(args.clamav_rounds);
    if rounds == 0 {
        bail!("--rounds and --clamav-rounds are both 0: nothing to measure");
    }
    if !cmd::is_root() {
        bail!("`bench rtp` mounts a tmpfs and starts the daemon, which needs root: run it as root");
    }
    let artifacts = build(Profile::Release)?;
    banner(&format!(
        "bench rtp: {} files of 1-4 KB on a tmpfs, opened and read twice; {rounds} rounds \
         ({} with the sensor, {} with clamonacc)",
        args.files, args.rounds, args.clamav_rounds
    ));
    catch_interrupts();
    let scratch = Scratch::new()?;
    let bench = Bench {
        sensor_bin: artifacts.sensor_bin,
        files: args.files,
        mount: scratch.path().join("rtp"),
        db: write_database(scratch.path())?,
        sensor_dir: scratch.mkdir("sensor")?,
    };

    let mut clamav = if args.clamav_rounds == 0 {
        Err("skipped (--clamav-rounds 0)".to_owned())
    } else {
        banner("bench rtp: ClamAV");
        ClamAvSetup::prepare(&scratch, &bench.db, &bench.mount).map_err(|e| format!("{e:#}"))
    };
    if let Err(reason) = &clamav {
        println!("bench: clamonacc: n/a ({reason})");
    }

    banner("bench rtp: rounds");
    // The first workload after a build meets cold caches (the xtask binary, the
    // directory code paths); keep it out of the comparison.
    let warm_up = bench.baseline_run(0)?;
    println!("bench: warm-up: {warm_up}");

    let mut results = Vec::new();
    for round in 1..=rounds {
        check_interrupted()?;
        let baseline = bench.baseline_run(round)?;
        println!("bench: round {round}: baseline  {baseline}");
        let sensor = if round <= args.rounds {
            let r = bench
                .sensor_run(round)
                .with_context(|| format!("round {round} with the sensor failed"))?;
            println!(
                "bench: round {round}: sensor    {} ({})",
                r.passes, r.counters
            );
            Some(r)
        } else {
            None
        };
        let mut clamonacc = None;
        if round <= args.clamav_rounds
            && let Ok(setup) = &clamav
        {
            match bench.clamav_run(setup, round) {
                Ok(passes) => {
                    println!("bench: round {round}: clamonacc {passes}");
                    clamonacc = Some(passes);
                }
                Err(e) => {
                    check_interrupted()?;
                    let reason = format!("round {round} failed: {e:#}");
                    eprintln!("bench: clamonacc: {reason}; no further clamonacc rounds");
                    clamav = Err(reason);
                }
            }
        }
        results.push(RoundResult {
            baseline,
            sensor,
            clamonacc,
        });
    }

    let scan = if args.scan_mb == 0 {
        Err("skipped (--scan-mb 0)".to_owned())
    } else {
        check_interrupted()?;
        banner("bench rtp: scan custom");
        bench
            .scan_throughput(scratch.path(), args.scan_mb)
            .map_err(|e| format!("{e:#}"))
    };

    check_interrupted()?;
    report(
        args,
        &results,
        clamav.as_ref().err().map(String::as_str),
        &scan,
    );
    // Reported first so that a failed scan does not cost the figures above.
    if let Err(reason) = scan
        && args.scan_mb != 0
    {
        bail!("scan custom failed: {reason}");
    }
    Ok(())
}

/// What every run of a bench shares.
struct Bench {
    sensor_bin: PathBuf,
    files: u32,
    mount: PathBuf,
    db: PathBuf,
    sensor_dir: PathBuf,
}

impl Bench {
    /// Mounts a new tmpfs and fills it: every run starts on inodes no scanner
    /// has seen. The same seed gives the same sizes, so runs of one round
    /// compare like with like.
    fn fresh_tree(&self, seed: u32) -> Result<(Tmpfs, TreeStats)> {
        let fs = Tmpfs::mount_at(&self.mount, "xtask-bench-rtp", "1g")?;
        let stats = populate(&self.mount, self.files, u64::from(seed))?;
        Ok((fs, stats))
    }

    fn baseline_run(&self, round: u32) -> Result<Passes> {
        let (fs, stats) = self.fresh_tree(round)?;
        let passes = run_workload(&self.mount, &stats)?;
        fs.unmount()?;
        Ok(passes)
    }

    fn sensor_run(&self, round: u32) -> Result<SensorRound> {
        let (fs, stats) = self.fresh_tree(round)?;
        let sensor = Sensor::start(self, &format!("round-{round}"))?;
        let before = sensor.counters();
        let passes = run_workload(&self.mount, &stats)?;
        let after = sensor.counters();
        sensor.stop()?;
        fs.unmount()?;
        Ok(SensorRound {
            passes,
            counters: after.since(&before),
        })
    }

    fn clamav_run(&self, setup: &ClamAvSetup, round: u32) -> Result<Passes> {
        let (fs, stats) = self.fresh_tree(round)?;
        let clamav = ClamAv::start(setup, &format!("round-{round}"), &self.mount)?;
        let passes = run_workload(&self.mount, &stats)?;
        clamav.stop()?;
        fs.unmount()?;
        Ok(passes)
    }

    /// Times `sensor scan custom` over a tree on disk, as users' files are, and
    /// away from the watched tmpfs so that no real-time scan mixes in. The tree
    /// was just written, so it is read from the page cache: the figure is the
    /// engine's, not the disk's. Scanned twice: with the rounds' database, whose
    /// one signature lets the engine skip every file of another size unread,
    /// and with a YARA rule added, which makes it read and match every byte.
    fn scan_throughput(&self, scratch: &Path, mb: u64) -> Result<ScanReport> {
        let tree = scratch.join("scan-tree");
        println!(
            "bench: writing a mixed tree of about {mb} MB under {}",
            tree.display()
        );
        let written = build_mixed_tree(&tree, mb * 1_000_000)?;
        println!(
            "bench: wrote {} files, {:.1} MB",
            written.files,
            written.bytes as f64 / 1e6
        );
        let with_yara = write_yara_database(scratch, &self.db)?;
        // Without `--rtp-mount` the daemon would watch every local filesystem.
        let fs = Tmpfs::mount_at(&self.mount, "xtask-bench-rtp", "1g")?;
        let sensor = Sensor::start(self, "scan")?;
        let hashes_only = sensor.scan(&tree)?;
        sensor.load_definitions(&with_yara)?;
        // The first scan may have quarantined it.
        let eicar = tree.join(TREE_EICAR);
        fs::write(&eicar, EICAR).with_context(|| format!("cannot write {}", eicar.display()))?;
        let every_byte = sensor.scan(&tree)?;
        sensor.stop()?;
        fs.unmount()?;
        Ok(ScanReport {
            written,
            runs: vec![
                ("EICAR .hdb only, as in the rounds", hashes_only),
                ("EICAR .hdb + 1 YARA rule (every file read)", every_byte),
            ],
        })
    }
}

/// Wall times of the two passes of one workload run, in seconds.
#[derive(Clone, Copy)]
struct Passes {
    cold: f64,
    cached: f64,
}

impl fmt::Display for Passes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pass 1 {:.1} ms, pass 2 {:.1} ms",
            self.cold * 1e3,
            self.cached * 1e3
        )
    }
}

struct SensorRound {
    passes: Passes,
    counters: RtpCounters,
}

struct RoundResult {
    baseline: Passes,
    sensor: Option<SensorRound>,
    clamonacc: Option<Passes>,
}
