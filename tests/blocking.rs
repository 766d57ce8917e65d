//! Blocking mode against passive mode on the same behaviours. Blocking is confined to this
//! test process's descendants (`--blocking-scope-pid`), so nothing else on the machine is
//! ever stopped by these tests.

use std::{
    ffi::CString,
    io::Write,
    os::unix::process::ExitStatusExt,
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use sensor_tests::{Collector, Daemon, Event, pid_of};

/// One daemon at a time: a blocking daemon scoped to this process would otherwise stop
/// what a concurrent passive-mode test expects to run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn blocking_daemon() -> Daemon {
    let me = std::process::id().to_string();
    Daemon::start(&["--mode", "blocking", "--blocking-scope-pid", &me]).unwrap()
}

fn detection(id: &'static str, pid: u32) -> impl Fn(&Event) -> bool {
    move |e: &Event| e.detection.as_ref().is_some_and(|d| d.id == id) && pid_of(e) == pid
}

/// Waits up to 15 s for the child; kills it (and fails) if it is still running.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} was not stopped", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A memfd holding /bin/sleep, inheritable by children.
fn memfd_sleep() -> i32 {
    let name = CString::new("sensor-blocking").unwrap();
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0);
    let image = std::fs::read("/bin/sleep").unwrap();
    assert_eq!(
        unsafe { libc::write(fd, image.as_ptr().cast(), image.len()) } as usize,
        image.len()
    );
    fd
}

#[tokio::test(flavor = "multi_thread")]
async fn fileless_exec_killed_in_the_kernel_only_in_blocking_mode() {
    let _serial = SERIAL.lock().await;
    let fd = memfd_sleep();
    let run = || {
        Command::new(format!("/proc/self/fd/{fd}"))
            .arg("0.2")
            .spawn()
            .unwrap()
    };

    let passive = Daemon::start(&[]).unwrap();
    let c = Collector::start(&passive.socket, &["detection"])
        .await
        .unwrap();
    let mut child = run();
    let status = wait_exit(&mut child);
    assert!(status.success(), "passive mode never kills: {status:?}");
    let e = c
        .expect("SNS-0002 passive", detection("SNS-0002", child.id()))
        .await;
    assert_eq!(e.detection.unwrap().action, "none");
    drop(c);
    drop(passive);

    let blocking = blocking_daemon();
    let h = sensor_tests::health(&blocking.socket).await.unwrap();
    let platform = h.platform.unwrap();
    assert!(platform.prevention.contains("bpf_send_signal"));
    let lsm = h
        .programs
        .iter()
        .find(|p| p.hook == "lsm/bprm_check_security");
    if platform.bpf_lsm {
        // Where BPF LSM runs (tested under qemu in lsm_vm.rs) the exec is denied instead.
        let err = Command::new(format!("/proc/self/fd/{fd}"))
            .spawn()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        unsafe { libc::close(fd) };
        return;
    }
    // The fallback says why, and a refused LSM program is reported, never hidden.
    assert!(
        platform.prevention.contains(&platform.bpf_lsm_reason),
        "{platform:?}"
    );
    if platform.bpf_lsm_reason.contains("refused") {
        let lsm = lsm.expect("the refused LSM program is listed in health");
        assert!(!lsm.attached && !lsm.error.is_empty(), "{lsm:?}");
    }
    let c = Collector::start(&blocking.socket, &["detection", "process_exec"])
        .await
        .unwrap();
    let mut child = run();
    let status = wait_exit(&mut child);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed before it ran: {status:?}"
    );
    let e = c
        .expect("SNS-0002 blocking", detection("SNS-0002", child.id()))
        .await;
    let d = e.detection.unwrap();
    assert_eq!(d.action, "killed");
    assert_eq!(
        d.details.get("killed_by").map(String::as_str),
        Some("kernel, at exec")
    );
    let exec = c
        .expect("the exec event", |e| {
            e.kind == "process_exec" && pid_of(e) == child.id()
        })
        .await;
    assert!(exec.exec.unwrap().killed);
    unsafe { libc::close(fd) };
}

#[tokio::test(flavor = "multi_thread")]
async fn reverse_shell_killed_from_userspace() {
    let _serial = SERIAL.lock().await;
    let d = blocking_daemon();
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();
    let (mut shell, mut conn, _) = sensor_tests::dev_tcp_reverse_shell();
    let status = wait_exit(&mut shell);
    // The interactive shell is killed; bash -c reports that as 128 + SIGKILL.
    assert!(
        status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL),
        "{status:?}"
    );
    // The attacker's end sees the shell go away.
    let _ = conn.write_all(b"id\n");
    let e = c
        .expect("SNS-0001 killed", |e| {
            e.detection.as_ref().is_some_and(|d| d.id == "SNS-0001")
        })
        .await;
    let det = e.detection.unwrap();
    assert_eq!(det.action, "killed");
    let killed = e.process.unwrap();
    assert!(killed.pid == shell.id() || killed.ppid == shell.id());
    assert!(
        det.details
            .get("killed_pids")
            .is_some_and(|p| p.split(',').any(|p| p == killed.pid.to_string()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_and_execute_and_miner_killed() {
    let _serial = SERIAL.lock().await;
    let d = blocking_daemon();
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();
    let dir = std::path::PathBuf::from(format!("/tmp/sensor-block-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The kernel decides at exec, from the inode's change time and the world-writable
    // directory above it: an exec right after the write is killed before its first
    // instruction, with nothing for userspace to have seen first; and so is one later in
    // the window.
    for (name, pause) in [("payload", 0), ("second", 500)] {
        let payload = dir.join(name);
        std::fs::copy("/bin/sleep", &payload).unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let mut child = Command::new(&payload).arg("30").spawn().unwrap();
        let status = wait_exit(&mut child);
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let e = c
            .expect("SNS-0003 killed at exec", detection("SNS-0003", child.id()))
            .await;
        let det = e.detection.unwrap();
        assert_eq!(det.action, "killed");
        assert_eq!(
            det.details.get("killed_by").map(String::as_str),
            Some("kernel, at exec")
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let mut miner = Command::new("/bin/sh")
        .args(["-c", "exec sleep 30", "stratum+tcp://pool.example:3333"])
        .spawn()
        .unwrap();
    let status = wait_exit(&mut miner);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let e = c
        .expect("SNS-0012 killed", detection("SNS-0012", miner.id()))
        .await;
    assert_eq!(e.detection.unwrap().action, "killed");
}
