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

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{event, file, process};

    use crate::detect::replay::{detection_ids, raises};
    use crate::proto;

    fn ptrace(exe: &str, request: &str, target_pid: u32, result: i64) -> proto::Event {
        let p = process(3400, exe, &[]);
        proto::Event {
            ptrace: Some(proto::PtraceInfo {
                request: request.into(),
                target_pid,
                result,
                ..Default::default()
            }),
            ..event("ptrace", &p)
        }
    }

    #[test]
    fn attaching_to_or_writing_into_another_process() {
        assert!(raises(
            "SNS-0006",
            vec![ptrace("/tmp/inject", "PTRACE_ATTACH", 1234, 0)]
        ));
        let writer = process(3401, "/usr/bin/python3", &[]);
        assert!(raises(
            "SNS-0006",
            vec![file("file_write", &writer, "/proc/1234/mem", "")]
        ));
        assert!(raises(
            "SNS-0015",
            vec![ptrace("/tmp/packed", "PTRACE_TRACEME", 0, 0)]
        ));
    }

    #[test]
    fn debuggers_self_access_and_failed_attempts_are_quiet() {
        for e in [
            ptrace("/usr/bin/gdb", "PTRACE_ATTACH", 1234, 0),
            ptrace("/usr/bin/strace", "PTRACE_SEIZE", 1234, 0),
            ptrace("/tmp/inject", "PTRACE_ATTACH", 1234, -1),
            ptrace("/tmp/inject", "PTRACE_POKEDATA", 3400, 0),
            file(
                "file_write",
                &process(3402, "/usr/bin/python3", &[]),
                "/proc/self/mem",
                "",
            ),
            file(
                "file_write",
                &process(3403, "/usr/bin/python3", &[]),
                "/proc/3403/mem",
                "",
            ),
            file(
                "file_write",
                &process(3404, "/usr/bin/gdb", &[]),
                "/proc/1234/mem",
                "",
            ),
        ] {
            let ids = detection_ids(vec![e.clone()]);
            assert!(!ids.iter().any(|i| i == "SNS-0006"), "{e:?}: {ids:?}");
        }
    }
}
