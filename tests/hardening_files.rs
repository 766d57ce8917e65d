//! Issue 9, the files the sensor reads and writes: definitions, Sigma rule files,
//! quarantine sidecars and restore destinations, the threat history and the exclusions
//! file, each attacked the way a hostile local user or a careless administrator would.
//!
//! Daemons that scan mark only a tmpfs their test mounted (`--rtp-mount`); files meant to
//! be found at open time are written before the daemon starts. The local attacker is
//! `nobody`, run through `setpriv`.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sensor_tests::{Daemon, EICAR, TempDir, Tmpfs, as_nobody, health};

const NOBODY: u32 = 65534;
const SECRET: &str = "sensor-root-secret-5f2a9c";

/// Behavioural kills and blocking stay inside this test process's tree.
fn daemon(mode: &str, mount: &Tmpfs, extra: &[&str]) -> Daemon {
    Daemon::protecting(mode, mount, std::process::id(), extra).expect("daemon")
}

/// A state directory of the test's own, made as the daemon would make it (0700, root).
fn state_dir(tag: &str) -> (TempDir, PathBuf) {
    let base = TempDir::new(tag);
    let state = base.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    (base, state)
}

fn update_definitions(d: &Daemon, dir: &Path) -> anyhow::Result<String> {
    d.cli(&["definitions", "update", "--from", dir.to_str().unwrap()])
}

