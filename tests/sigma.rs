//! Sigma rules on the real kernel: a rule from `--sigma-rules` and a shipped one fire on
//! real activity and name the process that did it, a look-alike stays quiet, and a rule
//! the sensor cannot use is reported in health instead of stopping the daemon.

use std::{
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sensor_tests::{Collector, Daemon, Event, TempDir, health, pid_of, shared_daemon};

/// `rules/sigma/file_delete_lnx_log_deletion.yml`.
const LOG_DELETION: &str = "a64f783c-ab38-45ea-9ab0-4dc5fae7122e";

const KINDS: [&str; 2] = ["detection", "process_exit"];

fn sigma_detection<'a>(e: &'a Event, id: &str) -> Option<&'a sensor_proto::Detection> {
    e.detection
        .as_ref()
        .filter(|d| d.id == id && d.source == "sigma")
}

/// Runs `cmd args` to completion and returns its pid.
fn run(cmd: &str, args: &[&str]) -> u32 {
    let mut child = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{cmd} {args:?}");
    pid
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_from_directory_fires_on_its_marker_only() {
    let dir = TempDir::new("sigma-rules");
    let marker = unique("sigma-marker");
    let id = "6f1d0c5e-2b7a-4f0e-9a43-8c2d1e5b7a90";
    std::fs::write(
        dir.path().join("marker.yml"),
        format!(
            "title: Test marker on a command line\n\
             id: {id}\n\
             status: test\n\
             description: Integration test rule.\n\
             tags:\n    - attack.execution\n    - attack.t1059.004\n\
             logsource:\n    product: linux\n    category: process_creation\n\
             detection:\n    selection:\n        CommandLine|contains: '{marker}'\n    condition: selection\n\
             level: low\n"
        ),
    )
    .unwrap();
    // Not for this sensor: reported, and the rule next to it still loads.
    std::fs::write(
        dir.path().join("windows.yml"),
        "title: Windows only\n\
         id: 0d4c7a8e-93f1-4b6e-8f25-5a1e9c3b7d42\n\
         logsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        Image|endswith: '\\whoami.exe'\n    condition: selection\n\
         level: low\n",
    )
    .unwrap();

    let daemon = Daemon::start(&["--sigma-rules", dir.path().to_str().unwrap()]).unwrap();
    let h = health(&daemon.socket).await.unwrap();
    let info = h.detection.expect("health reports detections");
    assert_eq!(info.sigma_rules, 7, "6 shipped + 1 from the directory");
    assert_eq!(info.sigma_skipped.len(), 1, "{:?}", info.sigma_skipped);
    assert!(
        info.sigma_skipped[0].contains("windows.yml"),
        "{:?}",
        info.sigma_skipped
    );

    let c = Collector::start(&daemon.socket, &KINDS).await.unwrap();
    let pid = run("/bin/echo", &[&marker]);
    let e = c
        .expect("the directory's rule on the marked echo", |e| {
            sigma_detection(e, id).is_some() && pid_of(e) == pid
        })
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.title, "Test marker on a command line");
    assert_eq!(d.severity, "low");
    assert_eq!(d.mitre, vec!["T1059.004"]);
    assert_eq!(d.evidence.len(), 1, "the exec event");
    assert!(
        e.process
            .as_ref()
            .is_some_and(|p| p.args.iter().any(|a| a == &marker)),
        "{:?}",
        e.process
    );

    let quiet = run("/bin/echo", &[&unique("sigma-unmarked")]);
    c.expect("exit of the unmarked echo", |e| {
        e.kind == "process_exit" && pid_of(e) == quiet
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let noisy: Vec<_> = c
        .all()
        .into_iter()
        .filter(|e| sigma_detection(e, id).is_some() && pid_of(e) != pid)
        .collect();
    assert!(noisy.is_empty(), "rule fired without its marker: {noisy:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_rule_fires_on_log_deletion() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let log = format!("/var/log/{}.log", unique("sensor-test"));
    std::fs::write(&log, "evidence\n").unwrap();
    let pid = run("/bin/rm", &["-f", &log]);
    let e = c
        .expect("log deletion rule on rm", |e| {
            sigma_detection(e, LOG_DELETION).is_some() && pid_of(e) == pid
        })
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.title, "Log File Deleted");
    assert_eq!(d.severity, "medium");
    assert_eq!(d.mitre, vec!["T1070.002"]);

    // The same deletion outside /var/log is nobody's business.
    let tmp = TempDir::new("sigma-not-a-log");
    let file = tmp.path().join("x.log");
    std::fs::write(&file, "x").unwrap();
    let quiet = run("/bin/rm", &["-f", file.to_str().unwrap()]);
    c.assert_quiet(quiet, LOG_DELETION).await;
}
