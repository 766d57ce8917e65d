//! SNS-0006 process injection (ptrace attach, process_vm_writev, or opening another
//! process's /proc/PID/mem for writing) and
//! SNS-0015 anti-debugging (PTRACE_TRACEME). Debuggers a team uses on purpose go in the
//! allowlist; gdb, strace and ltrace are allowed by default for SNS-0006.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const INJECTION: Rule = Rule {
    id: "SNS-0006",
    title: "Process injection",
    description: "A process attached to or wrote into the memory or registers of another process.",
    severity: "high",
    mitre: &["T1055.008"],
    response: Response::Report,
};

pub const TRACEME: Rule = Rule {
    id: "SNS-0015",
    title: "Anti-debugging",
    description: "A process asked to be traced by its parent (PTRACE_TRACEME), a common anti-debugging trick.",
    severity: "low",
    mitre: &["T1622"],
    response: Response::Report,
};

const DEBUGGERS: [&str; 3] = ["gdb", "strace", "ltrace"];

pub struct Injection;

impl Detector for Injection {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&INJECTION, &TRACEME]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if let (Some(f), Some(p), Some(EventKind::FileWrite)) = (&e.file, &e.process, kind) {
            let target = proc_mem_target(&f.path);
            if let Some(target) = target.filter(|t| *t != p.pid)
                && !DEBUGGERS.contains(&base_name(&p.exe))
            {
                out.push(Finding {
                    rule: &INJECTION,
                    process: p.clone(),
                    evidence: vec![e.seq],
                    details: vec![
                        ("request", "/proc/PID/mem write".into()),
                        ("target_pid", target.to_string()),
                    ],
                });
            }
            return;
        }
        let (Some(t), Some(p)) = (&e.ptrace, &e.process) else {
            return;
        };
        if t.result < 0 {
            return;
        }
        if t.request == "PTRACE_TRACEME" {
            out.push(Finding {
                rule: &TRACEME,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![],
            });
            return;
        }
        if t.target_pid == p.pid || DEBUGGERS.contains(&base_name(&p.exe)) {
            return;
        }
        out.push(Finding {
            rule: &INJECTION,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![
                ("request", t.request.clone()),
                ("target_pid", t.target_pid.to_string()),
            ],
        });
    }
}

/// The pid of a `/proc/PID/mem` path (`/proc/self/mem` is the caller itself).
fn proc_mem_target(path: &str) -> Option<u32> {
    path.strip_prefix("/proc/")?
        .strip_suffix("/mem")?
        .parse()
        .ok()
}
