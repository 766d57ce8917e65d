//! Exclusions: what real-time protection and scans leave alone, and threats that are
//! reported but never blocked.
//!
//! Kept in `STATE/exclusions.json`, written whole to a temporary file, synced and renamed
//! over the old one, so a crash never leaves half a list. A file that does not load at
//! start-up is copied to `exclusions.json.corrupt-TIMESTAMP` and reported
//! ([`ExclusionStore::load_error`]); the daemon then runs with no exclusions until the next
//! change replaces it, and the copy keeps what the administrator had.
//!
//! Values are checked once, here: no control characters (they would forge lines in text
//! output), paths absolute and resolved lexically, extensions possibly with dots
//! (`tar.gz`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::{Result, bail};

use crate::proto;

pub struct ExclusionStore {
    path: PathBuf,
    current: RwLock<Arc<proto::Exclusions>>,
    /// Set when the file on disk could not be read at start-up.
    pub load_error: Option<String>,
}

/// Largest exclusions file read at start-up; a real list is a few KiB.
const MAX_FILE_BYTES: u64 = 16 << 20;

impl ExclusionStore {
    pub fn open(state_dir: &Path) -> Self {
        let path = state_dir.join("exclusions.json");
        let (current, load_error) = match load(&path) {
            Ok(x) => (x, None),
            Err(e) => (Default::default(), Some(keep_aside(&path, e))),
        };
        if let Some(e) = &load_error {
            log::error!("exclusions not loaded, running without: {e}");
        }
        Self {
            path,
            current: RwLock::new(Arc::new(current)),
            load_error,
        }
    }

    pub fn get(&self) -> Arc<proto::Exclusions> {
        self.current.read().unwrap().clone()
    }

    /// Adds or removes one entry, persists the result and returns it.
    pub fn change(&self, kind: &str, value: &str, remove: bool) -> Result<proto::Exclusions> {
        let value = normalize(kind, value)?;
        let mut guard = self.current.write().unwrap();
        let mut next = (**guard).clone();
        let list = match kind {
            "file" => &mut next.files,
            "folder" => &mut next.folders,
            "extension" => &mut next.extensions,
            "process" => &mut next.processes,
            "threat" => &mut next.allowed_threats,
            _ => unreachable!("normalize checked the kind"),
        };
        if remove {
            let before = list.len();
            list.retain(|v| *v != value);
            if list.len() == before {
                bail!("no {kind} exclusion {value:?}");
            }
        } else if !list.contains(&value) {
            list.push(value);
            list.sort();
        }
        crate::quarantine::replace_durably(&self.path, &serde_json::to_vec_pretty(&next)?)?;
        *guard = Arc::new(next.clone());
        Ok(next)
    }
}

/// The list on disk; none yet is an empty list.
fn load(path: &Path) -> Result<proto::Exclusions> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        _ => {}
    }
    let text = crate::safe_fs::read_text_bounded(path, MAX_FILE_BYTES)?;
    // Where, not what: serde's own message can quote the value it did not expect.
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}, column {}: expected an exclusions list (JSON object of string lists)",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// A list that cannot be loaded is copied aside before the next change overwrites it, so
/// the administrator's entries are never lost; returns the error to report.
fn keep_aside(path: &Path, error: anyhow::Error) -> String {
    let copy = path.with_extension(format!(
        "json.corrupt-{}",
        crate::quarantine::now_ns() / 1_000_000_000
    ));
    let kept = crate::safe_fs::read_bounded(path, MAX_FILE_BYTES)
        .and_then(|data| crate::quarantine::replace_durably(&copy, &data));
    match kept {
        Ok(()) => format!(
            "{error:#}; running without exclusions, the file is kept as {}",
            copy.display()
        ),
        Err(e) => format!("{error:#}; running without exclusions, and no copy kept: {e:#}"),
    }
}

fn normalize(kind: &str, value: &str) -> Result<String> {
    if value.chars().any(char::is_control) {
        bail!("{kind} exclusions may not hold control characters (newline, tab, escape, ...)");
    }
    if value.trim().is_empty() {
        bail!("empty {kind} exclusion");
    }
    Ok(match kind {
        "file" | "folder" => normalize_path(kind, value)?,
        "extension" => {
            let e = value.trim().trim_start_matches('.');
            if e.is_empty() || e.contains('/') || e.ends_with('.') || e.contains("..") {
                bail!("bad extension: expected letters such as iso or tar.gz");
            }
            e.to_ascii_lowercase()
        }
        "process" | "threat" => value.trim().to_string(),
        _ => bail!("unknown exclusion kind {kind:?} (file, folder, extension, process, threat)"),
    })
}

