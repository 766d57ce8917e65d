//! SNS-0027 container escape signs: a process entering the namespaces of PID 1 (the
//! host's init, `nsenter -t 1 -m ...`), the way a privileged container reaches the host;
//! or a write to a cgroup's `release_agent` or `notify_on_release`, the classic cgroup v1
//! escape that makes the host run a program of the container's choosing.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0027",
    title: "Container escape",
    description: "A process entered the namespaces of the host's init, or set a cgroup release agent.",
    severity: "high",
    mitre: &["T1611"],
    response: Response::Report,
};

/// `nsenter` aimed at PID 1: `-t 1`, `-t1`, `--target 1`, `--target=1`.
pub fn enters_init(exe: &str, args: &[String]) -> bool {
    if base_name(exe) != "nsenter" {
        return false;
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let target = match a.as_str() {
            "-t" | "--target" => it.next().map(String::as_str),
            _ => a
                .strip_prefix("--target=")
                .or_else(|| a.strip_prefix("-t").filter(|v| !v.is_empty())),
        };
        if target == Some("1") {
            return true;
        }
    }
    false
}

/// A cgroup v1 release hook file, wherever the hierarchy is mounted (the published
/// escape mounts one at /tmp/cgrp): no other file has these names.
pub fn release_hook(path: &str) -> bool {
    matches!(base_name(path), "release_agent" | "notify_on_release")
}

pub struct Escape;

impl Detector for Escape {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        match (kind, &e.file) {
            (Some(EventKind::ProcessExec), _) if enters_init(&p.exe, &p.args) => {
                out.push(Finding::on(
                    &RULE,
                    p,
                    e,
                    vec![("method", "nsenter into PID 1".into())],
                ));
            }
            (Some(EventKind::FileWrite), Some(f)) if release_hook(&f.path) => {
                out.push(Finding::on(
                    &RULE,
                    p,
                    e,
                    vec![
                        ("method", "cgroup release agent".into()),
                        ("path", f.path.clone()),
                    ],
                ))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{enters_init, release_hook};

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nsenter_into_init_and_cgroup_release_agents() {
        let nsenter = |v: &[&str]| enters_init("/usr/bin/nsenter", &a(v));
        assert!(nsenter(&[
            "nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh"
        ]));
        assert!(nsenter(&["nsenter", "-t1", "-a"]));
        assert!(nsenter(&["nsenter", "--target=1", "--mount"]));
        // Another process's namespaces (a container's, by an operator) are not PID 1's.
        assert!(!nsenter(&["nsenter", "-t", "4242", "-n", "ip", "a"]));
        assert!(!nsenter(&["nsenter", "-t", "12", "-n"]));
        assert!(!enters_init("/usr/bin/ip", &a(&["ip", "-t", "1"])));
        assert!(release_hook("/sys/fs/cgroup/rdma/release_agent"));
        assert!(release_hook("/tmp/cgrp/x/notify_on_release"));
        assert!(!release_hook("/sys/fs/cgroup/x/cgroup.procs"));
    }
}
