//! SNS-0003 drop and execute: a file written, renamed into place or made executable in a
//! world-writable directory (/tmp, /var/tmp, /dev/shm) and executed within a window
//! (`drop_exec_window_secs`, default 600 s).

use std::{collections::HashMap, time::Duration};

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0003",
    title: "Drop and execute",
    description: "A file written or made executable in a world-writable directory was executed soon after.",
    severity: "high",
    mitre: &["T1105", "T1204.002"],
    response: Response::Stop,
};

const WORLD_WRITABLE: [&str; 3] = ["/tmp/", "/var/tmp/", "/dev/shm/"];
/// Bound on remembered drops; the oldest are forgotten first.
const MAX_DROPS: usize = 8192;

pub struct DropExec {
    window_ns: u64,
    /// path -> (seq of the write, kernel time)
    drops: HashMap<String, (u64, u64)>,
}

impl DropExec {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_ns: Duration::from_secs(window_secs).as_nanos() as u64,
            drops: HashMap::new(),
        }
    }

    fn remember(&mut self, path: &str, seq: u64, ts: u64) {
        if self.drops.len() >= MAX_DROPS {
            let horizon = ts.saturating_sub(self.window_ns);
            self.drops.retain(|_, (_, t)| *t >= horizon);
            if self.drops.len() >= MAX_DROPS {
                let oldest = self
                    .drops
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.drops.remove(&k);
                }
            }
        }
        self.drops.insert(path.to_string(), (seq, ts));
    }
}

/// The file `e` drops into a world-writable directory: written, created, made executable,
/// renamed or linked there. Shared with blocking mode, which arms the kernel with it.
pub fn dropped_path(e: &proto::Event) -> Option<&str> {
    // File events only: no kind to parse for the rest of the stream.
    e.file.as_ref()?;
    dropped(EventKind::from_name(&e.kind)?, e)
}

/// [`dropped_path`] for an event whose kind is already parsed.
fn dropped(kind: EventKind, e: &proto::Event) -> Option<&str> {
    let f = e.file.as_ref()?;
    let path = match kind {
        EventKind::FileCreate | EventKind::FileWrite => &f.path,
        EventKind::FileChmod if f.mode & 0o111 != 0 => &f.path,
        EventKind::FileRename | EventKind::FileLink => &f.new_path,
        _ => return None,
    };
    WORLD_WRITABLE
        .iter()
        .any(|d| path.starts_with(d))
        .then_some(path.as_str())
}

impl Detector for DropExec {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if let Some(path) = kind.and_then(|k| dropped(k, e)) {
            self.remember(path, e.seq, e.timestamp_ns);
            return;
        }
        let (Some(x), Some(p)) = (&e.exec, &e.process) else {
            return;
        };
        // A denied exec's process is the caller, still running its old image.
        let exe = if x.denied.is_empty() {
            p.exe.as_str()
        } else {
            ""
        };
        let hit = [exe, x.filename.as_str()]
            .into_iter()
            .find_map(|path| self.drops.get(path).map(|d| (path.to_string(), *d)));
        if let Some((path, (seq, ts))) = hit
            && e.timestamp_ns.saturating_sub(ts) <= self.window_ns
        {
            out.push(Finding {
                rule: &RULE,
                process: p.clone(),
                evidence: vec![seq, e.seq],
                details: vec![("path", path)],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_testkit::events::{exec, file, process};

    use crate::detect::replay::raises;

    const ID: &str = "SNS-0003";

    #[test]
    fn a_file_dropped_in_tmp_and_run_soon_after() {
        let curl = process(3200, "/usr/bin/curl", &["curl", "-o", "/tmp/x"]);
        let payload = process(3201, "/tmp/x", &["/tmp/x"]);
        assert!(raises(
            ID,
            vec![file("file_write", &curl, "/tmp/x", ""), exec(&payload)]
        ));
        // Renamed into place from elsewhere, or made executable, counts alike.
        let mv = process(3202, "/usr/bin/mv", &[]);
        let staged = process(3203, "/dev/shm/.k", &[]);
        assert!(raises(
            ID,
            vec![
                file("file_rename", &mv, "/root/k", "/dev/shm/.k"),
                exec(&staged)
            ]
        ));
    }

    #[test]
    fn runs_outside_the_window_or_from_private_directories_are_quiet() {
        let curl = process(3210, "/usr/bin/curl", &[]);
        let mut write = file("file_write", &curl, "/tmp/x", "");
        write.timestamp_ns = 1_000_000_000;
        let mut late = exec(&process(3211, "/tmp/x", &[]));
        late.timestamp_ns = write.timestamp_ns + 601 * 1_000_000_000;
        assert!(!raises(ID, vec![write, late]));

        let cc = process(3212, "/usr/bin/cc", &[]);
        let built = process(3213, "/home/user/src/a.out", &[]);
        assert!(!raises(
            ID,
            vec![
                file("file_write", &cc, "/home/user/src/a.out", ""),
                exec(&built)
            ]
        ));
        // A file in /tmp that was never written since the sensor started.
        assert!(!raises(ID, vec![exec(&process(3214, "/tmp/tool", &[]))]));
    }
}
