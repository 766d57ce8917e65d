//! Events built by hand, as the enrichment stage would hand them to the detection engine:
//! for detector unit tests, Sigma rule tests and the engine's throughput bench.
//!
//! A process comes with its ancestry (parent first, init last), as the process table
//! fills it in; the builders return plain `proto` values, so a test changes whatever
//! field it is about afterwards.

use sensor_proto as proto;

/// Pid of the shell every built process descends from (unless it says otherwise).
pub const SHELL_PID: u32 = 1000;

/// `pid` running `exe` with `args` as root, started by root's login shell (pid 1000)
/// under init. Its start time derives from its pid, so distinct pids are distinct
/// processes.
pub fn process(pid: u32, exe: &str, args: &[&str]) -> proto::Process {
    proto::ProcessData {
        pid,
        ppid: SHELL_PID,
        start_time: pid as u64 * 10_000_000,
        exe: exe.into(),
        args: strings(args),
        user: "root".into(),
        parent_exe: "/usr/bin/bash".into(),
        parent_args: vec!["bash".into()],
        ancestors: vec![
            ancestor(SHELL_PID, 1, "/usr/bin/bash"),
            ancestor(1, 0, "/sbin/init"),
        ],
        ..Default::default()
    }
    .into()
}

/// A command of an unprivileged service account (www-data, pid 4242) run from its shell
/// (pid 4241): what a web shell's commands look like.
pub fn service_process(exe: &str, args: &[&str]) -> proto::Process {
    proto::ProcessData {
        pid: 4242,
        ppid: 4241,
        start_time: 4242 * 10_000_000,
        exe: exe.into(),
        args: strings(args),
        user: "www-data".into(),
        uid: 33,
        parent_exe: "/usr/bin/bash".into(),
        parent_args: vec!["bash".into()],
        ancestors: vec![
            ancestor(4241, 4241 * 10_000_000, "/usr/bin/bash"),
            ancestor(1, 0, "/sbin/init"),
        ],
        ..Default::default()
    }
    .into()
}

/// `pid` running `exe` with `args`, started by `parent`: its ancestry is the parent's,
/// with the parent first.
pub fn child(parent: &proto::Process, pid: u32, exe: &str, args: &[&str]) -> proto::Process {
    let mut ancestors = vec![ancestor(parent.pid, parent.start_time, &parent.exe)];
    ancestors.extend(parent.ancestors.iter().cloned());
    proto::ProcessData {
        pid,
        ppid: parent.pid,
        start_time: pid as u64 * 10_000_000,
        exe: exe.into(),
        args: strings(args),
        user: parent.user.clone(),
        uid: parent.uid,
        parent_exe: parent.exe.clone(),
        parent_args: parent.args.clone(),
        ancestors,
        ..Default::default()
    }
    .into()
}

