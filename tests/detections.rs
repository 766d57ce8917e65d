//! Built-in detections, each performed for real on this machine, next to a benign
//! look-alike that must stay quiet. The daemon runs in passive mode: every detection's
//! action is `none` and the behaviour runs to completion.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};

use sensor_tests::{
    Collector, Daemon, TempDir, from, is, load_bpf, pid_of, sensor_bin, shared_daemon,
};

const KINDS: [&str; 2] = ["detection", "process_exit"];

#[tokio::test(flavor = "multi_thread")]
async fn reverse_shell_over_dev_tcp() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let (mut shell, mut conn, port) = sensor_tests::dev_tcp_reverse_shell();
    conn.write_all(b"exit\n").unwrap();
    let mut sink = Vec::new();
    let _ = conn.read_to_end(&mut sink);
    assert!(
        shell.wait().unwrap().success(),
        "passive mode lets the shell run"
    );

    let e = c
        .expect("SNS-0001", |e| {
            is(e, "SNS-0001")
                && e.process
                    .as_ref()
                    .is_some_and(|p| p.ppid == shell.id() || p.pid == shell.id())
        })
        .await;
    let d = e.detection.clone().unwrap();
    assert_eq!(
        d.details.get("remote").map(String::as_str),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(
        (d.severity.as_str(), d.action.as_str(), d.source.as_str()),
        ("high", "none", "builtin")
    );
    assert!(!d.evidence.is_empty() && d.evidence.iter().all(|&s| s < e.seq));
    assert!(d.mitre.iter().any(|m| m == "T1059.004"));
    let p = e.process.unwrap();
    assert!(p.exe.ends_with("bash"));
    assert!(
        !p.ancestors.is_empty(),
        "the detection carries the ancestry"
    );

    // Benign: a shell that only sends output to a socket.
    let quiet_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let qport = quiet_listener.local_addr().unwrap().port();
    let benign = Command::new("/bin/bash")
        .args(["-c", &format!("echo hello > /dev/tcp/127.0.0.1/{qport}")])
        .status()
        .unwrap();
    assert!(benign.success());
    let _ = quiet_listener.accept().unwrap();
    // The benign shell is the direct child here (bash -c runs the builtin itself).
    let benign_pid = c
        .wait_for(Duration::from_secs(10), |e| {
            e.kind == "process_exit"
                && e.process
                    .as_ref()
                    .is_some_and(|p| p.args.iter().any(|a| a.contains(&format!("/{qport}"))))
        })
        .await
        .map(|e| pid_of(&e))
        .expect("benign shell exit seen");
    c.assert_quiet(benign_pid, "SNS-0001").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fileless_execution_from_memfd() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let name = CString::new("sensor-fileless").unwrap();
    // Without CLOEXEC, so the child can exec it through /proc/self/fd.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0);
    let image = std::fs::read("/bin/true").unwrap();
    let written = unsafe { libc::write(fd, image.as_ptr().cast(), image.len()) };
    assert_eq!(written as usize, image.len());
    let child = Command::new(format!("/proc/self/fd/{fd}")).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    unsafe { libc::close(fd) };
    let e = c
        .expect("SNS-0002", |e| is(e, "SNS-0002") && pid_of(e) == pid)
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("source")
            .map(String::as_str),
        Some("memfd")
    );

    let benign = Command::new("/bin/true").spawn().unwrap();
    let bpid = benign.id();
    benign.wait_with_output().unwrap();
    c.assert_quiet(bpid, "SNS-0002").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_and_execute_in_tmp() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dropped = std::path::PathBuf::from(format!("/tmp/sensor-drop-{}", std::process::id()));
    std::fs::create_dir_all(&dropped).unwrap();
    let exe = dropped.join("payload");
    std::fs::copy("/bin/true", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = spawn(&mut Command::new(&exe));
    let pid = child.id();
    child.wait_with_output().unwrap();
    let e = c
        .expect("SNS-0003", |e| is(e, "SNS-0003") && pid_of(e) == pid)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("path").map(String::as_str),
        Some(exe.to_str().unwrap())
    );
    assert_eq!(d.evidence.len(), 2, "the write and the exec");
    std::fs::remove_dir_all(&dropped).unwrap();

    // Benign: the same binary installed in a root-only directory.
    let installed = std::path::PathBuf::from(format!("/run/sensor-test-{}", std::process::id()));
    std::fs::create_dir_all(&installed).unwrap();
    let ok = installed.join("tool");
    std::fs::copy("/bin/true", &ok).unwrap();
    let child = spawn(&mut Command::new(&ok));
    let bpid = child.id();
    child.wait_with_output().unwrap();
    c.assert_quiet(bpid, "SNS-0003").await;
    std::fs::remove_dir_all(&installed).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kernel_module_load_attempt() {
    // The flag only matters on a kernel without module support, where attempts are
    // captured only when asked for.
    let d = Daemon::start(&["--module-load-attempts"]).unwrap();
    let c = Collector::start(&d.socket, &KINDS).await.unwrap();
    let image = [0u8; 64];
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            c"x=1".as_ptr(),
        )
    };
    assert_eq!(r, -1, "a zeroed image never loads");
    let e = c
        .expect("SNS-0004", |e| {
            is(e, "SNS-0004") && pid_of(e) == std::process::id()
        })
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("params")
            .map(String::as_str),
        Some("x=1")
    );

    // Benign: module tools that do not load anything (listing, a dry-run modprobe).
    let bpid = sh("cat /proc/modules; lsmod; modprobe --dry-run --quiet loop; true");
    c.assert_quiet(bpid, "SNS-0004").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bpf_load_outside_allowlist() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    load_bpf(b"det_bpf");
    let e = c
        .expect("SNS-0005", |e| {
            is(e, "SNS-0005")
                && e.detection
                    .as_ref()
                    .unwrap()
                    .details
                    .get("prog_name")
                    .is_some_and(|n| n == "det_bpf")
        })
        .await;
    assert_eq!(pid_of(&e), std::process::id());

    // Benign: the same load by an allowlisted executable (this test binary), on a daemon
    // configured so.
    let dir = TempDir::new("allow");
    let cfg = dir.path().join("detections.json");
    let me = std::env::current_exe().unwrap();
    std::fs::write(
        &cfg,
        format!(
            r#"{{"allow": {{"SNS-0005": {{"exe": ["{}"]}}}}}}"#,
            me.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--detections-config", cfg.to_str().unwrap()]).unwrap();
    let allowed = Collector::start(&d.socket, &["detection", "bpf_load"])
        .await
        .unwrap();
    load_bpf(b"det_allowed");
    allowed
        .expect("the load is seen", |e| {
            e.bpf.as_ref().is_some_and(|b| b.prog_name == "det_allowed")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !allowed.all().iter().any(|e| is(e, "SNS-0005")),
        "allowlisted load raised SNS-0005"
    );

    // A malformed configuration is refused with a message naming the problem.
    std::fs::write(&cfg, r#"{"disabled": ["SNS-4242"]}"#).unwrap();
    let out = Command::new(sensor_bin())
        .args([
            "daemon",
            "--socket",
            "/nonexistent/s.sock",
            "--detections-config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown detection id \"SNS-4242\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn ptrace_injection_and_traceme() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let mut victim = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let vpid = victim.id() as i32;
    assert_eq!(unsafe { libc::ptrace(libc::PTRACE_ATTACH, vpid, 0, 0) }, 0);
    unsafe {
        let mut st = 0;
        libc::waitpid(vpid, &mut st, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, vpid, 0, 0);
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    // Other tests in this process inject too: this one is told by its victim.
    let e = c
        .expect("SNS-0006", |e| {
            is(e, "SNS-0006")
                && pid_of(e) == std::process::id()
                && e.detection.as_ref().unwrap().details.get("target_pid")
                    == Some(&vpid.to_string())
        })
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("request")
            .map(String::as_str),
        Some("PTRACE_ATTACH")
    );

    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::_exit(0);
        }
    }
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    let t = c
        .expect("SNS-0015", |e| {
            is(e, "SNS-0015") && pid_of(e) == child as u32
        })
        .await;
    assert_eq!(t.detection.unwrap().severity, "low");

    // Benign: a debugger on the allowlist tracing its own child.
    if std::path::Path::new("/usr/bin/strace").exists() {
        let s = Command::new("/usr/bin/strace")
            .args(["-f", "-o", "/dev/null", "/bin/true"])
            .spawn()
            .unwrap();
        let spid = s.id();
        assert!(s.wait_with_output().unwrap().status.success());
        c.assert_quiet(spid, "SNS-0006").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn detections_list_cli() {
    let c = Collector::start(shared_daemon(), &["detection"])
        .await
        .unwrap();
    load_bpf(b"det_cli");
    let e = c
        .expect("SNS-0005 for the CLI", |e| {
            e.detection
                .as_ref()
                .is_some_and(|d| d.details.get("prog_name").is_some_and(|n| n == "det_cli"))
        })
        .await;
    let out = Command::new(sensor_bin())
        .args([
            "detections",
            "list",
            "--output",
            "json",
            "--since",
            &(e.seq - 1).to_string(),
            "--socket",
        ])
        .arg(shared_daemon())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one detection at least")).unwrap();
    assert_eq!(first["seq"].as_u64(), Some(e.seq));
    assert_eq!(first["detection"]["id"], "SNS-0005");
    assert_eq!(first["kind"], "detection");
}

/// Runs `program` with `args`, output discarded, and returns its pid once it has
/// exited (whatever its status).
fn run(program: &str, args: &[&str]) -> u32 {
    let child = spawn(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = child.id();
    child.wait_with_output().unwrap();
    pid
}

/// Runs `script` with /bin/sh and returns its pid once it has exited.
fn sh(script: &str) -> u32 {
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    pid
}

#[tokio::test(flavor = "multi_thread")]
async fn persistence_in_cron_d() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let job = format!("/etc/cron.d/sensor-test-{}", std::process::id());
    // A comment only: nothing is ever scheduled, and the file is removed at once.
    let pid = sh(&format!("echo '# sensor test' > {job}; rm -f {job}"));
    let e = c
        .expect("SNS-0008", |e| is(e, "SNS-0008") && pid_of(e) == pid)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.details.get("path"), Some(&job));
    assert_eq!(d.details.get("category").map(String::as_str), Some("cron"));

    // Benign: a look-alike name outside the cron directories.
    let decoy = format!("/etc/cron.d.sensor-test-{}", std::process::id());
    let bpid = sh(&format!("echo '# x' > {decoy}; rm -f {decoy}"));
    c.assert_quiet(bpid, "SNS-0008").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_service_spawns_a_shell() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let serve = "import socket,os; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1); os.system('id')";
    let py = Command::new("/usr/bin/python3")
        .args(["-c", serve])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = py.id();
    assert!(py.wait_with_output().unwrap().status.success());
    let e = c
        .expect("SNS-0009", |e| {
            is(e, "SNS-0009") && e.process.as_ref().is_some_and(|p| p.ppid == ppid)
        })
        .await;
    assert!(
        e.detection
            .unwrap()
            .details
            .get("service")
            .is_some_and(|s| s.contains("python"))
    );

    // Benign: the same interpreter running the same command without serving anything.
    let quiet = Command::new("/usr/bin/python3")
        .args(["-c", "import os; os.system('id')"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let qpid = quiet.id();
    quiet.wait_with_output().unwrap();
    c.assert_quiet(qpid, "SNS-0009").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn download_piped_into_a_shell() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("dl");
    let script = dir.path().join("install.sh");
    std::fs::write(&script, "true\n").unwrap();
    let pid = sh(&format!("curl -s file://{} | sh", script.display()));
    let e = c
        .expect("SNS-0010", |e| {
            is(e, "SNS-0010")
                && e.process
                    .as_ref()
                    .is_some_and(|p| p.pid == pid || p.ppid == pid)
        })
        .await;
    assert!(
        e.detection
            .unwrap()
            .details
            .values()
            .any(|v| v.contains("curl"))
    );

    // Benign: a local script piped into a shell, and a download saved to a file.
    let bpid = sh(&format!(
        "cat {} | sh; curl -s -o /dev/null file://{}",
        script.display(),
        script.display()
    ));
    c.assert_quiet(bpid, "SNS-0010").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_truncation_and_deletion() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let log = format!("/var/log/sensor-test-{}.log", std::process::id());
    // Benign first: appending to a log.
    let bpid = sh(&format!("echo a >> {log}; echo b >> {log}"));
    c.assert_quiet(bpid, "SNS-0011").await;
    let pid = sh(&format!(": > {log}; rm -f {log}"));
    let e = c
        .expect("SNS-0011", |e| is(e, "SNS-0011") && pid_of(e) == pid)
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("target")
            .map(String::as_str),
        Some("log")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crypto_miner_command_line_and_pool_port() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let pid = sh("exit 0; -o stratum+tcp://pool.example:3333");
    // `sh -c 'exit 0; ...'` carries the URL in its own command line.
    let e = c
        .expect("SNS-0012 cmdline", |e| {
            is(e, "SNS-0012") && pid_of(e) == pid
        })
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("reason")
            .map(String::as_str),
        Some("stratum URL")
    );

    let pool = TcpListener::bind("127.0.0.1:14444");
    if let Ok(pool) = pool {
        let _conn = std::net::TcpStream::connect("127.0.0.1:14444").unwrap();
        let _ = pool.accept();
        c.expect("SNS-0012 pool port", |e| {
            is(e, "SNS-0012") && pid_of(e) == std::process::id()
        })
        .await;
    }

    let bpid = sh("exit 0; -o https://downloads.example:8443/file");
    c.assert_quiet(bpid, "SNS-0012").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_flush_is_tampering() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // A stand-in named iptables (it is /bin/true): the real firewall is never touched.
    let dir = std::path::PathBuf::from(format!("/run/sensor-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("iptables");
    std::fs::copy("/bin/true", &fake).unwrap();
    let run = |args: &[&str]| {
        let child = spawn(Command::new(&fake).args(args));
        let pid = child.id();
        child.wait_with_output().unwrap();
        pid
    };
    let pid = run(&["-F"]);
    let e = c
        .expect("SNS-0013", |e| is(e, "SNS-0013") && pid_of(e) == pid)
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("action")
            .map(String::as_str),
        Some("firewall flushed")
    );
    let bpid = run(&["-L", "-n"]);
    c.assert_quiet(bpid, "SNS-0013").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_access_shadow_and_ssh_key() {
    let c = Collector::start(shared_daemon(), &["detection", "process_exit", "file_read"])
        .await
        .unwrap();
    let pid = sh("cat /etc/shadow > /dev/null");
    let e = c
        .expect("SNS-0007 shadow", |e| is(e, "SNS-0007") && from(e, pid))
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("path").map(String::as_str),
        Some("/etc/shadow")
    );
    // The read itself is an event, with the path rebuilt in the kernel.
    let r = c
        .expect("file_read", |e| e.kind == "file_read" && from(e, pid))
        .await;
    assert_eq!(r.file.unwrap().path, "/etc/shadow");

    let dir = TempDir::new("cred");
    let ssh = dir.path().join("home/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::write(&key, "not a real key\n").unwrap();
    let kpid = sh(&format!("cat {} > /dev/null", key.display()));
    let e = c
        .expect("SNS-0007 ssh key", |e| is(e, "SNS-0007") && from(e, kpid))
        .await;
    assert_eq!(
        e.detection.unwrap().details.get("path"),
        Some(&key.to_string_lossy().into_owned())
    );

    // Benign: passwd reads the shadow file as its job; the public key is no secret.
    let passwd = Command::new("/usr/bin/passwd")
        .args(["-S", "root"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ppid = passwd.id();
    passwd.wait_with_output().unwrap();
    c.assert_quiet(ppid, "SNS-0007").await;
    std::fs::write(ssh.join("id_ed25519.pub"), "ssh-ed25519 AAAA\n").unwrap();
    let bpid = sh(&format!("cat {}/id_ed25519.pub > /dev/null", ssh.display()));
    c.assert_quiet(bpid, "SNS-0007").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ld_preload_in_a_new_process() {
    let c = Collector::start(
        shared_daemon(),
        &["detection", "process_exit", "process_exec"],
    )
    .await
    .unwrap();
    let evil = format!("/tmp/sensor-preload-{}.so", std::process::id());
    // The library does not exist: the loader warns and runs the program anyway.
    let child = Command::new("/bin/true")
        .env("LD_PRELOAD", &evil)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    let e = c
        .expect("SNS-0014", |e| is(e, "SNS-0014") && pid_of(e) == pid)
        .await;
    assert_eq!(e.detection.unwrap().details.get("libraries"), Some(&evil));
    let exec = c
        .expect("exec with loader env", |e| {
            e.kind == "process_exec" && pid_of(e) == pid
        })
        .await;
    assert!(
        exec.exec
            .unwrap()
            .loader_env
            .contains(&format!("LD_PRELOAD={evil}"))
    );

    // Benign: coreutils' stdbuf works by preloading its own helper library.
    if std::path::Path::new("/usr/bin/stdbuf").exists() {
        let s = Command::new("/usr/bin/stdbuf")
            .args(["-oL", "/bin/true"])
            .spawn()
            .unwrap();
        let spid = s.id();
        s.wait_with_output().unwrap();
        c.assert_quiet(spid, "SNS-0014").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_to_the_sensor_is_tampering() {
    // A daemon of its own: the signal goes to this one.
    let d = Daemon::start(&[]).unwrap();
    let c = Collector::start(&d.socket, &["detection", "signal", "process_exit"])
        .await
        .unwrap();
    let target = d.pid();
    // SIGWINCH changes nothing for the daemon; the attempt is what is reported.
    let pid = sh(&format!("kill -WINCH {target}"));
    let e = c
        .expect("SNS-0013 signal", |e| is(e, "SNS-0013") && from(e, pid))
        .await;
    let det = e.detection.unwrap();
    assert_eq!(det.details.get("target_pid"), Some(&target.to_string()));
    assert_eq!(det.details.get("signal"), Some(&libc::SIGWINCH.to_string()));
    // Benign: probing whether it runs (signal 0) is not reported.
    let bpid = sh(&format!("kill -0 {target}"));
    c.assert_quiet(bpid, "SNS-0013").await;
    assert!(!c.all().iter().any(|e| e.signal.is_some() && from(e, bpid)));
}

#[tokio::test(flavor = "multi_thread")]
async fn timestomping_a_system_binary() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // Sets /usr/bin/ls's times to their current values: nothing changes, but times were
    // chosen by the caller.
    let pid = sh("touch -r /usr/bin/ls /usr/bin/ls");
    let e = c
        .expect("SNS-0011 timestamps", |e| is(e, "SNS-0011") && from(e, pid))
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("how").map(String::as_str),
        Some("timestamps set")
    );
    assert_eq!(
        d.details.get("path").map(String::as_str),
        Some("/usr/bin/ls")
    );
    // Benign: the same on a file of our own.
    let dir = TempDir::new("stomp");
    let mine = dir.path().join("f");
    std::fs::write(&mine, "x").unwrap();
    let bpid = sh(&format!("touch -r /usr/bin/ls {}", mine.display()));
    c.assert_quiet(bpid, "SNS-0011").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn process_vm_writev_and_proc_mem_injection() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    static mut TARGET: u64 = 0;
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::pause();
            libc::_exit(0);
        }
    }
    // The child is a copy of this process: TARGET sits at the same address in it.
    let value: u64 = 0x5eed;
    let local = libc::iovec {
        iov_base: &value as *const u64 as *mut _,
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: std::ptr::addr_of_mut!(TARGET).cast(),
        iov_len: 8,
    };
    let n = unsafe { libc::process_vm_writev(child, &local, 1, &remote, 1, 0) };
    assert_eq!(
        n,
        8,
        "process_vm_writev: {}",
        std::io::Error::last_os_error()
    );
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{child}/mem"));
    assert!(mem.is_ok());
    drop(mem);
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let me = std::process::id();
    let w = c
        .expect("SNS-0006 process_vm_writev", |e| {
            is(e, "SNS-0006")
                && pid_of(e) == me
                && e.detection
                    .as_ref()
                    .unwrap()
                    .details
                    .get("request")
                    .is_some_and(|r| r == "process_vm_writev")
        })
        .await;
    assert_eq!(
        w.detection.unwrap().details.get("target_pid"),
        Some(&child.to_string())
    );
    c.expect("SNS-0006 /proc/PID/mem", |e| {
        is(e, "SNS-0006")
            && pid_of(e) == me
            && e.detection
                .as_ref()
                .unwrap()
                .details
                .get("request")
                .is_some_and(|r| r.contains("/mem"))
    })
    .await;
}

/// Copies `/bin/true` (or `src`) to `path`, executable.
fn install(src: &str, path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(src, path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts `cmd`, again while its executable is busy: a file just copied stays open for
/// writing in any child another test thread forks until that child execs, and exec
/// refuses a file open for writing (ETXTBSY).
fn spawn(cmd: &mut Command) -> std::process::Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r.unwrap(),
        }
    }
    cmd.spawn().unwrap()
}

/// Runs `exe` with `args`, argv[0] set to `argv0`; returns its pid once it has exited.
fn run_as(exe: &std::path::Path, argv0: &str, args: &[&str]) -> u32 {
    use std::os::unix::process::CommandExt;
    let child = spawn(Command::new(exe).arg0(argv0).args(args));
    let pid = child.id();
    child.wait_with_output().unwrap();
    pid
}

#[tokio::test(flavor = "multi_thread")]
async fn execution_from_a_hidden_directory() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("hidden");
    let exe = dir.path().join(".cache-x").join("run");
    install("/bin/true", &exe);
    let pid = run_as(&exe, "run", &[]);
    let e = c
        .expect("SNS-0016", |e| is(e, "SNS-0016") && pid_of(e) == pid)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("path").map(String::as_str),
        Some(exe.to_str().unwrap())
    );
    assert_eq!(
        d.details.get("reason").map(String::as_str),
        Some("hidden in a world-writable directory")
    );

    // Benign: a program in a toolchain's directory of root's home.
    let tools = TempDir::under(std::path::Path::new("/root/.local/share"), "tool");
    let tool = tools.path().join("tool");
    install("/bin/true", &tool);
    let bpid = run_as(&tool, "tool", &[]);
    c.assert_quiet(bpid, "SNS-0016").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn masquerading_as_a_kernel_thread() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("masq");
    let exe = dir.path().join("agent");
    install("/bin/true", &exe);
    let pid = run_as(&exe, "[kworker/0:1-events]", &[]);
    let e = c
        .expect("SNS-0017", |e| is(e, "SNS-0017") && pid_of(e) == pid)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("name").map(String::as_str),
        Some("[kworker/0:1-events]")
    );
    let p = e.process.unwrap();
    assert_eq!(
        p.exe,
        exe.to_str().unwrap(),
        "the kernel's path, not argv[0]"
    );

    // Benign: an installed program under another name (an alias), and the copy under
    // its own.
    let bpid = run_as(std::path::Path::new("/bin/true"), "sshd", &[]);
    c.assert_quiet(bpid, "SNS-0017").await;
    let bpid = run_as(&exe, "agent", &[]);
    c.assert_quiet(bpid, "SNS-0017").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_deleting_its_own_executable() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("selfdel");
    let rm = dir.path().join("rm");
    install("/usr/bin/rm", &rm);
    let pid = run_as(&rm, "rm", &[rm.to_str().unwrap()]);
    assert!(!rm.exists());
    let e = c
        .expect("SNS-0018", |e| is(e, "SNS-0018") && pid_of(e) == pid)
        .await;
    assert_eq!(
        e.detection.unwrap().details.get("path").map(String::as_str),
        Some(rm.to_str().unwrap())
    );

    // Benign: the same program deleting another file.
    let rm2 = dir.path().join("rm2");
    install("/usr/bin/rm", &rm2);
    let other = dir.path().join("other");
    std::fs::write(&other, "x").unwrap();
    let bpid = run_as(&rm2, "rm", &[other.to_str().unwrap()]);
    assert!(!other.exists());
    c.assert_quiet(bpid, "SNS-0018").await;
}

/// Reconnaissance as an implant runs it, one command after another; `; true` keeps the
/// shell from exec'ing the last one in its own place.
const RECON_BURST: &str = "id; uname -a; cat /etc/passwd; ps -e; hostname; true";

#[tokio::test(flavor = "multi_thread")]
async fn discovery_burst_from_a_dropped_program() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("recon");
    let implant = dir.path().join("implant");
    install("/bin/sh", &implant);
    let child = spawn(
        Command::new(&implant)
            .args(["-c", RECON_BURST])
            .stdout(Stdio::null()),
    );
    let pid = child.id();
    child.wait_with_output().unwrap();
    let e = c
        .expect("SNS-0019", |e| is(e, "SNS-0019") && from(e, pid))
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("context").map(String::as_str),
        Some("program in a world-writable directory")
    );
    assert_eq!(
        d.details.get("commands").map(String::as_str),
        Some("id, uname, /etc/passwd, ps")
    );
    assert_eq!(d.evidence.len(), 4, "one exec per command");

    // Benign: the same burst from an installed shell is informational; one command alone
    // raises nothing.
    let bpid = sh(RECON_BURST);
    c.expect("SNS-0020", |e| is(e, "SNS-0020") && from(e, bpid))
        .await;
    c.assert_quiet(bpid, "SNS-0019").await;
    let single = sh("id; true");
    c.assert_quiet(single, "SNS-0019").await;
    c.assert_quiet(single, "SNS-0020").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn setuid_bit_and_file_capabilities() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("suid");
    let exe = dir.path().join("rootshell");
    install("/bin/true", &exe);
    let path = exe.to_str().unwrap();
    let pid = sh(&format!("chmod u+s {path}"));
    let e = c
        .expect("SNS-0021", |e| is(e, "SNS-0021") && from(e, pid))
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.details.get("path").map(String::as_str), Some(path));
    assert_eq!(d.details.get("bits").map(String::as_str), Some("setuid"));
    let pid = sh(&format!("setcap cap_net_raw+ep {path}"));
    c.expect("SNS-0022", |e| is(e, "SNS-0022") && from(e, pid))
        .await;

    // Benign: an ordinary chmod, and removing capabilities.
    let bpid = sh(&format!("chmod 0755 {path}"));
    c.assert_quiet(bpid, "SNS-0021").await;
    let bpid = sh(&format!("setcap -r {path}"));
    c.assert_quiet(bpid, "SNS-0022").await;
}

/// A loop device over a file of our own, detached when dropped.
struct Loop(String);

impl Loop {
    fn over(file: &std::path::Path) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        Self(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_wipe_of_a_block_device() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("wipe");
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0xa5u8; 1 << 20]).unwrap();
    let dev = Loop::over(&image);
    let pid = sh(&format!(
        "dd if=/dev/zero of={} bs=4096 count=1 conv=fsync",
        dev.0
    ));
    let e = c
        .expect("SNS-0023", |e| is(e, "SNS-0023") && from(e, pid))
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("device")
            .map(String::as_str),
        Some(dev.0.as_str())
    );
    let wiped = std::fs::read(&image).unwrap();
    assert!(wiped[..4096].iter().all(|&b| b == 0), "dd wrote the device");

    // Benign: the same dd onto a file, and wipefs only listing the device.
    let bpid = sh(&format!(
        "dd if=/dev/zero of={} bs=4096 count=1",
        dir.path().join("file").display()
    ));
    c.assert_quiet(bpid, "SNS-0023").await;
    let bpid = sh(&format!("wipefs {}", dev.0));
    c.assert_quiet(bpid, "SNS-0023").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_switched_off_by_a_shell() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let pid = sh("unset HISTFILE; true");
    let e = c
        .expect("SNS-0024", |e| is(e, "SNS-0024") && pid_of(e) == pid)
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("command")
            .map(String::as_str),
        Some("unset HISTFILE")
    );
    let bpid = sh("echo $HISTFILE; true");
    c.assert_quiet(bpid, "SNS-0024").await;
}

