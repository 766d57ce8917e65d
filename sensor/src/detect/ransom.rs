//! SNS-0028 ransomware-like renames: one actor renaming many files to one new extension
//! within a minute (`report.pdf` -> `report.pdf.locked`, `a.docx` -> `a.enc`). Encrypting
//! malware marks what it has done this way; tools that rename many files keep the names
//! they had, drop a temporary suffix (`.tmp`, `.dpkg-new`, `.part`) or number them
//! (log rotation), none of which counts.
//!
//! The actor is the renaming process, or for `mv` (one file per process in a shell
//! loop) its parent. One detection per actor and burst.

use std::collections::{HashMap, HashSet};

use sensor_common::EventKind;

use super::{Detector, Finding, Response, Rule, base_name, bursts::Bursts, is_package_manager};
use crate::proto;

pub const RULE: Rule = Rule {
    id: "SNS-0028",
    title: "Ransomware-like renames",
    description: "One process renamed many files to the same new extension within a minute.",
    severity: "high",
    mitre: &["T1486"],
    response: Response::Report,
};

/// Distinct files renamed to one extension that make a burst.
const THRESHOLD: usize = 20;
const WINDOW_NS: u64 = 60_000_000_000;
/// Bound on actors followed at once (entries past the window go first).
const MAX_ACTORS: usize = 4096;
const MAX_EVIDENCE: usize = 16;

/// The extension `to` gives a file that was `from`, if it is a new one that counts: not
/// none, not the one it had, not a number (rotation), not the name of a temporary file.
pub fn new_extension<'a>(from: &str, to: &'a str) -> Option<&'a str> {
    let name = base_name(to);
    let (stem, ext) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty())?;
    let source = base_name(from);
    let old = source.rsplit_once('.').map(|(_, e)| e);
    let temporary = |e: &str| {
        e.starts_with("dpkg-")
            || e.ends_with('~')
            || TEMPORARY.contains(&e.to_ascii_lowercase().as_str())
    };
    if ext.is_empty()
        || old == Some(ext)
        || ext.bytes().all(|b| b.is_ascii_digit())
        || temporary(ext)
        || stem.starts_with('.')
        // A temporary file made final (rsync's `.name.XXXXXX`, a finished download).
        || source.starts_with('.')
        || old.is_some_and(temporary)
    {
        return None;
    }
    Some(ext)
}

/// Extensions of temporary, partial and backup files.
const TEMPORARY: &[&str] = &[
    "tmp",
    "temp",
    "part",
    "partial",
    "crdownload",
    "download",
    "bak",
    "old",
    "new",
    "orig",
    "swp",
    "lock",
];

#[derive(Default)]
struct Burst {
    /// Files renamed, by the extension they were given.
    files: HashMap<String, HashSet<String>>,
    evidence: Vec<u64>,
    reported: bool,
}

pub struct Ransom {
    bursts: Bursts<Burst>,
}

impl Default for Ransom {
    fn default() -> Self {
        Self {
            bursts: Bursts::new(WINDOW_NS, MAX_ACTORS),
        }
    }
}

impl Detector for Ransom {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        let (Some(EventKind::FileRename), Some(p), Some(f)) = (kind, &e.process, &e.file) else {
            return;
        };
        if is_package_manager(&p.exe) {
            return;
        }
        let Some(ext) = new_extension(&f.path, &f.new_path) else {
            return;
        };
        let actor = match p.ancestors.first() {
            Some(parent) if base_name(&p.exe) == "mv" => (parent.pid, parent.start_time),
            _ => (p.pid, p.start_time),
        };
        let now = e.timestamp_ns;
        let burst = self.bursts.at(actor, now);
        if burst.reported {
            return;
        }
        let files = burst.files.entry(ext.to_string()).or_default();
        // Bounded: past the threshold the burst is reported and no longer grows.
        files.insert(f.path.clone());
        let count = files.len();
        if burst.evidence.len() < MAX_EVIDENCE {
            burst.evidence.push(e.seq);
        }
        if count < THRESHOLD {
            return;
        }
        burst.reported = true;
        burst.files.clear();
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence: std::mem::take(&mut burst.evidence),
            details: vec![
                ("extension", ext.to_string()),
                ("files", count.to_string()),
                ("last", f.new_path.clone()),
            ],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::new_extension;

    #[test]
    fn new_extensions_and_the_renames_that_are_not() {
        assert_eq!(new_extension("/d/a.pdf", "/d/a.pdf.locked"), Some("locked"));
        assert_eq!(new_extension("/d/a.docx", "/d/a.enc"), Some("enc"));
        assert_eq!(new_extension("/d/a", "/d/a.crypt"), Some("crypt"));
        // Rotation, a temporary name made final, a backup, a dot file, the same name.
        assert_eq!(new_extension("/l/app.log", "/l/app.log.1"), None);
        assert_eq!(new_extension("/d/a.tmp", "/d/a"), None);
        assert_eq!(new_extension("/d/.a.txt.XyZ12", "/d/a.txt"), None);
        assert_eq!(new_extension("/dl/a.pdf.crdownload", "/dl/a.pdf"), None);
        assert_eq!(new_extension("/d/a.txt", "/d/a.txt~"), None);
        assert_eq!(new_extension("/e/x.conf", "/e/x.conf.dpkg-old"), None);
        assert_eq!(new_extension("/d/a.txt", "/d/a.txt.bak"), None);
        assert_eq!(new_extension("/d/a.txt", "/d/b.txt"), None);
        assert_eq!(new_extension("/d/a", "/d/.hidden"), None);
    }
}
