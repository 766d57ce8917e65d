//! Defense evasion seen at exec and unlink:
//! SNS-0016 a program run from a hidden path (a dot directory or dot file where nothing
//! legitimate keeps programs),
//! SNS-0017 masquerading (argv[0] dressed as a kernel thread, or naming a well-known
//! daemon that the image, outside the system directories, is not),
//! SNS-0018 a process deleting its own executable.
//!
//! The executable's path is the kernel's (the image's own dentry chain), so a symlink
//! such as `node_modules/.bin/x` shows as the file it points to, and a relative or
//! `exec -a` invocation cannot hide the real path.

use sensor_common::EventKind;

use super::{
    Detector, Finding, Response, Rule, base_name, drop_exec::WORLD_WRITABLE, is_package_manager,
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

pub struct Evasion;

impl Detector for Evasion {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&HIDDEN, &MASQUERADING, &SELF_DELETE]
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
        vec![exec(&process(3500, exe, &[argv0]))]
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
