//! Where the API listens locally, and who may reach it.
//!
//! The unix socket is root-only by its mode and by the directory it lives in. It is bound
//! inside a private 0700 directory and renamed into place, so there is no moment at which
//! others could connect, and no process-wide `umask` is touched (other threads create
//! files at the same time). Nothing that is not a socket is ever replaced. It is bound
//! before the daemon says it is ready, so a problem fails start-up, not a later request.

use std::{
    fs::{self, DirBuilder},
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::Path,
};

use anyhow::{Context, Result, bail};

use crate::safe_fs::owned_and_not_shared;

/// Binds the API's unix socket at `path`.
pub async fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("socket path {} names no file", path.display()))?;
    ensure_private_parent(dir)?;
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Ok(_) if tokio::net::UnixStream::connect(path).await.is_ok() => {
            bail!("another sensor daemon is serving on {}", path.display())
        }
        _ => {}
    }
    let staging = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    let bound = (|| -> Result<tokio::net::UnixListener> {
        let inner = staging.join("sock");
        let listener = tokio::net::UnixListener::bind(&inner)
            .with_context(|| format!("binding {}", inner.display()))?;
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o600))?;
        // A stale socket (checked above: nobody answers) is replaced in one step.
        fs::rename(&inner, path)
            .with_context(|| format!("moving the socket to {}", path.display()))?;
        Ok(listener)
    })();
    let _ = fs::remove_dir_all(&staging);
    bound
}

/// The socket's directory: created 0700 if absent; if present, it must be root's and
/// writable by nobody else, or another user could swap the socket for their own.
fn ensure_private_parent(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(up) = dir.parent() {
                fs::create_dir_all(up).with_context(|| format!("creating {}", up.display()))?;
            }
            DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))
        }
        Err(e) => Err(e).with_context(|| format!("the socket directory {}", dir.display())),
        Ok(m) => owned_and_not_shared(dir, &m, "the socket's directory"),
    }
}
