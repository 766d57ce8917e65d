//! Defense evasion seen at exec and unlink:
//! SNS-0016 a program run from a hidden path (a dot directory or dot file where nothing
//! legitimate keeps programs),
//! SNS-0017 masquerading (argv[0] dressed as a kernel thread, or naming a well-known
//! daemon that the image, outside the system directories, is not),
//! SNS-0018 a process deleting its own executable,
//! SNS-0024 command history switched off in a shell's command line (`unset HISTFILE`,
//! `HISTFILE=/dev/null`, `history -c`, `set +o history`; typed at an interactive prompt
//! these are builtins that run no program, so only `sh -c` and script arguments show),
//! SNS-0025 the immutable or append-only attribute set on a system file or an SSH
//! directory's file (`chattr +i`), which keeps an implant or a key from being removed.
//!
//! The executable's path is the kernel's (the image's own dentry chain), so a symlink
//! such as `node_modules/.bin/x` shows as the file it points to, and a relative or
//! `exec -a` invocation cannot hide the real path.

use sensor_common::EventKind;

use super::{
    Detector, Finding, Response, Rule, base_name, drop_exec::WORLD_WRITABLE, is_package_manager,
    is_shell,
};
use crate::proto;

pub const HIDDEN: Rule = Rule {
    id: "SNS-0016",
    title: "Execution from a hidden path",
    description: "A program was run from a hidden file or directory in a world-writable, system or unusual place.",
    severity: "medium",
    mitre: &["T1564.001"],
    response: Response::Report,
};

pub const MASQUERADING: Rule = Rule {
    id: "SNS-0017",
    title: "Masquerading process name",
    description: "A program was started under the name of a kernel thread or of a system daemon it is not.",
    severity: "medium",
    mitre: &["T1036.004", "T1036.005"],
    response: Response::Report,
};

pub const SELF_DELETE: Rule = Rule {
    id: "SNS-0018",
    title: "Executable deleted by its own process",
    description: "A running program deleted the file it was started from.",
    severity: "medium",
    mitre: &["T1070.004"],
    response: Response::Report,
};

pub const HISTORY_OFF: Rule = Rule {
    id: "SNS-0024",
    title: "Command history disabled",
    description: "A shell was told not to record its command history.",
    severity: "medium",
    mitre: &["T1562.003"],
    response: Response::Report,
};

pub const IMMUTABLE: Rule = Rule {
    id: "SNS-0025",
    title: "Immutable attribute on a system file",
    description: "A system or SSH file was made immutable or append-only with chattr.",
    severity: "medium",
    mitre: &["T1222.002"],
    response: Response::Report,
};

const HISTORY_OFF_TEXT: &[&str] = &[
    "unset HISTFILE",
    "HISTFILE=/dev/null",
    "HISTSIZE=0",
    "HISTFILESIZE=0",
    "history -c",
    "set +o history",
];
/// Where an immutable file protects the system's (or an intruder's) configuration.
const PROTECTED_PATHS: &[&str] = &[
    "/etc/",
    "/usr/",
    "/bin/",
    "/sbin/",
    "/lib",
    "/boot/",
    "/var/spool/cron",
    "/root/.ssh/",
];

/// Per-user directories where installers and toolchains keep programs (a program run from
/// them is ordinary on a developer's machine).
const TOOL_DIRS: &[&str] = &[
    ".local",
    ".cache",
    ".cargo",
    ".rustup",
    ".nvm",
    ".npm",
    ".pyenv",
    ".rbenv",
    ".sdkman",
    ".asdf",
    ".deno",
    ".bun",
    ".volta",
    ".dotnet",
    ".krew",
    ".gem",
    ".conda",
    ".linuxbrew",
    ".ghcup",
    ".cabal",
    ".opam",
    ".nix-profile",
    ".vscode-server",
    ".cursor-server",
    ".git",
];
/// Where installed programs live: an image there named otherwise than its argv[0] is an
/// alias (alternatives, multi-call binaries), not a disguise.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/", "/snap/", "/nix/",
];
/// Names attackers give their programs to blend into `ps`.
const DAEMONS: &[&str] = &[
    "sshd",
    "systemd",
    "init",
    "cron",
    "crond",
    "atd",
    "rsyslogd",
    "syslogd",
    "dbus-daemon",
    "systemd-journald",
    "systemd-logind",
    "systemd-udevd",
    "udevd",
    "agetty",
    "auditd",
    "polkitd",
    "containerd",
    "dockerd",
    "kubelet",
    "nginx",
    "apache2",
    "httpd",
    "mysqld",
    "postgres",
    "kthreadd",
    "kworker",
    "ksoftirqd",
];

