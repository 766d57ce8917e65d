//! SNS-0014 LD_PRELOAD: a new process starts with a library forced into it (LD_PRELOAD or
//! LD_AUDIT), the classic user-space rootkit and credential-hooking trick. Preloads that
//! ship with the system for benign reasons (coreutils' stdbuf, allocators, faketime,
//! eatmydata) are allowed.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0014",
    title: "Library preloading",
    description: "A process was started with LD_PRELOAD or LD_AUDIT forcing a library into it.",
    severity: "medium",
    mitre: &["T1574.006"],
    response: Response::Report,
};

const BENIGN: &[&str] = &[
    "libstdbuf",
    "libjemalloc",
    "libtcmalloc",
    "libeatmydata",
    "libfaketime",
    "libasan",
];

pub struct Preload;

impl Detector for Preload {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, _kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(x), Some(p)) = (&e.exec, &e.process) else {
            return;
        };
        for var in &x.loader_env {
            let Some((name, value)) = var.split_once('=') else {
                continue;
            };
            if !(name == "LD_PRELOAD" || name == "LD_AUDIT") || value.trim().is_empty() {
                continue;
            }
            let libs: Vec<&str> = value.split([':', ' ']).filter(|l| !l.is_empty()).collect();
            if libs.iter().all(|l| BENIGN.iter().any(|b| l.contains(b))) {
                continue;
            }
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![("variable", name.into()), ("libraries", value.into())],
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{exec, process};

    use crate::detect::replay::raises;
    use crate::proto;

    const ID: &str = "SNS-0014";

    fn with_env(vars: &[&str]) -> proto::Event {
        let mut e = exec(&process(3600, "/usr/sbin/sshd", &["sshd"]));
        e.exec.as_mut().unwrap().loader_env = vars.iter().map(|v| v.to_string()).collect();
        e
    }

    #[test]
    fn a_library_forced_into_a_new_process() {
        assert!(raises(ID, vec![with_env(&["LD_PRELOAD=/tmp/libhook.so"])]));
        assert!(raises(ID, vec![with_env(&["LD_AUDIT=/dev/shm/a.so"])]));
        // One benign library does not cover another beside it.
        assert!(raises(
            ID,
            vec![with_env(&[
                "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2:/tmp/libhook.so"
            ])]
        ));
    }

    #[test]
    fn benign_preloads_and_other_loader_variables_are_quiet() {
        for vars in [
            &["LD_PRELOAD=/usr/libexec/coreutils/libstdbuf.so"][..],
            &["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libeatmydata.so"],
            &["LD_PRELOAD="],
            &["LD_LIBRARY_PATH=/opt/app/lib"],
            &[],
        ] {
            assert!(!raises(ID, vec![with_env(vars)]), "{vars:?}");
        }
    }
}
