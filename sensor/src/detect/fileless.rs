//! SNS-0002 fileless execution: a program run from memory (memfd), from a file deleted
//! before it ran, or from /dev/shm. The kernel reports the executable's link count, so a
//! deleted or anonymous image is known at exec time, without racing the file system.

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0002",
    title: "Fileless execution",
    description: "A program was executed from memory (memfd), from a deleted file or from /dev/shm.",
    severity: "high",
    mitre: &["T1620", "T1027.011"],
    response: Response::Stop,
};

pub struct Fileless;

impl Detector for Fileless {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, _kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(x), Some(p)) = (&e.exec, &e.process) else {
            return;
        };
        let how = if x.name.starts_with("memfd:") || p.exe.starts_with("/memfd:") {
            "memfd"
        } else if x.nlink == 0 {
            "deleted file"
        } else if p.exe.starts_with("/dev/shm/") || x.filename.starts_with("/dev/shm/") {
            "/dev/shm"
        } else {
            return;
        };
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: vec![e.seq],
            details: vec![("source", how.into()), ("image", x.name.clone())],
        });
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{exec, process};

    use crate::detect::replay::raises;

    const ID: &str = "SNS-0002";

    #[test]
    fn memfd_deleted_and_dev_shm_images() {
        let mut memfd = exec(&process(3300, "/memfd:x (deleted)", &[]));
        let x = memfd.exec.as_mut().unwrap();
        (x.name, x.nlink) = ("memfd:x".into(), 0);
        assert!(raises(ID, vec![memfd]));
        let mut deleted = exec(&process(3301, "/tmp/.cache/run", &[]));
        deleted.exec.as_mut().unwrap().nlink = 0;
        assert!(raises(ID, vec![deleted]));
        assert!(raises(ID, vec![exec(&process(3302, "/dev/shm/run", &[]))]));
    }

    #[test]
    fn programs_on_disk_are_quiet() {
        assert!(!raises(
            ID,
            vec![exec(&process(3310, "/usr/bin/ls", &["ls"]))]
        ));
        // A hard-linked program (two links) is still a file on disk.
        let mut linked = exec(&process(3311, "/usr/bin/python3", &[]));
        linked.exec.as_mut().unwrap().nlink = 2;
        assert!(!raises(ID, vec![linked]));
    }
}