/// Why running `exe` from where it is hides it, if it does.
fn hidden(exe: &str) -> Option<&'static str> {
    let mut parts = exe.split('/').filter(|c| !c.is_empty());
    let (index, first) = parts
        .clone()
        .enumerate()
        .find(|(_, c)| c.starts_with('.') && *c != "." && *c != "..")?;
    if first.chars().all(|c| c == '.' || c.is_whitespace()) {
        return Some("a name of dots and spaces");
    }
    if WORLD_WRITABLE.iter().any(|d| exe.starts_with(d)) {
        return Some("hidden in a world-writable directory");
    }
    let home = match parts.next() {
        Some("root") => Some(1),
        Some("home") => Some(2),
        _ => None,
    };
    match home {
        // The first hidden component directly in a home directory: a tool's directory or not.
        Some(depth) if index == depth && TOOL_DIRS.contains(&first) => None,
        Some(_) => Some("hidden in a home directory"),
        None => Some("hidden outside a home directory"),
    }
}

/// The name argv[0] dresses `p` in, if it is a disguise.
fn disguise(p: &proto::Process) -> Option<(&'static str, String)> {
    let argv0 = p.args.first()?;
    if argv0.len() > 2 && argv0.starts_with('[') && argv0.ends_with(']') {
        return Some(("kernel thread name", argv0.clone()));
    }
    let name = base_name(argv0.split(' ').next().unwrap_or(argv0));
    let name = name.trim_end_matches(':');
    let installed = SYSTEM_DIRS.iter().any(|d| p.exe.starts_with(d));
    (DAEMONS.contains(&name) && base_name(&p.exe) != name && !installed)
        .then(|| ("system daemon name", argv0.clone()))
}

/// The history-disabling text in the command line of shell `p`, if any.
fn history_off(p: &proto::Process) -> Option<&'static str> {
    if !is_shell(&p.exe) {
        return None;
    }
    let args = p.args.get(1..).unwrap_or_default();
    HISTORY_OFF_TEXT
        .iter()
        .copied()
        .find(|t| args.iter().any(|a| a.contains(t)))
}

/// The protected file `chattr` run as `p` makes immutable or append-only, if any.
fn made_immutable(p: &proto::Process) -> Option<String> {
    if base_name(&p.exe) != "chattr" {
        return None;
    }
    let args = p.args.get(1..).unwrap_or_default();
    let sets = args.iter().any(|a| {
        (a.starts_with('+') || a.starts_with('=')) && (a.contains('i') || a.contains('a'))
    });
    let protected = |a: &&String| {
        PROTECTED_PATHS.iter().any(|d| a.starts_with(d))
            || (a.starts_with("/home/") && a.contains("/.ssh/"))
    };
    sets.then(|| args.iter().find(protected).cloned()).flatten()
}

pub struct Evasion;

