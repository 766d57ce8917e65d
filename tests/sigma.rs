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
             level: medium\n"
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
    assert_eq!(d.severity, "medium");
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

/// A marker rule in SigmaHQ's format at `level`, firing on a command line with `marker`.
fn marker_rule(id: &str, marker: &str, level: &str) -> String {
    format!(
        "title: Marker {marker}\n\
         id: {id}\n\
         status: test\n\
         description: Fires on its marker.\n\
         tags:\n    - attack.t1059.004\n\
         logsource:\n    product: linux\n    category: process_creation\n\
         detection:\n    selection:\n        CommandLine|contains: '{marker}'\n    condition: selection\n\
         level: {level}\n"
    )
}

/// `sensor rules update` installs a set without a restart; a set with nothing usable is
/// refused and the one running stays; the set survives a restart; the level filter of
/// the detection settings decides what of it loads; `rules list` and `rules show` tell
/// what runs.
#[tokio::test(flavor = "multi_thread")]
async fn rules_update_list_show_and_filters() {
    let work = TempDir::new("sigma-update");
    let state = work.path().join("state");
    let set = work.path().join("set");
    std::fs::create_dir_all(set.join("linux/process_creation")).unwrap();
    let marker = unique("sigma-installed");
    let quiet_marker = unique("sigma-low");
    let id = "3b0e7c1a-5d2f-4e8a-9c61-7f4d2a9b8e10";
    let low_id = "3b0e7c1a-5d2f-4e8a-9c61-7f4d2a9b8e11";
    std::fs::write(
        set.join("linux/process_creation/marker.yml"),
        marker_rule(id, &marker, "high"),
    )
    .unwrap();
    std::fs::write(
        set.join("low.yml"),
        marker_rule(low_id, &quiet_marker, "low"),
    )
    .unwrap();
    std::fs::write(set.join("broken.yml"), "title: [unclosed\n").unwrap();

    let state_arg = state.to_str().unwrap();
    let mut d = Daemon::start(&["--state-dir", state_arg]).unwrap();
    let c = Collector::start(&d.socket, &KINDS).await.unwrap();
    let before = d.cli_json(&["rules", "list"]).unwrap();
    assert!(
        before
            .iter()
            .any(|r| r["id"] == "SNS-0007" && r["source"] == "builtin")
    );
    assert_eq!(
        before.iter().filter(|r| r["source"] == "shipped").count(),
        6
    );

    let info = &d
        .cli_json(&["rules", "update", "--from", set.to_str().unwrap()])
        .unwrap()[0];
    assert_eq!(info["installed"], 1, "{info}");
    assert_eq!(info["filtered"], 1, "the low rule: {info}");
    assert!(
        info["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("broken.yml")),
        "{info}"
    );
    let version = info["version"].as_str().unwrap().to_string();
    assert!(!version.is_empty());

    // Applied without a restart.
    let pid = run("/bin/echo", &[&marker]);
    c.expect("the installed rule", |e| {
        sigma_detection(e, id).is_some() && pid_of(e) == pid
    })
    .await;
    let shown = d.cli(&["rules", "show", &id.to_uppercase()]).unwrap();
    assert!(shown.contains("source       installed"), "{shown}");
    assert!(
        shown.contains("file         installed/linux/process_creation/marker.yml"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("CommandLine|contains: '{marker}'")),
        "{shown}"
    );
    let missing = d
        .cli(&["rules", "show", "no-such-rule"])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no rule \"no-such-rule\""), "{missing}");
    assert_eq!(missing.trim().lines().count(), 1, "{missing}");

    // A set with nothing usable: refused in one line, and the installed rule still runs.
    let bad = work.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("broken.yml"), "title: [unclosed\n").unwrap();
    let refused = d
        .cli(&["rules", "update", "--from", bad.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no usable Sigma rule"), "{refused}");
    assert!(refused.contains("the current set stays"), "{refused}");
    // The same rule on the same executable under the same parent: counted into the
    // first detection, whose update names the latest process.
    let pid = run("/bin/echo", &[&marker]);
    c.expect("the installed rule after a refused update", |e| {
        sigma_detection(e, id)
            .is_some_and(|d| d.count == 2 && d.details.get("last_pid") == Some(&pid.to_string()))
    })
    .await;
    let h = health(&d.socket).await.unwrap().detection.unwrap();
    assert_eq!(h.sigma_installed_version, version);
    assert_eq!((h.sigma_rules, h.sigma_filtered), (7, 1));
    assert!(d.stop().unwrap().success());
    drop(c);
    drop(d);

    // After a restart the set is still there, and a lower minimum level loads the low
    // rule too.
    let cfg = work.path().join("detections.json");
    std::fs::write(&cfg, r#"{"sigma": {"min_level": "low"}}"#).unwrap();
    let d = Daemon::start(&[
        "--state-dir",
        state_arg,
        "--detections-config",
        cfg.to_str().unwrap(),
    ])
    .unwrap();
    let h = health(&d.socket).await.unwrap().detection.unwrap();
    assert_eq!(h.sigma_installed_version, version);
    assert_eq!((h.sigma_rules, h.sigma_filtered), (8, 0));
    let c = Collector::start(&d.socket, &KINDS).await.unwrap();
    let pid = run("/bin/echo", &[&quiet_marker]);
    let e = c
        .expect("the low rule once the filter admits it", |e| {
            sigma_detection(e, low_id).is_some() && pid_of(e) == pid
        })
        .await;
    assert_eq!(e.detection.unwrap().severity, "low");
    let listed = d.cli(&["rules", "list"]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(low_id) && l.contains("installed")),
        "{listed}"
    );

    // A filter naming a status that never loads is refused at start-up.
    std::fs::write(&cfg, r#"{"sigma": {"statuses": ["deprecated"]}}"#).unwrap();
    let out = std::process::Command::new(sensor_tests::sensor_bin())
        .args([
            "daemon",
            "--socket",
            "/nonexistent/s.sock",
            "--detections-config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never loaded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Sigma correlation document runs on the endpoint: three marked execs within a minute
/// raise the correlation, and the rule it counts raises nothing of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_correlation_rule_fires_on_real_activity() {
    let dir = TempDir::new("sigma-correlation");
    let marker = unique("sigma-counted");
    let counted = "5e2c8a41-7b3d-4f9e-8a20-6c1d9e4b7f31";
    let burst = "5e2c8a41-7b3d-4f9e-8a20-6c1d9e4b7f32";
    std::fs::write(
        dir.path().join("burst.yml"),
        format!(
            "{}---\n\
             title: Marked commands in a burst\n\
             id: {burst}\n\
             status: test\n\
             correlation:\n    type: event_count\n    rules:\n        - {counted}\n\
             \x20   group-by:\n        - ParentProcessId\n    timespan: 1m\n\
             \x20   condition:\n        gte: 3\n\
             level: high\n",
            marker_rule(counted, &marker, "medium")
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--sigma-rules", dir.path().to_str().unwrap()]).unwrap();
    let info = health(&d.socket).await.unwrap().detection.unwrap();
    assert!(info.sigma_skipped.is_empty(), "{:?}", info.sigma_skipped);
    assert_eq!(
        info.sigma_rules, 8,
        "6 shipped, the counted rule, the correlation"
    );
    let c = Collector::start(&d.socket, &KINDS).await.unwrap();
    let first = run("/bin/echo", &[&marker]);
    let _ = run("/bin/echo", &[&marker]);
    c.expect("exit of the second", |e| {
        e.kind == "process_exit" && pid_of(e) != first
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !c.all().iter().any(|e| sigma_detection(e, burst).is_some()),
        "fired before the third"
    );
    let third = run("/bin/echo", &[&marker]);
    let e = c
        .expect("the correlation on the third", |e| {
            sigma_detection(e, burst).is_some()
        })
        .await;
    assert_eq!(pid_of(&e), third);
    assert_eq!(e.detection.unwrap().severity, "high");
    assert!(
        !c.all()
            .iter()
            .any(|e| sigma_detection(e, counted).is_some()),
        "the counted rule raised a detection of its own"
    );
}

/// Rules written for auditd (`service: auditd`) fire on the sensor's own events: an
/// EXECVE rule on a command's arguments, a PATH rule on a file written.
#[tokio::test(flavor = "multi_thread")]
async fn auditd_rules_fire_on_real_activity() {
    let dir = TempDir::new("sigma-auditd");
    let marker = unique("sigma-auditd");
    let execve = "7a1f3c52-9e4b-4d8a-b6c0-2f5e8d1a9c41";
    let path = "7a1f3c52-9e4b-4d8a-b6c0-2f5e8d1a9c42";
    let rule = |id: &str, title: &str, selection: &str| {
        format!(
            "title: {title}\nid: {id}\nstatus: test\n\
             logsource:\n    product: linux\n    service: auditd\n\
             detection:\n    selection:\n{selection}    condition: selection\nlevel: high\n"
        )
    };
    std::fs::write(
        dir.path().join("execve.yml"),
        rule(
            execve,
            "Marked echo",
            &format!("        type: EXECVE\n        a0: echo\n        a1: '{marker}'\n"),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("path.yml"),
        rule(
            path,
            "Marked file",
            &format!("        type: PATH\n        name|endswith: '/{marker}.txt'\n"),
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--sigma-rules", dir.path().to_str().unwrap()]).unwrap();
    let info = health(&d.socket).await.unwrap().detection.unwrap();
    assert!(info.sigma_skipped.is_empty(), "{:?}", info.sigma_skipped);
    assert_eq!(info.sigma_rules, 8);
    let c = Collector::start(&d.socket, &KINDS).await.unwrap();

    let pid = run("echo", &[&marker]);
    let e = c
        .expect("the EXECVE rule", |e| {
            sigma_detection(e, execve).is_some() && pid_of(e) == pid
        })
        .await;
    assert_eq!(e.detection.unwrap().title, "Marked echo");
    let work = TempDir::new("sigma-auditd-file");
    let file = work.path().join(format!("{marker}.txt"));
    let pid = run("/usr/bin/touch", &[file.to_str().unwrap()]);
    c.expect("the PATH rule", |e| {
        sigma_detection(e, path).is_some() && pid_of(e) == pid
    })
    .await;
    // The same command with another argument is not the marked one.
    let quiet = run("echo", &[&unique("sigma-auditd-other")]);
    c.assert_quiet(quiet, execve).await;
}