/// An absolute path with `.`, `..` and repeated slashes resolved lexically, so one
/// exclusion has one spelling. Symlinks are not resolved: exclusions match the path real-time
/// protection sees. A component of blanks is refused rather than trimmed away, since
/// trimming would turn `/srv/ ` into `/srv`.
fn normalize_path(kind: &str, value: &str) -> Result<String> {
    if !value.starts_with('/') {
        bail!("{kind} exclusions are absolute paths (starting with /)");
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p if p.trim().is_empty() => {
                bail!("{kind} exclusion has a path component made only of blanks")
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

pub fn excludes_path(x: &proto::Exclusions, path: &str) -> bool {
    if x.files.iter().any(|f| f == path) {
        return true;
    }
    if x.folders.iter().any(|d| {
        d == "/"
            || path
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }) {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    x.extensions.iter().any(|e| has_extension(name, e))
}

/// Whether the file name `name` ends in `.EXT` (any case) after a non-empty stem; `ext` may
/// have dots of its own (`tar.gz`).
fn has_extension(name: &str, ext: &str) -> bool {
    let n = name.as_bytes();
    let e = ext.as_bytes();
    n.len() > e.len() + 1
        && n[n.len() - e.len() - 1] == b'.'
        && n[n.len() - e.len()..].eq_ignore_ascii_case(e)
}

/// A process is excluded by its full executable path or by its name (comm, or the
/// executable's file name, since comm is cut at 15 bytes).
pub fn excludes_process(x: &proto::Exclusions, exe: &str, comm: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    x.processes.iter().any(|p| {
        if p.starts_with('/') {
            p == exe
        } else {
            p == comm || p == base
        }
    })
}

pub fn threat_allowed(x: &proto::Exclusions, name: &str) -> bool {
    x.allowed_threats.iter().any(|t| t == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x() -> proto::Exclusions {
        proto::Exclusions {
            files: vec!["/srv/a.bin".into()],
            folders: vec!["/data/cache".into()],
            extensions: vec!["iso".into()],
            processes: vec!["backupd".into(), "/opt/av/scan".into()],
            allowed_threats: vec!["EICAR-Test-File".into()],
        }
    }

    #[test]
    fn path_exclusions() {
        let x = x();
        assert!(excludes_path(&x, "/srv/a.bin"));
        assert!(!excludes_path(&x, "/srv/a.bin2"));
        assert!(excludes_path(&x, "/data/cache/deep/file"));
        assert!(!excludes_path(&x, "/data/cache2/file"));
        assert!(!excludes_path(&x, "/data/cache"));
        assert!(excludes_path(&x, "/home/u/disk.ISO"));
        assert!(!excludes_path(&x, "/home/u/.iso"));
    }

    #[test]
    fn process_exclusions() {
        let x = x();
        assert!(excludes_process(&x, "/usr/sbin/backupd", "backupd"));
        assert!(excludes_process(&x, "/opt/av/scan", "scan"));
        assert!(!excludes_process(&x, "/usr/bin/scan", "scan"));
        assert!(!excludes_process(&x, "/usr/bin/cat", "cat"));
    }

    #[test]
    fn changes_persist_and_bad_values_are_refused() {
        let dir = std::env::temp_dir().join(format!("sensor-excl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = ExclusionStore::open(&dir);
        s.change("folder", "/data/x/", false).unwrap();
        s.change("extension", ".LOG", false).unwrap();
        assert!(s.change("folder", "relative", false).is_err());
        assert!(s.change("colour", "x", false).is_err());
        assert!(s.change("file", "/nope", true).is_err());
        let again = ExclusionStore::open(&dir);
        assert_eq!(again.get().folders, vec!["/data/x".to_string()]);
        assert_eq!(again.get().extensions, vec!["log".to_string()]);
        std::fs::write(dir.join("exclusions.json"), "{garbled").unwrap();
        let broken = ExclusionStore::open(&dir);
        assert!(broken.load_error.is_some());
        assert_eq!(
            std::fs::read_to_string(dir.join("exclusions.json")).unwrap(),
            "{garbled"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_are_normalised_lexically_and_blanks_and_controls_refused() {
        let n = |k: &str, v: &str| normalize(k, v).map_err(|e| e.to_string());
        assert_eq!(n("folder", "/data/./x/../y//z/").unwrap(), "/data/y/z");
        assert_eq!(n("folder", "/..").unwrap(), "/");
        assert_eq!(n("folder", "/").unwrap(), "/");
        assert_eq!(n("file", "/a/b/../../../c").unwrap(), "/c");
        assert!(n("folder", "   ").unwrap_err().contains("empty"));
        assert!(n("folder", "/root/   ").unwrap_err().contains("blanks"));
        assert!(n("folder", "data/x").unwrap_err().contains("absolute"));
        for bad in ["/a\nprocess_exec pid=1", "/a\tb", "/a\x1b[2J"] {
            assert!(n("folder", bad).unwrap_err().contains("control"), "{bad:?}");
        }
        assert!(n("process", "cat\n").is_err());
        assert!(n("threat", "EICAR\r").is_err());
        assert!(n("extension", "gz\n").is_err());
        assert_eq!(n("extension", ".TAR.GZ").unwrap(), "tar.gz");
        assert!(n("extension", "tar..gz").is_err());
        assert!(n("extension", "gz.").is_err());
    }

    #[test]
    fn multi_dot_extensions_match_the_end_of_the_name() {
        let x = proto::Exclusions {
            extensions: vec!["tar.gz".into()],
            ..Default::default()
        };
        assert!(excludes_path(&x, "/srv/backup.tar.gz"));
        assert!(excludes_path(&x, "/srv/backup.TAR.GZ"));
        assert!(!excludes_path(&x, "/srv/backup.gz"));
        assert!(!excludes_path(&x, "/srv/backuptar.gz"));
        assert!(!excludes_path(&x, "/srv/.tar.gz"));
        assert!(!excludes_path(&x, "/srv/x.tar.gz/inner"));
    }

    #[test]
    fn corrupt_file_is_kept_aside_before_a_change_overwrites_it() {
        let dir = std::env::temp_dir().join(format!("sensor-excl-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("exclusions.json"),
            "{\"folders\": \"sensor-secret\"}",
        )
        .unwrap();
        let s = ExclusionStore::open(&dir);
        let err = s.load_error.clone().unwrap();
        assert!(err.contains("exclusions.json.corrupt-"), "{err}");
        assert!(
            err.contains("line 1, column") && !err.contains("sensor-secret"),
            "{err}"
        );
        s.change("folder", "/new", false).unwrap();
        let copies: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(copies.len(), 1);
        assert_eq!(
            std::fs::read_to_string(copies[0].path()).unwrap(),
            "{\"folders\": \"sensor-secret\"}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
