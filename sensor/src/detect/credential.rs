//! SNS-0007 credential access: reads of /etc/shadow, /etc/gshadow or SSH private keys by a
//! process outside the tools that need them (account tools, sshd, ssh clients, PAM,
//! debconf).

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0007",
    title: "Credential access",
    description: "A password hash file or an SSH private key was read by an unexpected process.",
    severity: "high",
    mitre: &["T1003.008", "T1552.004"],
    response: Response::Report,
};

const ALLOWED: &[&str] = &[
    "passwd",
    "sshd",
    "login",
    "su",
    "sudo",
    "unix_chkpwd",
    "chage",
    "useradd",
    "usermod",
    "userdel",
    "chpasswd",
    "gpasswd",
    "groupadd",
    "groupmod",
    "vipw",
    "pwck",
    "grpck",
    "systemd-logind",
    "cron",
    "ssh",
    "ssh-add",
    "ssh-agent",
    "ssh-keygen",
    "scp",
    "sftp",
    "shadowconfig",
    "newusers",
    // Perl account tools.
    "adduser",
    "deluser",
    "addgroup",
    "delgroup",
    // debconf, run by apt and dpkg: Perl's getpwnam reads the shadow file when root.
    "dpkg-preconfigure",
    "dpkg-reconfigure",
];
/// debconf's frontend, by full path: its base name says nothing.
const DEBCONF_FRONTEND: &str = "/usr/share/debconf/frontend";

fn allowed(exe: &str) -> bool {
    exe == DEBCONF_FRONTEND || ALLOWED.contains(&base_name(exe))
}

/// What kind of secret `path` is, if it is one.
pub fn secret(path: &str) -> Option<&'static str> {
    match path {
        "/etc/shadow" | "/etc/gshadow" | "/etc/shadow-" | "/etc/gshadow-" => {
            Some("password hashes")
        }
        _ => {
            let name = base_name(path);
            let key = path.contains("/.ssh/") && name.starts_with("id_") && !name.ends_with(".pub");
            key.then_some("ssh private key")
        }
    }
}

pub struct Credential;

impl Detector for Credential {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if kind != Some(EventKind::FileRead) {
            return;
        }
        let (Some(f), Some(p)) = (&e.file, &e.process) else {
            return;
        };
        let Some(what) = secret(&f.path) else { return };
        if allowed(&p.exe) {
            return;
        }
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![("path", f.path.clone()), ("secret", what.into())],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{allowed, secret};

    #[test]
    fn secrets() {
        assert!(secret("/etc/shadow").is_some());
        assert!(secret("/home/a/.ssh/id_ed25519").is_some());
        assert!(secret("/home/a/.ssh/id_ed25519.pub").is_none());
        assert!(secret("/etc/passwd").is_none());
        assert!(secret("/srv/id_rsa").is_none());
    }

    #[test]
    fn account_tools_and_debconf_are_allowed() {
        assert!(allowed("/usr/sbin/dpkg-preconfigure"));
        assert!(allowed("/usr/share/debconf/frontend"));
        assert!(allowed("/usr/sbin/adduser"));
        assert!(!allowed("/tmp/frontend"));
        assert!(!allowed("/usr/bin/cat"));
    }
}
