//! SNS-0004 kernel module load and SNS-0005 BPF program load: code entering the kernel.
//! Module loads are reported even when they fail (the attempt is the signal); BPF loads
//! by processes outside the allowlist (configuration) are reported.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule};
use crate::proto;

pub const MODULE: Rule = Rule {
    id: "SNS-0004",
    title: "Kernel module load",
    description: "A process loaded, or tried to load, a kernel module.",
    severity: "medium",
    mitre: &["T1547.006"],
    response: Response::Report,
};

pub const BPF: Rule = Rule {
    id: "SNS-0005",
    title: "BPF program load",
    description: "A process outside the allowlist loaded a BPF program into the kernel.",
    severity: "medium",
    mitre: &["T1014"],
    response: Response::Report,
};

pub struct KernelLoad;

impl Detector for KernelLoad {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&MODULE, &BPF]
    }

    fn inspect(&mut self, _kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        if let Some(m) = &e.module {
            let result = if m.at_entry {
                "unknown".to_string()
            } else {
                m.result.to_string()
            };
            out.push(Finding {
                rule: &MODULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![
                    ("syscall", m.syscall.clone()),
                    ("params", m.params.clone()),
                    ("result", result),
                ],
            });
        } else if let Some(b) = &e.bpf {
            // Another instance of the sensor (a restart, an upgrade) loads its own programs.
            if own_exe().is_some_and(|me| me == p.exe) {
                return;
            }
            out.push(Finding {
                rule: &BPF,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![
                    ("prog_name", b.prog_name.clone()),
                    ("prog_type", b.prog_type.to_string()),
                    ("result", b.result.to_string()),
                ],
            });
        }
    }
}

fn own_exe() -> Option<&'static str> {
    static EXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{event, file, process};

    use crate::detect::replay::raises;
    use crate::proto;

    #[test]
    fn module_loads_even_failed_and_bpf_loads() {
        let insmod = process(3500, "/usr/sbin/insmod", &["insmod", "rootkit.ko"]);
        for result in [0, -1] {
            let load = proto::Event {
                module: Some(proto::ModuleInfo {
                    syscall: "finit_module".into(),
                    result,
                    ..Default::default()
                }),
                ..event("module_load", &insmod)
            };
            assert!(raises("SNS-0004", vec![load]));
        }
        let loader = process(3501, "/tmp/loader", &[]);
        let bpf = proto::Event {
            bpf: Some(proto::BpfInfo {
                prog_type: 1,
                prog_name: "filter".into(),
                result: 3,
                ..Default::default()
            }),
            ..event("bpf_load", &loader)
        };
        assert!(raises("SNS-0005", vec![bpf]));
    }

    #[test]
    fn reading_a_module_file_is_not_loading_it() {
        let modinfo = process(3510, "/usr/sbin/modinfo", &["modinfo", "ext4"]);
        let read = file(
            "file_read",
            &modinfo,
            "/lib/modules/6.1.0/kernel/fs/ext4/ext4.ko",
            "",
        );
        assert!(!raises("SNS-0004", vec![read.clone()]));
        assert!(!raises("SNS-0005", vec![read]));
    }
}
