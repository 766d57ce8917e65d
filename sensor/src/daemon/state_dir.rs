//! The daemon's state directory (definitions, quarantine, threat history, exclusions).

use std::{
    fs::{self, DirBuilder},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::safe_fs::owned_and_not_shared;

/// The state directory: created 0700 if absent, never re-moded if present (an operator's
/// choice is refused with the reason, not silently changed), and locked so that two
/// daemons never share quarantine, history or definitions.
pub struct StateDir {
    pub path: PathBuf,
    _lock: fs::File,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<Self> {
        match fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(up) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(up).with_context(|| format!("creating {}", up.display()))?;
                }
                DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .with_context(|| format!("creating the state directory {}", path.display()))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("the state directory {}", path.display()));
            }
            Ok(m) if !m.is_dir() => {
                bail!("the state directory {} is not a directory", path.display())
            }
            Ok(m) => owned_and_not_shared(path, &m, "the state directory")?,
        }
        let lock = lock(&path.join("daemon.lock"))?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

fn lock(path: &Path) -> Result<fs::File> {
    use std::{io::Write, os::fd::AsRawFd, os::unix::fs::OpenOptionsExt};
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid fd for the duration of the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = fs::read_to_string(path).unwrap_or_default();
        bail!(
            "another sensor daemon (pid {}) uses the state directory {}",
            holder.trim(),
            path.parent().unwrap_or(path).display()
        );
    }
    f.set_len(0)?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}
