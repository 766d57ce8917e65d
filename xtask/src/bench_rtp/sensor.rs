//! The sensor under the bench: a blocking daemon that watches only the bench's tmpfs,
//! its real-time protection counters, and timed `scan custom` runs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sensor_testkit::{Daemon, DaemonSpec};
use serde_json::Value;

use super::eicar_probe::wait_blocks_eicar;
use super::guards::check_interrupted;
use super::tree::TreeStats;
use super::{Bench, POLL, READY_TIMEOUT, SENSOR_STOP_TIMEOUT};
use crate::bench::or_na;
use crate::cmd::describe;

/// The sensor daemon in blocking mode, watching only the bench's tmpfs.
pub(super) struct Sensor {
    daemon: Daemon,
    bin: PathBuf,
}

impl Sensor {
    pub(super) fn start(bench: &Bench, tag: &str) -> Result<Self> {
        let dir = &bench.sensor_dir;
        // A state directory per run: nothing (definitions, caches) carries
        // over from one run to the next.
        let state = dir.join(format!("state-{tag}"));
        let scope = std::process::id().to_string();
        let spec = DaemonSpec {
            ready_timeout: READY_TIMEOUT,
            stop_timeout: SENSOR_STOP_TIMEOUT,
            ..DaemonSpec::new(
                &bench.sensor_bin,
                &dir.join(format!("{tag}.sock")),
                &dir.join(format!("{tag}.log")),
            )
        }
        .args(["--mode", "blocking", "--state-dir"])
        .args([&state])
        .args(["--rtp-mount"])
        .args([&bench.mount])
        .args(["--blocking-scope-pid", &scope]);
        println!(
            "bench: starting the sensor daemon ({tag}), its log in {}",
            spec.log.display()
        );
        let mut sensor = Self {
            daemon: Daemon::launch(spec)?,
            bin: bench.sensor_bin.clone(),
        };
        check_interrupted()?;
        sensor.load_definitions(&bench.db)?;
        sensor.wait_marked(&bench.mount)?;
        let daemon = &mut sensor.daemon;
        wait_blocks_eicar("the sensor", &bench.mount, || daemon.check_running())?;
        Ok(sensor)
    }

    fn health(&self) -> Result<Value> {
        self.daemon.health_json()
    }

    pub(super) fn load_definitions(&self, dir: &Path) -> Result<()> {
        let from = dir.to_str().context("definitions path is not UTF-8")?;
        self.daemon
            .cli(&["definitions", "update", "--from", from])
            .with_context(|| format!("loading the definitions of {} failed", dir.display()))?;
        Ok(())
    }

    pub(super) fn scan(&self, tree: &Path) -> Result<ScanRun> {
        let mut scan = Command::new(&self.bin);
        scan.args(["scan", "custom", "--path"])
            .arg(tree)
            .arg("--socket")
            .arg(&self.daemon.socket)
            .args(["--output", "json"])
            .stdin(Stdio::null());
        println!("bench: {}", describe(&scan));
        let start = Instant::now();
        let out = scan
            .output()
            .with_context(|| format!("could not start `{}`", describe(&scan)))?;
        let wall_secs = start.elapsed().as_secs_f64();
        // A scan that finds threats may well exit non-zero, as clamscan does;
        // the summary is what tells a failed scan from a successful one.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = parse_summary(&stdout).with_context(|| {
            format!(
                "`{}` ({}) printed no JSON summary; stdout: {:?}; stderr: {:?}",
                describe(&scan),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        Ok(ScanRun {
            summary: ScanSummary::from(&summary),
            wall_secs,
        })
    }

    pub(super) fn counters(&self) -> RtpCounters {
        self.health()
            .inspect_err(|e| eprintln!("bench: warning: daemon health: {e:#}"))
            .map(|v| RtpCounters::from(&v))
            .unwrap_or_default()
    }

    /// Waits until health lists `mount` among the real-time protection marks.
    /// A health answer without that list is let through: the EICAR check that
    /// follows is what proves protection is on.
    fn wait_marked(&mut self, mount: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let want = mount.to_string_lossy();
        loop {
            check_interrupted()?;
            self.daemon.check_running()?;
            let v = self.health()?;
            let Some(marks) = v
                .pointer("/real_time_protection/marks")
                .and_then(Value::as_array)
            else {
                eprintln!("bench: warning: health has no real_time_protection.marks list");
                return Ok(());
            };
            let marked = marks.iter().any(|m| {
                m.as_str()
                    .or_else(|| m.get("path").and_then(Value::as_str))
                    .is_some_and(|p| Path::new(p) == mount)
            });
            if marked {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "health did not list {want} among the marks within {}s (marks: {marks:?}); {}",
                    READY_TIMEOUT.as_secs(),
                    self.daemon.log_note()
                );
            }
            sleep(POLL);
        }
    }

