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
