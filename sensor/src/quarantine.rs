//! Quarantine and threat history, both kept under the state directory so they survive a
//! restart.
//!
//! The quarantine (`STATE/quarantine`, 0700) holds each file as `ID.bin`, its bytes XORed
//! with a fixed key stream and the file 0400 root-owned, and `ID.json` with what restore
//! needs: path, owner, group, mode, times, size and SHA-256. The encoding is not secrecy:
//! it keeps the payload from running or matching other scanners where it lies. The
//! original is removed only after the copy is on disk, and only if the path still names the
//! inode that was scanned.
//!
//! The threat history (`STATE/threats.jsonl`) is one JSON object per line, appended.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context, Result, bail};

use crate::proto;

const KEY: &[u8] = b"sensor-quarantine";

fn encode(data: &[u8]) -> Vec<u8> {
    data.iter()
        .zip(KEY.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect()
}

pub struct Quarantine {
    dir: PathBuf,
    /// Serializes writers; readers of the directory see whole entries because the
    /// metadata file is renamed into place last.
    lock: Mutex<()>,
}

impl Quarantine {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("quarantine");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// Stores `data` (the content that was scanned, read through `file`) and removes
    /// `path` if it is still that file.
    pub fn add(
        &self,
        path: &Path,
        file: &File,
        data: &[u8],
        sha256: &str,
        threat: &str,
    ) -> Result<proto::QuarantineEntry> {
        let _g = self.lock.lock().unwrap();
        let meta = file.metadata()?;
        let id = new_id();
        let entry = proto::QuarantineEntry {
            id: id.clone(),
            original_path: path.to_string_lossy().into_owned(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
            atime_ns: meta.atime() * 1_000_000_000 + meta.atime_nsec(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            size: data.len() as u64,
            sha256: sha256.into(),
            threat: threat.into(),
            quarantined_unix_ns: now_ns(),
        };
        let bin = self.dir.join(format!("{id}.bin"));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&bin)?;
        out.write_all(&encode(data))?;
        out.sync_all()?;
        let tmp = self.dir.join(format!("{id}.json.new"));
        fs::write(&tmp, serde_json::to_vec_pretty(&entry)?)?;
        fs::rename(&tmp, self.dir.join(format!("{id}.json")))?;
        File::open(&self.dir)?.sync_all()?;
        // Only the scanned inode goes: the path may have been replaced meanwhile.
        match fs::symlink_metadata(path) {
            Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => {
                fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?
            }
            _ => log::warn!(
                "{} changed before quarantine; the copy is kept, the path left",
                path.display()
            ),
        }
        Ok(entry)
    }

    pub fn list(&self) -> Vec<proto::QuarantineEntry> {
        let mut v: Vec<proto::QuarantineEntry> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let text = fs::read(e.path()).ok()?;
                serde_json::from_slice(&text).ok()
            })
            .collect();
        v.sort_by_key(|e| e.quarantined_unix_ns);
        v
    }

    fn entry(&self, id: &str) -> Result<proto::QuarantineEntry> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("bad quarantine id {id:?}");
        }
        let text = fs::read(self.dir.join(format!("{id}.json")))
            .with_context(|| format!("no quarantine entry {id}"))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// Writes the file back with its bytes, owner, group, mode and times, then forgets it.
    pub fn restore(&self, id: &str, dest: Option<&Path>, overwrite: bool) -> Result<PathBuf> {
        let _g = self.lock.lock().unwrap();
        let e = self.entry(id)?;
        let dest = dest.map_or_else(|| PathBuf::from(&e.original_path), Path::to_path_buf);
        let data = encode(&fs::read(self.dir.join(format!("{id}.bin")))?);
        if crate::scan::sha256_hex(&data) != e.sha256 {
            bail!("quarantine entry {id} is damaged (SHA-256 differs)");
        }
        if !overwrite && fs::symlink_metadata(&dest).is_ok() {
            bail!("{} exists; pass --overwrite to replace it", dest.display());
        }
        // Written beside the destination and renamed over it, so an overwrite is all or
        // nothing and the mode never exposes the content to others meanwhile.
        let tmp = dest.with_file_name(format!(
            ".{}.restore-{id}",
            dest.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let applied = (|| -> Result<()> {
            f.write_all(&data)?;
            // SAFETY: fd is open for the duration of the calls.
            unsafe {
                if libc::fchown(fd, e.uid, e.gid) != 0 {
                    return Err(std::io::Error::last_os_error()).context("fchown");
                }
                if libc::fchmod(fd, e.mode) != 0 {
                    return Err(std::io::Error::last_os_error()).context("fchmod");
                }
                let ts = |ns: i64| libc::timespec {
                    tv_sec: ns.div_euclid(1_000_000_000),
                    tv_nsec: ns.rem_euclid(1_000_000_000),
                };
                let times = [ts(e.atime_ns), ts(e.mtime_ns)];
                if libc::futimens(fd, times.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error()).context("futimens");
                }
            }
            f.sync_all()?;
            Ok(())
        })();
        if let Err(err) = applied.and_then(|()| Ok(fs::rename(&tmp, &dest)?)) {
            let _ = fs::remove_file(&tmp);
            return Err(err.context(format!("restoring to {}", dest.display())));
        }
        self.forget(id);
        Ok(dest)
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let _g = self.lock.lock().unwrap();
        self.entry(id)?;
        self.forget(id);
        Ok(())
    }

    fn forget(&self, id: &str) {
        let _ = fs::remove_file(self.dir.join(format!("{id}.json")));
        let _ = fs::remove_file(self.dir.join(format!("{id}.bin")));
    }
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        b = (now_ns() ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Every threat found, appended to `STATE/threats.jsonl`.
pub struct ThreatLog {
    path: PathBuf,
    threats: Mutex<Vec<proto::Threat>>,
}

/// The history in memory is bounded; the file keeps everything.
const HISTORY: usize = 10_000;

impl ThreatLog {
    pub fn open(state_dir: &Path) -> Self {
        let path = state_dir.join("threats.jsonl");
        let mut threats: Vec<proto::Threat> = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let excess = threats.len().saturating_sub(HISTORY);
        threats.drain(..excess);
        Self {
            path,
            threats: Mutex::new(threats),
        }
    }

    pub fn record(&self, t: &proto::Threat) {
        let mut v = self.threats.lock().unwrap();
        let line = serde_json::to_string(t).unwrap_or_default();
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            log::error!("threat history {}: {e}", self.path.display());
        }
        if v.len() == HISTORY {
            v.remove(0);
        }
        v.push(t.clone());
    }

    pub fn list(&self) -> Vec<proto::Threat> {
        self.threats.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("sensor-q-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim.sh");
        let data = b"#!/bin/sh\necho payload\n".to_vec();
        fs::write(&victim, &data).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o4751)).unwrap();
        let file = File::open(&victim).unwrap();
        let before = file.metadata().unwrap();
        let q = Quarantine::open(&dir.join("state")).unwrap();
        let e = q
            .add(&victim, &file, &data, &crate::scan::sha256_hex(&data), "T")
            .unwrap();
        assert!(!victim.exists());
        let stored = fs::read(dir.join(format!("state/quarantine/{}.bin", e.id))).unwrap();
        assert_ne!(stored, data);
        assert_eq!(q.list().len(), 1);

        fs::write(&victim, b"new").unwrap();
        assert!(q.restore(&e.id, None, false).is_err());
        let back = q.restore(&e.id, None, true).unwrap();
        assert_eq!(fs::read(&back).unwrap(), data);
        let after = fs::metadata(&back).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o4751);
        assert_eq!(after.mtime_nsec(), before.mtime_nsec());
        assert_eq!(after.mtime(), before.mtime());
        assert!(q.list().is_empty());
        assert!(q.remove(&e.id).is_err());
        assert!(q.restore("../x", None, false).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