fn ancestor(pid: u32, start_time: u64, exe: &str) -> proto::Ancestor {
    proto::Ancestor {
        pid,
        start_time,
        exe: exe.into(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An event of `kind` about `p`, with nothing else filled in.
pub fn event(kind: &str, p: &proto::Process) -> proto::Event {
    proto::Event {
        kind: kind.into(),
        process: Some(p.clone()),
        ..Default::default()
    }
}

/// `p`'s exec of its own image, a file on disk (one link).
pub fn exec(p: &proto::Process) -> proto::Event {
    proto::Event {
        exec: Some(proto::ExecInfo {
            filename: p.exe.clone(),
            nlink: 1,
            ..Default::default()
        }),
        ..event("process_exec", p)
    }
}

/// A file event of `kind` (`file_write`, `file_rename`, ...) on `path`; `new_path` is the
/// rename's or link's target, empty otherwise.
pub fn file(kind: &str, p: &proto::Process, path: &str, new_path: &str) -> proto::Event {
    proto::Event {
        file: Some(proto::FileInfo {
            path: path.into(),
            new_path: new_path.into(),
            ..Default::default()
        }),
        ..event(kind, p)
    }
}

/// A TCP/IPv4 event of `kind` (`net_connect`, `net_accept`, `net_listen`) from
/// 10.0.0.2:`local_port` to 203.0.113.7:`remote_port`.
pub fn connect(kind: &str, p: &proto::Process, local_port: u32, remote_port: u32) -> proto::Event {
    proto::Event {
        net: Some(proto::NetInfo {
            protocol: "tcp".into(),
            family: "inet".into(),
            src_addr: "10.0.0.2".into(),
            src_port: local_port,
            dst_addr: "203.0.113.7".into(),
            dst_port: remote_port,
            ..Default::default()
        }),
        ..event(kind, p)
    }
}

/// `p` duplicating `oldfd` onto `newfd`; `socket` is what `oldfd` is, if a socket.
pub fn fd_dup(
    p: &proto::Process,
    oldfd: i32,
    newfd: i32,
    socket: Option<proto::NetInfo>,
) -> proto::Event {
    proto::Event {
        fd_dup: Some(proto::FdDupInfo {
            oldfd,
            newfd,
            result: newfd as i64,
            socket,
            ..Default::default()
        }),
        ..event("fd_dup", p)
    }
}

/// A TCP/IPv4 socket connected to 203.0.113.7:`port`, as `fd_dup` describes it.
pub fn tcp_socket(port: u32) -> proto::NetInfo {
    proto::NetInfo {
        protocol: "tcp".into(),
        family: "inet".into(),
        src_addr: "10.0.0.2".into(),
        src_port: 40_000,
        dst_addr: "203.0.113.7".into(),
        dst_port: port,
        ..Default::default()
    }
}

/// Numbers `events` in order, as capture does: sequence numbers from 1 and, for events
/// without a kernel time of their own, one millisecond per event.
pub fn numbered(mut events: Vec<proto::Event>) -> Vec<proto::Event> {
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
        if e.timestamp_ns == 0 {
            e.timestamp_ns = (i as u64 + 1) * 1_000_000;
        }
    }
    events
}

/// A mix shaped like a busy server: file writes and process churn dominate.
pub fn server_mix(n: usize) -> Vec<proto::Event> {
    (0..n)
        .map(|i| {
            let pid = 2000 + (i % 500) as u32;
            let mut e = proto::Event {
                seq: i as u64 + 1,
                timestamp_ns: i as u64 * 1000,
                ..Default::default()
            };
            match i % 20 {
                0..=3 => {
                    e.kind = "process_exec".into();
                    e.process = Some(process(
                        pid,
                        "/usr/bin/python3",
                        &["python3", "-m", "app.worker", "--queue", "default"],
                    ));
                    e.exec = Some(proto::ExecInfo {
                        filename: "/usr/bin/python3".into(),
                        nlink: 1,
                        ..Default::default()
                    });
                }
                4 | 5 => e.kind = "process_fork".into(),
                6 | 7 => e.kind = "process_exit".into(),
                8..=12 => {
                    e.kind = if i % 2 == 0 {
                        "file_write"
                    } else {
                        "file_create"
                    }
                    .into();
                    e.file = Some(proto::FileInfo {
                        path: format!("/var/lib/app/data/{}.json", i % 97),
                        ..Default::default()
                    });
                }
                13 => {
                    e.kind = "file_rename".into();
                    e.file = Some(proto::FileInfo {
                        path: "/tmp/x.part".into(),
                        new_path: "/tmp/x".into(),
                        ..Default::default()
                    });
                }
                14 | 15 => {
                    e.kind = "net_connect".into();
                    e.net = Some(proto::NetInfo {
                        dst_addr: "10.0.0.5".into(),
                        dst_port: 5432,
                        family: "inet".into(),
                        protocol: "tcp".into(),
                        ..Default::default()
                    });
                }
                16 => {
                    e.kind = "dns_query".into();
                    e.dns = Some(proto::DnsInfo {
                        query: "db.internal".into(),
                        qtype: 1,
                        ..Default::default()
                    });
                }
                17 => {
                    e.kind = "fd_dup".into();
                    e.fd_dup = Some(proto::FdDupInfo {
                        oldfd: 3,
                        newfd: 1,
                        result: 1,
                        ..Default::default()
                    });
                }
                18 => {
                    e.kind = "file_unlink".into();
                    e.file = Some(proto::FileInfo {
                        path: "/tmp/x".into(),
                        ..Default::default()
                    });
                }
                _ => {
                    e.kind = "net_accept".into();
                    e.net = Some(proto::NetInfo {
                        src_port: 8080,
                        family: "inet".into(),
                        ..Default::default()
                    });
                }
            }
            if e.process.is_none() {
                e.process = Some(process(
                    pid,
                    "/usr/bin/python3",
                    &["python3", "-m", "app.worker"],
                ));
            }
            e
        })
        .collect()
}
