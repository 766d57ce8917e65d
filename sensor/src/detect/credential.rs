//! SNS-0007 credential access: reads of /etc/shadow, /etc/gshadow or SSH private keys by a
//! process outside the tools that need them (account tools, sshd, ssh clients, PAM,
//! debconf; the Perl ones recognised by their script).

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
];
/// Perl scripts that read the shadow file as their job, by installed path: the account
/// tools, and debconf, run by apt and dpkg (Perl's getpwnam reads the shadow file when
/// root). debconf's frontend has a base name that says nothing.
const PERL_TOOLS: &[&str] = &[
    "/usr/sbin/adduser",
    "/usr/sbin/deluser",
    "/usr/sbin/addgroup",
    "/usr/sbin/delgroup",
    "/usr/sbin/dpkg-preconfigure",
    "/usr/sbin/dpkg-reconfigure",
    "/usr/share/debconf/frontend",
];

fn allowed(p: &proto::Process) -> bool {
    ALLOWED.contains(&base_name(&p.exe)) || perl_tool(p)
}

/// Whether `p` is the system Perl running one of [`PERL_TOOLS`]. A script's process has
/// the interpreter as its exe and the script as an argument: `/usr/bin/perl -w
/// /usr/sbin/dpkg-preconfigure --apt`. Only `-w`, the switch of their `#!` lines, may
/// come before the script: `-e` or `-M` would run code of their own.
fn perl_tool(p: &proto::Process) -> bool {
    let perl = p
        .exe
        .strip_prefix("/usr/bin/")
        .is_some_and(|b| b == "perl" || b.starts_with("perl5"));
    let script = p.args.iter().skip(1).find(|a| *a != "-w");
    // A script found through PATH may be named from the /usr-merged /sbin.
    let script = script.map(|s| match s.strip_prefix("/sbin/") {
        Some(name) => format!("/usr/sbin/{name}"),
        None => s.clone(),
    });
    perl && script.is_some_and(|s| PERL_TOOLS.contains(&s.as_str()))
}

/// Credential files of cloud and developer tools, by the end of their path, with the
/// programs that read them as their job (a Python tool by its script's name).
const TOOL_SECRETS: &[(&str, &[&str])] = &[
    ("/.aws/credentials", &["aws", "terraform"]),
    (
        "/.git-credentials",
        &[
            "git",
            "git-credential-store",
            "git-remote-http",
            "git-remote-https",
        ],
    ),
    (
        "/.netrc",
        &[
            "curl",
            "wget",
            "ftp",
            "lftp",
            "git-remote-http",
            "git-remote-https",
        ],
    ),
    ("/.pgpass", &["psql", "pg_dump", "pg_dumpall", "pg_restore"]),
    (
        "/.config/gcloud/credentials.db",
        &["gcloud.py", "gsutil", "bq.py"],
    ),
    (
        "/.config/gcloud/access_tokens.db",
        &["gcloud.py", "gsutil", "bq.py"],
    ),
];

/// The programs that read the tool credential file `path` as their job, if it is one.
fn tool_secret(path: &str) -> Option<&'static [&'static str]> {
    TOOL_SECRETS
        .iter()
        .find(|(end, _)| path.ends_with(end))
        .map(|(_, readers)| *readers)
}

/// The names `p` goes by as a reader: its image's, and for an interpreter the script's.
fn reader_names(p: &proto::Process) -> [&str; 2] {
    let image = base_name(&p.exe);
    let script = if image.starts_with("python") {
        p.args
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .map_or("", |s| base_name(s))
    } else {
        ""
    };
    [image, script]
}

