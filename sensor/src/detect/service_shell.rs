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

pub(crate) const SERVERS: &[&str] = &[
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

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{child, connect, exec, process};

    use crate::detect::replay::raises;

    const ID: &str = "SNS-0009";

    #[test]
    fn a_serving_process_starts_a_shell_or_recon() {
        let app = process(3800, "/opt/app/server", &["server"]);
        let sh = child(&app, 3801, "/bin/sh", &["sh", "-c", "id"]);
        assert!(raises(
            ID,
            vec![connect("net_accept", &app, 8080, 51000), exec(&sh)]
        ));
        // A known server image needs no accept seen first.
        let nginx = process(3810, "/usr/sbin/nginx", &["nginx"]);
        let whoami = child(&nginx, 3811, "/usr/bin/whoami", &["whoami"]);
        assert!(raises(ID, vec![exec(&whoami)]));
    }

    #[test]
    fn shells_of_non_servers_and_other_children_of_servers_are_quiet() {
        let cron = process(3820, "/usr/sbin/cron", &["cron"]);
        let sh = child(
            &cron,
            3821,
            "/bin/sh",
            &["sh", "-c", "run-parts /etc/cron.daily"],
        );
        assert!(!raises(ID, vec![exec(&sh)]));
        let nginx = process(3830, "/usr/sbin/nginx", &["nginx"]);
        let gzip = child(&nginx, 3831, "/usr/bin/gzip", &["gzip", "access.log.1"]);
        assert!(!raises(
            ID,
            vec![connect("net_accept", &nginx, 80, 51000), exec(&gzip)]
        ));
    }
}