impl Detector for Evasion {
    fn rules(&self) -> &'static [&'static Rule] {
        &[
            &HIDDEN,
            &MASQUERADING,
            &SELF_DELETE,
            &HISTORY_OFF,
            &IMMUTABLE,
        ]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        let found = |rule, details| Finding::on(rule, p, e, details);
        match kind {
            Some(EventKind::ProcessExec) => {
                if let Some(why) = hidden(&p.exe) {
                    out.push(found(
                        &HIDDEN,
                        vec![("path", p.exe.clone()), ("reason", why.into())],
                    ));
                }
                if let Some((how, name)) = disguise(p) {
                    out.push(found(
                        &MASQUERADING,
                        vec![("name", name), ("reason", how.into())],
                    ));
                }
                if let Some(text) = history_off(p) {
                    out.push(found(&HISTORY_OFF, vec![("command", text.into())]));
                }
                if let Some(path) = made_immutable(p) {
                    out.push(found(&IMMUTABLE, vec![("path", path)]));
                }
            }
            Some(EventKind::FileUnlink) => {
                let Some(f) = &e.file else { return };
                if !p.exe.is_empty() && f.path == p.exe && !is_package_manager(&p.exe) {
                    out.push(found(&SELF_DELETE, vec![("path", f.path.clone())]));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{exec, file, process};

    use super::*;
    use crate::detect::replay::raises;

    fn runs(exe: &str, argv0: &str) -> Vec<proto::Event> {
        runs_args(exe, &[argv0])
    }

    fn runs_args(exe: &str, args: &[&str]) -> Vec<proto::Event> {
        vec![exec(&process(3500, exe, args))]
    }

    #[test]
    fn hidden_paths_where_programs_do_not_belong() {
        for exe in [
            "/tmp/.x/payload",
            "/dev/shm/.cache",
            "/var/tmp/.ICE-unix/x",
            "/usr/lib/.libs/kdevd",
            "/etc/.sys/run",
            "/root/.config/.x/agent",
            "/home/alice/.hidden",
            "/home/alice/work/.../x",
            "/srv/app/.bin/run",
        ] {
            assert!(raises(HIDDEN.id, runs(exe, "x")), "{exe}");
        }
    }

    #[test]
    fn tool_directories_and_plain_paths_are_quiet() {
        for exe in [
            "/root/.cargo/bin/cargo",
            "/home/alice/.rustup/toolchains/stable/bin/rustc",
            "/home/alice/.local/bin/black",
            "/home/alice/.vscode-server/bin/abc/node",
            "/usr/bin/ls",
            "/tmp/build/run",
        ] {
            assert!(!raises(HIDDEN.id, runs(exe, "x")), "{exe}");
        }
    }

    #[test]
    fn kernel_thread_and_daemon_disguises() {
        assert!(raises(
            MASQUERADING.id,
            runs("/tmp/x/miner", "[kworker/0:1]")
        ));
        assert!(raises(
            MASQUERADING.id,
            runs("/usr/bin/python3", "[kthreadd]")
        ));
        assert!(raises(MASQUERADING.id, runs("/var/tmp/a", "sshd")));
        assert!(raises(MASQUERADING.id, runs("/root/x", "/usr/sbin/cron")));
    }

    #[test]
    fn aliases_and_real_daemons_are_quiet() {
        for (exe, argv0) in [
            ("/usr/bin/vim.basic", "vi"),
            ("/usr/bin/busybox", "sh"),
            ("/usr/sbin/sshd", "sshd"),
            ("/usr/lib/openssh/sshd-session", "sshd: alice [priv]"),
            ("/opt/nginx/sbin/nginx-debug", "nginx"),
            ("/home/alice/bin/tool", "tool"),
            ("/tmp/x", "[]"),
        ] {
            assert!(!raises(MASQUERADING.id, runs(exe, argv0)), "{exe} {argv0}");
        }
    }

    #[test]
    fn history_switched_off_in_a_command_line() {
        for script in [
            "unset HISTFILE; id",
            "export HISTFILE=/dev/null",
            "history -c && exit",
            "set +o history",
        ] {
            assert!(
                raises(
                    HISTORY_OFF.id,
                    runs_args("/bin/bash", &["bash", "-c", script])
                ),
                "{script}"
            );
        }
        assert!(!raises(
            HISTORY_OFF.id,
            runs_args(
                "/bin/bash",
                &["bash", "-c", "echo $HISTFILE; history | tail"]
            )
        ));
        // Not a shell: the words are data (a grep, an editor's argument).
        assert!(!raises(
            HISTORY_OFF.id,
            runs_args("/usr/bin/grep", &["grep", "unset HISTFILE", "notes"])
        ));
    }

    #[test]
    fn immutable_system_and_ssh_files() {
        let chattr = |args: &[&str]| runs_args("/usr/bin/chattr", args);
        assert!(raises(
            IMMUTABLE.id,
            chattr(&["chattr", "+i", "/etc/passwd"])
        ));
        assert!(raises(
            IMMUTABLE.id,
            chattr(&["chattr", "+ia", "/root/.ssh/authorized_keys"])
        ));
        assert!(raises(
            IMMUTABLE.id,
            chattr(&["chattr", "+a", "/home/alice/.ssh/authorized_keys"])
        ));
        assert!(!raises(
            IMMUTABLE.id,
            chattr(&["chattr", "-i", "/etc/passwd"])
        ));
        assert!(!raises(
            IMMUTABLE.id,
            chattr(&["chattr", "+i", "/tmp/mine"])
        ));
        assert!(!raises(IMMUTABLE.id, chattr(&["chattr", "+d", "/etc/x"])));
    }

    #[test]
    fn deleting_its_own_image_and_not_another_file() {
        let p = process(3510, "/tmp/dropper", &["/tmp/dropper"]);
        assert!(raises(
            SELF_DELETE.id,
            vec![file("file_unlink", &p, "/tmp/dropper", "")]
        ));
        assert!(!raises(
            SELF_DELETE.id,
            vec![file("file_unlink", &p, "/tmp/other", "")]
        ));
        let dpkg = process(3511, "/usr/bin/dpkg", &["dpkg"]);
        assert!(!raises(
            SELF_DELETE.id,
            vec![file("file_unlink", &dpkg, "/usr/bin/dpkg", "")]
        ));
    }
}
