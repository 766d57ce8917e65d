//! The gRPC service `sensor.v1.Sensor` (tonic), on a root-only unix socket and optionally
//! on TCP, with server reflection so generic clients (grpcurl, grpcio) can discover it.

use std::{
    collections::HashSet,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use anyhow::{Context, Result, bail};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, transport::Server};

use crate::{
    health::HealthSource,
    proto::{self, sensor_server::SensorServer},
    publish::Feed,
};

pub struct SensorService {
    pub feed: Feed,
    pub health: Arc<HealthSource>,
    pub detections: crate::detect::DetectionStore,
    /// Ends open streams when the daemon stops, so shutdown does not wait on clients.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Which events a subscriber asked for.
struct Filter {
    kinds: HashSet<String>,
    pids: HashSet<u32>,
    descendants: bool,
}

impl Filter {
    fn from_request(r: &proto::StreamEventsRequest) -> Result<Self, Status> {
        for k in &r.kinds {
            if k != "stream_gap"
                && k != "detection"
                && sensor_common::EventKind::from_name(k).is_none()
            {
                return Err(Status::invalid_argument(format!(
                    "unknown event kind {k:?}"
                )));
            }
        }
        Ok(Self {
            kinds: r.kinds.iter().cloned().collect(),
            pids: r.pids.iter().copied().collect(),
            descendants: r.include_descendants,
        })
    }

    fn matches(&self, e: &proto::Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        if self.pids.is_empty() {
            return true;
        }
        let Some(p) = &e.process else { return false };
        self.pids.contains(&p.pid)
            || (self.descendants
                && (self.pids.contains(&p.ppid)
                    || p.ancestors.iter().any(|a| self.pids.contains(&a.pid))))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;

#[tonic::async_trait]
impl proto::sensor_server::Sensor for SensorService {
    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<proto::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let filter = Filter::from_request(&req)?;
        // Subscribe before reading the backlog so nothing falls between the two.
        let mut live = self.feed.live.subscribe();
        let backlog: Vec<Arc<proto::Event>> = {
            let recent = self.feed.recent.lock().unwrap();
            let mut v: Vec<_> = recent
                .iter()
                .rev()
                .filter(|e| filter.matches(e))
                .take(req.backlog as usize)
                .cloned()
                .collect();
            v.reverse();
            v
        };
        let stats = self.health.stats.clone();
        let (tx, rx) = mpsc::channel(1024);
        stats.subscribers.fetch_add(1, Ordering::Relaxed);
        let snapshot_only = req.snapshot_only;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last_seq = 0;
            for e in backlog {
                last_seq = e.seq;
                if tx.send(Ok((*e).clone())).await.is_err() {
                    break;
                }
            }
            while !snapshot_only && !shutdown_seen(&shutdown) {
                let next = tokio::select! {
                    r = live.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                };
                match next {
                    Ok(e) => {
                        if e.seq <= last_seq || !filter.matches(&e) {
                            continue;
                        }
                        if tx.send(Ok((*e).clone())).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        stats.stream_dropped.fetch_add(n, Ordering::Relaxed);
                        let gap = proto::Event {
                            kind: "stream_gap".into(),
                            gap: Some(proto::StreamGap { missed: n }),
                            ..Default::default()
                        };
                        if tx.send(Ok(gap)).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_detections(
        &self,
        request: Request<proto::ListDetectionsRequest>,
    ) -> Result<Response<proto::ListDetectionsResponse>, Status> {
        let since = request.into_inner().since;
        Ok(Response::new(proto::ListDetectionsResponse {
            detections: self.detections.since(since),
        }))
    }

    async fn get_health(
        &self,
        _: Request<proto::GetHealthRequest>,
    ) -> Result<Response<proto::Health>, Status> {
        Ok(Response::new(self.health.snapshot()))
    }
}

fn shutdown_seen(rx: &tokio::sync::watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

/// Binds the unix socket: its directory and the socket itself are root-only.
/// A socket another daemon still answers on is not taken over.
pub async fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("another sensor daemon is serving on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // Created 0600 from the start: no window in which others could connect.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(
    service: SensorService,
    unix: tokio::net::UnixListener,
    socket_path: PathBuf,
    tcp: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let service = SensorServer::new(service);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let uds = Server::builder()
        .add_service(service.clone())
        .add_service(reflection.clone())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(unix),
            wait(shutdown.clone()),
        );
    let result = match tcp {
        Some(addr) => {
            let tcp = Server::builder()
                .add_service(service)
                .add_service(reflection)
                .serve_with_shutdown(addr, wait(shutdown));
            tokio::try_join!(uds, tcp).map(|_| ())
        }
        None => uds.await,
    };
    let _ = std::fs::remove_file(&socket_path);
    result.context("gRPC server")
}
