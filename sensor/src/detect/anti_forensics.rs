//! SNS-0011 anti-forensics: logs under /var/log truncated or deleted, shell history
//! cleared (deleted, truncated or pointed at /dev/null), and timestamps of system
//! binaries set to chosen values (`touch -r`, `touch -d`: timestomping). Log rotation
//! tools and package managers are allowed.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, is_package_manager};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0011",
    title: "Anti-forensics",
    description: "Logs or shell history were truncated, deleted or redirected to /dev/null.",
    severity: "medium",
    mitre: &["T1070.002", "T1070.003"],
    response: Response::Report,
};

/// Log rotation (and package management): they delete logs and set file times as their job.
const ROTATORS: &[&str] = &[
    "logrotate",
    "rsyslogd",
    "systemd-journald",
    "journalctl",
    "savelog",
];
/// Where timestamps of installed programs live.
const SYSTEM_BINARIES: &[&str] = &[
    "/usr/bin/",
    "/usr/sbin/",
    "/bin/",
    "/sbin/",
    "/usr/lib/",
    "/lib/",
    "/usr/local/bin/",
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
    if SYSTEM_BINARIES.iter().any(|d| path.starts_with(d)) {
        Some("system binary")
    } else if path.starts_with("/var/log/") {
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

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(f), Some(p)) = (&e.file, &e.process) else {
            return;
        };
        let Some(kind) = kind else { return };
        let (path, how) = match kind {
            EventKind::FileUnlink => (&f.path, "deleted"),
            EventKind::FileTruncate => (&f.path, "truncated"),
            EventKind::FileWrite | EventKind::FileCreate if f.flags & O_TRUNC != 0 => {
                (&f.path, "truncated")
            }
            EventKind::FileSymlink if f.path == "/dev/null" => (&f.new_path, "linked to /dev/null"),
            EventKind::FileTimes if f.explicit_times => (&f.path, "timestamps set"),
            _ => return,
        };
        let Some(target) = what(path) else { return };
        // Deleting or truncating binaries is an upgrade's job; their times are the signal.
        let times = kind == EventKind::FileTimes;
        if (target == "system binary") != times {
            return;
        }
        // A new file "truncated" on creation has nothing to hide.
        if kind == EventKind::FileCreate
            || ROTATORS.contains(&base_name(&p.exe))
            || is_package_manager(&p.exe)
        {
            return;
        }
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![
                ("path", path.clone()),
                ("target", target.into()),
                ("how", how.into()),
            ],
        });
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{file, process};

    use crate::detect::replay::raises;
    use crate::proto;

    const ID: &str = "SNS-0011";

    fn timestomp(path: &str, explicit: bool) -> proto::Event {
        let mut e = file(
            "file_times",
            &process(3100, "/usr/bin/touch", &[]),
            path,
            "",
        );
        e.file.as_mut().unwrap().explicit_times = explicit;
        e
    }

    #[test]
    fn logs_and_history_wiped_and_binaries_timestomped() {
        let rm = process(3000, "/usr/bin/rm", &["rm", "/var/log/auth.log"]);
        assert!(raises(
            ID,
            vec![file("file_unlink", &rm, "/var/log/auth.log", "")]
        ));
        let truncate = process(3001, "/usr/bin/truncate", &[]);
        assert!(raises(
            ID,
            vec![file("file_truncate", &truncate, "/var/log/syslog", "")]
        ));
        let ln = process(3002, "/usr/bin/ln", &[]);
        assert!(raises(
            ID,
            vec![file(
                "file_symlink",
                &ln,
                "/dev/null",
                "/root/.bash_history"
            )]
        ));
        let mut shell = file(
            "file_write",
            &process(3003, "/usr/bin/bash", &[]),
            "/root/.zsh_history",
            "",
        );
        shell.file.as_mut().unwrap().flags = 0o1000; // O_TRUNC
        assert!(raises(ID, vec![shell]));
        assert!(raises(ID, vec![timestomp("/usr/bin/ls", true)]));
    }

    #[test]
    fn rotation_upgrades_and_new_files_are_quiet() {
        let logrotate = process(3010, "/usr/sbin/logrotate", &[]);
        assert!(!raises(
            ID,
            vec![file("file_unlink", &logrotate, "/var/log/syslog.7.gz", "")]
        ));
        let dpkg = process(3011, "/usr/bin/dpkg", &[]);
        assert!(!raises(
            ID,
            vec![file("file_unlink", &dpkg, "/var/log/apt/old.log", "")]
        ));
        // Replacing a binary is an upgrade; only its chosen times are the signal.
        let rm = process(3012, "/usr/bin/rm", &[]);
        assert!(!raises(
            ID,
            vec![file("file_unlink", &rm, "/usr/bin/ls", "")]
        ));
        let mut created = file("file_create", &rm, "/var/log/app.log", "");
        created.file.as_mut().unwrap().flags = 0o1000;
        assert!(!raises(ID, vec![created]));
        assert!(!raises(ID, vec![timestomp("/usr/bin/ls", false)]));
        assert!(!raises(ID, vec![timestomp("/home/user/notes.txt", true)]));
        let editor = process(3013, "/usr/bin/vim", &[]);
        assert!(!raises(
            ID,
            vec![file("file_unlink", &editor, "/home/user/draft.txt", "")]
        ));
    }
}
