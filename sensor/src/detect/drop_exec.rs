//! SNS-0003 drop and execute: a file written, renamed into place or made executable below a
//! world-writable directory (/tmp, /var/tmp, /dev/shm, or any other whose mode says so)
//! and executed within a window (`drop_exec_window_secs`, default 600 s).
//!
//! Two sources, so neither a lost file event nor a script escapes: the kernel marks the
//! exec of an image whose inode changed within the window below a world-writable
//! directory (`ExecInfo.dropped`, decided at exec by `sensor-ebpf/src/prevent.rs`), and
//! the drops seen as file events are remembered by path, which is what catches a script
//! (its exec record's image is the interpreter). [`dropped_file`] is the kernel's rule for
//! a file userspace holds open: real-time protection applies it to its exec permission
//! events.

use std::{
    collections::HashMap,
    fs::Metadata,
    num::NonZeroUsize,
    os::unix::fs::MetadataExt,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use lru::LruCache;
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

pub(crate) const WORLD_WRITABLE: [&str; 3] = ["/tmp/", "/var/tmp/", "/dev/shm/"];
/// Bound on remembered drops; the oldest are forgotten first.
const MAX_DROPS: usize = 8192;

pub struct DropExec {
    window_ns: u64,
    /// path -> (seq of the write, kernel time, inode), at most [`MAX_DROPS`].
    drops: LruCache<String, (u64, u64, u64)>,
    /// Directories outside the well-known ones found world-writable or not, forgotten
    /// every [`DIRS_TTL`] so a chmod of a directory is seen within it.
    dirs: HashMap<String, bool>,
    dirs_since: Instant,
}

/// How long a directory's world-writable bit is trusted without looking again.
const DIRS_TTL: Duration = Duration::from_secs(10);
/// Bound on directories remembered.
const MAX_DIRS: usize = 4096;

impl DropExec {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_ns: Duration::from_secs(window_secs).as_nanos() as u64,
            drops: LruCache::new(NonZeroUsize::new(MAX_DROPS).unwrap()),
            dirs: HashMap::new(),
            dirs_since: Instant::now(),
        }
    }

    fn remember(&mut self, path: &str, seq: u64, ts: u64, inode: u64) {
        // Least recently written goes first, in constant time: a storm of drops must not
        // make every further one cost a walk over all of them.
        self.drops.put(path.to_string(), (seq, ts, inode));
    }

    /// The remembered drop `e`'s image came from: by the path executed, else (for an
    /// image the kernel says was dropped, run through a relative path) by its inode.
    fn drop_of(&self, e: &proto::Event, exe: &str) -> Option<(String, u64, u64)> {
        let x = e.exec.as_ref()?;
        let by_path = [exe, x.filename.as_str()].into_iter().find_map(|path| {
            let (seq, ts, _) = self.drops.peek(path)?;
            Some((path.to_string(), *seq, *ts))
        });
        by_path.or_else(|| {
            if !x.dropped || x.inode == 0 {
                return None;
            }
            self.drops
                .iter()
                .filter(|(_, (_, _, ino))| *ino == x.inode)
                .max_by_key(|(_, (_, ts, _))| *ts)
                .map(|(path, (seq, ts, _))| (path.clone(), *seq, *ts))
        })
    }
}

/// The kernel's drop rule (`sensor-ebpf/src/prevent.rs`) for a file userspace holds open:
/// `meta` (the open file's) changed within `window` of now, or later (a clock stepped
/// back), and a directory above `path` is writable by everyone. The change time is the
/// kernel's: creating, writing, chmod, rename and link set it, and no unprivileged caller
/// can set it back.
pub fn dropped_file(meta: &Metadata, path: &Path, window: Duration) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if !meta.is_file() || meta.ctime() < now.saturating_sub(window.as_secs() as i64) {
        return false;
    }
    path.ancestors()
        .skip(1)
        .any(|dir| std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o002 != 0))
}

