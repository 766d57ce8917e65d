//! SNS-0008 persistence: writes or renames into the places that make code run again
//! (cron, systemd units, rc.local, shell start-up files, authorized_keys, sudoers,
//! ld.so.preload) and account changes (/etc/passwd) outside the tools made for them.
//! Package managers and the account tools are allowed by default: they write these files
//! as their job. So are the owner and mode that dpkg's maintainer scripts set on them.

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
    ("/etc/ld.so.conf", "dynamic linker path"),
    ("/etc/ld.so.conf.d/", "dynamic linker path"),
    ("/etc/passwd", "account"),
    ("/etc/group", "account"),
    ("/etc/systemd/user/", "systemd user unit"),
    ("/usr/lib/systemd/user/", "systemd user unit"),
    ("/run/systemd/system/", "systemd unit"),
    ("/etc/pam.d/", "PAM configuration"),
    ("/lib/security/", "PAM module"),
    ("/lib64/security/", "PAM module"),
    ("/usr/lib/security/", "PAM module"),
    ("/lib/x86_64-linux-gnu/security/", "PAM module"),
    ("/usr/lib/x86_64-linux-gnu/security/", "PAM module"),
    ("/lib/aarch64-linux-gnu/security/", "PAM module"),
    ("/usr/lib/aarch64-linux-gnu/security/", "PAM module"),
    ("/etc/ssh/sshd_config", "sshd configuration"),
    ("/etc/ssh/sshd_config.d/", "sshd configuration"),
    ("/etc/udev/rules.d/", "udev rule"),
    ("/lib/udev/rules.d/", "udev rule"),
    ("/usr/lib/udev/rules.d/", "udev rule"),
    ("/etc/update-motd.d/", "motd script"),
    ("/etc/xdg/autostart/", "XDG autostart"),
    ("/lib/modules/", "kernel module"),
    ("/usr/lib/modules/", "kernel module"),
    ("/etc/apt/apt.conf.d/", "package manager hook"),
];

/// Below a home directory (/root or /home/USER).
const HOME: &[(&str, &str)] = &[
    (".config/systemd/user/", "systemd user unit"),
    (".bashrc", "shell start-up"),
    (".bash_profile", "shell start-up"),
    (".profile", "shell start-up"),
    (".zshrc", "shell start-up"),
    (".ssh/authorized_keys", "authorized_keys"),
    (".config/autostart/", "XDG autostart"),
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
    // Module indexes below /lib/modules, the linker cache's configuration.
    "depmod",
    "ldconfig",
];

/// Where dpkg keeps the maintainer scripts it runs (`tmp.ci`: a new package's preinst).
const MAINTAINER_SCRIPTS: &[&str] = &["/var/lib/dpkg/info/", "/var/lib/dpkg/tmp.ci/"];

