//! Exclusions: what real-time protection and scans leave alone, and threats that are
//! reported but never blocked.
//!
//! Kept in `STATE/exclusions.json`, written whole to a temporary file and renamed over the
//! old one, so a crash never leaves half a list. A file that does not parse at start-up is
//! reported and left untouched on disk (nothing is silently lost); the daemon then runs
//! with no exclusions until the next change replaces it.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::{Context, Result, bail};

use crate::proto;

pub struct ExclusionStore {
    path: PathBuf,
    current: RwLock<Arc<proto::Exclusions>>,
    /// Set when the file on disk could not be read at start-up.
    pub load_error: Option<String>,
}

impl ExclusionStore {
    pub fn open(state_dir: &Path) -> Self {
        let path = state_dir.join("exclusions.json");
        let (current, load_error) = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Default::default(), None),
            Err(e) => (Default::default(), Some(format!("{}: {e}", path.display()))),
            Ok(text) => match serde_json::from_str::<proto::Exclusions>(&text) {
                Ok(x) => (x, None),
                Err(e) => (Default::default(), Some(format!("{}: {e}", path.display()))),
            },
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
        let tmp = self.path.with_extension("json.new");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&next)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)?;
        *guard = Arc::new(next.clone());
        Ok(next)
    }
}

fn normalize(kind: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        bail!("empty {kind} exclusion");
    }
    Ok(match kind {
        "file" | "folder" => {
            if !v.starts_with('/') {
                bail!("{kind} exclusions are absolute paths, got {v:?}");
            }
            let t = v.trim_end_matches('/');
            if t.is_empty() { "/" } else { t }.to_string()
        }
        "extension" => {
            let e = v.trim_start_matches('.');
            if e.is_empty() || e.contains('/') {
                bail!("bad extension {v:?}");
            }
            e.to_ascii_lowercase()
        }
        "process" | "threat" => v.to_string(),
        _ => bail!("unknown exclusion kind {kind:?} (file, folder, extension, process, threat)"),
    })
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
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => {
            x.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext))
        }
        _ => false,
    }
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
}