/// A root-only file (0600 in a 0700 directory) whose first line is [`SECRET`].
fn root_secret() -> (TempDir, PathBuf) {
    let dir = TempDir::new("secret");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let f = dir.path().join("secret");
    std::fs::write(&f, format!("{SECRET}\nsecond line\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, f)
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

fn eperm(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

/// Runs `script` with `sh -c` as nobody; panics with its stderr if it fails.
fn sh_as_nobody(script: &str) {
    let out = as_nobody("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` every 200 ms until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn quarantined_id(d: &Daemon) -> String {
    let q = d.cli_json(&["threat", "quarantine", "list"]).unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    q[0]["id"].as_str().unwrap().to_string()
}

// Item 3: a definitions file that is a symlink to a root-only file is refused by name, and
// its content never reaches the caller.
#[test]
fn definitions_symlink_to_a_root_only_file_is_refused_without_its_content() {
    let d = Daemon::start(&[]).unwrap();
    let (_secret_dir, secret) = root_secret();
    let defs = TempDir::new("defs-link");
    std::os::unix::fs::symlink(&secret, defs.path().join("leak.hdb")).unwrap();

    let err = update_definitions(&d, defs.path()).unwrap_err().to_string();
    assert!(
        err.contains("leak.hdb") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "the error quotes the file: {err}");
    assert!(!d.log().contains(SECRET), "the daemon log quotes the file");
}

// Item 3: YARA includes are off, and a compile error names file and line, not content.
#[test]
fn yara_include_is_refused_without_the_included_content() {
    let d = Daemon::start(&[]).unwrap();
    let (_secret_dir, secret) = root_secret();
    for target in [Path::new("/etc/hostname"), secret.as_path()] {
        let defs = TempDir::new("defs-include");
        std::fs::write(
            defs.path().join("rules.yar"),
            format!(
                "include \"{}\"\nrule r {{ condition: true }}\n",
                target.display()
            ),
        )
        .unwrap();
        let err = update_definitions(&d, defs.path()).unwrap_err().to_string();
        assert!(err.contains("rules.yar:1: YARA compile error"), "{err}");
        assert!(!err.contains(SECRET), "the error quotes the file: {err}");
    }
    let h = d.cli_json(&["health"]).unwrap();
    assert_eq!(h[0]["definitions"]["version"], "builtin");
}

/// The daemon's peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

// Item 9: a huge (sparse) hash database is refused by its size, before it is read.
#[test]
fn oversized_sparse_hdb_is_refused_quickly_and_memory_stays_small() {
    let d = Daemon::start(&[]).unwrap();
    let defs = TempDir::new("defs-huge");
    let huge = std::fs::File::create(defs.path().join("huge.hdb")).unwrap();
    huge.set_len(512 << 20).unwrap();

    let started = Instant::now();
    let err = update_definitions(&d, defs.path()).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("huge.hdb") && err.contains("limit of 268435456 bytes"),
        "{err}"
    );
    let peak = peak_rss_kib(d.pid());
    assert!(peak < 200 * 1024, "daemon peak RSS {peak} KiB");
}

// Item 9: a set without a single signature does not replace the current one.
#[test]
fn empty_definitions_directory_is_refused_and_the_old_set_stays() {
    let d = Daemon::start(&[]).unwrap();
    let good = TempDir::new("defs-good");
    std::fs::write(good.path().join("VERSION"), "2026.12.4").unwrap();
    std::fs::write(
        good.path().join("a.hdb"),
        "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Md5\n",
    )
    .unwrap();
    update_definitions(&d, good.path()).unwrap();

    let empty = TempDir::new("defs-empty");
    let err = update_definitions(&d, empty.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no hash signatures and no YARA rules"),
        "{err}"
    );
    std::fs::write(empty.path().join("VERSION"), "2026.12.5").unwrap();
    assert!(update_definitions(&d, empty.path()).is_err());

    let h = d.cli_json(&["health"]).unwrap();
    assert_eq!(h[0]["definitions"]["version"], "2026.12.4");
    assert_eq!(h[0]["definitions"]["hash_signatures"], 1);
}

// Item 4: the owner of a quarantined file swaps its directory for a symlink into a root
// 0700 directory; restore must not follow it.
#[test]
fn restore_refuses_a_directory_the_owner_swapped_for_a_symlink() {
    let m = Tmpfs::mount("files-restore").unwrap();
    let home = m.path().join("home");
    let sub = home.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    chown_nobody(&home);
    chown_nobody(&sub);
    let payload = sub.join("payload.bin");
    std::fs::write(&payload, EICAR).unwrap();
    chown_nobody(&payload);
    let d = daemon("blocking", &m, &[]);
    assert!(eperm(std::fs::read(&payload)), "EICAR open not refused");
    let id = quarantined_id(&d);

    let root_only = TempDir::new("root-only");
    std::fs::set_permissions(root_only.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    sh_as_nobody(&format!(
        "mv {sub} {sub}.old && ln -s {root} {sub}",
        sub = sub.display(),
        root = root_only.path().display()
    ));

    let err = d
        .cli(&["threat", "quarantine", "restore", "--id", &id])
        .unwrap_err()
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
    let planted: Vec<_> = std::fs::read_dir(root_only.path()).unwrap().collect();
    assert!(
        planted.is_empty(),
        "restored into root's directory: {planted:?}"
    );
    assert_eq!(quarantined_id(&d), id, "the entry is kept");
}

fn history_lines(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("threats.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// Item 11: nobody rewriting one EICAR file in a loop makes a handful of records, with the
// number of repeats in them, not one record per write.
#[test]
fn a_file_rewritten_in_a_loop_makes_a_handful_of_records() {
    let m = Tmpfs::mount("files-flood").unwrap();
    let (_base, state) = state_dir("flood");
    let d = daemon("passive", &m, &["--state-dir", state.to_str().unwrap()]);
    let work = m.path().join("work");
    std::fs::create_dir(&work).unwrap();
    chown_nobody(&work);
    let src_dir = TempDir::new("flood-src");
    let src = src_dir.path().join("eicar.txt");
    std::fs::write(&src, EICAR).unwrap();

    sh_as_nobody(&format!(
        "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do cat {} > {}/eicar.txt; done",
        src.display(),
        work.display()
    ));
    // The repeats are written as one record when their window ends.
    let lines = wait_for(Duration::from_secs(30), || {
        let lines = history_lines(&state);
        lines
            .iter()
            .any(|l| l["count"].as_u64() > Some(1))
            .then_some(lines)
    })
    .unwrap_or_else(|| {
        let n = history_lines(&state).len();
        panic!("no record with a count among {n}")
    });
    let repeats: u64 = lines.iter().filter_map(|l| l["count"].as_u64()).sum();
    assert!(lines.len() <= 6, "{} records: {lines:?}", lines.len());
    assert!(repeats >= 10, "only {repeats} threats seen: {lines:?}");
    let size = std::fs::metadata(state.join("threats.jsonl"))
        .unwrap()
        .len();
    assert!(size < 16 * 1024, "threats.jsonl is {size} bytes");
    let listed = d.cli_json(&["threat", "list"]).unwrap();
    assert!(listed.len() <= 6, "{} threats listed", listed.len());
}

// Item 12: a torn last line is cut at start-up, so the next record is not appended onto
// it and lost at the following restart.
#[test]
fn torn_history_tail_is_repaired_and_no_record_is_lost() {
    let m = Tmpfs::mount("files-torn").unwrap();
    let (_base, state) = state_dir("torn");
    let old = serde_json::json!({
        "time_unix_ns": 1u64, "name": "Old-Threat", "engine": "hash", "path": "/old/file",
        "action": "none", "source": "scan", "access": "scan"
    });
    std::fs::write(
        state.join("threats.jsonl"),
        format!("{old}\n{{\"time_unix_ns\":2,\"name\":\"Torn"),
    )
    .unwrap();
    let f = m.path().join("eicar.txt");
    std::fs::write(&f, EICAR).unwrap();
    let state_arg = state.to_str().unwrap();
    let passive_on_open = ["--state-dir", state_arg, "--scan-on-open", "true"];
    let mut d = daemon("passive", &m, &passive_on_open);
    std::fs::read(&f).unwrap();
    let path = f.to_str().unwrap();
    let found = wait_for(Duration::from_secs(20), || {
        let t = d.cli_json(&["threat", "list"]).unwrap();
        t.iter().any(|t| t["path"] == path).then_some(())
    });
    assert!(found.is_some(), "the threat was not recorded");
    assert!(d.stop().unwrap().success());
    drop(d);

    let d = daemon("passive", &m, &passive_on_open);
    let t = d.cli_json(&["threat", "list"]).unwrap();
    assert!(t.iter().any(|t| t["name"] == "Old-Threat"), "{t:?}");
    assert!(t.iter().any(|t| t["path"] == path), "{t:?}");
    let text = std::fs::read_to_string(state.join("threats.jsonl")).unwrap();
    assert!(!text.contains("Torn"), "{text}");
}

// Item 13: a FIFO or a /dev/zero symlink among the Sigma rules is skipped with a reason;
// start-up neither hangs nor eats memory.
#[tokio::test(flavor = "multi_thread")]
async fn sigma_fifo_and_dev_zero_symlink_are_skipped() {
    let dir = TempDir::new("sigma-special");
    let fifo = dir.path().join("a-fifo.yml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("b-zero.yml")).unwrap();

    let d = Daemon::start(&["--sigma-rules", dir.path().to_str().unwrap()]).unwrap();
    let skipped = health(&d.socket)
        .await
        .unwrap()
        .detection
        .unwrap()
        .sigma_skipped;
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped.iter().any(|s| s.contains("a-fifo.yml: a FIFO")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("b-zero.yml: a symbolic link")),
        "{skipped:?}"
    );
    let peak = peak_rss_kib(d.pid());
    assert!(peak < 200 * 1024, "daemon peak RSS {peak} KiB");
}

// Item 17: a corrupt exclusions.json is kept as a copy before a change overwrites it.
#[test]
fn corrupt_exclusions_file_is_kept_aside_and_listing_still_works() {
    let (_base, state) = state_dir("excl-corrupt");
    let corrupt = "{\"folders\": [\"/srv/keep\"";
    std::fs::write(state.join("exclusions.json"), corrupt).unwrap();
    let d = Daemon::start(&["--state-dir", state.to_str().unwrap()]).unwrap();
    let listed = d.cli_json(&["exclusion", "list"]).unwrap();
    assert_eq!(listed[0]["folders"], serde_json::json!([]), "{listed:?}");
    d.cli(&["exclusion", "folder", "add", "--path", "/srv/new"])
        .unwrap();

    let copies: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("exclusions.json.corrupt-"))
        .collect();
    assert_eq!(copies.len(), 1, "no copy kept");
    assert_eq!(std::fs::read_to_string(&copies[0]).unwrap(), corrupt);
    assert!(d.log().contains(copies[0].to_str().unwrap()), "{}", d.log());
    let listed = d.cli_json(&["exclusion", "list"]).unwrap();
    assert_eq!(listed[0]["folders"], serde_json::json!(["/srv/new"]));
}

// Item 17: blank paths, control characters and `..` through the CLI.
#[test]
fn exclusion_values_are_checked_and_normalised() {
    let d = Daemon::start(&[]).unwrap();
    let blank = d
        .cli(&["exclusion", "folder", "add", "--path", "   "])
        .unwrap_err()
        .to_string();
    assert!(blank.contains("blanks"), "{blank}");
    let forged = d
        .cli(&[
            "exclusion",
            "folder",
            "add",
            "--path",
            "/srv\nfolder          /",
        ])
        .unwrap_err()
        .to_string();
    assert!(forged.contains("control characters"), "{forged}");
    d.cli(&["exclusion", "folder", "add", "--path", "/srv/a/../b/./c/"])
        .unwrap();
    d.cli(&["exclusion", "extension", "add", "--name", ".TAR.GZ"])
        .unwrap();
    let listed = d.cli_json(&["exclusion", "list"]).unwrap();
    assert_eq!(listed[0]["folders"], serde_json::json!(["/srv/b/c"]));
    assert_eq!(listed[0]["extensions"], serde_json::json!(["tar.gz"]));
}

// Item 18: a quarantined file whose sidecar is gone is listed as damaged and removable.
#[test]
fn damaged_quarantine_sidecar_is_listed_and_removable() {
    let m = Tmpfs::mount("files-damaged").unwrap();
    let (_base, state) = state_dir("damaged");
    let f = m.path().join("eicar.com");
    std::fs::write(&f, EICAR).unwrap();
    let d = daemon("blocking", &m, &["--state-dir", state.to_str().unwrap()]);
    assert!(eperm(std::fs::read(&f)), "EICAR open not refused");
    let id = quarantined_id(&d);
    let qdir = state.join("quarantine");
    std::fs::remove_file(qdir.join(format!("{id}.json"))).unwrap();

    let q = d.cli_json(&["threat", "quarantine", "list"]).unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["id"], id.as_str());
    assert_eq!(
        q[0]["threat"],
        format!("damaged: {id}.json is missing").as_str()
    );
    let err = d
        .cli(&["threat", "quarantine", "restore", "--id", &id])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{id}.json")), "{err}");
    d.cli(&["threat", "quarantine", "remove", "--id", &id])
        .unwrap();
    assert!(
        d.cli_json(&["threat", "quarantine", "list"])
            .unwrap()
            .is_empty()
    );
    let left: Vec<_> = std::fs::read_dir(&qdir).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}
