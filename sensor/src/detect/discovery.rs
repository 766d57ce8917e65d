//! Discovery in a burst: several different reconnaissance commands (id, uname, ps, ss,
//! `cat /etc/passwd`, `crontab -l`, `find / -perm -4000`, ...) started by one process
//! within a minute raise one detection; a single command never does.
//! SNS-0019 (medium) when that process descends from a network service or from cron or
//! at, or is itself an image in a world-writable directory: the shapes of a web shell, a
//! persistence job and a dropped implant. SNS-0020 (informational) otherwise: the same
//! burst from a login shell or a script is usually an administrator at work.
//!
//! Commands are counted under the process that started them (a shell, a script's
//! interpreter, an implant), so a program that starts a new `sh -c` for each command is
//! not seen as one burst, nor are commands spread over subshells.

use sensor_common::EventKind;

use super::{
    Detector, Finding, Response, Rule, base_name, bursts::Bursts, drop_exec::WORLD_WRITABLE,
    service_shell::SERVERS,
};
use crate::proto;

const TECHNIQUES: &[&str] = &["T1082", "T1033", "T1057", "T1049", "T1087.001"];

pub const SUSPICIOUS: Rule = Rule {
    id: "SNS-0019",
    title: "Discovery burst from a suspicious process tree",
    description: "Several reconnaissance commands ran within a minute from a process under a network service or a scheduled job, or from a dropped program.",
    severity: "medium",
    mitre: TECHNIQUES,
    response: Response::Report,
};

pub const INTERACTIVE: Rule = Rule {
    id: "SNS-0020",
    title: "Discovery burst",
    description: "Several reconnaissance commands ran within a minute from one process.",
    severity: "informational",
    mitre: TECHNIQUES,
    response: Response::Report,
};

/// Different commands that make a burst.
const THRESHOLD: usize = 4;
const WINDOW_NS: u64 = 60_000_000_000;
/// Bound on processes followed at once (entries past the window go first).
const MAX_BURSTS: usize = 4096;
/// Evidence kept per burst.
const MAX_EVIDENCE: usize = 16;

const TOOLS: &[&str] = &[
    "id",
    "whoami",
    "uname",
    "hostname",
    "hostnamectl",
    "ps",
    "ss",
    "netstat",
    "ip",
    "ifconfig",
    "arp",
    "route",
    "w",
    "who",
    "last",
    "lastlog",
    "groups",
    "lsmod",
    "lscpu",
    "lsblk",
    "lsb_release",
    "getent",
];
const READERS: &[&str] = &["cat", "head", "tail", "less", "more", "grep"];
/// Files whose reading by hand is reconnaissance.
const RECON_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/sudoers",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/os-release",
    "/etc/issue",
    "/proc/version",
];
const SCHEDULERS: &[&str] = &["cron", "crond", "atd", "anacron"];

/// The reconnaissance `p` performs, named for counting distinct ones.
fn recon_command(p: &proto::Process) -> Option<&'static str> {
    let b = base_name(&p.exe);
    if let Some(t) = TOOLS.iter().find(|t| **t == b) {
        return Some(t);
    }
    let args = p.args.get(1..).unwrap_or_default();
    let has = |a: &str| args.iter().any(|x| x == a);
    if READERS.contains(&b) {
        return RECON_FILES.iter().copied().find(|f| has(f));
    }
    match b {
        "crontab" if has("-l") => Some("crontab -l"),
        "sudo" if has("-l") => Some("sudo -l"),
        "find" if args.iter().any(|a| a.contains("4000") || a.contains("u=s")) => {
            Some("find setuid files")
        }
        _ => None,
    }
}

/// Why the tree `p` runs in makes a burst suspicious, if it does: a service or scheduler
/// anywhere above, or a `parent` (the process the commands are counted under) that is
/// itself an image in a world-writable directory. Only the parent is checked for that:
/// everything on a machine descends from something, and a tool unpacked in /tmp that
/// starts an ordinary shell is not itself suspect.
fn suspicious(p: &proto::Process, parent: &proto::Ancestor) -> Option<&'static str> {
    let service = p.ancestors.iter().find_map(|a| {
        let b = base_name(&a.exe);
        if SERVERS.contains(&b) || b.starts_with("php-fpm") {
            Some("network service")
        } else if SCHEDULERS.contains(&b) {
            Some("scheduled job")
        } else {
            None
        }
    });
    let dropped = WORLD_WRITABLE.iter().any(|d| parent.exe.starts_with(d));
    service.or(dropped.then_some("program in a world-writable directory"))
}

#[derive(Default)]
struct Burst {
    commands: Vec<&'static str>,
    evidence: Vec<u64>,
    reported: bool,
}

pub struct Discovery {
    /// By the process (pid, start time) that started the commands.
    bursts: Bursts<Burst>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            bursts: Bursts::new(WINDOW_NS, MAX_BURSTS),
        }
    }
}

