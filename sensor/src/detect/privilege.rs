//! Privilege escalation set up on files:
//! SNS-0021 the setuid or setgid bit set on a file (chmod), outside package managers and
//! their maintainer scripts: a root shell left behind for later;
//! SNS-0022 file capabilities set with `setcap` (cap_setuid on an interpreter is a root
//! shell without the setuid bit).

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, under_package_manager};
use crate::proto;

pub const SETUID: Rule = Rule {
    id: "SNS-0021",
    title: "Setuid or setgid bit set",
    description: "A file was made setuid or setgid outside package management.",
    severity: "medium",
    mitre: &["T1548.001"],
    response: Response::Report,
};

pub const CAPABILITIES: Rule = Rule {
    id: "SNS-0022",
    title: "File capabilities set",
    description: "Capabilities were granted to a file with setcap.",
    severity: "medium",
    mitre: &["T1548"],
    response: Response::Report,
};

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

pub struct Privilege;

impl Detector for Privilege {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&SETUID, &CAPABILITIES]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let Some(p) = &e.process else { return };
        let found = |rule, details| Finding::on(rule, p, e, details);
        match (kind, &e.file) {
            (Some(EventKind::FileChmod), Some(f))
                if f.mode & (S_ISUID | S_ISGID) != 0 && !under_package_manager(p) =>
            {
                let bits = match (f.mode & S_ISUID != 0, f.mode & S_ISGID != 0) {
                    (true, true) => "setuid and setgid",
                    (true, false) => "setuid",
                    _ => "setgid",
                };
                out.push(found(
                    &SETUID,
                    vec![
                        ("path", f.path.clone()),
                        ("mode", format!("{:o}", f.mode)),
                        ("bits", bits.into()),
                    ],
                ));
            }
            (Some(EventKind::ProcessExec), _) if base_name(&p.exe) == "setcap" => {
                // `setcap -r` removes, `-v` only verifies.
                let args = p.args.get(1..).unwrap_or_default();
                if args.iter().any(|a| a == "-r" || a == "-v") || args.len() < 2 {
                    return;
                }
                out.push(found(&CAPABILITIES, vec![("command", args.join(" "))]));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{child, exec, file, process};

    use super::*;
    use crate::detect::replay::raises;

    fn chmod(exe: &str, mode: u32) -> Vec<proto::Event> {
        let mut e = file("file_chmod", &process(5100, exe, &["chmod"]), "/tmp/x", "");
        e.file.as_mut().unwrap().mode = mode;
        vec![e]
    }

    #[test]
    fn setuid_and_setgid_bits_outside_package_managers() {
        assert!(raises(SETUID.id, chmod("/usr/bin/chmod", 0o4755)));
        assert!(raises(SETUID.id, chmod("/tmp/tool", 0o2755)));
        assert!(!raises(SETUID.id, chmod("/usr/bin/chmod", 0o755)));
        assert!(!raises(SETUID.id, chmod("/usr/bin/dpkg", 0o4755)));
        let dpkg = process(5101, "/usr/bin/dpkg", &["dpkg"]);
        let script = child(&dpkg, 5102, "/usr/bin/chmod", &["chmod", "4755", "/tmp/x"]);
        let mut e = file("file_chmod", &script, "/tmp/x", "");
        e.file.as_mut().unwrap().mode = 0o4755;
        assert!(!raises(SETUID.id, vec![e]));
    }

    #[test]
    fn setcap_grants_but_not_removal_or_verification() {
        let setcap = |args: &[&str]| vec![exec(&process(5110, "/usr/sbin/setcap", args))];
        assert!(raises(
            CAPABILITIES.id,
            setcap(&["setcap", "cap_setuid+ep", "/usr/bin/python3"])
        ));
        assert!(!raises(
            CAPABILITIES.id,
            setcap(&["setcap", "-r", "/usr/bin/python3"])
        ));
        assert!(!raises(
            CAPABILITIES.id,
            setcap(&["setcap", "-v", "cap_net_raw+ep", "/usr/bin/ping"])
        ));
    }
}
