//! Issue 9, the CLI's side: what people see when things go wrong (one clear line, the
//! right exit status), text output that a process cannot forge through its own argv,
//! lists longer than one gRPC message, and a detections config that cannot silently leave
//! a rule on.

use std::{
    io::Read,
    os::unix::{fs::PermissionsExt, io::FromRawFd},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use sensor_proto as proto;
use sensor_tests::{
    Daemon, TempDir, as_nobody, client, health, nobody_uid, sensor_bin, shared_daemon,
};

/// What every error a person sees must be: one line, `sensor: ...`, no panic, no
/// backtrace, no transport or gRPC debug dump.
fn assert_one_clear_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {text:?}");
    let line = lines[0];
    assert!(line.starts_with("sensor: "), "{line}");
    for noise in [
        "panicked",
        "backtrace",
        "Backtrace",
        "status:",
        "metadata",
        "Caused by",
    ] {
        assert!(!line.contains(noise), "{noise:?} in {line}");
    }
    line.to_string()
}

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(sensor_bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

/// Waits for `child` up to `limit`; kills it (it is ours) if it is still running.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} still running after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The CLI binary where `nobody` may run it: the build tree need not be open to others.
fn sensor_bin_for_nobody(dir: &TempDir) -> PathBuf {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("sensor");
    std::fs::copy(sensor_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn nobody_is_told_the_socket_is_root_only() {
    let socket = shared_daemon();
    let dir = TempDir::new("hcli-nobody");
    let bin = sensor_bin_for_nobody(&dir);
    let out = as_nobody(bin.to_str().unwrap())
        .args(["health", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = assert_one_clear_line(&out.stderr);
    assert!(line.contains("root"), "{line}");
    assert!(line.contains(&socket.display().to_string()), "{line}");
    assert!(!line.contains("transport error"), "{line}");
}

#[test]
fn a_daemon_error_reads_as_its_message() {
    let out = cli(
        shared_daemon(),
        &["threat", "quarantine", "remove", "--id", "00ff00ff00ff00ff"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = assert_one_clear_line(&out.stderr);
    assert!(line.contains("00ff00ff00ff00ff"), "{line}");
}

#[test]
fn a_huge_id_is_refused_in_one_short_line() {
    let id = "z".repeat(17_000);
    let out = cli(
        shared_daemon(),
        &["threat", "quarantine", "restore", "--id", &id],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = assert_one_clear_line(&out.stderr);
    assert!(line.len() < 300, "{} bytes", line.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_never_echoes_an_unbounded_id() {
    let mut c = client(shared_daemon()).await.unwrap();
    for id in ["z".repeat(17_000), "a".repeat(17_000)] {
        let err = c
            .remove_quarantine(proto::RemoveQuarantineRequest { id })
            .await
            .expect_err("no such entry");
        // The daemon's own refusal (a malformed id is the request's mistake), not a
        // protocol error over an oversized header.
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().len() < 1200, "{} bytes", err.message().len());
    }
}

/// Starts `sensor events --follow` on `d` and returns once the daemon counts it as a
/// subscriber.
async fn follow_events(d: &Daemon) -> Child {
    let before = health(&d.socket)
        .await
        .unwrap()
        .pipeline
        .unwrap()
        .subscribers;
    let child = Command::new(sensor_bin())
        .args(["events", "--follow", "--socket"])
        .arg(&d.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&d.socket)
        .await
        .unwrap()
        .pipeline
        .unwrap()
        .subscribers
        <= before
    {
        assert!(
            Instant::now() < deadline,
            "events --follow never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

fn assert_went_away(mut follower: Child) {
    let status = wait_with_limit(&mut follower, Duration::from_secs(30));
    let mut stderr = Vec::new();
    follower
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    let line = assert_one_clear_line(&stderr);
    assert!(line.contains("went away"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_fails_when_the_daemon_stops() {
    let mut d = Daemon::start(&[]).unwrap();
    let follower = follow_events(&d).await;
    d.stop().unwrap();
    assert_went_away(follower);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_fails_when_the_daemon_is_killed() {
    let mut d = Daemon::start(&[]).unwrap();
    let follower = follow_events(&d).await;
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert_went_away(follower);
}

/// Runs the CLI with a standard output whose reader is already gone.
fn cli_into_closed_pipe(socket: &Path, args: &[&str]) -> Output {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe(2).
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are fresh and ours; the read end is closed right away.
    let (reader, writer) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    Command::new(sensor_bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let socket = shared_daemon();
    // Something for `events` to print: execs of this test's own.
    for _ in 0..3 {
        Command::new("/bin/true").status().unwrap();
    }
    for args in [
        &["health"][..],
        &["health", "--output", "json"],
        &["events", "--last", "50"],
        &["events", "--last", "50", "--output", "json"],
    ] {
        let out = cli_into_closed_pipe(socket, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{args:?}: {} {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("acktrace"), "{args:?}: {stderr}");
    }
}

/// Held by the test that floods the machine with execs: every daemon sees every
/// process, so the flood would crowd a single exec out of the shared daemon's ring buffer
/// while another test looks for it.
static EXEC_FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_forged_argv_stays_on_its_own_line_with_controls_escaped() {
    let _flood = EXEC_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let socket = shared_daemon();
    let marker = format!("hcli-forge-{}", std::process::id());
    let payload = format!("{marker}\n  999 process_exec pid=1 exe=/sbin/init\x1b[2J");
    // setpriv execs /bin/true in its own pid: the forger's events are that pid's.
    let mut forger = as_nobody("/bin/true").arg(&payload).spawn().unwrap();
    let pid = forger.id().to_string();
    assert!(forger.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let out = cli(
            socket,
            &[
                "events",
                "--kind",
                "process_exec",
                "--pid",
                &pid,
                "--last",
                "10",
                "--output",
                "text",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        if text.contains(&marker) {
            break text;
        }
        assert!(Instant::now() < deadline, "the exec never showed");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!text.contains('\x1b'), "a raw escape reached the terminal");
    let escaped = format!("{marker}\\n  999 process_exec pid=1 exe=/sbin/init\\x1b[2J");
    for line in text.lines() {
        assert!(
            !line.starts_with("  999 process_exec pid=1"),
            "forged line: {line:?}"
        );
        if line.contains(&marker) {
            assert!(line.contains(&escaped), "{line:?}");
        }
    }
}

/// One history record of the daemon's format (a `proto::Threat` as JSON, one a line).
fn threat_record(i: usize) -> proto::Threat {
    proto::Threat {
        time_unix_ns: 1_700_000_000_000_000_000 + i as u64,
        name: "EICAR-Test-File".into(),
        engine: "eicar".into(),
        path: format!("/srv/hcli/{i:05}/{}", "p".repeat(1000)),
        action: "denied".into(),
        source: "real_time".into(),
        access: "open".into(),
        pid: 4242,
        exe: "/usr/bin/cat".into(),
        ..Default::default()
    }
}

#[test]
fn a_threat_history_past_the_message_limit_lists_in_full() {
    const RECORDS: usize = 5000;
    let dir = TempDir::new("hcli-threats");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut history = String::new();
    for i in 0..RECORDS {
        history += &serde_json::to_string(&threat_record(i)).unwrap();
        history.push('\n');
    }
    assert!(history.len() > 5 << 20, "must exceed the 4 MiB gRPC limit");
    let log = state.join("threats.jsonl");
    std::fs::write(&log, history).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Daemon::start(&["--state-dir", state.to_str().unwrap()]).unwrap();

    let text = d.cli(&["threat", "list"]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), RECORDS);
    for (i, line) in lines.iter().enumerate() {
        let t = threat_record(i);
        assert!(line.contains(&t.path), "line {i}: {line}");
        assert!(line.starts_with(&(t.time_unix_ns / 1_000_000_000).to_string()));
    }

    let docs = d.cli_json(&["threat", "list"]).unwrap();
    assert_eq!(docs.len(), RECORDS);
    for (i, doc) in docs.iter().enumerate() {
        let back: proto::Threat = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(back, threat_record(i), "record {i}");
    }
}

#[test]
fn a_detections_config_out_of_range_stops_start_up_in_one_line() {
    let dir = TempDir::new("hcli-detcfg");
    let cfg = dir.path().join("detections.json");
    std::fs::write(&cfg, r#"{"drop_exec_window_secs": 18446744073709551615}"#).unwrap();
    let mut daemon = Command::new(sensor_bin())
        .arg("daemon")
        .arg("--socket")
        .arg(dir.path().join("sensor.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--real-time-protection=false")
        .arg("--detections-config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_limit(&mut daemon, Duration::from_secs(30));
    let mut stderr = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("acktrace"),
        "{stderr}"
    );
    // Start-up may log before it reads the config; the error is the last line, alone.
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(last.starts_with("sensor: "), "{stderr}");
    assert!(last.contains("drop_exec_window_secs"), "{last}");
    assert!(last.contains(&cfg.display().to_string()), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lower_case_detection_id_switches_the_rule_off() {
    let dir = TempDir::new("hcli-detcase");
    let cfg = dir.path().join("detections.json");
    std::fs::write(&cfg, r#"{"disabled": ["sns-0004"]}"#).unwrap();
    let d = Daemon::start(&["--detections-config", cfg.to_str().unwrap()]).unwrap();
    let running = health(&d.socket).await.unwrap().detection.unwrap().builtin;
    // Every built-in rule runs in a daemon with no detections config.
    let all = health(shared_daemon())
        .await
        .unwrap()
        .detection
        .unwrap()
        .builtin;
    assert_eq!(running, all - 1);
}

#[test]
fn a_socket_planted_by_another_user_is_not_trusted() {
    let dir = TempDir::new("hcli-planted");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let socket = theirs.join("sensor.sock");
    // Listens but never answers: a client that trusts it hangs or gets forged answers.
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let uid = nobody_uid();
    std::os::unix::fs::chown(&theirs, Some(uid), None).unwrap();
    std::os::unix::fs::chown(&socket, Some(uid), None).unwrap();
    let mut child = Command::new(sensor_bin())
        .args(["health", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_limit(&mut child, Duration::from_secs(20));
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    let line = assert_one_clear_line(&stderr);
    assert!(line.contains("not root"), "{line}");
}

#[test]
fn health_text_shows_every_real_time_protection_counter() {
    let text = String::from_utf8(cli(shared_daemon(), &["health"]).stdout).unwrap();
    let docs = cli(shared_daemon(), &["health", "--output", "json"]).stdout;
    let json: serde_json::Value = serde_json::from_slice(&docs).unwrap();
    let fields = json["real_time_protection"].as_object().unwrap();
    // The ones the issue found hidden, and every other field of the message.
    for name in [
        "write_scans_dropped",
        "queue_full",
        "overflows",
        "too_large",
    ] {
        assert!(fields.contains_key(name), "{name} not in the message");
    }
    for name in fields.keys().filter(|n| *n != "status") {
        let shown = format!("  {:<22} ", name.replace('_', " "));
        assert!(text.contains(&shown), "{name} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_exclusions_file_shows_in_health() {
    let dir = TempDir::new("hcli-excl");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("exclusions.json"), "{\"folders\": [\"/srv\"").unwrap();
    let d = Daemon::start(&["--state-dir", state.to_str().unwrap()]).unwrap();
    // Other issues may stand beside it (a kernel without module support has one).
    let issues = health(&d.socket).await.unwrap().issues;
    let about = |i: &&String| i.contains("exclusions");
    assert_eq!(issues.iter().filter(about).count(), 1, "{issues:?}");
    let json = d.cli_json(&["health"]).unwrap();
    let listed = json[0]["issues"].as_array().unwrap();
    assert_eq!(listed.len(), issues.len());
    let text = d.cli(&["health"]).unwrap();
    let shown: Vec<&str> = text.lines().filter(|l| l.starts_with("ISSUE")).collect();
    assert_eq!(shown.len(), issues.len(), "{text}");
    assert_eq!(
        shown.iter().filter(|l| l.contains("exclusions")).count(),
        1,
        "{text}"
    );
}

#[test]
fn a_detection_history_past_the_message_limit_lists_in_full() {
    let _flood = EXEC_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    const EXECS: usize = 4500;
    // Each exec looks like a miner (SNS-0012) and carries a full argv buffer, so every
    // detection is over 1 KiB: thousands of them exceed one 4 MiB message. They would
    // be one aggregated detection; with aggregation off each is listed.
    let dir = TempDir::new("hcli-history");
    let cfg = dir.path().join("detections.json");
    std::fs::write(&cfg, r#"{"aggregation_window_secs": 0}"#).unwrap();
    let d = Daemon::start(&["--detections-config", cfg.to_str().unwrap()]).unwrap();
    let padding = "A".repeat(900);
    let script = format!(
        "i=0; while [ $i -lt {EXECS} ]; do /bin/true stratum+tcp://hcli {padding}; i=$((i+1)); done; \
         /bin/true stratum+tcp://hcli-last"
    );
    assert!(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let docs = loop {
        let docs = d.cli_json(&["detections", "list"]).unwrap();
        let last_seen = docs.iter().any(|v| {
            v["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "stratum+tcp://hcli-last"))
        });
        if last_seen {
            break docs;
        }
        assert!(
            Instant::now() < deadline,
            "the last exec's detection never came"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let bytes: usize = docs.iter().map(|v| v.to_string().len()).sum();
    assert!(bytes > 4 << 20, "only {bytes} bytes of detections");
    let seqs: Vec<u64> = docs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    // Text lists the same detections, one line each (those that came since included).
    let text = d.cli(&["detections", "list"]).unwrap();
    let first_seqs: Vec<u64> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .take(seqs.len())
        .collect();
    assert_eq!(first_seqs, seqs);
}
