//! SNS-0009 a network service spawns a shell: a process that listens or accepted a
//! connection (or runs a known server image) starts a shell or a reconnaissance tool,
//! the shape of a web shell or an exploited service.

use std::collections::HashSet;

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, is_shell, proc_key};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0009",
    title: "Network service spawned a shell",
    description: "A process serving network connections started a shell or a reconnaissance command.",
    severity: "high",
    mitre: &["T1190", "T1505.003", "T1059.004"],
    response: Response::Report,
};

const SERVERS: &[&str] = &[
    "nginx", "httpd", "apache2", "java", "node", "php-fpm", "lighttpd", "tomcat",
];
const RECON: &[&str] = &[
    "id", "whoami", "uname", "hostname", "ifconfig", "w", "groups",
];
/// Bound on remembered serving processes (removed when they exit).
const MAX_SERVERS: usize = 8192;

#[derive(Default)]
pub struct ServiceShell {
    serving: HashSet<(u32, u64)>,
    /// Reported children: `sh -c id` may exec twice under one key; one detection.
    reported: HashSet<(u32, u64)>,
}

fn is_server_image(exe: &str, args: &[String]) -> bool {
    let b = base_name(exe);
    SERVERS.contains(&b)
        || b.starts_with("php-fpm")
        || (b.starts_with("python")
            && args
                .iter()
                .any(|a| a == "http.server" || a == "SimpleHTTPServer"))
}

fn is_recon(p: &proto::Process) -> bool {
    let b = base_name(&p.exe);
    RECON.contains(&b)
        || (b == "cat"
            && p.args
                .iter()
                .any(|a| a == "/etc/passwd" || a == "/etc/shadow"))
}

impl Detector for ServiceShell {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(key) = proc_key(e) else { return };
        match kind {
            Some(EventKind::NetListen | EventKind::NetAccept)
                if self.serving.len() < MAX_SERVERS =>
            {
                self.serving.insert(key);
            }
            Some(EventKind::ProcessExit) => {
                self.serving.remove(&key);
                self.reported.remove(&key);
            }
            Some(EventKind::ProcessExec) => {
                let Some(p) = &e.process else { return };
                if !(is_shell(&p.exe) || is_recon(p)) {
                    return;
                }
                let Some(parent) = p.ancestors.first() else {
                    return;
                };
                let serving = self.serving.contains(&(parent.pid, parent.start_time))
                    || is_server_image(&p.parent_exe, &p.parent_args);
                if serving && self.reported.len() < MAX_SERVERS && self.reported.insert(key) {
                    out.push(Finding {
                        rule: &RULE,
                        process: p.clone(),
                        evidence: vec![e.seq],
                        details: vec![("service", p.parent_exe.clone())],
                    });
                }
            }
            _ => {}
        }
    }
}