/// What kind of secret `path` is, if it is one.
pub fn secret(path: &str) -> Option<&'static str> {
    if tool_secret(path).is_some() {
        return Some("cloud or tool credentials");
    }
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
        let expected = match tool_secret(&f.path) {
            Some(readers) => reader_names(p)
                .iter()
                .any(|n| !n.is_empty() && readers.contains(n)),
            None => allowed(p),
        };
        if expected {
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
    use sensor_testkit::events::{file, process};

    use super::{RULE, allowed, secret};
    use crate::detect::replay::raises;

    #[test]
    fn secrets() {
        assert!(secret("/etc/shadow").is_some());
        assert!(secret("/home/a/.ssh/id_ed25519").is_some());
        assert!(secret("/home/a/.ssh/id_ed25519.pub").is_none());
        assert!(secret("/etc/passwd").is_none());
        assert!(secret("/srv/id_rsa").is_none());
        assert!(secret("/home/a/.aws/credentials").is_some());
        assert!(secret("/root/.git-credentials").is_some());
        assert!(secret("/srv/app/credentials").is_none());
    }

    #[test]
    fn tool_credentials_are_for_their_tools() {
        let reads = |exe: &str, args: &[&str], path: &str| {
            let p = process(5300, exe, args);
            raises(RULE.id, vec![file("file_read", &p, path, "")])
        };
        let aws = "/home/a/.aws/credentials";
        assert!(reads("/usr/bin/cat", &["cat", aws], aws));
        assert!(!reads("/usr/local/bin/aws", &["aws", "s3", "ls"], aws));
        // aws v1 is a Python script; Python with code of its own is not.
        assert!(!reads(
            "/usr/bin/python3.11",
            &["python3", "/usr/bin/aws", "s3", "ls"],
            aws
        ));
        assert!(reads(
            "/usr/bin/python3.11",
            &["python3", "-c", "open('x')"],
            aws
        ));
        // Each file has its own readers: git is no reader of the AWS keys.
        assert!(reads("/usr/bin/git", &["git", "push"], aws));
        let netrc = "/root/.netrc";
        assert!(!reads("/usr/bin/curl", &["curl", "-n", "https://x"], netrc));
        assert!(reads("/usr/bin/sshd", &["sshd"], netrc));
    }

    #[test]
    fn account_tools_are_allowed() {
        let tool = |exe: &str| allowed(&process(5200, exe, &[exe]));
        assert!(tool("/usr/sbin/unix_chkpwd"));
        assert!(tool("/usr/bin/passwd"));
        assert!(!tool("/usr/bin/cat"));
    }

    #[test]
    fn perl_account_tools_and_debconf_are_allowed_as_scripts() {
        let perl = |args: &[&str]| allowed(&process(5210, "/usr/bin/perl", args));
        assert!(perl(&[
            "/usr/bin/perl",
            "-w",
            "/usr/sbin/dpkg-preconfigure",
            "--apt"
        ]));
        assert!(perl(&[
            "/usr/bin/perl",
            "-w",
            "/usr/share/debconf/frontend",
            "/var/lib/dpkg/info/cron.postinst",
            "configure",
        ]));
        assert!(perl(&[
            "/usr/bin/perl",
            "/usr/sbin/adduser",
            "--system",
            "x"
        ]));
        assert!(perl(&[
            "/usr/bin/perl",
            "/sbin/addgroup",
            "--system",
            "crontab"
        ]));
        // Perl reading the file itself, or a tool's name anywhere else, is not the tool.
        assert!(!perl(&["perl", "-e", "print <>", "/usr/sbin/adduser"]));
        assert!(!perl(&["perl", "-MShadow", "/usr/sbin/adduser"]));
        assert!(!perl(&["perl", "/tmp/adduser"]));
        assert!(!perl(&[
            "perl",
            "/usr/share/debconf/frontend/../../../tmp/x"
        ]));
        assert!(!allowed(&process(
            5211,
            "/tmp/perl",
            &["perl", "/usr/sbin/adduser"]
        )));
        assert!(!allowed(&process(5212, "/usr/sbin/adduser", &["adduser"])));
    }

    #[test]
    fn debconf_reading_the_shadow_file_is_quiet_perl_one_liners_are_not() {
        let read = |args: &[&str]| {
            let p = process(5220, "/usr/bin/perl", args);
            vec![file("file_read", &p, "/etc/shadow", "")]
        };
        assert!(!raises(
            RULE.id,
            read(&[
                "/usr/bin/perl",
                "-w",
                "/usr/sbin/dpkg-preconfigure",
                "--apt"
            ])
        ));
        assert!(raises(
            RULE.id,
            read(&["perl", "-ne", "print", "/etc/shadow"])
        ));
    }
}
