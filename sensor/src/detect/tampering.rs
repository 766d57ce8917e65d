//! SNS-0013 tampering with security tools: the host firewall flushed or disabled, auditd
//! stopped or its rules deleted, SELinux switched to permissive or AppArmor unloaded
//! (by their tools, their services, or a write to their kernel files), or a signal sent
//! to the sensor or auditd (the kernel reports those; probes with signal 0 are not).

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0013",
    title: "Security tool tampering",
    description: "The firewall, audit subsystem or another security control was disabled or flushed.",
    severity: "high",
    mitre: &["T1562.001", "T1562.004", "T1562.012"],
    response: Response::Report,
};

/// What the command does to a security control, if anything.
pub fn tampering(exe: &str, args: &[String]) -> Option<&'static str> {
    let has = |o: &str| args.iter().skip(1).any(|a| a == o);
    match base_name(exe) {
        "iptables" | "ip6tables" | "iptables-legacy" | "iptables-nft" | "ip6tables-legacy"
        | "ip6tables-nft"
            if has("-F") || has("--flush") =>
        {
            Some("firewall flushed")
        }
        "nft" if has("flush") && has("ruleset") => Some("firewall flushed"),
        "ufw" if has("disable") => Some("firewall disabled"),
        "auditctl" if has("-D") || (has("-e") && has("0")) => Some("audit rules removed"),
        "systemctl" | "service"
            if (has("stop") || has("disable") || has("mask"))
                && PROTECTED_SERVICES
                    .iter()
                    .any(|s| has(s) || has(&format!("{s}.service"))) =>
        {
            Some("security service stopped")
        }
        "setenforce" if has("0") || has("Permissive") => Some("SELinux permissive"),
        "aa-teardown" => Some("AppArmor unloaded"),
        "apparmor_parser" if has("-R") || has("--remove") => Some("AppArmor profile removed"),
        "aa-disable" | "aa-complain" => Some("AppArmor profile disabled"),
        _ => None,
    }
}

/// Services whose stop turns protection off.
const PROTECTED_SERVICES: &[&str] = &["auditd", "sensor", "apparmor"];

/// What a write to `path` does to a security control, if anything: the kernel files
/// through which SELinux is made permissive and AppArmor profiles are removed.
pub fn tampering_write(path: &str) -> Option<&'static str> {
    match path {
        "/sys/fs/selinux/enforce" => Some("SELinux enforcement written"),
        "/sys/kernel/security/apparmor/.remove" => Some("AppArmor profile removed"),
        _ => None,
    }
}

pub struct Tampering;

impl Detector for Tampering {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        if let Some(sig) = &e.signal {
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![
                    ("action", "signal to a protected process".into()),
                    ("target_pid", sig.target_pid.to_string()),
                    ("signal", sig.signal.to_string()),
                ],
            });
            return;
        }
        if let (Some(EventKind::FileWrite), Some(f)) = (kind, &e.file)
            && let Some(what) = tampering_write(&f.path)
        {
            out.push(Finding::on(&RULE, p, e, vec![("action", what.into())]));
            return;
        }
        if kind != Some(EventKind::ProcessExec) {
            return;
        }
        if let Some(what) = tampering(&p.exe, &p.args) {
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![("action", what.into())],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tampering;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tampering_commands() {
        assert!(tampering("/usr/sbin/iptables", &a(&["iptables", "-F"])).is_some());
        assert!(tampering("/usr/sbin/nft", &a(&["nft", "flush", "ruleset"])).is_some());
        assert!(tampering("/usr/sbin/ufw", &a(&["ufw", "disable"])).is_some());
        assert!(tampering("/usr/bin/systemctl", &a(&["systemctl", "stop", "auditd"])).is_some());
        assert!(tampering("/usr/sbin/iptables", &a(&["iptables", "-L"])).is_none());
        assert!(tampering("/usr/bin/systemctl", &a(&["systemctl", "stop", "nginx"])).is_none());
    }

    #[test]
    fn selinux_and_apparmor_switched_off() {
        assert!(tampering("/usr/sbin/aa-teardown", &a(&["aa-teardown"])).is_some());
        let remove = a(&["apparmor_parser", "-R", "/etc/apparmor.d/usr.sbin.cupsd"]);
        assert!(tampering("/usr/sbin/apparmor_parser", &remove).is_some());
        let stop = a(&["systemctl", "disable", "apparmor.service"]);
        assert!(tampering("/usr/bin/systemctl", &stop).is_some());
        assert!(tampering("/usr/sbin/setenforce", &a(&["setenforce", "0"])).is_some());
        // Loading or reloading a profile, and asking for the mode, change nothing.
        let reload = a(&["apparmor_parser", "-r", "/etc/apparmor.d/usr.sbin.cupsd"]);
        assert!(tampering("/usr/sbin/apparmor_parser", &reload).is_none());
        assert!(tampering("/usr/sbin/getenforce", &a(&["getenforce"])).is_none());
        assert!(super::tampering_write("/sys/fs/selinux/enforce").is_some());
        assert!(super::tampering_write("/sys/fs/selinux/status").is_none());
    }
}
