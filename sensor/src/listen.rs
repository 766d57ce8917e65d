//! Where the API listens, and who may reach it.
//!
//! The unix socket is the local door: root-only by its mode and by the directory it lives
//! in. It is bound inside a private 0700 directory and renamed into place, so there is no
//! moment at which others could connect, and no process-wide `umask` is touched (other
//! threads create files at the same time). Nothing that is not a socket is ever replaced.
//!
//! The TCP listener is the remote door: it serves only mutual TLS, so a local user who can
//! reach a loopback port is no closer to the API than anyone on the network. Both are bound
//! before the daemon says it is ready, so a busy port fails start-up, not a later request.

use std::{
    fs::{self, DirBuilder},
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use sensor_proto::client::writable_by_others;
use tonic::transport::{Certificate, Identity, ServerTlsConfig, server::TcpIncoming};

/// Certificates and keys are small; a bound keeps a FIFO or a huge file from stalling
/// start-up.
const PEM_MAX: u64 = 1 << 20;

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

/// Refuses `path` (described as `what`) unless it belongs to the daemon's user and no
/// group or other user can write it.
pub fn owned_and_not_shared(path: &Path, m: &fs::Metadata, what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        bail!(
            "{what} {} belongs to uid {}, not to the daemon's user (uid {me})",
            path.display(),
            m.uid()
        );
    }
    if writable_by_others(m) {
        bail!(
            "{what} {} is writable by others (mode {:04o}); refusing to use it",
            path.display(),
            m.mode() & 0o7777
        );
    }
    Ok(())
}

/// The TCP listener's mutual TLS: the server's identity and the CA its clients must chain to.
pub struct TcpApi {
    pub addr: SocketAddr,
    pub tls: ServerTlsConfig,
}

impl TcpApi {
    /// Reads and checks the TLS material the flags name. `None` when no TCP address is asked.
    pub fn from_flags(
        addr: Option<SocketAddr>,
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<Self>> {
        let Some(addr) = addr else { return Ok(None) };
        let (Some(cert), Some(key), Some(client_ca)) = (cert, key, client_ca) else {
            let missing: Vec<&str> = [
                (cert.is_none(), "--grpc-tls-cert"),
                (key.is_none(), "--grpc-tls-key"),
                (client_ca.is_none(), "--grpc-tls-client-ca"),
            ]
            .into_iter()
            .filter_map(|(m, f)| m.then_some(f))
            .collect();
            bail!(
                "--grpc-listen {addr} serves the API over mutual TLS only: {} missing",
                missing.join(", ")
            );
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                pem(cert, "certificate", false)?,
                pem(key, "private key", true)?,
            ))
            .client_ca_root(Certificate::from_pem(pem(client_ca, "client CA", false)?));
        // Parsed here, before the daemon is ready, rather than when the server starts.
        tonic::transport::Server::builder()
            .tls_config(tls.clone())
            .map_err(|e| anyhow::anyhow!("TLS set-up of --grpc-listen {addr}: {e}"))?;
        Ok(Some(Self { addr, tls }))
    }

    /// Binds now, so a busy or forbidden address fails start-up with the address named.
    pub fn bind(&self) -> Result<TcpIncoming> {
        TcpIncoming::bind(self.addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", self.addr))
    }
}

/// A PEM file of the TLS set-up. None may be writable by others (a swapped CA would let
/// anyone in), and the private key may not be readable by them either.
fn pem(path: &Path, what: &str, secret: bool) -> Result<Vec<u8>> {
    let file = crate::safe_fs::open_regular(path).with_context(|| format!("the TLS {what}"))?;
    let m = file.metadata()?;
    owned_and_not_shared(path, &m, &format!("the TLS {what}"))?;
    if secret && m.mode() & 0o077 != 0 {
        bail!(
            "the TLS {what} {} is readable by others (mode {:04o}); make it 0600",
            path.display(),
            m.mode() & 0o7777
        );
    }
    drop(file);
    let data =
        crate::safe_fs::read_bounded(path, PEM_MAX).with_context(|| format!("the TLS {what}"))?;
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!("the TLS {what} {} is not PEM", path.display());
    }
    Ok(data)
}

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
