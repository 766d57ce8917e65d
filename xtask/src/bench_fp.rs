//! `cargo xtask bench fp`: what a passive daemon with its defaults raises on everyday
//! admin work, the false positives an operator would have to triage:
//! - a rebuild of this project (rustc, cc, the linker, build scripts);
//! - Debian package work: a reinstall of `hostname`, and an install then purge of
//!   `tcpdump` (its maintainer scripts add a system user), skipped for a tcpdump the
//!   machine already has, which is only reinstalled.
//!
//! Target: no detection of medium severity or above. Every detection raised is printed.

use std::collections::BTreeMap;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sensor_testkit::{Daemon, DaemonSpec, TempDir};
use serde_json::Value;

use crate::banner;
use crate::build::{Profile, build, workspace_root};
use crate::cmd::{self, command};
use crate::setup::Apt;

/// Time for the last events of a workload to reach the detection stage.
const DRAIN: Duration = Duration::from_secs(2);

pub fn fp() -> Result<()> {
    if !cmd::is_root() {
        bail!("`bench fp` starts the daemon and installs packages: run it as root");
    }
    let artifacts = build(Profile::Release)?;
    banner("bench fp: a passive daemon with its defaults, on a rebuild and on package work");
    let tmp = TempDir::new("bench-fp");
    let socket = tmp.path().join("sensor.sock");
    let state = tmp.path().join("state");
    let bin = &artifacts.sensor_bin;
    let spec = DaemonSpec::new(bin, &socket, &tmp.path().join("daemon.log"))
        .args(["--mode", "passive", "--state-dir"])
        .args([&state]);
    let mut daemon = Daemon::launch(spec)?;

    println!("bench: rebuilding the sensor crate ...");
    cmd::run(command("touch").arg(workspace_root().join("sensor/src/lib.rs")))?;
    cmd::run(
        command(cmd::cargo())
            .current_dir(workspace_root())
            .args(["build", "--release", "-p", "sensor"])
            .env("SENSOR_BPF_OBJECT", &artifacts.bpf_object),
    )?;
    let mut apt = Apt::default();
    println!("bench: apt-get install --reinstall hostname ...");
    apt.run(&["install", "--reinstall", "hostname"])?;
    if installed("tcpdump") {
        println!("bench: tcpdump is installed here: reinstalling it ...");
        apt.run(&["install", "--reinstall", "tcpdump"])?;
    } else {
        println!("bench: apt-get install tcpdump, then purge it ...");
        apt.run(&["install", "--no-install-recommends", "tcpdump"])?;
        apt.run(&["purge", "--autoremove", "tcpdump"])?;
    }
    sleep(DRAIN);

    let out = daemon.cli(&["detections", "list", "--output", "json"])?;
    // Zero detections mean something only from a daemon that saw the work.
    let health = daemon.health_json()?;
    daemon.stop()?;
    let seen = |kind: &str| {
        health
            .pointer(&format!("/events/received/{kind}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    println!(
        "bench: the daemon saw {} execs and {} file writes",
        seen("process_exec"),
        seen("file_write") + seen("file_create")
    );
    if seen("process_exec") == 0 {
        bail!("the daemon saw no exec: its detections say nothing");
    }
    report(&out)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Detections grouped by (id, severity, title, executable), with counts.
fn report(jsonl: &str) -> Result<()> {
    banner("bench fp: results");
    let mut groups: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).context("a detection that is not JSON")?;
        let field = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let key = (
            field("/detection/id"),
            field("/detection/severity"),
            field("/detection/title"),
            field("/process/exe"),
        );
        *groups.entry(key).or_default() += 1;
    }
    let serious: u64 = groups
        .iter()
        .filter(|((_, severity, _, _), _)| serious(severity))
        .map(|(_, n)| n)
        .sum();
    println!("detections raised: {}", groups.values().sum::<u64>());
    for ((id, severity, title, exe), n) in &groups {
        println!("  {n:>4}  {id}  {severity:<13}  {title}  ({exe})");
    }
    println!("target: no detection of medium severity or above");
    println!(
        "  {serious} of medium or above: {}",
        crate::bench::verdict(Some(serious == 0))
    );
    Ok(())
}

fn serious(severity: &str) -> bool {
    matches!(severity, "medium" | "high" | "critical")
}

#[cfg(test)]
mod tests {
    use super::serious;

    #[test]
    fn medium_and_above_count() {
        assert!(serious("medium") && serious("high"));
        assert!(!serious("low") && !serious("informational"));
    }
}
