//! Where capture's cost goes: the kernel's BPF run statistics per program, in health and
//! in `sensor diagnostic ebpf-statistics`, on the real kernel: counted by a daemon started
//! with `--bpf-statistics`, off (and said to be) by default.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use sensor_tests::{Daemon, sensor_bin, shared_daemon};
use serde_json::Value;

/// A daemon of the test's own with statistics on (stopped when dropped).
fn counting_daemon() -> Daemon {
    Daemon::start(&["--bpf-statistics"]).expect("daemon with --bpf-statistics")
}

const EXEC_PROGRAM: &str = "sched_process_exec";

fn sensor_on(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(sensor_bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sensor {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_true(times: usize) {
    for _ in 0..times {
        let st = Command::new("/bin/true")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// The exec program's (runs, run time in ns) as `sensor health --output json` shows them.
fn exec_runs(socket: &Path) -> (u64, u64) {
    let health: Value =
        serde_json::from_str(&sensor_on(socket, &["health", "--output", "json"])).unwrap();
    let programs = health["programs"].as_array().expect("programs");
    let exec = programs
        .iter()
        .find(|p| p["name"] == EXEC_PROGRAM)
        .unwrap_or_else(|| panic!("no {EXEC_PROGRAM} in {programs:?}"));
    let issues = &health["issues"];
    let field = |name: &str| {
        exec[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {exec} (issues: {issues})"))
    };
    (field("run_count"), field("run_time_ns"))
}

#[test]
fn health_counts_runs_of_the_exec_program_and_they_grow() {
    let d = counting_daemon();
    run_true(5);
    let (count, time) = exec_runs(&d.socket);
    assert!(count >= 5, "exec program ran {count} times after 5 execs");
    assert!(time > 0, "exec program ran {count} times in {time} ns");

    run_true(5);
    let (later_count, later_time) = exec_runs(&d.socket);
    assert!(
        later_count >= count + 5,
        "runs went from {count} to {later_count} over 5 more execs"
    );
    assert!(
        later_time > time,
        "run time went from {time} to {later_time} ns"
    );
}

#[test]
fn ebpf_statistics_lists_the_attached_programs() {
    let d = counting_daemon();
    run_true(3);
    let health: Value =
        serde_json::from_str(&sensor_on(&d.socket, &["health", "--output", "json"])).unwrap();
    let mut attached: Vec<String> = health["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attached"] == true)
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    attached.sort();
    attached.dedup();

    let rows: Value = serde_json::from_str(&sensor_on(
        &d.socket,
        &["diagnostic", "ebpf-statistics", "--output", "json"],
    ))
    .unwrap();
    let rows = rows.as_array().expect("an array of rows");
    let mut listed: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed, attached);
    let times: Vec<u64> = rows
        .iter()
        .map(|r| r["run_time_ns"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not busiest first: {times:?}"
    );
    let exec = rows.iter().find(|r| r["name"] == EXEC_PROGRAM).unwrap();
    assert!(exec["run_count"].as_u64().unwrap() >= 3, "{exec}");

    let text = sensor_on(&d.socket, &["diagnostic", "ebpf-statistics"]);
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with("ISSUE") && !l.starts_with("NOTE"));
    let header = lines.next().expect("a header line");
    for column in ["PROGRAM", "HOOK", "RUNS", "MEAN"] {
        assert!(header.contains(column), "header: {header}");
    }
    assert!(
        lines.any(|l| l.starts_with(EXEC_PROGRAM)
            && l.contains("raw_tracepoint/sched_process_exec")),
        "no exec row in:\n{text}"
    );
}

/// By default the daemon does not make the kernel time every BPF program on the machine:
/// health says statistics are off, nothing is counted, and the verb says how to turn them on.
#[test]
fn statistics_are_off_unless_asked_for() {
    let socket = shared_daemon();
    run_true(3);
    let health: Value =
        serde_json::from_str(&sensor_on(socket, &["health", "--output", "json"])).unwrap();
    assert_eq!(
        health["platform"]["bpf_statistics"], "off",
        "{}",
        health["platform"]
    );
    let exec = health["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == EXEC_PROGRAM)
        .expect("exec program");
    assert_eq!(exec["run_count"].as_u64().unwrap_or(0), 0, "{exec}");
    let text = sensor_on(socket, &["diagnostic", "ebpf-statistics"]);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("--bpf-statistics")),
        "{text}"
    );
    let d = counting_daemon();
    let counting: Value =
        serde_json::from_str(&sensor_on(&d.socket, &["health", "--output", "json"])).unwrap();
    assert_eq!(counting["platform"]["bpf_statistics"], "on");
}
