//! SNS-0011 anti-forensics: logs under /var/log truncated or deleted, shell history
//! cleared (deleted, truncated or pointed at /dev/null). Log rotation tools are allowed.
//! Timestamp tampering needs the utimensat hook, which capture does not have yet.

use super::{Detector, Finding, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0011",
    title: "Anti-forensics",
    description: "Logs or shell history were truncated, deleted or redirected to /dev/null.",
    severity: "medium",
    mitre: &["T1070.002", "T1070.003"],
};

const ROTATORS: &[&str] = &[
    "logrotate",
    "rsyslogd",
    "systemd-journald",
    "journalctl",
    "savelog",
];
const HISTORY: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".history",
    ".sh_history",
    ".python_history",
];
const O_TRUNC: u32 = 0o1000;

fn what(path: &str) -> Option<&'static str> {
    if path.starts_with("/var/log/") {
        Some("log")
    } else if HISTORY.contains(&super::base_name(path)) {
        Some("shell history")
    } else {
        None
    }
}

pub struct AntiForensics;

impl Detector for AntiForensics {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn observe(&mut self, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(f), Some(p)) = (&e.file, &e.process) else {
            return;
        };
        let (path, how) = match e.kind.as_str() {
            "file_unlink" => (&f.path, "deleted"),
            "file_truncate" => (&f.path, "truncated"),
            "file_write" | "file_create" if f.flags & O_TRUNC != 0 => (&f.path, "truncated"),
            "file_symlink" if f.path == "/dev/null" => (&f.new_path, "linked to /dev/null"),
            _ => return,
        };
        let Some(kind) = what(path) else { return };
        // A new file "truncated" on creation has nothing to hide.
        if e.kind == "file_create" || ROTATORS.contains(&base_name(&p.exe)) {
            return;
        }
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![
                ("path", path.clone()),
                ("target", kind.into()),
                ("how", how.into()),
            ],
        });
    }
}
