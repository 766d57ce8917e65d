//! The remote door to the API: a TCP listener that serves only mutual TLS, so a local
//! user who can reach a loopback port is no closer to the API than anyone on the network.
//! Bound before the daemon says it is ready, so a busy port fails start-up.

use std::{net::SocketAddr, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result, bail};
use tonic::transport::{Certificate, Identity, ServerTlsConfig, server::TcpIncoming};

use crate::safe_fs::owned_and_not_shared;

/// Certificates and keys are small; a bound keeps a FIFO or a huge file from stalling
/// start-up.
const PEM_MAX: u64 = 1 << 20;

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