/// SNS-0003 for an exec refused before it ran (real-time protection's exec permission
/// check): `process` is the caller, which keeps its old image; `by` names who refused.
pub fn denied_detection(path: &str, process: Option<proto::Process>, by: &str) -> proto::Event {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    proto::Event {
        kind: "detection".into(),
        time_unix_ns: now,
        process,
        detection: Some(proto::Detection {
            id: RULE.id.into(),
            title: RULE.title.into(),
            description: RULE.description.into(),
            severity: RULE.severity.into(),
            mitre: RULE.mitre.iter().map(|s| s.to_string()).collect(),
            evidence: Vec::new(),
            action: "denied".into(),
            source: "builtin".into(),
            details: [
                ("path".to_string(), path.to_string()),
                ("denied_by".to_string(), by.to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The file `e` would drop: written, created, made executable, renamed or linked there.
fn written_path(kind: EventKind, e: &proto::Event) -> Option<&str> {
    let f = e.file.as_ref()?;
    match kind {
        EventKind::FileCreate | EventKind::FileWrite => Some(&f.path),
        EventKind::FileChmod if f.mode & 0o111 != 0 => Some(&f.path),
        EventKind::FileRename | EventKind::FileLink => Some(&f.new_path),
        _ => None,
    }
}

impl DropExec {
    /// The file `e` drops below a world-writable directory: the well-known ones by name,
    /// any other by its mode (as the kernel decides at exec).
    fn dropped<'e>(&mut self, kind: EventKind, e: &'e proto::Event) -> Option<&'e str> {
        let path = written_path(kind, e)?;
        if WORLD_WRITABLE.iter().any(|d| path.starts_with(d)) {
            return Some(path);
        }
        if !path.starts_with('/') {
            return None;
        }
        if self.dirs_since.elapsed() > DIRS_TTL || self.dirs.len() > MAX_DIRS {
            self.dirs.clear();
            self.dirs_since = Instant::now();
        }
        Path::new(path)
            .ancestors()
            .skip(1)
            .any(|dir| self.world_writable(dir))
            .then_some(path)
    }

    fn world_writable(&mut self, dir: &Path) -> bool {
        let key = dir.to_string_lossy();
        if let Some(&w) = self.dirs.get(key.as_ref()) {
            return w;
        }
        let w = std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o002 != 0);
        self.dirs.insert(key.into_owned(), w);
        w
    }
}

impl Detector for DropExec {
    fn rules(&self) -> &'static [&'static Rule] {
        &[&RULE]
    }

    fn inspect(&mut self, kind: Option<EventKind>, e: &proto::Event, out: &mut Vec<Finding>) {
        if let Some(path) = kind.and_then(|k| self.dropped(k, e)) {
            let inode = e.file.as_ref().map_or(0, |f| f.inode);
            self.remember(path, e.seq, e.timestamp_ns, inode);
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
        let seen = self
            .drop_of(e, exe)
            .filter(|(_, _, ts)| e.timestamp_ns.saturating_sub(*ts) <= self.window_ns);
        let (path, evidence) = match seen {
            Some((path, seq, _)) => (path, vec![seq, e.seq]),
            // The kernel saw the drop even if its file event never arrived.
            None if x.dropped => {
                let path = if exe.starts_with('/') {
                    exe
                } else {
                    x.filename.as_str()
                };
                (path.to_string(), vec![e.seq])
            }
            None => return,
        };
        out.push(Finding {
            rule: &RULE,
            process: p.clone(),
            evidence,
            details: vec![("path", path)],
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use sensor_testkit::events::{exec, file, process};

    use super::*;
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

    #[test]
    fn the_kernel_flag_alone_raises_even_without_the_file_event() {
        let payload = process(3220, "/tmp/x", &["/tmp/x"]);
        let mut run = exec(&payload);
        run.exec.as_mut().unwrap().dropped = true;
        assert!(raises(ID, vec![run]));
        // Run as ./x: the drop's file event names the absolute path, found by inode.
        let curl = process(3221, "/usr/bin/curl", &[]);
        let mut write = file("file_write", &curl, "/tmp/d/x", "");
        write.file.as_mut().unwrap().inode = 77;
        let mut run = exec(&process(3222, "./x", &["./x"]));
        let x = run.exec.as_mut().unwrap();
        (x.dropped, x.inode) = (true, 77);
        let mut engine = crate::detect::DetectionEngine::new(Default::default());
        engine.observe(&write);
        let found = engine.observe(&run);
        let d = found[0].detection.as_ref().unwrap();
        assert_eq!(
            (d.id.as_str(), d.details["path"].as_str()),
            (ID, "/tmp/d/x")
        );
    }

    #[test]
    fn the_userspace_rule_matches_the_kernels() {
        let base = std::env::temp_dir().join(format!("sensor-dropped-{}", std::process::id()));
        let drop = base.join("drop");
        std::fs::create_dir_all(drop.join("sub")).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let x = drop.join("sub/x");
        std::fs::write(&x, b"#!/bin/sh\n").unwrap();
        let meta = std::fs::metadata(&x).unwrap();
        assert!(dropped_file(&meta, &x, Duration::from_secs(600)));
        // Long installed: its change time is older than any window.
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let old = std::fs::metadata(&sh).unwrap();
        assert!(!dropped_file(&old, &sh, Duration::from_secs(1)));
        // A directory is not an image.
        let dir = std::fs::metadata(&drop).unwrap();
        assert!(!dropped_file(&dir, &drop, Duration::from_secs(600)));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