impl Detector for Discovery {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&SUSPICIOUS, &INTERACTIVE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if kind != Some(EventKind::ProcessExec) {
            return;
        }
        let Some(p) = &e.process else { return };
        let Some(command) = recon_command(p) else {
            return;
        };
        // The commands of a session, a script or an implant are children of one process.
        let Some(parent) = p.ancestors.first() else {
            return;
        };
        let now = e.timestamp_ns;
        let burst = self.bursts.at((parent.pid, parent.start_time), now);
        if !burst.commands.contains(&command) {
            burst.commands.push(command);
        }
        if burst.evidence.len() < MAX_EVIDENCE {
            burst.evidence.push(e.seq);
        }
        if burst.reported || burst.commands.len() < THRESHOLD {
            return;
        }
        burst.reported = true;
        let context = suspicious(p, parent);
        out.push(Finding {
            rule: if context.is_some() {
                &SUSPICIOUS
            } else {
                &INTERACTIVE
            },
            process: p.clone(),
            evidence: burst.evidence.clone(),
            details: vec![
                ("commands", burst.commands.join(", ")),
                ("parent", parent.exe.clone()),
                ("context", context.unwrap_or("login shell or script").into()),
            ],
        });
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{child, exec, process};

    use super::*;
    use crate::detect::replay::detection_ids;

    /// Execs of `commands` (argv), each a child of `shell`, a second apart.
    fn run_from(shell: &proto::Process, commands: &[&[&str]]) -> Vec<proto::Event> {
        commands
            .iter()
            .enumerate()
            .map(|(i, argv)| {
                let exe = format!("/usr/bin/{}", argv[0]);
                let mut e = exec(&child(shell, 5000 + i as u32, &exe, argv));
                e.timestamp_ns = (i as u64 + 1) * 1_000_000_000;
                e
            })
            .collect()
    }

    const BURST: &[&[&str]] = &[
        &["id"],
        &["uname", "-a"],
        &["cat", "/etc/passwd"],
        &["ps", "aux"],
        &["ss", "-tlnp"],
    ];

    #[test]
    fn a_burst_under_a_web_server_is_one_medium_detection() {
        let nginx = process(4900, "/usr/sbin/nginx", &["nginx"]);
        let sh = child(&nginx, 4901, "/bin/sh", &["sh"]);
        let ids = detection_ids(run_from(&sh, BURST));
        assert_eq!(
            ids.iter().filter(|i| *i == SUSPICIOUS.id).count(),
            1,
            "{ids:?}"
        );
        assert!(!ids.contains(&INTERACTIVE.id.to_string()));
    }

    #[test]
    fn a_dropped_program_running_commands_is_suspicious_a_shell_it_starts_is_not() {
        let implant = process(4930, "/tmp/.x/implant", &["implant"]);
        assert_eq!(detection_ids(run_from(&implant, BURST)), [SUSPICIOUS.id]);
        let tool = process(4940, "/tmp/build/tool", &["tool"]);
        let sh = child(&tool, 4941, "/bin/sh", &["sh"]);
        assert_eq!(detection_ids(run_from(&sh, BURST)), [INTERACTIVE.id]);
    }

    #[test]
    fn a_burst_from_a_login_shell_is_informational() {
        let sshd = process(4910, "/usr/sbin/sshd", &["sshd"]);
        let bash = child(&sshd, 4911, "/usr/bin/bash", &["-bash"]);
        let ids = detection_ids(run_from(&bash, BURST));
        assert_eq!(ids, [INTERACTIVE.id]);
    }

    #[test]
    fn single_commands_repeats_and_slow_sequences_are_quiet() {
        let bash = process(4920, "/usr/bin/bash", &["bash"]);
        // One of each of three commands, and the same command again and again.
        let few: &[&[&str]] = &[&["id"], &["uname", "-a"], &["cat", "/etc/passwd"]];
        assert!(detection_ids(run_from(&bash, few)).is_empty());
        let same: &[&[&str]] = &[&["ps"], &["ps"], &["ps"], &["ps"], &["ps"]];
        assert!(detection_ids(run_from(&bash, same)).is_empty());
        // Four commands, but a minute and more apart.
        let mut slow = run_from(&bash, &BURST[..4]);
        for (i, e) in slow.iter_mut().enumerate() {
            e.timestamp_ns = i as u64 * 61_000_000_000 + 1;
        }
        assert!(detection_ids(slow).is_empty());
        // Reading other files is not reconnaissance.
        let reads: &[&[&str]] = &[
            &["cat", "notes.txt"],
            &["grep", "x", "/var/log/syslog"],
            &["id"],
            &["uname"],
            &["hostname"],
        ];
        assert!(detection_ids(run_from(&bash, reads)).is_empty());
    }
}
