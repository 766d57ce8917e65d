//! SNS-0012 crypto miner: miner command lines (stratum URLs, xmrig-style options, known
//! miner binaries) or connections to common mining-pool ports.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0012",
    title: "Crypto miner",
    description: "A process looks like a cryptocurrency miner (command line or mining-pool connection).",
    severity: "high",
    mitre: &["T1496"],
    response: Response::Stop,
};

const MINERS: &[&str] = &[
    "xmrig",
    "xmr-stak",
    "minerd",
    "cpuminer",
    "ccminer",
    "t-rex",
    "nbminer",
    "lolminer",
    "ethminer",
    "cgminer",
    "bfgminer",
    "nanominer",
];
const POOL_PORTS: &[u32] = &[3333, 5555, 7777, 14433, 14444, 45560, 45700];

/// Why a command line looks like a miner, if it does.
pub fn miner_cmdline(exe: &str, args: &[String]) -> Option<&'static str> {
    if MINERS.contains(&base_name(exe)) {
        return Some("miner binary");
    }
    if args.iter().any(|a| {
        a.contains("stratum+tcp://")
            || a.contains("stratum+ssl://")
            || a.contains("stratum2+tcp://")
    }) {
        return Some("stratum URL");
    }
    let has = |o: &str| {
        args.iter()
            .any(|a| a == o || a.starts_with(&format!("{o}=")))
    };
    if (has("--donate-level") || has("--cpu-priority") || has("--randomx-mode"))
        && (has("-o") || has("--url"))
    {
        return Some("xmrig options");
    }
    None
}

pub struct Miner;

impl Detector for Miner {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        let why = match (kind, &e.net) {
            (Some(EventKind::ProcessExec), _) => miner_cmdline(&p.exe, &p.args).map(str::to_string),
            (Some(EventKind::NetConnect), Some(n)) if POOL_PORTS.contains(&n.dst_port) => Some(
                format!("connection to pool port {}:{}", n.dst_addr, n.dst_port),
            ),
            _ => None,
        };
        if let Some(why) = why {
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![e.seq],
                details: vec![("reason", why)],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::miner_cmdline;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn miner_command_lines() {
        assert!(miner_cmdline("/tmp/x", &a(&["x", "-o", "stratum+tcp://pool:3333"])).is_some());
        assert!(miner_cmdline("/opt/xmrig", &a(&["xmrig"])).is_some());
        assert!(
            miner_cmdline("/tmp/kworker", &a(&["k", "--donate-level=1", "-o", "p:1"])).is_some()
        );
        assert!(miner_cmdline("/usr/bin/curl", &a(&["curl", "-o", "out", "http://x"])).is_none());
    }
}
