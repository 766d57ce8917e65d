//! The daemon's lifecycle on the real kernel: it leaves nothing attached when it exits,
//! its process table stays bounded under process churn, processes older than the daemon
//! have parents, and a hook the kernel lacks is reported rather than fatal.

use std::{
    collections::HashSet,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sensor_tests::{Collector, Daemon, TempDir, health, pid_of};

/// Whether a BPF program with this id still exists (BPF_PROG_GET_FD_BY_ID).
fn prog_exists(id: u32) -> bool {
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 13, attr.as_ptr(), attr.len()) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

fn attached_prog_ids(h: &sensor_proto::Health) -> HashSet<u32> {
    h.programs
        .iter()
        .filter(|p| p.attached && p.prog_id != 0)
        .map(|p| p.prog_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_stays_attached_after_sigterm_or_sigkill() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let mut d = Daemon::start(&[]).unwrap();
        let h = health(&d.socket).await.unwrap();
        let ids = attached_prog_ids(&h);
        assert!(ids.len() >= 6, "programs attached: {ids:?}");
        assert!(ids.iter().all(|&id| prog_exists(id)));
        unsafe { libc::kill(d.pid() as i32, signal) };
        let status = d.child.wait().unwrap();
        if signal == libc::SIGTERM {
            assert!(
                status.success(),
                "clean exit on SIGTERM: {status}\n{}",
                d.log()
            );
            assert!(!d.socket.exists(), "socket removed on exit");
        }
        // Program release is asynchronous in the kernel (RCU): allow it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ids.iter().any(|&id| prog_exists(id)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left: Vec<_> = ids.iter().filter(|&&id| prog_exists(id)).collect();
        assert!(
            left.is_empty(),
            "programs left after signal {signal}: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn process_table_stays_bounded_under_churn() {
    let d = Daemon::start(&["--process-table-capacity", "4096"]).unwrap();
    let before = health(&d.socket).await.unwrap();
    let base = before.process_table.unwrap().size;
    let received = |h: &sensor_proto::Health, kind: &str| {
        h.events
            .iter()
            .find(|k| k.kind == kind)
            .map_or(0, |k| k.received)
    };
    let exec_before = received(&before, "process_exec");

    let total = 20_000;
    let mut max_size = 0;
    let mut done = 0;
    while done < total {
        for _ in 0..1000 {
            Command::new("/bin/true").status().unwrap();
        }
        done += 1000;
        let h = health(&d.socket).await.unwrap();
        let t = h.process_table.unwrap();
        max_size = max_size.max(t.size);
        assert!(
            t.size <= t.capacity,
            "size {} over capacity {}",
            t.size,
            t.capacity
        );
    }
    // Let the pipeline drain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let h = health(&d.socket).await.unwrap();
        if received(&h, "process_exit") - received(&before, "process_exit") >= total
            || Instant::now() > deadline
        {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t = after.process_table.unwrap();
    // Exited processes are retained only up to 2048 at a time (or 10 s).
    assert!(
        max_size <= base + 2048 + 500,
        "table peaked at {max_size} (base {base})"
    );
    assert!(
        t.evicted_exited >= (total - 2048 - 500),
        "evicted {}",
        t.evicted_exited
    );
    assert!(
        received(&after, "process_exec") - exec_before >= total,
        "every exec arrived"
    );
    for k in after
        .events
        .iter()
        .filter(|k| k.kind.starts_with("process_"))
    {
        assert_eq!(k.lost, 0, "{} records lost", k.kind);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn process_started_before_the_daemon_has_its_parent() {
    let dir = TempDir::new("preexisting");
    let target = dir.path().join("late.txt");
    let script = format!("read line; echo done > {}; read again", target.display());
    let mut old = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();

    let d = Daemon::start(&[]).unwrap();
    let c = Collector::start(&d.socket, &["file_create"]).await.unwrap();
    let mut stdin = old.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    let want = target.to_string_lossy().into_owned();
    let e = c
        .expect("create by the older process", |e| {
            e.file.as_ref().is_some_and(|f| f.path == want)
        })
        .await;
    drop(stdin);
    old.wait().unwrap();

    let p = e.process.unwrap();
    assert_eq!(p.pid, old.id());
    assert_eq!(p.ppid, std::process::id());
    assert_eq!(p.args, vec!["/bin/sh".to_string(), "-c".into(), script]);
    assert_eq!(
        p.parent_exe,
        std::env::current_exe().unwrap().to_string_lossy()
    );
    assert_eq!(p.ancestors.first().map(|a| a.pid), Some(std::process::id()));
    assert!(p.ancestors.len() >= 2, "ancestry goes beyond the parent");
    drop(d);
    let _ = pid_of;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_kinds_and_missing_hooks_are_reported() {
    let d = Daemon::start(&["--disable", "dns_query,mprotect_exec"]).unwrap();
    let h = health(&d.socket).await.unwrap();
    let kind = |k: &str| h.events.iter().find(|e| e.kind == k).unwrap().clone();
    assert!(!kind("dns_query").enabled && !kind("mprotect_exec").enabled);
    assert!(kind("process_exec").enabled);
    assert!(
        !h.programs.iter().any(|p| p.name == "dns_enter"),
        "dns hooks not attached when disabled"
    );
    // Each hook is reported; one the kernel lacks carries the kernel's reason.
    for p in &h.programs {
        assert!(
            p.attached || !p.error.is_empty(),
            "{} {} has neither",
            p.name,
            p.hook
        );
    }
    let module_hooks: Vec<_> = h
        .programs
        .iter()
        .filter(|p| p.hook.contains("init_module"))
        .collect();
    assert_eq!(module_hooks.len(), 4);
    let kernel_has_modules =
        std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_init_module").exists();
    assert_eq!(module_hooks.iter().all(|p| p.attached), kernel_has_modules);
    let fallback = h.programs.iter().find(|p| p.name == "module_sys_enter");
    if kernel_has_modules {
        assert!(
            fallback.is_none(),
            "no per-syscall cost when the tracepoints exist"
        );
    } else {
        assert!(
            fallback.is_none(),
            "the per-syscall fallback only when asked for (--module-load-attempts)"
        );
        assert!(
            h.issues
                .iter()
                .any(|i| i.starts_with("module_load: not captured")),
            "health says why module loads are not captured: {:?}",
            h.issues
        );
    }
    assert!(
        h.programs
            .iter()
            .filter(|p| p.hook.starts_with("raw_tracepoint/"))
            .all(|p| p.attached)
    );
    // Unknown kinds are refused with a clear message.
    let out = Command::new(sensor_tests::sensor_bin())
        .args([
            "daemon",
            "--socket",
            "/nonexistent/x.sock",
            "--disable",
            "bogus_kind",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown event kind \"bogus_kind\""));
}