    pub(super) fn stop(mut self) -> Result<()> {
        self.daemon.check_running()?;
        let status = self.daemon.stop()?;
        if !status.success() {
            eprintln!("bench: warning: the sensor daemon exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

/// The daemon's real-time protection counters from `sensor health`. The shape
/// may still change, so anything missing is n/a rather than an error.
#[derive(Clone, Copy, Default)]
pub(super) struct RtpCounters {
    pub(super) events: Option<u64>,
    pub(super) scanned: Option<u64>,
    /// Answered from the size alone: no signature can match (content never read).
    pub(super) unmatchable: Option<u64>,
    pub(super) cache_hits: Option<u64>,
    pub(super) deadline_allowed: Option<u64>,
    pub(super) denied: Option<u64>,
}

impl RtpCounters {
    pub(super) fn since(&self, before: &Self) -> Self {
        let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
        Self {
            events: d(self.events, before.events),
            scanned: d(self.scanned, before.scanned),
            unmatchable: d(self.unmatchable, before.unmatchable),
            cache_hits: d(self.cache_hits, before.cache_hits),
            deadline_allowed: d(self.deadline_allowed, before.deadline_allowed),
            denied: d(self.denied, before.denied),
        }
    }
}

impl From<&Value> for RtpCounters {
    fn from(v: &Value) -> Self {
        let counter = |name: &str| counter(v, &format!("/real_time_protection/{name}"));
        Self {
            events: counter("events"),
            scanned: counter("scanned"),
            unmatchable: counter("unmatchable"),
            cache_hits: counter("cache_hits"),
            deadline_allowed: counter("deadline_allowed"),
            denied: counter("denied"),
        }
    }
}

impl fmt::Display for RtpCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<u64>| or_na(v, |v| v.to_string());
        write!(
            f,
            "events {}, scanned {}, unmatchable {}, cache hits {}, deadline-allowed {}, denied {}",
            n(self.events),
            n(self.scanned),
            n(self.unmatchable),
            n(self.cache_hits),
            n(self.deadline_allowed),
            n(self.denied)
        )
    }
}

/// A number, or an object of numbers per kind, which counts as their sum.
fn counter(v: &Value, pointer: &str) -> Option<u64> {
    match v.pointer(pointer)? {
        Value::Object(kinds) => Some(kinds.values().filter_map(Value::as_u64).sum()),
        other => other.as_u64(),
    }
}

pub(super) struct ScanSummary {
    pub(super) files: Option<u64>,
    pub(super) bytes: Option<u64>,
    pub(super) threats: Option<u64>,
    pub(super) errors: Option<u64>,
    pub(super) duration_secs: Option<f64>,
}

impl From<&Value> for ScanSummary {
    fn from(v: &Value) -> Self {
        // `threats` and `errors` may be counts or lists of what was found.
        let count = |name: &str| {
            v.get(name).and_then(|c| match c {
                Value::Array(items) => Some(items.len() as u64),
                other => other.as_u64(),
            })
        };
        Self {
            files: count("files"),
            bytes: count("bytes"),
            threats: count("threats"),
            errors: count("errors"),
            duration_secs: v.get("duration_secs").and_then(Value::as_f64),
        }
    }
}

pub(super) struct ScanRun {
    pub(super) summary: ScanSummary,
    pub(super) wall_secs: f64,
}

pub(super) struct ScanReport {
    pub(super) written: TreeStats,
    pub(super) runs: Vec<(&'static str, ScanRun)>,
}

/// The whole output as one JSON document, or else its last line that is one.
fn parse_summary(stdout: &str) -> Option<Value> {
    serde_json::from_str::<Value>(stdout)
        .ok()
        .filter(Value::is_object)
        .or_else(|| {
            stdout.lines().rev().find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_parse_defensively() {
        let v = json!({"real_time_protection": {
            "marks": ["/x"], "events": {"open": 3, "exec": 1}, "scanned": 5, "cache_hits": 2,
        }});
        let c = RtpCounters::from(&v);
        assert_eq!(c.events, Some(4));
        assert_eq!(c.scanned, Some(5));
        assert_eq!(c.cache_hits, Some(2));
        assert_eq!(c.deadline_allowed, None);
        let d = c.since(&RtpCounters {
            scanned: Some(1),
            ..RtpCounters::default()
        });
        assert_eq!(d.scanned, Some(4));
        assert_eq!(d.cache_hits, None);
        assert_eq!(RtpCounters::from(&json!({})).scanned, None);
    }

    #[test]
    fn summary_found_in_noisy_output() {
        let out =
            "found: /t/eicar.com\n{\"files\": 3, \"threats\": [\"x\"], \"duration_secs\": 0.5}\n";
        let s = ScanSummary::from(&parse_summary(out).unwrap());
        assert_eq!(s.files, Some(3));
        assert_eq!(s.threats, Some(1));
        assert_eq!(s.bytes, None);
        assert_eq!(s.duration_secs, Some(0.5));
        assert!(parse_summary("not json").is_none());
    }
}
