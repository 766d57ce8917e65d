//! SNS-0008 persistence: writes or renames into the places that make code run again
//! (cron, systemd units, rc.local, shell start-up files, authorized_keys, sudoers,
//! ld.so.preload) and account changes (/etc/passwd) outside the tools made for them.
//! Package managers and the account tools are allowed by default: they write these files
//! as their job.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, is_package_manager};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0008",
    title: "Persistence",
    description: "A file that makes code run at boot, login, on schedule or with privileges was written.",
    severity: "medium",
    mitre: &[
        "T1053.003",
        "T1543.002",
        "T1546.004",
        "T1098.004",
        "T1548.003",
        "T1574.006",
        "T1136.001",
    ],
    response: Response::Report,
};

/// (prefix or exact path, what it is). A trailing '/' means "anything below".
const SYSTEM: &[(&str, &str)] = &[
    ("/etc/crontab", "cron"),
    ("/etc/cron.d/", "cron"),
    ("/etc/cron.hourly/", "cron"),
    ("/etc/cron.daily/", "cron"),
    ("/etc/cron.weekly/", "cron"),
    ("/etc/cron.monthly/", "cron"),
    ("/var/spool/cron/", "cron"),
    ("/etc/systemd/system/", "systemd unit"),
    ("/usr/lib/systemd/system/", "systemd unit"),
    ("/lib/systemd/system/", "systemd unit"),
    ("/etc/rc.local", "rc.local"),
    ("/etc/init.d/", "init script"),
    ("/etc/profile", "shell start-up"),
    ("/etc/profile.d/", "shell start-up"),
    ("/etc/bash.bashrc", "shell start-up"),
    ("/etc/sudoers", "sudoers"),
    ("/etc/sudoers.d/", "sudoers"),
    ("/etc/ld.so.preload", "ld.so.preload"),
    ("/etc/passwd", "account"),
];

/// Below a home directory (/root or /home/USER).
const HOME: &[(&str, &str)] = &[
    (".config/systemd/user/", "systemd user unit"),
    (".bashrc", "shell start-up"),
    (".bash_profile", "shell start-up"),
    (".profile", "shell start-up"),
    (".zshrc", "shell start-up"),
    (".ssh/authorized_keys", "authorized_keys"),
];

/// Tools whose job is to write these files (package managers too).
const ALLOWED: &[&str] = &[
    "systemctl",
    "systemd",
    "useradd",
    "usermod",
    "userdel",
    "adduser",
    "deluser",
    "groupadd",
    "chpasswd",
    "passwd",
    "vipw",
    "chsh",
    "chfn",
    "systemd-sysusers",
    "visudo",
    "ssh-copy-id",
    "cloud-init",
];

fn matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
    }
}

/// The persistence category of `path`, if it is one.
pub fn category(path: &str) -> Option<&'static str> {
    if let Some((_, c)) = SYSTEM.iter().find(|(p, _)| matches(p, path)) {
        return Some(c);
    }
    let rest = path.strip_prefix("/root/").or_else(|| {
        path.strip_prefix("/home/")
            .and_then(|r| r.split_once('/').map(|(_, r)| r))
    })?;
    HOME.iter().find(|(p, _)| matches(p, rest)).map(|(_, c)| *c)
}

pub struct Persistence;

impl Detector for Persistence {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(f), Some(p)) = (&e.file, &e.process) else {
            return;
        };
        let target = match kind {
            Some(
                EventKind::FileCreate
                | EventKind::FileWrite
                | EventKind::FileChmod
                | EventKind::FileChown
                | EventKind::FileTruncate,
            ) => &f.path,
            Some(EventKind::FileRename | EventKind::FileLink | EventKind::FileSymlink) => {
                &f.new_path
            }
            _ => return,
        };
        let Some(cat) = category(target) else { return };
        if ALLOWED.contains(&base_name(&p.exe)) || is_package_manager(&p.exe) {
            return;
        }
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![("path", target.clone()), ("category", cat.into())],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::category;

    #[test]
    fn persistence_locations() {
        assert_eq!(category("/etc/cron.d/backdoor"), Some("cron"));
        assert_eq!(
            category("/root/.ssh/authorized_keys"),
            Some("authorized_keys")
        );
        assert_eq!(category("/home/alice/.bashrc"), Some("shell start-up"));
        assert_eq!(
            category("/home/alice/.config/systemd/user/x.service"),
            Some("systemd user unit")
        );
        assert_eq!(category("/etc/ld.so.preload"), Some("ld.so.preload"));
        assert_eq!(category("/etc/crontab.bak"), None);
        assert_eq!(category("/home/alice/notes/.bashrc"), None);
        assert_eq!(category("/tmp/.bashrc"), None);
    }
}
