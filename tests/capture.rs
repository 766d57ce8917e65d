//! Capture end to end: real workloads on the real kernel, asserted on what the daemon
//! streams over gRPC. All tests share one daemon and see only events of this test process
//! and its descendants; each looks for its own pids, paths and ports.

use std::{
    ffi::CString,
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    os::{
        fd::AsRawFd,
        unix::fs::{PermissionsExt, symlink},
    },
    process::Command,
    time::Duration,
};

use sensor_tests::{Collector, Daemon, Event, TempDir, health, pid_of, shared_daemon};

fn me() -> u32 {
    std::process::id()
}

fn file_of(e: &Event) -> sensor_proto::FileInfo {
    e.file.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_reports_argv_parent_and_image() {
    let c = Collector::start(shared_daemon(), &["process_exec"])
        .await
        .unwrap();
    let marker = format!("exec-marker-{}", me());
    let child = Command::new("/bin/echo")
        .args([&marker, "second arg"])
        .output()
        .unwrap();
    assert!(child.status.success());
    let e = c
        .expect("exec of /bin/echo", |e| {
            e.process.as_ref().is_some_and(|p| {
                p.args.first().is_some_and(|a| a == "/bin/echo") && p.args.contains(&marker)
            })
        })
        .await;
    let p = e.process.unwrap();
    assert_eq!(
        p.args,
        vec!["/bin/echo".to_string(), marker, "second arg".into()]
    );
    assert_eq!(p.ppid, me(), "parent is this test process");
    // The image the kernel ran, through any symlink on the way (merged /usr).
    let real = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(p.exe, real.to_string_lossy());
    assert!(p.start_time > 0);
    assert_eq!(
        p.parent_exe,
        std::env::current_exe().unwrap().to_string_lossy()
    );
    let exec = e.exec.unwrap();
    assert_eq!(exec.filename, "/bin/echo");
    assert_eq!(exec.path, p.exe);
    assert!(exec.path_resolved && !exec.deleted);
    assert_eq!(
        exec.cwd,
        std::env::current_dir().unwrap().to_string_lossy(),
        "the working directory the exec ran in"
    );
    let meta = std::fs::metadata("/bin/echo").unwrap();
    assert_eq!(exec.inode, std::os::unix::fs::MetadataExt::ino(&meta));
    assert!(exec.nlink >= 1);
    assert!(e.seq > 0 && e.timestamp_ns > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_and_exit_with_code_and_signal() {
    let c = Collector::start(shared_daemon(), &["process_fork", "process_exit"])
        .await
        .unwrap();
    // The children only call async-signal-safe functions.
    let code_child = unsafe { libc::fork() };
    if code_child == 0 {
        unsafe { libc::_exit(42) };
    }
    let signal_child = unsafe { libc::fork() };
    if signal_child == 0 {
        unsafe {
            libc::pause();
            libc::_exit(0);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    unsafe { libc::kill(signal_child, libc::SIGTERM) };
    for pid in [code_child, signal_child] {
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    let (a, b) = (code_child as u32, signal_child as u32);
    let fork = c
        .expect("fork", |e| e.kind == "process_fork" && pid_of(e) == a)
        .await;
    assert_eq!(fork.process.as_ref().unwrap().ppid, me());
    let exit = c
        .expect("exit 42", |e| e.kind == "process_exit" && pid_of(e) == a)
        .await;
    assert_eq!(exit.exit.unwrap().exit_code, 42);
    let killed = c
        .expect("exit by signal", |e| {
            e.kind == "process_exit" && pid_of(e) == b
        })
        .await;
    let x = killed.exit.unwrap();
    assert_eq!((x.signal, x.exit_code), (libc::SIGTERM, 0));
    // The fork precedes the exit in sequence order.
    let fork_b = c
        .expect("fork b", |e| e.kind == "process_fork" && pid_of(e) == b)
        .await;
    assert!(fork_b.seq < killed.seq);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_lifecycle_in_a_temp_dir() {
    let kinds = [
        "file_create",
        "file_write",
        "file_rename",
        "file_chmod",
        "file_chown",
        "file_unlink",
        "file_truncate",
        "file_link",
        "file_symlink",
    ];
    let c = Collector::start(shared_daemon(), &kinds).await.unwrap();
    let dir = TempDir::new("files");
    let a = dir.path().join("created.txt");
    let b = dir.path().join("renamed.sh");
    let p = |x: &std::path::Path| x.to_string_lossy().into_owned();

    std::fs::File::create(&a)
        .unwrap()
        .write_all(b"#!/bin/sh\n")
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&a)
        .unwrap()
        .write_all(b"true\n")
        .unwrap();
    std::fs::rename(&a, &b).unwrap();
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&b, Some(1), Some(1)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(3)
        .unwrap();
    let hard = dir.path().join("hard");
    std::fs::hard_link(&b, &hard).unwrap();
    let soft = dir.path().join("soft");
    symlink(&b, &soft).unwrap();
    std::fs::remove_file(&b).unwrap();

    let mine = |e: &Event| pid_of(e) == me();
    let created = c
        .expect("create", |e| {
            mine(e) && e.kind == "file_create" && file_of(e).path == p(&a)
        })
        .await;
    assert!(file_of(&created).inode > 0);
    c.expect("open for write", |e| {
        mine(e) && e.kind == "file_write" && file_of(e).path == p(&a)
    })
    .await;
    let r = c
        .expect("rename", |e| {
            mine(e) && e.kind == "file_rename" && file_of(e).path == p(&a)
        })
        .await;
    assert_eq!(file_of(&r).new_path, p(&b));
    let m = c
        .expect("chmod", |e| {
            mine(e) && e.kind == "file_chmod" && file_of(e).path == p(&b)
        })
        .await;
    assert_eq!(file_of(&m).mode, 0o755);
    let o = c
        .expect("chown", |e| {
            mine(e) && e.kind == "file_chown" && file_of(e).path == p(&b)
        })
        .await;
    assert_eq!((file_of(&o).uid, file_of(&o).gid), (1, 1));
    c.expect("ftruncate", |e| {
        mine(e) && e.kind == "file_truncate" && file_of(e).path == p(&b)
    })
    .await;
    let l = c
        .expect("link", |e| {
            mine(e) && e.kind == "file_link" && file_of(e).path == p(&b)
        })
        .await;
    assert_eq!(file_of(&l).new_path, p(&hard));
    let s = c
        .expect("symlink", |e| {
            mine(e) && e.kind == "file_symlink" && file_of(e).new_path == p(&soft)
        })
        .await;
    assert_eq!(file_of(&s).path, p(&b));
    c.expect("unlink", |e| {
        mine(e) && e.kind == "file_unlink" && file_of(e).path == p(&b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_are_made_absolute() {
    let c = Collector::start(shared_daemon(), &["file_create"])
        .await
        .unwrap();
    let dir = TempDir::new("rel");
    let st = Command::new("/bin/sh")
        .current_dir(dir.path())
        .args(["-c", "echo x > relative.txt; sleep 0.5"])
        .status()
        .unwrap();
    assert!(st.success());
    let want = dir
        .path()
        .join("relative.txt")
        .to_string_lossy()
        .into_owned();
    let e = c
        .expect("relative create", |e| file_of(e).path == want)
        .await;
    assert!(file_of(&e).path_resolved);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_bind_listen_connect_accept() {
    let kinds = ["net_bind", "net_listen", "net_connect", "net_accept"];
    let c = Collector::start(shared_daemon(), &kinds).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port() as u32;
    let client = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    let client_port = client.local_addr().unwrap().port() as u32;
    let (_server_side, _) = listener.accept().unwrap();

    let net = |e: &Event| e.net.clone().unwrap_or_default();
    let mine = |e: &Event| pid_of(e) == me();
    c.expect("bind", |e| {
        mine(e)
            && e.kind == "net_bind"
            && net(e).src_addr == "127.0.0.1"
            && net(e).fd == listener.as_raw_fd()
    })
    .await;
    let l = c
        .expect("listen", |e| {
            mine(e) && e.kind == "net_listen" && net(e).src_port == port
        })
        .await;
    assert_eq!(net(&l).protocol, "tcp");
    let conn = c
        .expect("connect", |e| {
            mine(e) && e.kind == "net_connect" && net(e).dst_port == port
        })
        .await;
    let n = net(&conn);
    assert_eq!(
        (n.dst_addr.as_str(), n.result, n.family.as_str()),
        ("127.0.0.1", 0, "inet")
    );
    let acc = c
        .expect("accept", |e| {
            mine(e) && e.kind == "net_accept" && net(e).src_port == port
        })
        .await;
    assert_eq!(net(&acc).dst_port, client_port, "accept reports the peer");
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_query_name_from_udp_to_port_53() {
    let c = Collector::start(shared_daemon(), &["dns_query"])
        .await
        .unwrap();
    let name = format!("q{}.sensor-test.example", me());
    let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.extend_from_slice(&[0, 0, 28, 0, 1]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&msg, "127.0.0.1:53").unwrap();
    // A connected socket (the resolver's way) is seen as well.
    sock.connect("127.0.0.1:53").unwrap();
    // The ICMP reply to the first datagram may make this fail; it was still sent.
    let _ = sock.send(&msg);
    let e = c
        .expect("dns query", |e| {
            e.dns.as_ref().is_some_and(|d| d.query == name)
        })
        .await;
    let d = e.dns.unwrap();
    assert_eq!(
        (d.qtype, d.server.as_str(), d.server_port),
        (28, "127.0.0.1", 53)
    );
    let count = || {
        c.all()
            .iter()
            .filter(|e| e.dns.as_ref().is_some_and(|d| d.query == name))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        count() >= 2,
        "both sendto and send are seen (saw {})",
        count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ptrace_attach_of_a_child() {
    let c = Collector::start(shared_daemon(), &["ptrace"])
        .await
        .unwrap();
    let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    assert_eq!(r, 0, "attach: {}", std::io::Error::last_os_error());
    let mut status = 0;
    unsafe {
        libc::waitpid(pid, &mut status, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let e = c
        .expect("ptrace attach", |e| {
            e.ptrace
                .as_ref()
                .is_some_and(|p| p.target_pid == pid as u32)
        })
        .await;
    assert_eq!(pid_of(&e), me());
    let p = e.ptrace.unwrap();
    assert_eq!((p.request.as_str(), p.result), ("PTRACE_ATTACH", 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn memfd_create_and_executable_anonymous_memory() {
    let c = Collector::start(shared_daemon(), &["memfd_create", "mprotect_exec"])
        .await
        .unwrap();
    let name = CString::new(format!("sensor-test-{}", me())).unwrap();
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    unsafe { libc::close(fd) };
    let len = 4096;
    let addr = unsafe {
        let a = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(a, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(a, len, libc::PROT_READ | libc::PROT_EXEC), 0);
        a
    };
    let m = c
        .expect("memfd", |e| {
            e.memfd
                .as_ref()
                .is_some_and(|m| m.name == name.to_str().unwrap())
        })
        .await;
    assert_eq!(m.memfd.unwrap().result, fd as i64);
    let x = c
        .expect("mprotect +x", |e| {
            e.mem_exec
                .as_ref()
                .is_some_and(|x| x.addr == addr as u64 && x.syscall == "mprotect")
        })
        .await;
    assert_eq!(
        x.mem_exec.unwrap().prot,
        (libc::PROT_READ | libc::PROT_EXEC) as u32
    );
    unsafe { libc::munmap(addr, len) };
}

#[tokio::test(flavor = "multi_thread")]
async fn dup2_of_a_socket_onto_stdout() {
    let c = Collector::start(shared_daemon(), &["fd_dup"])
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let fd = sock.as_raw_fd();
    // In a child, so this process keeps its stdout; dup2 and _exit are signal-safe.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::dup2(fd, 1);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(child, &mut status, 0) };
    let e = c
        .expect("dup2 onto stdout", |e| {
            pid_of(e) == child as u32 && e.fd_dup.is_some()
        })
        .await;
    let d = e.fd_dup.unwrap();
    assert_eq!((d.oldfd, d.newfd, d.result), (fd, 1, 1));
    let s = d
        .socket
        .expect("the duplicated fd is described as a socket");
    assert_eq!(
        (s.protocol.as_str(), s.dst_port, s.dst_addr.as_str()),
        ("tcp", port as u32, "127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn setuid_in_a_child_and_bpf_program_load() {
    let c = Collector::start(shared_daemon(), &["setuid", "bpf_load"])
        .await
        .unwrap();
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::setuid(65534);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(child, &mut status, 0) };
    let s = c
        .expect("setuid", |e| pid_of(e) == child as u32 && e.setid.is_some())
        .await;
    let s = s.setid.unwrap();
    assert_eq!((s.ids.as_slice(), s.result), (&[65534i64][..], 0));

    let fd = sensor_tests::load_bpf(b"sensortest");
    let b = c
        .expect("bpf load", |e| {
            e.bpf.as_ref().is_some_and(|b| b.prog_name == "sensortest")
        })
        .await;
    let b = b.bpf.unwrap();
    assert_eq!((b.prog_type, b.insn_count, b.result), (1, 2, fd));
}

/// Whether this kernel has the module syscall tracepoints (it was built with module
/// support); without them a module can never load, only be attempted.
fn kernel_has_module_tracepoints() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            std::path::Path::new(&format!("{t}/events/syscalls/sys_enter_init_module")).exists()
        })
}

/// Calls init_module with an image that is not a module and `params`; the kernel refuses
/// it (ENOEXEC, or ENOSYS without module support).
fn attempt_module_load(params: &CString) {
    let image = [0u8; 64];
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    };
    assert_eq!(r, -1);
}

#[tokio::test(flavor = "multi_thread")]
async fn module_load_attempt_is_reported() {
    // Where the kernel has module support the default daemon reports every attempt;
    // without it only a daemon asked to (--module-load-attempts) does, through its
    // per-syscall fallback, and a default one says in health why it does not.
    let with_tracepoints = kernel_has_module_tracepoints();
    let asked = if with_tracepoints {
        None
    } else {
        Some(Daemon::start(&["--module-load-attempts"]).unwrap())
    };
    let socket = asked
        .as_ref()
        .map_or(shared_daemon(), |d| d.socket.as_path());
    let c = Collector::start(socket, &["module_load"]).await.unwrap();
    let params = CString::new(format!("sensor_test={}", me())).unwrap();
    attempt_module_load(&params);
    let e = c
        .expect("init_module", |e| {
            e.module
                .as_ref()
                .is_some_and(|m| m.params == params.to_str().unwrap())
        })
        .await;
    assert_eq!(pid_of(&e), me());
    let m = e.module.unwrap();
    assert_eq!(m.syscall, "init_module");
    assert!(
        m.at_entry || m.result < 0,
        "the failure is reported unless only the entry is seen"
    );
    let h = health(socket).await.unwrap();
    assert!(
        !h.issues.iter().any(|i| i.starts_with("module_load")),
        "module loads are captured: {:?}",
        h.issues
    );
    if with_tracepoints {
        return;
    }
    assert!(
        h.programs
            .iter()
            .any(|p| p.name == "module_sys_enter" && p.attached),
        "the fallback is attached when asked for"
    );

    // The default daemon attaches no hook on every syscall and says why.
    let h = health(shared_daemon()).await.unwrap();
    assert!(!h.programs.iter().any(|p| p.name == "module_sys_enter"));
    let why = h
        .issues
        .iter()
        .find(|i| i.starts_with("module_load: not captured"))
        .unwrap_or_else(|| {
            panic!(
                "health says why module loads are not captured: {:?}",
                h.issues
            )
        });
    assert!(why.contains("no module support") && why.contains("--module-load-attempts"));
    let c = Collector::start(shared_daemon(), &["module_load"])
        .await
        .unwrap();
    let params = CString::new(format!("sensor_test_default={}", me())).unwrap();
    attempt_module_load(&params);
    let seen = c
        .wait_for(Duration::from_secs(1), |e| {
            e.module
                .as_ref()
                .is_some_and(|m| m.params == params.to_str().unwrap())
        })
        .await;
    assert!(
        seen.is_none(),
        "a default daemon has no hook that could see it: {seen:?}"
    );
}