/// Whether `p` is a maintainer script run by dpkg, or a command one started (cron's
/// postinst runs `chown root:crontab /var/spool/cron/crontabs`). Narrower than anything
/// under a package manager: a shell escaped from apt's or dpkg's pager is not a script.
pub(super) fn maintainer_script(p: &proto::Process) -> bool {
    let runs_script = |args: &[String]| {
        // `#!/bin/sh -e` puts its switch before the script.
        args.iter()
            .skip(1)
            .find(|a| !a.starts_with('-') || *a == "-c")
            .is_some_and(|a| MAINTAINER_SCRIPTS.iter().any(|d| a.starts_with(d)))
    };
    (runs_script(&p.args) || runs_script(&p.parent_args))
        && p.ancestors.iter().any(|a| base_name(&a.exe) == "dpkg")
}

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
        // What a script writes is still reported: a package's own files are dpkg's to
        // write, and a line added to /etc/crontab by a postinst is worth a look.
        let metadata = matches!(kind, Some(EventKind::FileChmod | EventKind::FileChown));
        if metadata && maintainer_script(p) {
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
    use sensor_testkit::events::{child, file, process};

    use super::{RULE, category};
    use crate::detect::replay::raises;
    use crate::proto;

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
        for (path, what) in [
            ("/etc/pam.d/sshd", "PAM configuration"),
            (
                "/usr/lib/x86_64-linux-gnu/security/pam_backdoor.so",
                "PAM module",
            ),
            ("/etc/ssh/sshd_config.d/99-x.conf", "sshd configuration"),
            ("/etc/ld.so.conf.d/x.conf", "dynamic linker path"),
            ("/etc/udev/rules.d/99-x.rules", "udev rule"),
            ("/etc/update-motd.d/99-x", "motd script"),
            ("/etc/xdg/autostart/x.desktop", "XDG autostart"),
            ("/home/bob/.config/autostart/x.desktop", "XDG autostart"),
            ("/lib/modules/6.1.0/extra/rootkit.ko", "kernel module"),
            ("/etc/apt/apt.conf.d/99hook", "package manager hook"),
            ("/etc/systemd/user/x.service", "systemd user unit"),
            ("/etc/group", "account"),
        ] {
            assert_eq!(category(path), Some(what), "{path}");
        }
        assert_eq!(category("/etc/ssh/ssh_config"), None);
        assert_eq!(category("/etc/pam.conf.bak"), None);
    }

    /// dpkg running `script` (a maintainer script, `#!/bin/sh -e`) with apt above it.
    fn under_dpkg(script: &str) -> proto::Process {
        let apt = process(5300, "/usr/bin/apt-get", &["apt-get", "install", "cron"]);
        let dpkg = child(
            &apt,
            5301,
            "/usr/bin/dpkg",
            &["/usr/bin/dpkg", "--configure"],
        );
        child(
            &dpkg,
            5302,
            "/usr/bin/dash",
            &["/bin/sh", "-e", script, "configure"],
        )
    }

    fn on(kind: &str, p: &proto::Process, path: &str) -> Vec<proto::Event> {
        vec![file(kind, p, path, "")]
    }

    #[test]
    fn maintainer_scripts_set_owner_and_mode_on_their_files() {
        let postinst = under_dpkg("/var/lib/dpkg/info/cron-daemon-common.postinst");
        let chown = child(
            &postinst,
            5303,
            "/usr/bin/chown",
            &["chown", "root:crontab", "x"],
        );
        assert!(!raises(
            RULE.id,
            on("file_chown", &chown, "/var/spool/cron/crontabs")
        ));
        let preinst = under_dpkg("/var/lib/dpkg/tmp.ci/preinst");
        let chmod = child(&preinst, 5304, "/usr/bin/chmod", &["chmod", "-x", "x"]);
        assert!(!raises(
            RULE.id,
            on("file_chmod", &chmod, "/etc/init.d/cron")
        ));
        assert!(!raises(
            RULE.id,
            on("file_chmod", &postinst, "/etc/init.d/cron")
        ));
    }

    #[test]
    fn what_maintainer_scripts_write_and_look_alikes_still_raise() {
        let postinst = under_dpkg("/var/lib/dpkg/info/evil.postinst");
        assert!(raises(RULE.id, on("file_write", &postinst, "/etc/crontab")));
        let echo = child(&postinst, 5305, "/usr/bin/tee", &["tee", "/etc/cron.d/x"]);
        assert!(raises(RULE.id, on("file_create", &echo, "/etc/cron.d/x")));
        // The same script path outside dpkg, a `sh -c` naming one, and a shell escaped
        // from dpkg's pager.
        let outside = process(
            5310,
            "/usr/bin/dash",
            &["sh", "/var/lib/dpkg/info/x.postinst"],
        );
        let chmod = child(&outside, 5311, "/usr/bin/chmod", &["chmod", "+x", "x"]);
        assert!(raises(RULE.id, on("file_chmod", &chmod, "/etc/init.d/x")));
        let dpkg = process(5320, "/usr/bin/dpkg", &["dpkg", "-l"]);
        let sh_c = child(
            &dpkg,
            5321,
            "/usr/bin/dash",
            &[
                "sh",
                "-c",
                "/var/lib/dpkg/info/x.postinst; chmod +x /etc/init.d/x",
            ],
        );
        assert!(raises(RULE.id, on("file_chmod", &sh_c, "/etc/init.d/x")));
        let pager = child(&dpkg, 5322, "/usr/bin/less", &["less"]);
        let shell = child(&pager, 5323, "/usr/bin/bash", &["bash"]);
        let chown = child(&shell, 5324, "/usr/bin/chown", &["chown", "x", "x"]);
        assert!(raises(RULE.id, on("file_chown", &chown, "/etc/sudoers")));
    }
}
