//! SNS-0026 a shell upgraded to a terminal: an interpreter or `script` started only to
//! give a shell a pseudo-terminal (`python -c 'import pty; pty.spawn("/bin/bash")'`,
//! Ruby's `PTY.spawn`, Perl's `IO::Pty`, `script -qc /bin/bash /dev/null`). It is the
//! step after a reverse shell or a web shell, when the intruder wants job control,
//! `su` and editors; an administrator opening a terminal never needs it.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0026",
    title: "Shell upgraded to a terminal",
    description: "An interpreter or script(1) was run to give a shell a pseudo-terminal, as after a reverse or web shell.",
    severity: "medium",
    mitre: &["T1059.004", "T1059.006"],
    response: Response::Report,
};

/// How `args` (of `exe`) spawn a shell on a pseudo-terminal, if they do.
pub fn upgrade(exe: &str, args: &[String]) -> Option<&'static str> {
    let name = base_name(exe);
    let code_has = |s: &str| args.iter().skip(1).any(|a| a.contains(s));
    if name.starts_with("python") && code_has("pty.spawn") {
        return Some("python pty.spawn");
    }
    if name.starts_with("ruby") && code_has("PTY.spawn") {
        return Some("ruby PTY.spawn");
    }
    if name.starts_with("perl") && code_has("IO::Pty") {
        return Some("perl IO::Pty");
    }
    // script(1) recording to /dev/null exists only for the terminal it gives its command.
    if name == "script" {
        let command = args.iter().skip(1).any(|a| {
            a == "-c"
                || a == "--command"
                || (a.starts_with('-') && !a.starts_with("--") && a.contains('c'))
        });
        if command && args.iter().any(|a| a == "/dev/null") {
            return Some("script to /dev/null");
        }
    }
    None
}

pub struct Interactive;

impl Detector for Interactive {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(EventKind::ProcessExec), Some(p)) = (kind, &e.process) else {
            return;
        };
        if let Some(how) = upgrade(&p.exe, &p.args) {
            out.push(Finding::on(&RULE, p, e, vec![("method", how.into())]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::upgrade;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn terminal_upgrades_and_look_alikes() {
        let py = a(&["python3", "-c", "import pty; pty.spawn('/bin/bash')"]);
        assert!(upgrade("/usr/bin/python3.11", &py).is_some());
        let rb = a(&["ruby", "-rpty", "-e", "PTY.spawn('/bin/sh')"]);
        assert!(upgrade("/usr/bin/ruby3.1", &rb).is_some());
        let pl = a(&["perl", "-MIO::Pty", "-e", "1"]);
        assert!(upgrade("/usr/bin/perl", &pl).is_some());
        assert!(
            upgrade(
                "/usr/bin/script",
                &a(&["script", "-qc", "/bin/bash", "/dev/null"])
            )
            .is_some()
        );
        assert!(
            upgrade(
                "/usr/bin/script",
                &a(&["script", "/dev/null", "-c", "bash"])
            )
            .is_some()
        );
        // Recording a session, and Python that only mentions pty, are not upgrades.
        assert!(upgrade("/usr/bin/script", &a(&["script", "-q", "session.log"])).is_none());
        assert!(
            upgrade(
                "/usr/bin/script",
                &a(&["script", "-c", "make", "build.log"])
            )
            .is_none()
        );
        let tests = a(&["python3", "-m", "pytest", "tests/test_pty.py"]);
        assert!(upgrade("/usr/bin/python3", &tests).is_none());
    }
}