/// A file of the test's own under /etc, made mutable again and removed when dropped.
struct EtcFile(std::path::PathBuf);

impl Drop for EtcFile {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_attribute_on_a_system_file() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let f = EtcFile(format!("/etc/sensor-test-immutable-{}", std::process::id()).into());
    std::fs::write(&f.0, "x").unwrap();
    let path = f.0.to_str().unwrap();
    let pid = sh(&format!("chattr +i {path}; chattr -i {path}"));
    let e = c
        .expect("SNS-0025", |e| is(e, "SNS-0025") && from(e, pid))
        .await;
    assert_eq!(
        e.detection.unwrap().details.get("path").map(String::as_str),
        Some(path)
    );
    // Benign: the same on a file of our own in /tmp.
    let dir = TempDir::new("chattr");
    let mine = dir.path().join("f");
    std::fs::write(&mine, "x").unwrap();
    let m = mine.display();
    let bpid = sh(&format!("chattr +i {m}; chattr -i {m}"));
    c.assert_quiet(bpid, "SNS-0025").await;
}

/// A storm of one detection: a shell reading /etc/shadow 10,000 times in a loop. It is
/// one detection counted 10,000 times, updated on the stream a few times, one entry in
/// the store; the distinct detections around it (other readers under the same shell) are
/// each still told.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_one_detection_is_one_alert_with_a_count() {
    const READS: u64 = 10_000;
    let d = Daemon::start(&[]).unwrap();
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();
    let rss_before = rss_kib(d.pid());
    // `:` is a builtin, so the shell itself opens the file each time.
    let script = format!(
        "i=0; while [ $i -lt {READS} ]; do : < /etc/shadow; i=$((i+1)); \
         [ $i -eq 5000 ] && cat /etc/shadow > /dev/null; done; head -c1 /etc/shadow > /dev/null"
    );
    let started = std::time::Instant::now();
    let storm = sh(&script);
    let from_storm = |e: &sensor_proto::Event| is(e, "SNS-0007") && pid_of(e) == storm;
    let last = c
        .try_expect(Duration::from_secs(30), "the storm counted in full", |e| {
            from_storm(e) && e.detection.as_ref().unwrap().count == READS
        })
        .await
        .unwrap();
    let took = started.elapsed();
    let first_seq = last.detection.as_ref().unwrap().first_seq;

    let told: Vec<_> = c.all().into_iter().filter(from_storm).collect();
    assert_eq!(told[0].seq, first_seq, "the first is published at once");
    assert_eq!(told[0].detection.as_ref().unwrap().count, 1);
    assert!(
        told.len() as u64 <= took.as_secs() + 3,
        "{} publications in {took:?}",
        told.len()
    );
    assert!(
        told.iter()
            .all(|e| e.detection.as_ref().unwrap().first_seq == first_seq)
    );
    let det = last.detection.unwrap();
    assert!(det.first_seen_unix_ns <= det.last_seen_unix_ns);
    assert!(det.evidence.len() <= 64 && det.evidence.len() > 1);

    // The distinct ones: cat mid-storm and head after it, each a detection of its own.
    for exe in ["cat", "head"] {
        let e = c
            .expect(exe, |e| {
                is(e, "SNS-0007")
                    && e.process
                        .as_ref()
                        .is_some_and(|p| p.ppid == storm && p.exe.ends_with(exe))
            })
            .await;
        assert_eq!(e.detection.unwrap().count, 1);
    }

    let stored = d.cli_json(&["detections", "list"]).unwrap();
    let ours: Vec<_> = stored
        .iter()
        .filter(|v| v["detection"]["first_seq"].as_u64() == Some(first_seq))
        .collect();
    assert_eq!(ours.len(), 1, "one entry in the store");
    assert_eq!(ours[0]["detection"]["count"].as_u64(), Some(READS));
    let under_storm = stored
        .iter()
        .filter(|v| {
            let p = &v["process"];
            p["pid"].as_u64() == Some(storm.into()) || p["ppid"].as_u64() == Some(storm.into())
        })
        .count();
    assert_eq!(under_storm, 3, "the storm, cat and head: {stored:?}");
    let text = d.cli(&["detections", "list"]).unwrap();
    assert!(
        text.contains(&format!("x{READS} since seq {first_seq}")),
        "{text}"
    );

    let health = d.health_json().unwrap();
    assert_eq!(
        health["pipeline"]["detections_merged"].as_u64(),
        Some(READS - 1)
    );
    let grown = rss_kib(d.pid()).saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "the daemon grew by {grown} KiB");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_upgraded_to_a_terminal() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // The real thing, with a harmless program on the terminal instead of a shell.
    let py = run(
        "/usr/bin/python3",
        &["-c", "import pty; pty.spawn(['/bin/true'])"],
    );
    let e = c
        .expect("SNS-0026 python", |e| is(e, "SNS-0026") && pid_of(e) == py)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("method").map(String::as_str),
        Some("python pty.spawn")
    );
    assert_eq!(d.severity, "medium");
    let script = run("/usr/bin/script", &["-qc", "/bin/true", "/dev/null"]);
    c.expect("SNS-0026 script", |e| {
        is(e, "SNS-0026") && pid_of(e) == script
    })
    .await;

    // Benign: script(1) recording a session to a file.
    let dir = TempDir::new("pty-record");
    let log = dir.path().join("session.log");
    let record = run(
        "/usr/bin/script",
        &["-qc", "/bin/true", log.to_str().unwrap()],
    );
    c.assert_quiet(record, "SNS-0026").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nsenter_into_init_is_a_container_escape() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // Run from the host itself, entering init's mount namespace changes nothing; where
    // the machine refuses it (a sandbox), the attempt is still the sign.
    let pid = run("/usr/bin/nsenter", &["-t", "1", "-m", "/bin/true"]);
    let e = c
        .expect("SNS-0027", |e| is(e, "SNS-0027") && pid_of(e) == pid)
        .await;
    assert_eq!(e.detection.unwrap().severity, "high");

    // Benign: entering a process of our own (an operator debugging a container).
    let own = std::process::id().to_string();
    let bpid = run("/usr/bin/nsenter", &["-t", &own, "-m", "/bin/true"]);
    c.assert_quiet(bpid, "SNS-0027").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apparmor_unloaded_is_tampering() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // Stand-ins (they are /bin/true): AppArmor itself is never touched.
    let dir = std::path::PathBuf::from(format!("/run/sensor-aa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stand_in = |name: &str| {
        let fake = dir.join(name);
        std::fs::copy("/bin/true", &fake).unwrap();
        fake.to_str().unwrap().to_string()
    };
    let pid = run(&stand_in("aa-teardown"), &[]);
    let e = c
        .expect("SNS-0013 aa-teardown", |e| {
            is(e, "SNS-0013") && pid_of(e) == pid
        })
        .await;
    assert_eq!(
        e.detection
            .unwrap()
            .details
            .get("action")
            .map(String::as_str),
        Some("AppArmor unloaded")
    );
    // Benign: reloading a profile.
    let bpid = run(
        &stand_in("apparmor_parser"),
        &["-r", "/etc/apparmor.d/usr.bin.x"],
    );
    c.assert_quiet(bpid, "SNS-0013").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ransomware_like_renames_by_one_process() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let dir = TempDir::new("ransom");
    let renames = |to: &str| {
        format!(
            "import os\nd = {:?}\nfor i in range(30):\n    f = os.path.join(d, 'doc%d.txt' % i)\n    open(f, 'w').write('x')\n    os.rename(f, {to})\n",
            dir.path().to_str().unwrap()
        )
    };
    let pid = run("/usr/bin/python3", &["-c", &renames("f + '.locked'")]);
    let e = c
        .expect("SNS-0028", |e| is(e, "SNS-0028") && pid_of(e) == pid)
        .await;
    let d = e.detection.unwrap();
    assert_eq!(
        d.details.get("extension").map(String::as_str),
        Some("locked")
    );
    assert_eq!(d.details.get("files").map(String::as_str), Some("20"));
    assert!(!d.evidence.is_empty());
    // One detection for the burst, not one per file past the threshold.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let told = c
        .all()
        .iter()
        .filter(|e| is(e, "SNS-0028") && pid_of(e) == pid)
        .count();
    assert_eq!(told, 1);

    // Benign: as many renames, numbered as log rotation numbers them.
    let rotate = run("/usr/bin/python3", &["-c", &renames("f + '.1'")]);
    c.assert_quiet(rotate, "SNS-0028").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_credentials_read_by_another_program() {
    let c = Collector::start(shared_daemon(), &["detection", "process_exit", "file_read"])
        .await
        .unwrap();
    // A home of the test's own: the machine's real credentials are never read.
    let home = TempDir::new("cred-home");
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    let creds = home.path().join(".aws/credentials");
    std::fs::write(&creds, "[default]\naws_access_key_id = AKIAEXAMPLE\n").unwrap();
    let creds = creds.to_str().unwrap();
    let pid = run("/usr/bin/cat", &[creds]);
    let e = c
        .expect("SNS-0007 aws credentials", |e| {
            is(e, "SNS-0007") && pid_of(e) == pid
        })
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.details.get("path").map(String::as_str), Some(creds));
    assert_eq!(
        d.details.get("secret").map(String::as_str),
        Some("cloud or tool credentials")
    );

    // Benign: the AWS CLI (a stand-in of that name) reading its own keys.
    let tools = TempDir::new("cred-tools");
    let aws = tools.path().join("aws");
    std::fs::copy("/usr/bin/cat", &aws).unwrap();
    let bpid = run(aws.to_str().unwrap(), &[creds]);
    c.expect("the aws stand-in's read", |e| {
        e.kind == "file_read" && pid_of(e) == bpid
    })
    .await;
    c.assert_quiet(bpid, "SNS-0007").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn persistence_in_motd_pam_and_sshd_config() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    let me = std::process::id();
    // Comment-only files, removed at once: nothing ever runs or is included.
    for (dir, what) in [
        ("/etc/update-motd.d", "motd script"),
        ("/etc/pam.d", "PAM configuration"),
        ("/etc/ssh/sshd_config.d", "sshd configuration"),
    ] {
        // A directory this machine lacks is made for the test and removed after it.
        let missing = std::path::Path::new(dir)
            .ancestors()
            .take_while(|a| !a.exists())
            .last()
            .map(std::path::Path::to_path_buf);
        std::fs::create_dir_all(dir).unwrap();
        let file = format!("{dir}/sensor-test-{me}");
        let pid = sh(&format!("echo '# sensor test' > {file}; rm -f {file}"));
        if let Some(made) = missing {
            std::fs::remove_dir_all(made).unwrap();
        }
        let e = c
            .expect(what, |e| is(e, "SNS-0008") && pid_of(e) == pid)
            .await;
        let d = e.detection.unwrap();
        assert_eq!(d.details.get("path"), Some(&file));
        assert_eq!(d.details.get("category").map(String::as_str), Some(what));
    }
    // Benign: the client configuration next to the server's.
    let decoy = format!("/etc/ssh/ssh_config.d.sensor-test-{me}");
    let bpid = sh(&format!("echo '# x' > {decoy}; rm -f {decoy}"));
    c.assert_quiet(bpid, "SNS-0008").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_made_by_hand() {
    let c = Collector::start(shared_daemon(), &KINDS).await.unwrap();
    // Stand-ins (they are /bin/true): no account is ever made on this machine.
    let dir = std::path::PathBuf::from(format!("/run/sensor-accounts-{}", std::process::id()));
    let stand_in = |name: &str| {
        let fake = dir.join(name);
        install("/bin/true", &fake);
        fake.to_str().unwrap().to_string()
    };
    let useradd = stand_in("useradd");
    let usermod = stand_in("usermod");
    let pid = run(&useradd, &["-m", "sensor-test-user"]);
    let e = c
        .expect("SNS-0029", |e| is(e, "SNS-0029") && pid_of(e) == pid)
        .await;
    assert_eq!(e.detection.unwrap().severity, "low");
    let pid = run(&usermod, &["-aG", "sudo", "sensor-test-user"]);
    let e = c
        .expect("SNS-0030", |e| is(e, "SNS-0030") && pid_of(e) == pid)
        .await;
    assert_eq!(e.detection.unwrap().severity, "medium");

    // Benign: a user's shell changed.
    let bpid = run(&usermod, &["-s", "/bin/sh", "sensor-test-user"]);
    c.assert_quiet(bpid, "SNS-0029").await;
    c.assert_quiet(bpid, "SNS-0030").await;
    std::fs::remove_dir_all(&dir).unwrap();
}
