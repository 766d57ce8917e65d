//! The client's side of the daemon's unix socket: a gRPC channel, opened only on a socket
//! that is root's, and errors that tell people what to do when it cannot be reached.

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::sensor_client::SensorClient;

/// A client on the daemon's unix socket.
pub async fn connect(socket: &Path) -> Result<SensorClient<Channel>> {
    Ok(SensorClient::new(channel(socket).await?))
}

/// A gRPC channel on the daemon's unix socket (for any service it serves).
pub async fn channel(socket: &Path) -> Result<Channel> {
    trust_socket(socket)?;
    let path = socket.to_path_buf();
    // The transport's error says little ("transport error"); the dial's own error says
    // whether the socket is missing, refused or root-only, which decides the advice.
    let dial_error: Arc<Mutex<Option<io::Error>>> = Arc::default();
    let seen = dial_error.clone();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            let seen = seen.clone();
            async move {
                match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => Ok(TokioIo::new(s)),
                    Err(e) => {
                        *seen.lock().unwrap() = Some(io::Error::new(e.kind(), e.to_string()));
                        Err(e)
                    }
                }
            }
        }))
        .await
        .map_err(|_| unreachable_daemon(socket, dial_error.lock().unwrap().take()))?;
    Ok(channel)
}

/// Refuses a socket another user could have planted (see [`check_daemon_socket`]). One
/// that cannot be looked at, missing or in root's private directory, is left to the dial,
/// whose error gives the advice that fits.
fn trust_socket(socket: &Path) -> Result<()> {
    let Err(e) = check_daemon_socket(socket) else {
        return Ok(());
    };
    let unseen = e
        .chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            )
        });
    if unseen { Ok(()) } else { Err(e) }
}

/// Why the daemon's socket could not be reached, with the remedy.
pub fn unreachable_daemon(socket: &Path, dial: Option<io::Error>) -> anyhow::Error {
    let why = match dial.as_ref().map(io::Error::kind) {
        Some(io::ErrorKind::PermissionDenied) => {
            "permission denied: the socket is for root only; run this command as root".into()
        }
        Some(io::ErrorKind::NotFound) => {
            "no socket there; is the daemon running (`sensor daemon`, as root)?".into()
        }
        Some(io::ErrorKind::ConnectionRefused) => {
            "nothing listens there; the daemon is not running".into()
        }
        _ => dial.map_or_else(|| "the connection failed".into(), |e| e.to_string()),
    };
    anyhow::anyhow!(
        "connecting to the sensor daemon at {}: {why}",
        socket.display()
    )
}

/// What a client checks before talking to `path`: that the socket and its directory are
/// root's (and not writable by others), so a local user who planted a socket of their own
/// there cannot feed root's CLI forged answers or collect what it sends.
pub fn check_daemon_socket(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).with_context(|| {
        format!(
            "no sensor daemon socket at {} (is the daemon running?)",
            path.display()
        )
    })?;
    if !m.file_type().is_socket() {
        bail!("{} is not a socket", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dm = fs::metadata(dir).with_context(|| dir.display().to_string())?;
    for (p, m, what) in [
        (dir, &dm, "the socket's directory"),
        (path, &m, "the socket"),
    ] {
        if m.uid() != 0 {
            bail!(
                "{what} {} belongs to uid {}, not root: it is not the sensor daemon's",
                p.display(),
                m.uid()
            );
        }
    }
    if writable_by_others(&dm) {
        bail!(
            "the socket's directory {} is writable by others (mode {:04o}): it is not the \
             sensor daemon's",
            dir.display(),
            dm.mode() & 0o7777
        );
    }
    Ok(())
}

/// Group root's members are root's own; any other group or user that can write a
/// directory could swap what is in it.
pub fn writable_by_others(m: &fs::Metadata) -> bool {
    m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != 0)
}
