//! The daemon's API as clients meet it: the root-only socket, gRPC reflection, and the
//! `sensor` CLI's JSON output.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::{FileTypeExt, PermissionsExt},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sensor_tests::{sensor_bin, shared_daemon};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[test]
fn socket_is_root_only() {
    let meta = std::fs::metadata(shared_daemon()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_service() {
    let channel = sensor_proto::client::channel(shared_daemon())
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer: {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"sensor.v1.Sensor"), "services: {names:?}");
}

#[test]
fn cli_follows_events_as_json_lines() {
    let mut cli = Command::new(sensor_bin())
        .args([
            "events",
            "--follow",
            "--output",
            "json",
            "--kind",
            "process_exec",
            "--socket",
        ])
        .arg(shared_daemon())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = cli.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = format!("cli-marker-{}", std::process::id());
    // The CLI subscribes asynchronously: repeat the exec until it shows up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut found = None;
    'outer: while Instant::now() < deadline {
        Command::new("/bin/echo")
            .arg(&marker)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("each line is JSON");
            assert_eq!(v["kind"], "process_exec");
            if v["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker.as_str()))
            {
                found = Some(v);
                break 'outer;
            }
        }
    }
    let _ = cli.kill();
    let _ = cli.wait();
    let v = found.expect("the exec shows up on `sensor events --follow --output json`");
    assert!(v["seq"].as_u64().unwrap() > 0);
    let p = &v["process"];
    assert_eq!(p["ppid"].as_u64().unwrap() as u32, std::process::id());
    let real = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(p["exe"], real.to_str().unwrap());
    assert_eq!(p["args"][0], "/bin/echo");
    assert_eq!(p["uid"], 0);
    assert!(p["pid"].as_u64().unwrap() > 0 && p["start_time"].as_u64().unwrap() > 0);
}

#[test]
fn cli_health_json_has_counters_per_kind() {
    let out = Command::new(sensor_bin())
        .args(["health", "--output", "json", "--socket"])
        .arg(shared_daemon())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "passive");
    assert!(v["programs_attached"].as_u64().unwrap() > 0);
    for kind in ["process_exec", "file_create", "net_connect", "fd_dup"] {
        assert!(v["events"]["received"][kind].is_u64(), "received.{kind}");
        assert!(v["events"]["lost"][kind].is_u64(), "lost.{kind}");
    }
    assert!(v["process_table"]["size"].as_u64().unwrap() > 0);
}

#[test]
fn cli_health_field_prints_one_value() {
    let field = |args: &[&str]| {
        Command::new(sensor_bin())
            .args(["health", "--field"])
            .args(args)
            .arg("--socket")
            .arg(shared_daemon())
            .output()
            .unwrap()
    };
    let out = field(&["mode"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "passive\n");
    let out = field(&["events.lost.file_create"]);
    let lost = String::from_utf8_lossy(&out.stdout);
    assert!(lost.trim().parse::<u64>().is_ok(), "{lost:?}");
    let out = field(&["real_time_protection", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["marks"].is_array(), "{v}");

    let out = field(&["no_such_field"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no health field \"no_such_field\"") && err.contains("mode"),
        "{err}"
    );
}

#[test]
fn cli_reports_a_missing_daemon_clearly() {
    let out = Command::new(sensor_bin())
        .args(["health", "--socket", "/nonexistent/sensor.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to the sensor daemon at /nonexistent/sensor.sock"),
        "{err}"
    );
}
