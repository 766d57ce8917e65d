//! SNS-0013 tampering with security tools: the host firewall flushed or disabled, auditd
//! stopped or its rules deleted, SELinux switched to permissive, or a signal sent to the
//! sensor or auditd (the kernel reports those; probes with signal 0 are not).

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
                && (has("auditd")
                    || has("auditd.service")
                    || has("sensor")
                    || has("sensor.service")) =>
        {
            Some("security service stopped")
        }
        "setenforce" if has("0") || has("Permissive") => Some("SELinux permissive"),
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
}
