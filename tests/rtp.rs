//! Real-time protection, quarantine, exclusions, definitions and on-demand scans, against
//! real fanotify permission events on the real kernel.
//!
//! Each test mounts its own tmpfs and starts a daemon that marks only that mount
//! (`--rtp-mount`), so nothing else on the machine is ever held by a test. Files meant to
//! be found at open time are written before the daemon starts: written afterwards, the
//! after-write scan would find (and, in blocking mode, quarantine) them first.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use sensor_tests::{Collector, Daemon, EICAR, TempDir, Tmpfs, is};

/// Behavioural kills and blocking stay inside this test process's tree.
fn daemon(mode: &str, mount: &Tmpfs, extra: &[&str]) -> Daemon {
    Daemon::protecting(mode, mount, std::process::id(), extra).expect("daemon")
}

/// Real-time protection's health; callable from sync and async tests alike.
fn rtp(d: &Daemon) -> sensor_proto::RealTimeProtection {
    d.rtp_health()
}

fn eperm(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

/// Definitions in a directory outside the marked mount, installed through the CLI.
fn install_definitions(d: &Daemon, files: &[(&str, String)]) -> TempDir {
    let dir = TempDir::new("defs");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    d.cli(&[
        "definitions",
        "update",
        "--from",
        dir.path().to_str().unwrap(),
    ])
    .expect("definitions update");
    dir
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Clean files of a size the EICAR test file can have (68 to 128 bytes): their content
/// must be read, so they reach a real scan. Shorter ones are settled by their size alone.
const CLEAN: &[u8] = b"a clean text file, of a length the EICAR test file could have as well\n";
const FIRST_VERSION: &[u8] =
    b"first version of a clean file, of a length the EICAR test file could have\n";

#[tokio::test(flavor = "multi_thread")]
async fn eicar_is_denied_and_quarantined_in_blocking_mode() {
    let m = Tmpfs::mount("rtp-block").unwrap();
    let f = m.path().join("eicar.com");
    std::fs::write(&f, EICAR).unwrap();
    let d = daemon("blocking", &m, &[]);
    let events = Collector::start(&d.socket, &["detection"]).await.unwrap();

    assert!(eperm(std::fs::read(&f)), "open of EICAR was not refused");
    let det = events
        .expect("SNS-0100 denied", |e| is(e, "SNS-0100"))
        .await;
    let det = det.detection.unwrap();
    assert_eq!(det.action, "denied");
    assert_eq!(det.details["threat"], "EICAR-Test-File");
    let qid = det.details["quarantine_id"].clone();
    assert!(!f.exists(), "the original is still there");

    let q = d.cli_json(&["threat", "quarantine", "list"]).unwrap();
    assert!(q.iter().any(|e| e["id"] == qid.as_str()
        && e["original_path"] == f.to_str().unwrap()
        && e["sha256"] == sha256_hex(EICAR).as_str()));
    let t = d.cli_json(&["threat", "list"]).unwrap();
    assert!(
        t.iter()
            .any(|t| t["action"] == "denied" && t["access"] == "open")
    );
    assert_eq!(rtp(&d).denied, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn eicar_is_readable_and_reported_in_passive_mode() {
    let m = Tmpfs::mount("rtp-passive").unwrap();
    let f = m.path().join("eicar.txt");
    std::fs::write(&f, EICAR).unwrap();
    let d = daemon("passive", &m, &["--scan-on-open", "true"]);
    let events = Collector::start(&d.socket, &["detection"]).await.unwrap();

    assert_eq!(std::fs::read(&f).unwrap(), EICAR);
    let det = events.expect("SNS-0100", |e| is(e, "SNS-0100")).await;
    let det = det.detection.unwrap();
    assert_eq!(det.action, "none");
    assert!(!det.details.contains_key("quarantine_id"));
    assert!(f.exists());
    assert_eq!(rtp(&d).denied, 0);
    // Reported once: a second open is answered from the cache.
    assert_eq!(std::fs::read(&f).unwrap(), EICAR);
    assert_eq!(d.cli_json(&["threat", "list"]).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn executable_matching_an_hsb_signature_cannot_run() {
    let m = Tmpfs::mount("rtp-exec").unwrap();
    let exe = m.path().join("dropper");
    // A working binary made unique, so its hash names only this file.
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(format!("sensor-test-{}", std::process::id()).as_bytes());
    std::fs::write(&exe, &bytes).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new(&exe).status().unwrap().success());

    let d = daemon("blocking", &m, &["--scan-on-open", "false"]);
    let _defs = install_definitions(
        &d,
        &[(
            "test.hsb",
            format!("{}:{}:Test.Dropper.Hsb\n", sha256_hex(&bytes), bytes.len()),
        )],
    );
    let events = Collector::start(&d.socket, &["detection"]).await.unwrap();
    let r = Command::new(&exe).status();
    assert!(eperm(r), "the signed-as-malware binary ran");
    let det = events.expect("SNS-0100 exec", |e| is(e, "SNS-0100")).await;
    let det = det.detection.unwrap();
    assert_eq!(det.details["threat"], "Test.Dropper.Hsb");
    assert_eq!(det.details["access"], "exec");
    assert_eq!(det.details["engine"], "hash");
}

#[tokio::test(flavor = "multi_thread")]
async fn yara_rule_match_is_reported() {
    let m = Tmpfs::mount("rtp-yara").unwrap();
    let d = daemon("passive", &m, &[]);
    let _defs = install_definitions(
        &d,
        &[(
            "linux.yar",
            "rule Test_Linux_Backdoor { strings: $a = \"sensor-yara-7f3a9\" condition: $a }\n"
                .into(),
        )],
    );
    let events = Collector::start(&d.socket, &["detection"]).await.unwrap();
    let f = m.path().join("implant.sh");
    std::fs::write(&f, "#!/bin/sh\n# sensor-yara-7f3a9\nexit 0\n").unwrap();
    let det = events.expect("SNS-0100 yara", |e| is(e, "SNS-0100")).await;
    let det = det.detection.unwrap();
    assert_eq!(det.details["threat"], "Test_Linux_Backdoor");
    assert_eq!(det.details["engine"], "yara");
    assert_eq!(det.details["access"], "write");
    let h = d.cli_json(&["health"]).unwrap();
    assert_eq!(h[0]["definitions"]["yara_rules"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_folder_is_not_blocked() {
    let m = Tmpfs::mount("rtp-excl").unwrap();
    let dir = m.path().join("build-cache");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("eicar.txt"), EICAR).unwrap();
    std::fs::write(m.path().join("eicar.txt"), EICAR).unwrap();
    let d = daemon("blocking", &m, &[]);
    d.cli(&[
        "exclusion",
        "folder",
        "add",
        "--path",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    let listed = d.cli_json(&["exclusion", "list"]).unwrap();
    assert_eq!(listed[0]["folders"][0], dir.to_str().unwrap());

    assert_eq!(std::fs::read(dir.join("eicar.txt")).unwrap(), EICAR);
    assert!(rtp(&d).excluded >= 1);

    // By extension, and by process.
    d.cli(&["exclusion", "extension", "add", "--name", ".iso"])
        .unwrap();
    std::fs::write(m.path().join("image.iso"), EICAR).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read(m.path().join("image.iso")).unwrap(), EICAR);
    d.cli(&["exclusion", "process", "add", "--path", "/usr/bin/head"])
        .unwrap();
    let head = Command::new("/usr/bin/head")
        .arg(m.path().join("eicar.txt"))
        .output()
        .unwrap();
    assert!(head.status.success(), "excluded process was blocked");
    assert_eq!(head.stdout, EICAR);

    // The same file outside the folder, opened by anyone else, is still blocked.
    assert!(eperm(std::fs::read(m.path().join("eicar.txt"))));
    d.cli(&[
        "exclusion",
        "folder",
        "remove",
        "--path",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    assert!(eperm(std::fs::read(dir.join("eicar.txt"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_gives_back_exact_bytes_owner_mode_and_times() {
    let m = Tmpfs::mount("rtp-restore").unwrap();
    let f = m.path().join("payload.bin");
    std::fs::write(&f, EICAR).unwrap();
    std::os::unix::fs::chown(&f, Some(4321), Some(8765)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let before = std::fs::metadata(&f).unwrap();
    let d = daemon("blocking", &m, &[]);
    assert!(eperm(std::fs::read(&f)));
    let q = d.cli_json(&["threat", "quarantine", "list"]).unwrap();
    let id = q[0]["id"].as_str().unwrap().to_string();

    // Restored outside the marked mount, where it is not blocked again.
    let out = TempDir::new("restored");
    let dest = out.path().join("payload.bin");
    std::fs::write(&dest, b"occupied").unwrap();
    let refused = d.cli(&[
        "threat",
        "quarantine",
        "restore",
        "--id",
        &id,
        "--path",
        dest.to_str().unwrap(),
    ]);
    assert!(refused.unwrap_err().to_string().contains("exists"));
    d.cli(&[
        "threat",
        "quarantine",
        "restore",
        "--id",
        &id,
        "--path",
        dest.to_str().unwrap(),
        "--overwrite",
    ])
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), EICAR);
    let after = std::fs::metadata(&dest).unwrap();
    assert_eq!((after.uid(), after.gid()), (4321, 8765));
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    assert!(
        d.cli_json(&["threat", "quarantine", "list"])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn killed_daemon_releases_a_waiting_opener() {
    let m = Tmpfs::mount("rtp-kill").unwrap();
    let f = m.path().join("slow.txt");
    std::fs::write(&f, CLEAN).unwrap();
    // Scans take 60 s and the deadline is longer: only the daemon's death can free the
    // opener.
    let mut d = daemon(
        "blocking",
        &m,
        &[
            "--debug-scan-delay-ms",
            "60000",
            "--scan-deadline-ms",
            "120000",
        ],
    );
    let mut cat = Command::new("cat")
        .arg(&f)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while rtp(&d).pending == 0 {
        assert!(Instant::now() < until, "the open never reached the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cat.try_wait().unwrap().is_none(), "cat was not held");
    d.child.kill().unwrap();
    let killed = Instant::now();
    let _ = d.child.wait();
    let st = loop {
        if let Some(st) = cat.try_wait().unwrap() {
            break st;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "opener still held 1 s after the daemon died"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(st.success());
}

#[test]
fn deadline_allows_an_open_the_scan_cannot_answer_in_time() {
    let m = Tmpfs::mount("rtp-deadline").unwrap();
    let f = m.path().join("slow.txt");
    std::fs::write(&f, CLEAN).unwrap();
    let d = daemon(
        "blocking",
        &m,
        &["--debug-scan-delay-ms", "5000", "--scan-deadline-ms", "300"],
    );
    let t = Instant::now();
    assert_eq!(std::fs::read(&f).unwrap(), CLEAN);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "answered before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "held past the deadline: {took:?}"
    );
    assert_eq!(rtp(&d).deadline_allowed, 1);
}

#[test]
fn sizes_no_signature_can_have_are_settled_without_reading() {
    let m = Tmpfs::mount("rtp-sizes").unwrap();
    let (short, long, fits) = (
        m.path().join("short.txt"),
        m.path().join("long.txt"),
        m.path().join("fits.txt"),
    );
    std::fs::write(&short, b"clean\n").unwrap();
    std::fs::write(&long, vec![b'a'; 4096]).unwrap();
    std::fs::write(&fits, CLEAN).unwrap();
    // The built-in definitions only: EICAR, 68 to 128 bytes; no hashes, no rules.
    let d = daemon("blocking", &m, &[]);
    let base = rtp(&d);
    std::fs::read(&short).unwrap();
    std::fs::read(&long).unwrap();
    let sized = rtp(&d);
    assert_eq!(sized.scanned, base.scanned, "a file was read for nothing");
    assert_eq!(sized.unmatchable, base.unmatchable + 2);
    std::fs::read(&fits).unwrap();
    assert_eq!(rtp(&d).scanned, base.scanned + 1);
}

#[test]
fn unchanged_file_is_scanned_once_and_a_changed_one_again() {
    let m = Tmpfs::mount("rtp-cache").unwrap();
    let f = m.path().join("doc.txt");
    std::fs::write(&f, FIRST_VERSION).unwrap();
    let d = daemon("blocking", &m, &[]);
    let base = rtp(&d);
    assert_eq!(std::fs::read(&f).unwrap(), FIRST_VERSION);
    let one = rtp(&d);
    assert_eq!(one.scanned, base.scanned + 1);
    for _ in 0..5 {
        std::fs::read(&f).unwrap();
    }
    let again = rtp(&d);
    assert_eq!(
        again.scanned, one.scanned,
        "an unchanged file was scanned again"
    );
    // Served by the kernel's ignore mark: the opens did not even reach the daemon.
    assert_eq!(again.permission_events, one.permission_events);
    assert!(again.ignore_marks >= 1);

    // Modified after its clean verdict: scanned again, and now found. No open may see
    // the new content, and the file ends in quarantine.
    std::fs::write(&f, EICAR).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while f.exists() {
        if let Ok(data) = std::fs::read(&f) {
            assert_ne!(data, EICAR, "modified file was served from the cache");
        }
        assert!(
            Instant::now() < until,
            "the modified file was not quarantined"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = rtp(&d);
    assert!(last.scanned > again.scanned);
    assert!(last.threats >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_definitions_are_refused_and_the_old_set_stays() {
    let m = Tmpfs::mount("rtp-defs").unwrap();
    let d = daemon("passive", &m, &[]);
    let _good = install_definitions(
        &d,
        &[
            ("VERSION", "2026.11.23".into()),
            (
                "a.hdb",
                "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Md5\n".into(),
            ),
        ],
    );
    let bad = TempDir::new("bad-defs");
    std::fs::write(bad.path().join("VERSION"), "2026.11.24").unwrap();
    std::fs::write(bad.path().join("b.hsb"), "not-a-hash:12:X\n").unwrap();
    let err = d
        .cli(&[
            "definitions",
            "update",
            "--from",
            bad.path().to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.hsb:1"), "{err}");
    let h = d.cli_json(&["health"]).unwrap();
    assert_eq!(h[0]["definitions"]["version"], "2026.11.23");
    assert_eq!(h[0]["definitions"]["hash_signatures"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_scan_finds_threats_without_following_symlink_loops() {
    let m = Tmpfs::mount("rtp-scan").unwrap();
    let d = daemon("passive", &m, &[]);
    let tree = TempDir::new("scan-tree");
    let deep = tree.path().join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    for i in 0..50 {
        std::fs::write(
            tree.path().join(format!("a/f{i}.txt")),
            format!("clean {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(deep.join("eicar.com"), EICAR).unwrap();
    std::os::unix::fs::symlink("../..", deep.join("loop")).unwrap();
    std::os::unix::fs::symlink("/proc", tree.path().join("proc-link")).unwrap();

    let out = d
        .cli_json(&["scan", "custom", "--path", tree.path().to_str().unwrap()])
        .unwrap();
    let s = &out[0];
    assert_eq!(s["threats"], 1, "{s}");
    assert_eq!(s["files"], 51, "{s}");
    assert_eq!(s["cancelled"], false);
    assert_eq!(
        s["found"][0]["path"],
        deep.join("eicar.com").to_str().unwrap()
    );
    assert_eq!(s["found"][0]["action"], "none");
    assert!(
        deep.join("eicar.com").exists(),
        "passive mode removed the file"
    );
    assert!(
        Path::new(s["found"][0]["path"].as_str().unwrap()).exists(),
        "found path is not the file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_quarantine_survive_a_restart() {
    let m = Tmpfs::mount("rtp-restart").unwrap();
    let state = TempDir::new("state");
    let f = m.path().join("eicar.txt");
    std::fs::write(&f, EICAR).unwrap();
    let state_arg = state.path().to_str().unwrap();
    let mut d = daemon("blocking", &m, &["--state-dir", state_arg]);
    assert!(eperm(std::fs::read(&f)));
    // The opener is answered first; the quarantine follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let q1 = loop {
        let q = d.cli_json(&["threat", "quarantine", "list"]).unwrap();
        if !q.is_empty() || Instant::now() > deadline {
            break q;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(q1.len(), 1);
    assert_eq!(q1[0]["threat"], "EICAR-Test-File", "{q1:?}");
    assert!(d.stop().unwrap().success());
    drop(d);

    let d = daemon("blocking", &m, &["--state-dir", state_arg]);
    assert_eq!(d.cli_json(&["threat", "quarantine", "list"]).unwrap(), q1);
    let t = d.cli_json(&["threat", "list"]).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["quarantine_id"], q1[0]["id"]);
    let id = q1[0]["id"].as_str().unwrap();
    d.cli(&["threat", "quarantine", "remove", "--id", id])
        .unwrap();
    assert!(
        d.cli_json(&["threat", "quarantine", "list"])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_running_scan_can_be_cancelled() {
    let m = Tmpfs::mount("rtp-cancel").unwrap();
    // 40 files at 200 ms each on one worker: 8 s unless cancelled. The tree is this
    // test's own: a scan of shared directories would open other tests' files.
    let d = daemon("passive", &m, &["--debug-scan-delay-ms", "200"]);
    let tree = TempDir::new("cancel-tree");
    for i in 0..40 {
        std::fs::write(tree.path().join(format!("f{i}")), b"x").unwrap();
    }
    let started = Instant::now();
    let scan = Command::new(sensor_tests::sensor_bin())
        .args([
            "scan",
            "custom",
            "--workers",
            "1",
            "--output",
            "json",
            "--path",
        ])
        .arg(tree.path())
        .arg("--socket")
        .arg(&d.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // A second scan is refused while one runs.
    let second = d.cli(&["scan", "custom", "--path", tree.path().to_str().unwrap()]);
    assert!(second.unwrap_err().to_string().contains("already running"));
    d.cli(&["scan", "cancel"]).unwrap();
    let out = scan.wait_with_output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["cancelled"], true, "{s}");
    assert!(s["files"].as_u64().unwrap() > 0, "{s}");
    assert!(s["files"].as_u64().unwrap() < 40, "{s}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(
        d.cli(&["scan", "cancel"]).is_err(),
        "nothing left to cancel"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_scan_covers_the_monitored_filesystems() {
    let m = Tmpfs::mount("rtp-full").unwrap();
    std::fs::create_dir_all(m.path().join("a/b")).unwrap();
    for i in 0..20 {
        std::fs::write(m.path().join(format!("a/f{i}")), b"clean\n").unwrap();
    }
    std::fs::write(m.path().join("a/b/eicar.com"), EICAR).unwrap();
    // Monitoring only this tmpfs, a full scan covers exactly its files.
    let d = daemon("passive", &m, &[]);
    let out = d.cli_json(&["scan", "full"]).unwrap();
    let s = &out[0];
    assert_eq!(s["files"], 21, "{s}");
    assert_eq!(s["threats"], 1, "{s}");
    assert_eq!(
        s["found"][0]["path"],
        m.path().join("a/b/eicar.com").to_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_threat_is_reported_but_not_blocked() {
    let m = Tmpfs::mount("rtp-allowed").unwrap();
    let f = m.path().join("eicar.txt");
    std::fs::write(&f, EICAR).unwrap();
    let d = daemon("blocking", &m, &[]);
    d.cli(&["threat", "allowed", "add", "--name", "EICAR-Test-File"])
        .unwrap();
    let events = Collector::start(&d.socket, &["detection"]).await.unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), EICAR);
    let det = events.expect("SNS-0100", |e| is(e, "SNS-0100")).await;
    assert_eq!(det.detection.unwrap().action, "none");
    assert!(f.exists());
    assert_eq!(rtp(&d).denied, 0);
}
